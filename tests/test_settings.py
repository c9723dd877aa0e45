"""The settings module: every variable read there, typed, secrets masked, the README's table made from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks import notify, translation
from tasks.errors import ConfigError
from tasks.settings import (
    VARIABLES,
    NoticeSettings,
    Settings,
    StorageSettings,
    load,
    markdown_table,
    prefect_server,
    reload,
    settings,
    variable,
)

from .conftest import ROOT

SECRETS = {
    "FBSFLOW_DATABASE_URL": "postgresql+psycopg://fbsflow:db-password-1@db.test:5432/fbsflow",
    "FBSFLOW_LEDGER_KEY": "ledger-key-that-must-not-show",
    "SENDGRID_API_KEY": "SG.sendgrid-key-that-must-not-show",
    "FBSFLOW_SMTP_PASSWORD": "smtp-password-that-must-not-show",
    "GATEWAYAPI_TOKEN": "gatewayapi-token-that-must-not-show",
}

# The CLI only writes Prefect defaults (os.environ.setdefault) before Prefect is imported.
NOT_YET_CONVERTED = {"flows/cli.py"}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    reload()


def test_the_readme_table_is_made_from_the_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("| variable | effect |")
    table = readme[start : readme.index("\n\n", start) + 1]
    assert table == markdown_table(), (
        "README.md's table of environment variables differs from tasks/settings.py (fix: "
        "replace the table with the output of `.venv/bin/python -m tasks.settings`)"
    )
    assert len(VARIABLES) == len(set(VARIABLES))
    assert all(field.description for field in Settings.model_fields.values())


def test_only_the_settings_module_reads_the_environment() -> None:
    reads = re.compile(r"os\.environ|getenv")
    found = {
        str(path.relative_to(ROOT))
        for folder in ("flows", "tasks")
        for path in (ROOT / folder).rglob("*.py")
        if reads.search(path.read_text(encoding="utf-8"))
    }
    assert found - NOT_YET_CONVERTED == {"tasks/settings.py"}, (
        "read environment variables through tasks.settings (fix: add a field there, with a "
        "description, and regenerate the README's table)"
    )


def test_no_secret_is_ever_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    current = settings()
    shown = repr(current) + str(current) + current.model_dump_json() + str(current.model_dump())
    for value in SECRETS.values():
        assert value not in shown
    assert "db-password-1" not in shown
    # ... while the code that needs a secret gets it.
    assert current.database_url is not None
    assert current.database_url.get_secret_value() == SECRETS["FBSFLOW_DATABASE_URL"]


def test_a_mistake_next_to_a_secret_quotes_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_SMTP_PASSWORD", SECRETS["FBSFLOW_SMTP_PASSWORD"])
    monkeypatch.setenv("FBSFLOW_SMTP_PORT", "smtp")
    with pytest.raises(ConfigError) as caught:
        settings()
    assert SECRETS["FBSFLOW_SMTP_PASSWORD"] not in str(caught.value)
    assert "FBSFLOW_SMTP_PORT='smtp' is not a port number (fix: use e.g. 587)" in str(caught.value)


def test_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    current = reload()
    assert current.data_dir is None and current.database_url is None
    assert (current.approval_timeout, current.approval_poll_seconds) == (86400, 10)
    assert (current.chunk_size, current.max_concurrent_chunks) == (None, None)
    assert (current.lease_seconds, current.backoff_scale) == (600.0, 1.0)
    assert (current.smtp_port, current.smtp_starttls) == (587, True)
    assert prefect_server() is None


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    [
        ("FBSFLOW_CHUNK_SIZE", "1234", "chunk_size", 1234),
        ("FBSFLOW_CHUNK_SIZE", " 50 ", "chunk_size", 50),
        ("FBSFLOW_MAX_CONCURRENT_CHUNKS", " ", "max_concurrent_chunks", None),  # blank: unset
        ("FBSFLOW_MAX_CONCURRENT_CHUNKS", "", "max_concurrent_chunks", None),
        ("FBSFLOW_APPROVAL_TIMEOUT", "120", "approval_timeout", 120),
        ("FBSFLOW_LEASE_SECONDS", "0.5", "lease_seconds", 0.5),
        ("FBSFLOW_BACKOFF_SCALE", "0", "backoff_scale", 0.0),
        ("FBSFLOW_BACKOFF_SCALE", "0.01", "backoff_scale", 0.01),
        ("FBSFLOW_SMTP_PORT", "2525", "smtp_port", 2525),
        ("FBSFLOW_SMTP_STARTTLS", "OFF", "smtp_starttls", False),
        ("FBSFLOW_SMTP_STARTTLS", "yes", "smtp_starttls", True),
        ("FBSFLOW_DATA_DIR", " /srv/fbsflow ", "data_dir", Path("/srv/fbsflow")),
        ("FBSFLOW_NOTIFY_EMAIL", " leder@bibliotek.test ", "notify_email", "leder@bibliotek.test"),
        ("FBSFLOW_TRIGGERED_BY", "Åse", "triggered_by", "Åse"),
        # Hosts and keys are kept exactly as set: the provider names a stray \r from Windows.
        ("SENDGRID_HOST", "http://127.0.0.1:9\r", "sendgrid_host", "http://127.0.0.1:9\r"),
        (
            "PREFECT_API_URL",
            "http://127.0.0.1:4200/api",
            "prefect_api_url",
            "http://127.0.0.1:4200/api",
        ),
    ],
)
def test_a_variable_becomes_a_typed_value(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(name, raw)
    assert getattr(settings(), field) == expected
    assert variable(field) == name


@pytest.mark.parametrize(
    ("name", "raw", "said"),
    [
        ("FBSFLOW_CHUNK_SIZE", "0", "is not a positive whole number"),
        ("FBSFLOW_MAX_CONCURRENT_CHUNKS", "-5", "is not a positive whole number"),
        ("FBSFLOW_MAX_CONCURRENT_CHUNKS", "many", "is not a positive whole number"),
        ("FBSFLOW_MAX_CONCURRENT_CHUNKS", "2.5", "is not a positive whole number"),
        ("FBSFLOW_APPROVAL_TIMEOUT", "a day", "is not a positive whole number"),
        ("FBSFLOW_LEASE_SECONDS", "0", "is not a positive number of seconds"),
        ("FBSFLOW_BACKOFF_SCALE", "fast", "is not a number of 0 or more"),
        ("FBSFLOW_BACKOFF_SCALE", "-1", "is not a number of 0 or more"),
        ("FBSFLOW_BACKOFF_SCALE", "nan", "is not a number of 0 or more"),
        ("FBSFLOW_SMTP_PORT", "70000", "is not a port number"),
        ("FBSFLOW_SMTP_STARTTLS", "maybe", "is not true/false"),
    ],
)
def test_a_wrong_value_is_a_config_error_naming_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, said: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        settings()
    assert str(caught.value).startswith(f"{name}={raw!r} {said} (fix: ")


def test_every_mistake_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_CHUNK_SIZE", "0")
    monkeypatch.setenv("FBSFLOW_SMTP_PORT", "x")
    with pytest.raises(ConfigError) as caught:
        settings()
    assert [p.split("=")[0] for p in caught.value.problems] == [
        "FBSFLOW_CHUNK_SIZE",
        "FBSFLOW_SMTP_PORT",
    ]


def test_a_mistake_in_one_group_leaves_the_others_readable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FBSFLOW_CHUNK_SIZE", "many")
    monkeypatch.setenv("FBSFLOW_NOTIFY_EMAIL", "leder@bibliotek.test")
    with pytest.raises(ConfigError, match="FBSFLOW_CHUNK_SIZE"):
        settings()
    # The failure notice still goes out, and a database error is still explained.
    assert settings(NoticeSettings).notify_email == "leder@bibliotek.test"
    assert settings(StorageSettings).database_url is None


def test_read_once_and_again_when_a_variable_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_TRIGGERED_BY", "Åse")
    first = settings()
    assert settings() is first  # cached while nothing changed
    monkeypatch.setenv("FBSFLOW_TRIGGERED_BY", "Bo")  # as tests do, after a module has read it
    assert settings().triggered_by == "Bo"
    monkeypatch.delenv("FBSFLOW_TRIGGERED_BY")
    assert settings().triggered_by is None


def test_load_reads_a_given_mapping_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_NOTIFY_FROM", "from-the-process@bibliotek.test")
    given = load(NoticeSettings, {"FBSFLOW_NOTIFY_EMAIL": "leder@bibliotek.test"})
    assert (given.notify_email, given.notify_from) == ("leder@bibliotek.test", None)


def test_a_temporary_prefect_server_is_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # What the test harness does: Prefect's settings name its server, the environment does not.
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert prefect_server() is None
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert prefect_server() == "http://127.0.0.1:4200/api"


def test_names_in_messages_are_the_names_read() -> None:
    assert variable("database_url") == translation.DATABASE_URL_ENV
    assert (
        variable("notify_email"),
        variable("notify_from"),
    ) == (notify.NOTIFY_EMAIL_ENV, notify.NOTIFY_FROM_ENV)
