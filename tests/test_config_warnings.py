"""`fbsflow check` warns about likely mistakes in a valid config and still exits 0."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from tasks.config_warnings import config_warnings, day_off_name, holiday_name
from tasks.models import MunicipalityConfig

from .channels.helpers import DROP, variant, write_variant
from .test_cli import fbsflow

# A Monday, far enough ahead that it is never in the past while these tests live.
MONDAY = "2030-06-03"
NINE = time(9, 0)


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configs")


def _on_weekdays(changes: dict[str, object]) -> dict[str, object]:
    """The example moved to a Monday go-live, with the SMS and the newsletter on weekdays."""
    return {
        "go_live": MONDAY,
        "channels.sms.offset_days": -7,
        "channels.newsletter.offset_days": -14,
        "decisions.old_debts.until": "2031-12-31",
        **changes,
    }


def _warnings(config: MunicipalityConfig, **kwargs: object) -> list[str]:
    return [str(w) for w in config_warnings(config, sms_send_time=kwargs.pop("at", NINE), **kwargs)]


def test_a_config_on_weekdays_in_the_future_has_no_warning(variants: Path) -> None:
    config = variant(variants, _on_weekdays({}), "clean")
    assert _warnings(config, today=date(2030, 1, 1)) == []


def test_check_warns_about_a_saturday_sms_and_exits_0(variants: Path) -> None:
    # go-live Monday 3 June 2030, SMS two days before: Saturday 1 June 2030.
    path = write_variant(variants, _on_weekdays({"channels.sms.offset_days": -2}), "saturday")
    done = fbsflow("check", str(path))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("Advarsel")]
    assert len(lines) == 1, done.stdout
    assert "2030-06-01" in lines[0] and "lørdag" in lines[0] and "weekend" in lines[0]
    assert lines[0].startswith("Advarsel: channels.sms.offset_days: ")
    assert "Traceback" not in done.stdout + done.stderr


def test_a_newsletter_on_a_public_holiday_is_named_with_the_holiday(variants: Path) -> None:
    # Wednesday 25 December 2030 is Christmas Day: a weekday, but a holiday.
    changes = _on_weekdays({"go_live": "2031-01-08", "channels.sms.offset_days": -6})
    config = variant(variants, changes, "christmas")
    found = _warnings(config, today=date(2030, 1, 1))
    assert len(found) == 1, found
    assert found[0].startswith("channels.newsletter.offset_days: Nyhedsbrevet sendes onsdag")
    assert "2030-12-25" in found[0] and "Juledag" in found[0]


def test_a_newsletter_on_christmas_eve_is_warned_about_as_a_day_off(variants: Path) -> None:
    # Tuesday 24 December 2030: no public holiday, but libraries are closed.
    changes = _on_weekdays({"go_live": "2031-01-07", "channels.sms.offset_days": -5})
    found = _warnings(variant(variants, changes, "christmas-eve"), today=date(2030, 1, 1))
    assert len(found) == 1, found
    assert "2030-12-24" in found[0] and "Juleaftensdag: mange har fri" in found[0]


def test_a_switched_off_channel_is_not_warned_about(variants: Path) -> None:
    changes = _on_weekdays(
        {
            "channels.sms.offset_days": -2,
            "channels.sms.enabled": False,
            "channels.sms.reason": "Ingen sms-ordning",
        }
    )
    assert _warnings(variant(variants, changes, "sms-off"), today=date(2030, 1, 1)) == []


def test_go_live_in_the_past_is_a_warning_not_an_error(variants: Path) -> None:
    config = variant(variants, _on_weekdays({}), "past")
    found = _warnings(config, today=date(2030, 6, 4))
    assert len(found) == 1 and found[0].startswith("go_live: ")
    assert "2030-06-03" in found[0] and "passeret" in found[0]
    assert _warnings(config, today=date(2030, 6, 3)) == []  # go-live today is not the past


@pytest.mark.parametrize(
    ("at", "warned"),
    [(time(7, 59), True), (time(8, 0), False), (time(20, 0), False), (time(20, 1), True)],
)
def test_an_sms_outside_8_to_20_danish_time_is_warned_about(
    variants: Path, at: time, warned: bool
) -> None:
    config = variant(variants, _on_weekdays({}), "clock")
    found = _warnings(config, today=date(2030, 1, 1), at=at)
    assert bool(found) is warned, found
    if warned:
        assert found[0].startswith("channels.sms: ") and f"{at:%H:%M}" in found[0]


def test_without_an_sms_channel_the_send_time_does_not_matter(variants: Path) -> None:
    config = variant(variants, _on_weekdays({"channels.sms": DROP}), "no-sms")
    assert _warnings(config, today=date(2030, 1, 1), at=time(23, 0)) == []


@pytest.mark.parametrize(
    ("danish", "english", "warned"),
    [
        ("Betal dem frem til 1. marts.", "Pay by 1 March.", "frem til"),
        ("Det kan du indtil den 31. marts.", "You can pay.", "indtil"),
        ("Det kan du til og med 31. marts.", "Pay until 31 March.", "until"),
        ("Det kan du til og med 31. marts.", "Pay up to and including 31 March.", None),
        ("Vi hjælper frem til videre.", "We help.", None),  # no date: nothing to misread
    ],
)
def test_a_date_phrase_that_reads_two_ways_is_warned_about(
    variants: Path, danish: str, english: str, warned: str | None
) -> None:
    sentence = {"da": danish, "en": english}
    changes = _on_weekdays({"decisions.extra.sentences.website": sentence})
    found = _warnings(variant(variants, changes, "phrase"), today=date(2030, 1, 1))
    assert len(found) == (warned is not None), found
    if warned:
        language = "en" if warned == "until" else "da"
        field = f"decisions.extra.sentences.website.{language}"
        assert found[0].startswith(f'{field}: "{warned}" foran en dato')
        assert ("up to and including" if language == "en" else "til og med") in found[0]


def test_old_debts_payable_until_a_day_before_go_live_is_warned_about(variants: Path) -> None:
    config = variant(variants, _on_weekdays({"decisions.old_debts.until": "2030-05-31"}), "early")
    found = _warnings(config, today=date(2030, 1, 1))
    assert len(found) == 1 and found[0].startswith("decisions.old_debts.until: ")
    assert "2030-05-31" in found[0] and "2030-06-03" in found[0]
    # `fbsflow check` says it and still accepts the config.
    path = write_variant(variants, _on_weekdays({"decisions.old_debts.until": "2030-05-31"}), "e2")
    done = fbsflow("check", str(path))
    assert done.returncode == 0, done.stderr
    assert "Advarsel: decisions.old_debts.until: " in done.stdout


def test_a_hard_free_text_is_warned_about_with_its_lix(variants: Path) -> None:
    hard = {
        "da": "Betalingsadministrationens opkrævningsprocedurer vedrørende mellemværender "
        "forudsætter elektronisk kommunikationsinfrastruktur.",
        "en": "Pay in the portal.",
    }
    changes = _on_weekdays({"decisions.extra.sentences.newsletter": hard})
    found = _warnings(variant(variants, changes, "hard"), today=date(2030, 1, 1))
    assert len(found) == 1, found
    assert found[0].startswith("decisions.extra.sentences.newsletter.da: teksten har LIX ")


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2026, 12, 25), "Juledag"),
        (date(2027, 3, 29), "Anden påskedag"),
        (date(2026, 12, 14), None),
    ],
)
def test_danish_holidays_have_danish_names(day: date, name: str | None) -> None:
    assert holiday_name(day) == name


def test_days_off_are_not_public_holidays() -> None:
    assert day_off_name(date(2027, 6, 5)) == "Grundlovsdag"
    assert holiday_name(date(2027, 6, 5)) is None
    assert day_off_name(date(2027, 12, 25)) is None  # Juledag is a public holiday


def test_check_prints_no_warning_line_for_a_clean_config(variants: Path) -> None:
    path = write_variant(variants, _on_weekdays({}), "clean-cli")
    done = fbsflow("check", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ") and "Advarsel" not in done.stdout
