"""Pick a channel's provider by the credentials in the environment; the outbox when there are none."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial

from tasks.models import Channel, MunicipalityConfig
from tasks.output import PrivateFiles
from tasks.providers.base import Message, Provider, Recipient
from tasks.providers.outbox import OutboxProvider


def provider_name(channel: Channel, env: Mapping[str, str] | None = None) -> str:
    """Which provider a channel will use; decided by which credentials are set."""
    env = os.environ if env is None else env
    # Posters go by e-mail to the branches, through the same e-mail provider as the newsletter.
    if channel in (Channel.NEWSLETTER, Channel.POSTER):
        if env.get("SENDGRID_API_KEY"):
            return "sendgrid"
        if env.get("FBSFLOW_SMTP_HOST"):
            return "smtp"
    if channel is Channel.SMS and env.get("GATEWAYAPI_TOKEN"):
        return "gatewayapi"
    return "outbox"


def _sendgrid_shape(
    config: MunicipalityConfig,
    campaign: str,
    message: Message,
    recipients: Sequence[Recipient],
    batch_id: str,
) -> dict:
    from tasks.providers.sendgrid import build_payload

    s = config.channels.newsletter
    assert s is not None
    return build_payload(
        message,
        recipients,
        from_email=str(s.from_email),
        from_name=s.from_name,
        campaign=campaign,
        batch_id=batch_id,
        sandbox_mode=s.sandbox_mode,
        unsubscribe_group_id=s.unsubscribe_group_id,
    )


def _gatewayapi_shape(
    config: MunicipalityConfig,
    campaign: str,
    message: Message,
    recipients: Sequence[Recipient],
    batch_id: str,
) -> dict:
    from tasks.providers.gatewayapi import build_payload

    s = config.channels.sms
    assert s is not None
    return build_payload(
        message,
        recipients,
        sender=s.sender,
        campaign=campaign,
        batch_id=batch_id,
        max_parts=s.max_parts,
    )


def provider_class(name: str) -> type[Provider]:
    """The class behind a `provider_name` (imported on demand: each pulls in its client)."""
    if name == "sendgrid":
        from tasks.providers.sendgrid import SendGridProvider

        return SendGridProvider
    if name == "smtp":
        from tasks.providers.smtp import SmtpProvider

        return SmtpProvider
    if name == "gatewayapi":
        from tasks.providers.gatewayapi import GatewayApiProvider

        return GatewayApiProvider
    return OutboxProvider


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
    """
    name = provider_name(channel, env)
    if name == "sendgrid":
        from tasks.providers.sendgrid import SendGridProvider

        assert config.channels.newsletter is not None
        return SendGridProvider.from_env(config.channels.newsletter, env)
    if name == "smtp":
        from tasks.providers.smtp import SmtpProvider

        assert config.channels.newsletter is not None
        return SmtpProvider.from_env(config.channels.newsletter)
    if name == "gatewayapi":
        from tasks.providers.gatewayapi import GatewayApiProvider

        assert config.channels.sms is not None
        return GatewayApiProvider.from_env(config.channels.sms, environ=env)
    if channel in (Channel.NEWSLETTER, Channel.POSTER):
        return OutboxProvider(
            outbox, channel.value, shape=partial(_sendgrid_shape, config, campaign), max_batch=1000
        )
    if channel is Channel.SMS:
        return OutboxProvider(
            outbox,
            channel.value,
            shape=partial(_gatewayapi_shape, config, campaign),
            max_batch=10_000,
        )
    raise ValueError(f"channel {channel.value} has no recipients to deliver to")
