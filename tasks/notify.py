"""Failure notice for the project leader: a Prefect on_failure / on_crash hook that sends a short e-mail.

The notice goes to `FBSFLOW_NOTIFY_EMAIL` through the newsletter's e-mail provider, as the
provider table picks it (tasks/providers/registry.py: SendGrid when `SENDGRID_API_KEY` is set,
SMTP when `FBSFLOW_SMTP_HOST` is set); where the newsletter would go to the outbox, the notice
is a `.eml` file in `<output root>/_notices/`. The sender is `FBSFLOW_NOTIFY_FROM`, else the
newsletter's `from_email` from the municipality's config. The state message is scrubbed of
anything shaped like an e-mail address or phone number: exceptions can quote a borrower's row.
A hook must never raise (it would mask the failure it reports), so every error ends in a logged
warning. The notice speaks the operator language (tasks/operator_text.py: Danish unless the
config says otherwise), gives the time in Europe/Copenhagen, and links to the run in the Prefect
UI at `PREFECT_UI_URL`, or, unset, at the UI beside `PREFECT_API_URL` (the API's address without
its `/api`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

# The one scrubber of personal data, also for the checklist's notes (imported from here).
from tasks.operator_text import language, say, when
from tasks.providers.http import scrub_personal_data
from tasks.settings import NoticeSettings, PrefectSettings, load, settings, variable

NOTIFY_EMAIL_ENV = variable("notify_email")
NOTIFY_FROM_ENV = variable("notify_from")
NOTICES_FOLDER = "_notices"
FALLBACK_FROM = "fbsflow@localhost"
_MAX_MESSAGE_CHARS = 2000

log = logging.getLogger(__name__)

G = TypeVar("G", NoticeSettings, PrefectSettings)


def _read(group: type[G], env: Mapping[str, str] | None) -> G:
    """The notice's own variables, from `env` when a caller (a test) gives one. Only the groups
    it needs: a wrong variable elsewhere (maybe why the run failed) must not stop the notice."""
    return settings(group) if env is None else load(group, env)


def _municipality(flow_run: Any) -> tuple[str, Any]:
    """The municipality's name (and config, if it loads) from the run's `config_path` parameter."""
    config_path = (getattr(flow_run, "parameters", None) or {}).get("config_path")
    if not config_path:
        return "", None  # the notice says "unknown municipality" in its language
    try:
        from tasks.config import load_municipality

        config = load_municipality(config_path)
    except Exception:
        # The config itself may be why the run failed: its file name is still a good label.
        return Path(str(config_path)).stem, None
    return config.municipality.name, config


def build_notice(
    flow: Any, flow_run: Any, state: Any, *, env: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(subject, body) of the notice, in the operator language; the body carries no personal data."""
    municipality, config = _municipality(flow_run)
    lang = language(config)
    municipality = municipality or say("notify.unknown_municipality", lang)
    flow_name = getattr(flow, "name", None) or "flow"
    run_id = getattr(flow_run, "id", None)
    message = scrub_personal_data(
        str(getattr(state, "message", None) or say("notify.no_message", lang))
    )
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + " [...]"
    state_name = getattr(state, "name", None) or str(getattr(state, "type", "?"))
    lines = [
        say("notify.ended", lang, flow=flow_name, state=state_name, municipality=municipality),
        "",
        say("notify.run", lang, name=getattr(flow_run, "name", None) or "?", id=run_id),
        say("notify.time", lang, time=when(datetime.now(UTC), lang)),
        "",
        say("notify.message", lang),
        message,
        "",
    ]
    ui_url = run_ui_base(env)
    if ui_url and run_id is not None:
        lines.append(say("notify.open_run", lang, url=f"{ui_url}/runs/flow-run/{run_id}"))
    else:
        lines.append(say("notify.no_link", lang))
    lines += ["", say("notify.advice", lang)]
    subject = say("notify.subject", lang, flow=flow_name, municipality=municipality)
    return subject, "\n".join(lines) + "\n"


def run_ui_base(env: Mapping[str, str] | None = None) -> str | None:
    """The Prefect UI's address for links to runs: PREFECT_UI_URL, else the UI that serves
    PREFECT_API_URL (Prefect's server answers both, the API under `/api`); None if neither."""
    prefect = _read(PrefectSettings, env)
    if prefect.prefect_ui_url:
        return prefect.prefect_ui_url.rstrip("/")
    api = (prefect.prefect_api_url or "").rstrip("/")
    if api.endswith("/api"):
        return api.removesuffix("/api")
    return None


