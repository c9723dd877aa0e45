"""Every environment variable fbsflow reads, read in this one module: typed, described, secrets masked.

`settings()` is the way in. The README's table of variables is made from these fields
(`.venv/bin/python -m tasks.settings` prints it; tests/test_settings.py keeps the two the same).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, overload

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tasks.errors import ConfigError

# --- How a variable's text becomes a value ------------------------------------------------------


def _trimmed(value: Any) -> Any:
    """Spaces around a value are dropped; a value of only spaces means unset, as an empty one does."""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise PydanticUseDefault
    return value


def _whole_number(minimum: int, maximum: int, words: str, fix: str) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        value = _trimmed(value)
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = minimum - 1
        if not minimum <= number <= maximum:
            raise ValueError(f"is not {words} (fix: {fix})")
        return number

    return parse


def _number(words: str, fix: str, *, positive: bool) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        value = _trimmed(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise ValueError(f"is not {words} (fix: {fix})")
        return number

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _switch(value: Any) -> bool:
    value = _trimmed(value)
    if isinstance(value, bool):
        return value
    if str(value).lower() not in _TRUE | _FALSE:
        raise ValueError("is not true/false (fix: write true or false)")
    return str(value).lower() in _TRUE


# Text whose spaces never matter (names, addresses, folders); the rest is kept exactly as set,
# so that a provider can name a stray character in a host or a key (a \r from Windows).
_Trimmed = Annotated[str, BeforeValidator(_trimmed)]
_Folder = Annotated[Path, BeforeValidator(_trimmed)]
_Seconds = Annotated[
    int,
    BeforeValidator(_whole_number(1, 10**9, "a positive whole number", "unset it or use e.g. 600")),
]
_Count = Annotated[
    int,
    BeforeValidator(_whole_number(1, 10**9, "a positive whole number", "unset it or use e.g. 2")),
]
_Port = Annotated[int, BeforeValidator(_whole_number(1, 65535, "a port number", "use e.g. 587"))]
_Switch = Annotated[bool, BeforeValidator(_switch)]


def _variable(name: str, description: str, default: Any = None) -> Any:
    """A field read from the environment variable `name`; `description` is its README entry."""
    return Field(default, validation_alias=name, description=description)


# --- Reading them -------------------------------------------------------------------------------


class _Variables(PydanticBaseSettingsSource):
    """The variables of `environ` (the process's, or a mapping a caller passes) by their exact
    names; an empty one counts as unset, as it does for every variable fbsflow has read."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = variable_name(field)
        return self.environ.get(name), name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, name, _ = self.get_field_value(field, field_name)
            if value is not None and value != "":
                found[name] = value
        return found


# The mapping `load` reads instead of os.environ, for the length of one call (a context variable,
# since pydantic-settings asks a class, not the call, for its sources).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("fbsflow_environ", default=None)


class _Group(BaseSettings):
    """Variables read together; a group loads on its own, so a mistake in one group's
    variables never stops code that needs only another's (the failure notice, for one)."""

    model_config = SettingsConfigDict(case_sensitive=True, frozen=True, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment only: no .env file or secrets folder is read behind a person's back.
        environ = _ENVIRON.get()
        return init_settings, _Variables(settings_cls, os.environ if environ is None else environ)


# --- The variables ------------------------------------------------------------------------------


class StorageSettings(_Group):
    """Where the ledger, its key and the checklist live."""

    data_dir: _Folder | None = _variable(
        "FBSFLOW_DATA_DIR",
        "the data folder: the SQLite ledger, its key file, the checklist and `fbsflow.log` "
        "(default: `.fbsflow/` beside the municipality's config file, whatever folder you run from)",
    )
    database_url: SecretStr | None = _variable(
        "FBSFLOW_DATABASE_URL",
        "ledger and checklist in PostgreSQL, e.g. "
        "`postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE` (the driver, psycopg 3, is "
        "installed with fbsflow; default: SQLite in the data folder). Secret: it holds a password",
    )
    ledger_key: SecretStr | None = _variable(
        "FBSFLOW_LEDGER_KEY",
        "key for the ledger's address hashes, at least 16 characters (default: `ledger.key` in "
        "the data folder, made on first use; set it where several machines share a database). "
        "Secret",
    )


class RunSettings(_Group):
    """Who runs the card, and how long it waits for a person."""

    triggered_by: _Trimmed | None = _variable(
        "FBSFLOW_TRIGGERED_BY",
        "who started the run, for the completion record and the checklist (default: the "
        "operating system's user name)",
    )
    approval_timeout: _Seconds = _variable(
        "FBSFLOW_APPROVAL_TIMEOUT",
        "seconds a run waits on a Prefect pause form (approval, a manual step's confirmation) "
        "before it gives up, sending nothing (default: 86400, a day)",
        24 * 3600,
    )
    approval_poll_seconds: _Seconds = _variable(
        "FBSFLOW_APPROVAL_POLL_SECONDS",
        "seconds between a paused run's checks for an answer to its form (default: 10)",
        10,
    )


class DeliverySettings(_Group):
    """How recipients are cut into chunks and sent."""

    chunk_size: _Count | None = _variable(
        "FBSFLOW_CHUNK_SIZE",
        "recipients per chunk task run (default: at least 5,000, about 20 chunks per channel)",
    )
    max_concurrent_chunks: _Count | None = _variable(
        "FBSFLOW_MAX_CONCURRENT_CHUNKS",
        "chunks sent at once, for every channel (default: the provider's own, 8 for SendGrid, "
        "2 for SMTP, GatewayAPI and the outbox)",
    )
    lease_seconds: Annotated[
        float,
        BeforeValidator(
            _number("a positive number of seconds", "unset it or use e.g. 600", positive=True)
        ),
    ] = _variable(
        "FBSFLOW_LEASE_SECONDS",
        "seconds a run's claim on a batch of recipients holds without renewal before another "
        "run may judge that run dead and take them over (default: 600)",
        600.0,
    )
    backoff_scale: Annotated[
        float,
        BeforeValidator(
            _number(
                "a number of 0 or more",
                "unset it, or use 1 for the full waits, 0 for none",
                positive=False,
            )
        ),
    ] = _variable(
        "FBSFLOW_BACKOFF_SCALE",
        "factor on every wait before a provider is asked again (default: 1; the tests set 0)",
        1.0,
    )


class NoticeSettings(_Group):
    """The e-mail that tells the project leader a run failed."""

    notify_email: _Trimmed | None = _variable(
        "FBSFLOW_NOTIFY_EMAIL",
        "where a failed run's notice goes (unset: no notice)",
    )
    notify_from: _Trimmed | None = _variable(
        "FBSFLOW_NOTIFY_FROM",
        "the failure notice's sender (default: the newsletter's `from_email` in the "
        "municipality's config)",
    )


class ProviderSettings(_Group):
    """Credentials of the providers that deliver; without them every message goes to the outbox."""

    sendgrid_api_key: SecretStr | None = _variable(
        "SENDGRID_API_KEY",
        "newsletter and branch e-mails through SendGrid v3: an API key with the Mail Send "
        "permission. Secret",
    )
    sendgrid_host: str | None = _variable(
        "SENDGRID_HOST",
        "SendGrid's API address (default: `https://api.sendgrid.com`)",
    )
    smtp_host: str | None = _variable(
        "FBSFLOW_SMTP_HOST",
        "e-mail through the municipality's relay instead (used when `SENDGRID_API_KEY` is unset)",
    )
    smtp_port: _Port = _variable("FBSFLOW_SMTP_PORT", "the relay's port (default: 587)", 587)
    smtp_username: str | None = _variable(
        "FBSFLOW_SMTP_USERNAME",
        "user name for the relay's AUTH (unset: the relay trusts this machine's address)",
    )
    smtp_password: SecretStr | None = _variable(
        "FBSFLOW_SMTP_PASSWORD", "password for the relay's AUTH. Secret"
    )
    smtp_starttls: _Switch = _variable(
        "FBSFLOW_SMTP_STARTTLS",
        "`true` or `false`: STARTTLS before AUTH and sending (default: true; false only on a "
        "trusted network)",
        True,
    )
    gatewayapi_token: SecretStr | None = _variable(
        "GATEWAYAPI_TOKEN", "SMS through GatewayAPI: an API token. Secret"
    )
    gatewayapi_url: str | None = _variable(
        "GATEWAYAPI_URL", "GatewayAPI's address (default: `https://gatewayapi.com`)"
    )
    ssl_cert_file: _Folder | None = _variable(
        "SSL_CERT_FILE",
        "CA certificates to trust for HTTPS, e.g. behind a proxy that re-signs it (OpenSSL's "
        "own variable: OpenSSL reads it, fbsflow names it in its fixes)",
    )

    def is_set(self, variable: str) -> bool:
        """Whether the variable named (e.g. "SENDGRID_API_KEY") is set to something."""
        for name, field in type(self).model_fields.items():
            if variable_name(field) == variable:
                value = getattr(self, name)
                return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)
        raise KeyError(f"{variable} is not a provider's variable")


class ReceiptSettings(_Group):
    """What the receipts receiver (`fbsflow receipts serve`) checks a provider's events with."""

    sendgrid_webhook_public_key: _Trimmed | None = _variable(
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "the Signed Event Webhook's verification key, base64 as SendGrid shows it (Settings > "
        "Mail Settings > Event Webhook); unset: `/sendgrid/events` refuses every batch",
    )
    gatewayapi_webhook_secret: SecretStr | None = _variable(
        "GATEWAYAPI_WEBHOOK_SECRET",
        "the secret GatewayAPI signs delivery reports with (the webhook's JWT secret); unset: "
        "`/gatewayapi/dlr` refuses every report. Secret",
    )
    receipts_max_age: _Seconds = _variable(
        "FBSFLOW_RECEIPTS_MAX_AGE",
        "seconds a signed SendGrid batch's timestamp may be away from this machine's clock "
        "before the batch is refused as stale (default: 600)",
        600,
    )


class SpeedSettings(_Group):
    """The speed tricks' switches (tasks/speed/): each is on; 0 turns it off, to measure what
    it buys or to rule it out. README: "Speed tricks and their switches"."""

    all: _Switch = _variable(
        "FBSFLOW_SPEED_ALL", "`0` turns every speed trick below off at once (default: 1)", True
    )
    fork_import: _Switch = _variable(
        "FBSFLOW_SPEED_FORK_IMPORT",
        "`0`: the borrower file is parsed in one process, not half in a forked child",
        True,
    )
    prefetch: _Switch = _variable(
        "FBSFLOW_SPEED_PREFETCH",
        "`0`: the borrower file is parsed by the flow's import step, not before Prefect starts",
        True,
    )
    gc: _Switch = _variable(
        "FBSFLOW_SPEED_GC",
        "`0`: Python's cycle collector runs as usual through imports, bulk work and exit",
        True,
    )
    heartbeat: _Switch = _variable(
        "FBSFLOW_SPEED_HEARTBEAT",
        "`0`: Prefect's engine sends flow-run heartbeats itself (and stops them up to 1 s late)",
        True,
    )
    ledger_sql: _Switch = _variable(
        "FBSFLOW_SPEED_LEDGER_SQL",
        "`0`: the ledger builds every statement with SQLAlchemy (no id-range claims)",
        True,
    )
    hmac_states: _Switch = _variable(
        "FBSFLOW_SPEED_HMAC_STATES",
        "`0`: recipient keys through `hmac.digest`, deriving the key's states each time",
        True,
    )
    sqlite_pages: _Switch = _variable(
        "FBSFLOW_SPEED_SQLITE_PAGES",
        "`0`: a new SQLite ledger gets SQLite's default page and cache sizes",
        True,
    )
    overlap_register: _Switch = _variable(
        "FBSFLOW_SPEED_OVERLAP_REGISTER",
        "`0`: a channel's keys are all made first, then registered in one go",
        True,
    )
    keepalive: _Switch = _variable(
        "FBSFLOW_SPEED_KEEPALIVE",
        "`0`: each SendGrid request goes through the SDK's own transport (a new connection and "
        "TLS handshake each) instead of one kept connection per provider",
        True,
    )


class PrefectSettings(_Group):
    """The Prefect server, as fbsflow sees it."""

    prefect_api_url: str | None = _variable(
        "PREFECT_API_URL",
        "the Prefect server to run on, e.g. `http://127.0.0.1:4200/api`: runs pause for approval "
        "and confirmations in its UI, and `fbsflow serve` needs it (unset: a temporary server "
        "per run, which ends with it; Prefect's own variable)",
    )
    prefect_ui_url: str | None = _variable(
        "PREFECT_UI_URL",
        "the Prefect UI's address, for the link to the run in a failure notice (unset: the UI "
        "beside `PREFECT_API_URL`, its address without `/api`; neither set: no link; Prefect's "
        "own variable)",
    )
    project_dir: _Folder | None = _variable(
        "FBSFLOW_PROJECT_DIR",
        "this folder as a Prefect worker sees it: `prefect.yaml` runs the deployments there "
        "(Prefect reads it when a run starts; leave it unset where you run `prefect deploy`)",
    )


class Settings(
    # Pydantic lists the last base's fields first: these are the groups from the last up, so
    # that the fields (and the README's table) read from storage down to Prefect.
    SpeedSettings,
    PrefectSettings,
    ReceiptSettings,
    ProviderSettings,
    NoticeSettings,
    DeliverySettings,
    RunSettings,
    StorageSettings,
):
    """Every variable fbsflow reads."""


G = TypeVar("G", bound=_Group)


def variable_name(field: FieldInfo) -> str:
    """The environment variable a field is read from."""
    assert isinstance(field.validation_alias, str)
    return field.validation_alias


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in get_args(field.annotation)


def variable(field_name: str) -> str:
    """The environment variable of a field of `Settings`, for a message: "FBSFLOW_DATA_DIR"."""
    return variable_name(Settings.model_fields[field_name])


VARIABLES: tuple[str, ...] = tuple(variable_name(f) for f in Settings.model_fields.values())


def load(group: type[G], environ: Mapping[str, str] | None = None) -> G:
    """`group` read from `environ` (default: this process's environment), not cached.

    Raises ConfigError naming each variable that is wrong and the fix; a secret's value is
    never quoted.
    """
    token = _ENVIRON.set(environ)
    try:
        return group()
    except ValidationError as exc:
        raise _config_error(group, exc, os.environ if environ is None else environ) from None
    finally:
        _ENVIRON.reset(token)


def _config_error(
    group: type[_Group], exc: ValidationError, environ: Mapping[str, str]
) -> ConfigError:
    secrets = {variable_name(f) for f in group.model_fields.values() if _is_secret(f)}
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0])
        said = str(error.get("ctx", {}).get("error") or error["msg"])
        shown = "" if name in secrets else f"={environ.get(name, '')!r}"
        problems.append(f"{name}{shown} {said}")
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError("these environment variables are not valid", problems)


