"""Warnings for `fbsflow check`: choices a config may make but that are likely mistakes.

A warning never stops anything (the check still exits 0); it names the field and what to look at,
in Danish, because the project leader reads it. Errors in a config stay errors (exit 2) and are
the models' business (tasks/models.py); this module only looks at configs that are valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache

from babel.dates import format_date

from tasks.models import Channel, MunicipalityConfig
from tasks.plan import COPENHAGEN, channel_day

# The hours in which an SMS may reach a phone, Danish time: a message at night wakes people and
# reads as spam. The Danish telemarketing practice keeps to the same day hours.
SMS_HOURS = (time(8, 0), time(20, 0))
# Channels sent on a date of their own to borrowers: those dates must be working days, when the
# library can answer the questions the message brings.
_SENT_ON_A_DAY = {Channel.SMS: "SMS'en", Channel.NEWSLETTER: "Nyhedsbrevet"}

# The readability the citizen texts aim at (LIX 25-34 is "easy"); a free text above it is told.
LIX_LIMIT = 35.0
# "frem til 31. marts" and "indtil 31. marts" are read both as "up to and including" and as "up
# to, not including": a citizen who pays on the day may be told too late. A phrase counts when a
# date follows within a few words (a digit: "31. marts", "2027-03-31", "31/3").
_TWO_WAY_DA = re.compile(r"\b(frem til|indtil)\b(?=(?:\s+\S+){0,2}?\s+\d)", re.IGNORECASE)
_TWO_WAY_EN = re.compile(r"\b(until|till)\b(?=(?:\s+\S+){0,2}?\s+\d)", re.IGNORECASE)


@dataclass(frozen=True)
class ConfigWarning:
    """One warning: the config field it is about and the message (Danish, for the leader)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _long_day(day: date) -> str:
    """'lørdag den 12. december 2026 (2026-12-12)': weekday, date and the ISO form to search for."""
    return f"{format_date(day, format='EEEE', locale='da_DK')} den " + (
        f"{format_date(day, format='long', locale='da_DK')} ({day.isoformat()})"
    )


@cache
def _danish_holidays(year: int, category: str) -> dict[date, str]:
    import holidays  # imported here: `fbsflow check` is the only user

    return dict(holidays.country_holidays("DK", years=year, language="da", categories=category))


def holiday_name(day: date) -> str | None:
    """The Danish public holiday on `day` (its Danish name), or None."""
    return _danish_holidays(day.year, "public").get(day)


def day_off_name(day: date) -> str | None:
    """A day many Danes have off without it being a public holiday (Juleaftensdag,
    Grundlovsdag, Nytårsaften, 1. maj), or None: a message then reaches closed libraries too."""
    return _danish_holidays(day.year, "optional").get(day)


def go_live_warnings(config: MunicipalityConfig, today: date) -> Iterator[ConfigWarning]:
    if config.go_live < today:
        yield ConfigWarning(
            "go_live",
            f"go-live-datoen {_long_day(config.go_live)} er allerede passeret (i dag er "
            f"{today.isoformat()}). Ret datoen, hvis kortet gælder en kommende overgang; "
            "kanaler med en dato i fortiden bliver ikke planlagt.",
        )


def send_day_warnings(config: MunicipalityConfig) -> Iterator[ConfigWarning]:
    for channel, name in _SENT_ON_A_DAY.items():
        if channel not in config.channels.enabled():
            continue
        day = channel_day(config, channel)
        field = f"channels.{channel.value}.offset_days"
        fix = "Flyt den til en hverdag."
        if day.weekday() >= 5:
            yield ConfigWarning(
                field, f"{name} sendes {_long_day(day)}, som er en weekenddag. {fix}"
            )
        elif (holiday := holiday_name(day)) is not None:
            yield ConfigWarning(
                field, f"{name} sendes {_long_day(day)}, som er en helligdag ({holiday}). {fix}"
            )
        elif (day_off := day_off_name(day)) is not None:
            yield ConfigWarning(
                field, f"{name} sendes {_long_day(day)}, som er {day_off}: mange har fri. {fix}"
            )


def sms_time_warnings(config: MunicipalityConfig, send_time: time) -> Iterator[ConfigWarning]:
    """`send_time` is the local (Copenhagen) time of day the SMS channel's run starts."""
    if Channel.SMS not in config.channels.enabled():
        return
    start, end = SMS_HOURS
    if not start <= send_time <= end:
        yield ConfigWarning(
            "channels.sms",
            f"SMS'en sendes kl. {send_time:%H:%M} dansk tid, uden for kl. {start:%H}-{end:%H}. "
            f"Send den mellem kl. {start:%H:%M} og {end:%H:%M}.",
        )


def _texts(value: object, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a dumped config, with its dotted field path (list items by index)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}[{index}]")


def old_debts_warnings(config: MunicipalityConfig) -> Iterator[ConfigWarning]:
    until = config.decisions.old_debts.until
    if until is not None and until < config.go_live:
        yield ConfigWarning(
            "decisions.old_debts.until",
            f"gamle gebyrer kan betales til og med {_long_day(until)}, men det er før "
            f"go-live {_long_day(config.go_live)}. Ret datoen, eller sæt payable: no.",
        )


def readability_warnings(config: MunicipalityConfig) -> Iterator[ConfigWarning]:
    """Free texts (extra sentences, FAQ entries, restrictions) above the LIX the texts aim at."""
    from tasks.decisions import local_texts
    from tasks.textmetrics import lix

    for path, text in local_texts(config.decisions):
        for language in config.languages:
            value = text.get(language.value)
            if value and (score := lix(value)) > LIX_LIMIT:
                yield ConfigWarning(
                    f"{path}.{language.value}",
                    f"teksten har LIX {score:.0f}, over {LIX_LIMIT:.0f}: svær at læse. "
                    "Skriv kortere sætninger og kortere ord.",
                )


def phrase_warnings(config: MunicipalityConfig) -> Iterator[ConfigWarning]:
    for field, text in _texts(config.model_dump(mode="json"), ""):
        for match in _TWO_WAY_DA.finditer(text):
            yield ConfigWarning(
                field,
                f'"{match[1]}" foran en dato kan læses på to måder: med eller uden den sidste '
                'dag. Skriv "til og med <dato>" (eller "før <dato>", hvis dagen ikke er med).',
            )
        for match in _TWO_WAY_EN.finditer(text):
            yield ConfigWarning(
                field,
                f'"{match[1]}" foran en dato kan på engelsk læses med eller uden den sidste dag. '
                'Skriv "up to and including <date>" (eller "before <date>").',
            )


def config_warnings(
    config: MunicipalityConfig,
    *,
    today: date | None = None,
    sms_send_time: time,
) -> list[ConfigWarning]:
    """Every warning for a valid config, in the config's order. `today` defaults to today in
    Copenhagen; `sms_send_time` is the local time the SMS channel's run starts (the scheduled
    runs' SEND_TIME in tasks/plan.py)."""
    if today is None:
        today = datetime.now(COPENHAGEN).date()
    return [
        *go_live_warnings(config, today),
        *send_day_warnings(config),
        *sms_time_warnings(config, sms_send_time),
        *old_debts_warnings(config),
        *readability_warnings(config),
        *phrase_warnings(config),
    ]
