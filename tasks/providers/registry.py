"""The one table of providers (name, class, credentials) and which one a channel goes through.

A channel that delivers sends e-mail or SMS. It goes through the first provider in `PROVIDERS`
of that kind whose selecting credential (the first of its `credentials`) is set in the
environment; with none set, through the outbox, which writes what that first provider would
have received. The flow and the failure notice (tasks/notify.py) both ask here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tasks.models import Channel, MunicipalityConfig
from tasks.output import PrivateFiles
from tasks.providers.base import Provider
from tasks.settings import credentials


class Kind(StrEnum):
    """What a provider delivers."""

    EMAIL = "e-mail"
    SMS = "SMS"


@dataclass(frozen=True)
class ProviderEntry:
    """One provider: its name, its class ("module:Class") and the variables it reads."""

    name: str
    kind: Kind | None  # None: the outbox, which stands in for every kind
    target: str
    credentials: tuple[str, ...] = ()  # environment variables; the first one set selects it

    def load(self) -> type[Provider]:
        """The class, imported now: each provider module pulls in its client library."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


# In order of preference within a kind; the first of a kind is the one the outbox mirrors.
PROVIDERS: tuple[ProviderEntry, ...] = (
    ProviderEntry(
        "sendgrid",
        Kind.EMAIL,
        "tasks.providers.sendgrid:SendGridProvider",
        ("SENDGRID_API_KEY", "SENDGRID_HOST"),
    ),
    ProviderEntry(
        "smtp",
        Kind.EMAIL,
        "tasks.providers.smtp:SmtpProvider",
        (
            "FBSFLOW_SMTP_HOST",
            "FBSFLOW_SMTP_PORT",
            "FBSFLOW_SMTP_USERNAME",
            "FBSFLOW_SMTP_PASSWORD",
            "FBSFLOW_SMTP_STARTTLS",
        ),
    ),
    ProviderEntry(
        "gatewayapi",
        Kind.SMS,
        "tasks.providers.gatewayapi:GatewayApiProvider",
        ("GATEWAYAPI_TOKEN", "GATEWAYAPI_URL"),
    ),
    ProviderEntry("outbox", None, "tasks.providers.outbox:OutboxProvider"),
)
OUTBOX = "outbox"

# What a channel that delivers sends, and whose settings (sender, ...) its provider reads:
# posters go by e-mail to the branches, through the newsletter's provider and sender.
_DELIVERIES: dict[Channel, tuple[Kind, Callable[[MunicipalityConfig], object]]] = {
    Channel.NEWSLETTER: (Kind.EMAIL, lambda config: config.channels.newsletter),
    Channel.POSTER: (Kind.EMAIL, lambda config: config.channels.newsletter),
    Channel.SMS: (Kind.SMS, lambda config: config.channels.sms),
}


def entry(name: str) -> ProviderEntry:
    """The table's row for a provider name."""
    for row in PROVIDERS:
        if row.name == name:
            return row
    raise ValueError(f"no provider named {name!r}; known: {[row.name for row in PROVIDERS]}")


def provider_name(channel: Channel, env: Mapping[str, str] | None = None) -> str:
    """Which provider a channel will use; decided by which credentials are set."""
    given = credentials(env)
    kind = _DELIVERIES[channel][0] if channel in _DELIVERIES else None
    for row in PROVIDERS:
        if kind is not None and row.kind is kind and given.is_set(row.credentials[0]):
            return row.name
    return OUTBOX


def provider_class(name: str) -> type[Provider]:
    """The class behind a `provider_name` (imported on demand: each pulls in its client)."""
    return entry(name).load()


def chunks_at_once(channel: Channel, env: Mapping[str, str] | None = None) -> int:
    """How many chunk task runs of `channel` to send at once by default (its provider's hint)."""
    return provider_class(provider_name(channel, env)).chunks_at_once


def make_provider(
    channel: Channel,
    config: MunicipalityConfig,
    *,
    campaign: str,
    outbox: PrivateFiles,
    env: Mapping[str, str] | None = None,
) -> Provider:
    """A fresh provider for one chunk of work (providers hold connections, not delivery state).

    `outbox` keeps the outbox provider's request files (with addresses) until the output's commit.
    `campaign` is not needed: each batch names its own (the argument stays for its callers).
    """
    del campaign
    if channel not in _DELIVERIES:
        raise ValueError(f"channel {channel.value} has no recipients to deliver to")
    kind, settings_of = _DELIVERIES[channel]
    settings = settings_of(config)
    assert settings is not None, f"a {channel.value} delivery without its settings"
    name = provider_name(channel, env)
    if name != OUTBOX:
        return provider_class(name).from_env(settings, env)
    from tasks.providers.outbox import OutboxProvider

    mirrored = next(row for row in PROVIDERS if row.kind is kind).load()
    return OutboxProvider(outbox, channel.value, mirrors=mirrored, settings=settings)  # type: ignore[arg-type]