_cache: dict[type[_Group], tuple[tuple[str | None, ...], _Group]] = {}


@overload
def settings() -> Settings: ...
@overload
def settings(group: type[G]) -> G: ...
def settings(group: type[_Group] = Settings) -> _Group:
    """fbsflow's settings (or one group of them), read once and again only when one of their
    variables has changed: tests set them with monkeypatch, and a run never does, so a run
    reads them once. Raises ConfigError naming a wrong variable and the fix."""
    names = [variable_name(f) for f in group.model_fields.values()]
    seen = tuple(map(os.environ.get, names))
    cached = _cache.get(group)
    if cached is None or cached[0] != seen:
        cached = _cache[group] = (seen, load(group))
    return cached[1]


def reload() -> Settings:
    """Read the environment again, whether or not it changed (e.g. after replacing os.environ)."""
    _cache.clear()
    return settings()


def credentials(environ: Mapping[str, str] | None = None) -> ProviderSettings:
    """The providers' credentials: from `environ` when a caller (a test, the failure notice)
    hands one over, else this process's settings."""
    return settings(ProviderSettings) if environ is None else load(ProviderSettings, environ)


def plain(secret: SecretStr | None) -> str:
    """A secret's value where it must be used (a request header), "" when unset."""
    return secret.get_secret_value() if secret is not None else ""


def prefect_server() -> str | None:
    """The Prefect server this process was pointed at (PREFECT_API_URL), None when there is none.

    fbsflow's one answer to "is there a Prefect server?". None means runs use a temporary
    server that ends with the process (Prefect's own, or the test harness's, which Prefect's
    settings name but the environment does not): nobody can open a pause form on it in time,
    so a run does not pause for approval or confirmations there, and `fbsflow serve` refuses.
    A URL set only in a Prefect profile is not seen (Prefect's settings would see it; whether
    Prefect itself will start a temporary server is a different question, for Prefect).
    """
    return settings(PrefectSettings).prefect_api_url


def markdown_table() -> str:
    """The README's table of environment variables, one row per variable, group by group."""
    rows = ["| variable | effect |", "| --- | --- |"]
    for field in Settings.model_fields.values():
        rows.append(f"| `{variable_name(field)}` | {field.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