def _sender(flow_run: Any, env: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(address, name) to send from; None when neither env nor the config names one."""
    if from_email := _read(NoticeSettings, env).notify_from:
        return from_email, "fbsflow"
    _, config = _municipality(flow_run)
    newsletter = getattr(getattr(config, "channels", None), "newsletter", None)
    if newsletter is not None:
        return str(newsletter.from_email), newsletter.from_name
    return None


def _logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The run's Prefect logger inside a run, so warnings show in the UI; the module logger
    outside one (a run logger there would start a temporary Prefect server to ship its logs)."""
    try:
        from prefect.context import FlowRunContext
        from prefect.logging import get_run_logger

        if FlowRunContext.get() is not None:
            return get_run_logger()
    except Exception:
        pass
    return log


def _send_with_provider(
    name: str,
    to: str,
    sender: tuple[str, str],
    subject: str,
    body: str,
    env: Mapping[str, str] | None,
    run_id: str,
) -> None:
    from tasks.models import Channel, Language, NewsletterSettings
    from tasks.providers.base import DeliveryStatus, Message, Recipient
    from tasks.providers.registry import provider_class

    # Not validated here: the sender comes from env or a validated config, and the provider
    # refuses one it cannot send for (with a fix in its error).
    newsletter = NewsletterSettings.model_construct(from_email=sender[0], from_name=sender[1])
    provider = provider_class(name).from_env(newsletter, env)
    try:
        result = provider.send_batch(
            Message(Channel.NEWSLETTER, Language.EN, text=body, subject=subject),
            [Recipient(key="project-leader", address=to)],
            campaign="fbsflow-notice",
            batch_id=f"notice-{run_id}",
        )
    finally:
        provider.close()
    status = result.statuses.get("project-leader")
    if status is not DeliveryStatus.SENT:
        raise RuntimeError(f"{name} did not accept the notice ({status}; {result.detail})")


def _write_eml(folder: Path, to: str, sender: tuple[str, str], subject: str, body: str) -> Path:
    mail = EmailMessage()
    mail["From"] = f"{sender[1]} <{sender[0]}>"
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=True)
    mail.set_content(body)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}.eml"
    path.write_bytes(bytes(mail))
    return path


def failure_notice(
    flow: Any, flow_run: Any, state: Any, *, env: Mapping[str, str] | None = None
) -> str | None:
    """Prefect state hook: tell the project leader a run failed. Returns how it went out
    ("sendgrid", "smtp" or the .eml path), or None when nothing was sent. Never raises."""
    logger = _logger()
    try:
        to = _read(NoticeSettings, env).notify_email
        if not to:
            logger.warning(
                "%s is not set: no failure notice sent (fix: export %s=<project leader's e-mail>)",
                NOTIFY_EMAIL_ENV,
                NOTIFY_EMAIL_ENV,
            )
            return None
        subject, body = build_notice(flow, flow_run, state, env=env)
        sender = _sender(flow_run, env)
        run_id = str(getattr(flow_run, "id", "") or "unknown")
        from tasks.errors import ConfigError
        from tasks.models import Channel
        from tasks.providers.registry import OUTBOX, provider_name

        try:
            name = provider_name(Channel.NEWSLETTER, env)
        except ConfigError as exc:  # a provider variable is wrong (maybe why the run failed)
            logger.warning("Failure notice written to a file instead: %s", exc)
            name = OUTBOX
        provider = None if name == OUTBOX else name
        if provider and sender is None:
            logger.warning(
                "No sender for the failure notice (fix: export %s=<a sender %s accepts>); "
                "writing it to a file instead",
                NOTIFY_FROM_ENV,
                provider,
            )
        elif provider and sender is not None:
            try:
                _send_with_provider(provider, to, sender, subject, body, env, run_id)
            except Exception as exc:
                # Keep the notice on disk rather than lose it with the provider.
                logger.warning(
                    "Failure notice not sent via %s (%s: %s); writing it to a file instead",
                    provider,
                    type(exc).__name__,
                    scrub_personal_data(str(exc))[:500],
                )
            else:
                logger.info("Failure notice for run %s sent via %s", run_id, provider)
                return provider
        root = (getattr(flow_run, "parameters", None) or {}).get("output_root") or "outbox"
        path = _write_eml(
            Path(root) / NOTICES_FOLDER, to, sender or (FALLBACK_FROM, "fbsflow"), subject, body
        )
        logger.warning("Failure notice written to %s (no e-mail provider sent it)", path)
        return str(path)
    except Exception as exc:
        # Scrubbed: this error may come from anywhere, including a borrower's data.
        logger.warning(
            "Failure notice could not be made (%s: %s)",
            type(exc).__name__,
            scrub_personal_data(str(exc))[:500],
        )
        return None


def deliver_notice(
    flow_run: Any, subject: str, body: str, *, env: Mapping[str, str] | None = None
) -> str | None:
    """Send any notice about `flow_run` to the project leader the way a failure notice goes
    (provider, else a .eml file in `<output root>/_notices/`). Returns how it went out, or None
    when FBSFLOW_NOTIFY_EMAIL is unset. Raises on a fault: the caller is a flow, not a hook."""
    from tasks.models import Channel
    from tasks.providers.registry import OUTBOX, provider_name

    to = _read(NoticeSettings, env).notify_email
    if not to:
        _logger().warning(
            "%s is not set: no notice sent (fix: export %s=<project leader's e-mail>)",
            NOTIFY_EMAIL_ENV,
            NOTIFY_EMAIL_ENV,
        )
        return None
    sender = _sender(flow_run, env)
    name = provider_name(Channel.NEWSLETTER, env)
    if name != OUTBOX and sender is not None:
        _send_with_provider(
            name, to, sender, subject, body, env, str(getattr(flow_run, "id", "unknown"))
        )
        return name
    root = (getattr(flow_run, "parameters", None) or {}).get("output_root") or "outbox"
    path = _write_eml(
        Path(root) / NOTICES_FOLDER, to, sender or (FALLBACK_FROM, "fbsflow"), subject, body
    )
    return str(path)
