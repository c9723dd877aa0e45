"""The provider table: which provider a channel uses, built from the config and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config import load_municipality
from tasks.models import Channel
from tasks.output import PrivateFiles
from tasks.providers.base import Provider
from tasks.providers.gatewayapi import GatewayApiProvider
from tasks.providers.outbox import OutboxProvider
from tasks.providers.registry import PROVIDERS, make_provider, provider_class, provider_name
from tasks.providers.sendgrid import SendGridProvider
from tasks.providers.smtp import SmtpProvider
from tests.conftest import EXAMPLE_CONFIG, ROOT

SENDGRID = {"SENDGRID_API_KEY": "SG.key"}
SMTP = {"FBSFLOW_SMTP_HOST": "relay.kommune.test"}
GATEWAYAPI = {"GATEWAYAPI_TOKEN": "token"}


def test_each_row_names_its_class_and_the_readme_its_variables() -> None:
    readme = (ROOT / "README.md").read_text()
    for row in PROVIDERS:
        cls = row.load()
        assert issubclass(cls, Provider) and cls.name == row.name
        for variable in row.credentials:
            assert f"`{variable}`" in readme, f"README's provider table lacks {variable}"
        if row.kind is not None:  # every real provider is built from the environment
            assert cls.from_env.__func__ is not Provider.from_env.__func__  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("channel", "env", "expected"),
    [
        (Channel.NEWSLETTER, {**SENDGRID, **SMTP}, "sendgrid"),  # SendGrid first
        (Channel.NEWSLETTER, SMTP, "smtp"),
        (Channel.POSTER, SMTP, "smtp"),  # posters go by e-mail to the branches
        (Channel.NEWSLETTER, GATEWAYAPI, "outbox"),
        (Channel.SMS, {**SENDGRID, **GATEWAYAPI}, "gatewayapi"),
        (Channel.SMS, SENDGRID, "outbox"),
        (Channel.NEWSLETTER, {"SENDGRID_API_KEY": ""}, "outbox"),  # set but empty: not set
        (Channel.WEBSITE, SENDGRID, "outbox"),  # delivers nothing
    ],
)
def test_a_channel_uses_the_first_provider_of_its_kind_with_credentials(
    channel: Channel, env: dict[str, str], expected: str
) -> None:
    assert provider_name(channel, env) == expected


@pytest.mark.parametrize(
    ("channel", "env", "cls", "mirrors"),
    [
        (Channel.NEWSLETTER, SENDGRID, SendGridProvider, None),
        (Channel.POSTER, {**SMTP, "FBSFLOW_SMTP_PORT": "2525"}, SmtpProvider, None),
        (Channel.SMS, GATEWAYAPI, GatewayApiProvider, None),
        (Channel.NEWSLETTER, {}, OutboxProvider, SendGridProvider),
        (Channel.POSTER, {}, OutboxProvider, SendGridProvider),
        (Channel.SMS, {}, OutboxProvider, GatewayApiProvider),
    ],
)
def test_make_provider_builds_the_chosen_one_from_the_config(
    tmp_path: Path,
    channel: Channel,
    env: dict[str, str],
    cls: type[Provider],
    mirrors: type[Provider] | None,
) -> None:
    config = load_municipality(EXAMPLE_CONFIG)
    provider = make_provider(channel, config, campaign="c", outbox=PrivateFiles(tmp_path), env=env)
    try:
        assert type(provider) is cls is provider_class(provider_name(channel, env))
        if isinstance(provider, OutboxProvider):
            assert provider.mirrors is mirrors and provider.folder == channel.value
    finally:
        provider.close()


def test_a_channel_that_delivers_nothing_has_no_provider(tmp_path: Path) -> None:
    config = load_municipality(EXAMPLE_CONFIG)
    with pytest.raises(ValueError, match="no recipients"):
        make_provider(Channel.FAQ, config, campaign="c", outbox=PrivateFiles(tmp_path), env={})
