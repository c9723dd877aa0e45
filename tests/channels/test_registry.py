"""The registry of channels: one complete declaration per channel, or fbsflow does not load."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tasks.audience import KEPT
from tasks.channels import all_channels, borrower_channels, check_complete, spec
from tasks.channels.base import (
    ChannelSpec,
    Delivery,
    GalleryView,
    Labels,
    Medium,
    Reach,
    View,
    declared,
)
from tasks.checklist import checklist_definitions
from tasks.config import load_card
from tasks.content import Point
from tasks.models import Channel, Channels, PageSettings, SmsSettings, StepKind

from .helpers import example

DROP = object()  # leaves a piece out

# A complete declaration, for tests that take one piece away.
_PIECES: dict[str, Any] = {
    "channel": Channel.WEBSITE,
    "settings": PageSettings,
    "points": (Point.WHAT_CHANGES,),
    "audience": Labels(da="Alle", en="Everyone"),
    "labels": Labels(da="Prøve", en="Test"),
    "gallery": GalleryView(View.FILES),
    "delivers": None,
    "step_order": 999,
    "render": lambda self, config: None,
    "checklist_steps": lambda self, config: [],
}


def _define(**changes: Any) -> type[ChannelSpec]:
    """Define a channel class from _PIECES with `changes` (a value of DROP leaves a piece out)."""
    body = {k: v for k, v in {**_PIECES, **changes}.items() if v is not DROP}
    return type("Trial", (ChannelSpec,), body)


def test_every_channel_has_one_declaration_in_plan_order() -> None:
    assert [s.channel for s in all_channels()] == list(Channel)
    for channel in Channel:
        assert spec(channel).channel is channel
        assert spec(channel.value) is spec(channel)
        assert type(spec(channel)).__module__ == f"tasks.channels.{channel.value}"


def test_each_settings_model_is_the_config_field_of_its_channel() -> None:
    for s in all_channels():
        assert Channels.model_fields[s.channel.value].annotation == s.settings | None


def test_borrower_deliveries_name_fields_the_audience_import_keeps() -> None:
    assert borrower_channels() == (Channel.NEWSLETTER, Channel.SMS)
    for channel in borrower_channels():
        delivery = spec(channel).delivers
        assert delivery is not None and delivery.address in KEPT and delivery.consent in KEPT
    assert spec(Channel.POSTER).reaches_branches and not spec(Channel.POSTER).reaches_borrowers
    assert [s.channel for s in all_channels() if s.billed_per_part] == [Channel.SMS]


@pytest.mark.parametrize("piece", [p for p in _PIECES if p not in ("render", "checklist_steps")])
def test_a_channel_without_a_declaration_fails_when_defined(piece: str) -> None:
    with pytest.raises(TypeError, match=rf"incomplete: declare `{piece}`"):
        _define(**{piece: DROP})


@pytest.mark.parametrize("method", ["render", "checklist_steps"])
def test_a_channel_without_its_renderer_or_steps_fails_when_defined(method: str) -> None:
    with pytest.raises(TypeError, match=rf"write `{method}`"):
        _define(**{method: DROP})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channel": "website"}, "`channel` must be a Channel"),
        ({"points": [Point.WHAT_CHANGES]}, "`points` must be a tuple of Point"),
        ({"points": ()}, "non-empty tuple of Point"),
        ({"settings": SmsSettings}, "Channels.website is"),
        ({"audience": Labels(da=" ", en="Everyone")}, "`audience` must say who"),
        ({"audience": "Everyone"}, "`audience` must be Labels"),
        ({"delivers": Delivery(Medium.EMAIL, Reach.BRANCHES)}, "write `branch_messages`"),
    ],
)
def test_a_wrong_declaration_fails_when_defined(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        _define(**changes)


def test_a_second_declaration_of_a_channel_fails_and_the_first_stays() -> None:
    first = declared()[Channel.WEBSITE]
    with pytest.raises(TypeError, match="already declares channel website"):
        _define()
    assert declared()[Channel.WEBSITE] is first


def test_a_channel_module_missing_a_piece_fails_at_import(tmp_path: Path) -> None:
    module = tmp_path / "half_made_channel.py"
    module.write_text(
        "from tasks.channels.base import ChannelSpec\n"
        "from tasks.models import Channel\n\n"
        "class HalfMade(ChannelSpec):\n"
        "    channel = Channel.SMS\n"
        "    audience = 'Borrowers'\n",  # a plain text, not Labels: wrong too
        encoding="utf-8",
    )
    loader = importlib.util.spec_from_file_location("half_made_channel", module)
    assert loader is not None and loader.loader is not None
    imported = importlib.util.module_from_spec(loader)
    with pytest.raises(TypeError) as caught:
        loader.loader.exec_module(imported)
    message = str(caught.value)
    for piece in ("settings", "points", "labels", "gallery", "delivers", "step_order"):
        assert f"declare `{piece}`" in message
    assert "write `render`" in message and "write `checklist_steps`" in message


def test_a_channel_without_a_module_stops_the_registry() -> None:
    specs = declared()
    del specs[Channel.FAQ]
    with pytest.raises(TypeError, match=r"no module declares channel\(s\) \['faq'\]"):
        check_complete(specs)


def test_two_channels_in_one_place_of_the_checklist_stop_the_registry() -> None:
    specs = declared()
    clash = type("Clash", (), {"step_order": specs[Channel.WEBSITE].step_order})
    specs[Channel.FAQ] = clash  # type: ignore[assignment]
    with pytest.raises(TypeError, match="share step_order"):
        check_complete(specs)


def test_a_delivery_to_borrowers_names_its_address_and_consent() -> None:
    with pytest.raises(TypeError, match="address field and consent"):
        Delivery(Medium.EMAIL, Reach.BORROWERS)
    with pytest.raises(TypeError, match="branches names neither"):
        Delivery(Medium.EMAIL, Reach.BRANCHES, "email", "newsletter_consent")


def test_every_enabled_channel_has_a_step_in_the_checklist() -> None:
    """What `_INFORM_ORDER` once allowed: a channel left out, and a card complete without it."""
    config = example()
    steps = checklist_definitions(load_card(config.card), config)
    with_steps = {s.channel for s in steps if s.channel}
    assert with_steps == {c.value for c in config.channels.enabled()}
    for s in all_channels():
        assert s.checklist_steps(config), s.channel
        for step in s.checklist_steps(config):
            assert step.id.startswith(f"inform.{s.channel.value}")
    manual = {s.id for s in steps if s.kind is StepKind.MANUAL}
    assert manual == {i for s in all_channels() for i in s.manual_steps(config)}
