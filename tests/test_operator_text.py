"""Operator texts: Danish by default, English by config or --lang, times on Copenhagen's clock."""

from __future__ import annotations

import string
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tasks import operator_text
from tasks.operator_text import CATALOG, adopt, choose, day, language, say, when

from .channels.helpers import example


@pytest.fixture(autouse=True)
def _fresh_choice() -> Iterator[None]:
    choose(None)
    yield
    choose(None)


def test_every_message_has_both_languages_with_the_same_fields() -> None:
    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    for key, entry in CATALOG.items():
        assert set(entry) == {"da", "en"}, key
        assert fields(entry["da"]) == fields(entry["en"]), key
        assert entry["da"] != "" and entry["en"] != "", key


def test_danish_is_the_default_and_english_comes_from_config_or_the_command_line() -> None:
    config = example()
    assert language() == "da" and language(config) == "da"
    assert say("plan.timeline") == "Tidslinje"
    english = config.model_copy(update={"operator_language": "en"})
    assert language(english) == "en"
    assert adopt(english) == "en" and say("plan.timeline") == "Timeline"
    choose("da")  # the command line wins over the config
    assert language(english) == "da" and say("plan.timeline") == "Tidslinje"
    choose("en")
    assert language(config) == "en"
    with pytest.raises(ValueError, match="da"):
        choose("de")


@pytest.mark.parametrize(
    ("utc", "da", "en"),
    [
        # Half past eleven at night UTC in winter is half past midnight the next day in Denmark.
        ("2026-12-06T23:30:00+00:00", "7. dec. 2026 kl. 00.30", "7 Dec 2026 00:30"),
        # Summer time: two hours ahead, across the end of a month.
        ("2026-06-30T22:15:00+00:00", "1. jul. 2026 kl. 00.15", "1 Jul 2026 00:15"),
        # A naive time is UTC (how older rows were written).
        ("2026-12-31T23:00:00", "1. jan. 2027 kl. 00.00", "1 Jan 2027 00:00"),
    ],
)
def test_times_are_shown_on_copenhagens_clock_in_the_operators_format(
    utc: str, da: str, en: str
) -> None:
    assert when(utc, "da") == da
    assert when(utc, "en") == en
    assert when(datetime.fromisoformat(utc).replace(tzinfo=UTC), "da") == da


def test_a_text_that_is_not_a_time_is_shown_as_it_is() -> None:
    assert when("sometime", "da") == "sometime" and when(None) == ""


def test_dates_read_as_danish_dates() -> None:
    assert day(date(2026, 12, 14), "da") == "14. december 2026"
    assert day(date(2026, 12, 14), "da", weekday=True) == "mandag d. 14. december 2026"
    assert day(date(2026, 12, 14), "en") == "14 December 2026"
    assert operator_text.short_day(date(2026, 12, 4), "da") == "04.12.2026"


def test_every_message_is_said_somewhere() -> None:
    # Keys made from a value (a state, a status, a kind) are looked up by prefix.
    made = ("state.", "status.", "kind.", "card.", "delivery.")
    root = Path(__file__).resolve().parent.parent
    source = "".join(
        p.read_text(encoding="utf-8")
        for folder in ("tasks", "flows")
        for p in (root / folder).rglob("*.py")
        if p.name != "operator_text.py"
    )
    unused = [
        key
        for key in CATALOG
        if f'"{key}"' not in source and f"'{key}'" not in source and not key.startswith(made)
    ]
    assert unused == []


def test_values_kept_in_english_are_shown_as_danish_words_and_unknown_ones_as_they_are() -> None:
    from tasks.operator_text import word

    assert word("state", "skipped") == "sprunget over"
    assert word("status", "awaiting_approval") == "afventer godkendelse"
    assert word("status", "awaiting_approval", "en") == "awaiting approval"
    assert word("card", "incomplete") == "ikke færdig"
    assert word("card", "a-status-added-later") == "a-status-added-later"


def test_figures_read_as_danish_figures() -> None:
    from tasks.operator_text import number

    assert (number(27.7, "da"), number(1234567, "da"), number(None, "da")) == (
        "27,7",
        "1.234.567",
        "",
    )
    assert (number(27.7, "en"), number(1234567, "en")) == ("27.7", "1,234,567")
