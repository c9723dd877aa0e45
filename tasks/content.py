"""What each channel must tell citizens: the content points, when they apply, and the facts they state.

The table `CHANNEL_POINTS` is the contract between the municipality's choices and the texts:
a point is rendered on a channel when the channel carries it and the municipality's choices make
it apply. The wording lives in templates/_points/<lang>.md.j2, one macro per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal

from tasks.models import Channel, Language, MunicipalityConfig

_LOCALES = {Language.DA: "da_DK", Language.EN: "en_GB"}


class Point(StrEnum):
    """The questions citizens ask (from libraries' published FAQs), as content points."""

    WHAT_CHANGES = "what_changes"  # what changes and from when; no more paying at the counter
    HOW_TO_PAY = "how_to_pay"  # each chosen way to pay
    LOGIN = "login"  # whether the payment self-service needs MitID
    WHERE_TO_SEE = "where_to_see"  # where to see debts; what the library's pages do not show
    OLD_DEBTS = "old_debts"  # debts from before go-live
    REGISTRATION_TIME = "registration_time"  # a payment takes 24-72 hours to register
    FEES_UNCHANGED = "fees_unchanged"  # fees stay the same; reminder fee if any
    NO_MITID = "no_mitid"  # no MitID or exempt from Digital Post
    CHILDREN = "children"  # borrowers under 18
    WHO_TO_ASK = "who_to_ask"  # library: why a fee; billing office: paying


# Which points each channel must carry (when they apply). Short channels carry the essentials
# and point to the website article for the rest.
CHANNEL_POINTS: dict[Channel, tuple[Point, ...]] = {
    Channel.WEBSITE: tuple(Point),
    Channel.FAQ: tuple(Point),
    Channel.NEWSLETTER: (
        Point.WHAT_CHANGES,
        Point.HOW_TO_PAY,
        Point.LOGIN,
        Point.WHERE_TO_SEE,
        Point.OLD_DEBTS,
        Point.FEES_UNCHANGED,
        Point.NO_MITID,
        Point.WHO_TO_ASK,
    ),
    # The short form of HOW_TO_PAY already says "with MitID" where login is needed.
    Channel.POSTER: (Point.WHAT_CHANGES, Point.HOW_TO_PAY, Point.OLD_DEBTS),
    Channel.SMS: (Point.WHAT_CHANGES, Point.HOW_TO_PAY),
    Channel.SELF_SERVICE: (
        Point.WHERE_TO_SEE,
        Point.HOW_TO_PAY,
        Point.OLD_DEBTS,
        Point.REGISTRATION_TIME,
        Point.WHO_TO_ASK,
    ),
}


def applies(point: Point, config: MunicipalityConfig) -> bool:
    """Whether a point is true and useful for this municipality at all."""
    pay = config.payment
    if point is Point.LOGIN:
        return pay.self_service is not None
    if point is Point.NO_MITID:
        needs_mitid = pay.self_service is not None and pay.self_service.requires_mitid
        return needs_mitid or pay.invoices.digital_post
    return True


def points_for(channel: Channel, config: MunicipalityConfig) -> list[Point]:
    """The points `channel` carries for this municipality, in reading order."""
    return [p for p in CHANNEL_POINTS[channel] if applies(p, config)]


@dataclass(frozen=True)
class Facts:
    """Values the texts state, formatted for one language (Babel: '14. december 2026', '250 kr.')."""

    language: Language
    go_live: str
    old_debts_until: str | None
    reminder_fee: str | None
    payment_days: int

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def format_day(day: date, language: Language) -> str:
    return format_date(day, format="long", locale=_LOCALES[language])


def format_kr(amount: int, language: Language) -> str:
    number = format_decimal(amount, locale=_LOCALES[language])
    return f"{number} kr." if language is Language.DA else f"DKK {number}"


def facts(config: MunicipalityConfig, language: Language) -> Facts:
    pay = config.payment
    return Facts(
        language=language,
        go_live=format_day(config.go_live, language),
        old_debts_until=format_day(pay.old_debts.until, language) if pay.old_debts.until else None,
        reminder_fee=format_kr(pay.reminder_fee_kr, language) if pay.reminder_fee_kr else None,
        payment_days=pay.invoices.payment_days,
    )
