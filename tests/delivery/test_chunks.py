"""How the flow cuts a channel's recipients into chunk task runs, and how many run at once."""

from __future__ import annotations

import pytest

from tasks.delivery.chunks import MIN_CHUNK_SIZE, chunk_size
from tasks.errors import ConfigError
from tasks.models import Channel
from tasks.providers.registry import chunks_at_once
from tasks.settings import DeliverySettings, settings


def test_small_audiences_get_chunks_of_the_minimum_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FBSFLOW_CHUNK_SIZE", raising=False)
    assert chunk_size(0) == chunk_size(645) == chunk_size(100_000) == MIN_CHUNK_SIZE


def test_large_audiences_get_about_twenty_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FBSFLOW_CHUNK_SIZE", raising=False)
    assert chunk_size(1_000_000) == 50_000
    size = chunk_size(914_703)
    assert -(-914_703 // size) == 20  # every recipient in 20 chunks, the last one shorter


def test_the_environment_fixes_the_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_CHUNK_SIZE", "1234")
    assert chunk_size(1_000_000) == 1234


@pytest.mark.parametrize("raw", ["0", "-5", "many", "2.5"])
def test_a_bad_number_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("FBSFLOW_MAX_CONCURRENT_CHUNKS", raw)
    with pytest.raises(ConfigError, match="FBSFLOW_MAX_CONCURRENT_CHUNKS") as caught:
        settings(DeliverySettings)
    assert "positive whole number" in str(caught.value)


def test_an_unset_or_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FBSFLOW_MAX_CONCURRENT_CHUNKS", raising=False)
    assert settings(DeliverySettings).max_concurrent_chunks is None
    monkeypatch.setenv("FBSFLOW_MAX_CONCURRENT_CHUNKS", " ")
    assert settings(DeliverySettings).max_concurrent_chunks is None


@pytest.mark.parametrize(
    ("channel", "env", "expected"),
    [
        (Channel.NEWSLETTER, {"SENDGRID_API_KEY": "SG.key"}, 8),  # far away: more at once
        (Channel.NEWSLETTER, {"FBSFLOW_SMTP_HOST": "relay.kommune.test"}, 2),  # relays cap it
        (Channel.NEWSLETTER, {}, 2),  # the outbox
        (Channel.SMS, {"GATEWAYAPI_TOKEN": "token"}, 2),
        (Channel.SMS, {}, 2),
    ],
)
def test_each_provider_names_how_many_chunks_go_at_once(
    channel: Channel, env: dict[str, str], expected: int
) -> None:
    assert chunks_at_once(channel, env) == expected
