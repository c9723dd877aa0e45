"""What citizens must be told: the content points, when they apply, and the facts they state.

Each channel declares which points it carries (`points` in tasks/channels/<channel>.py); a point
is rendered on a channel when the channel carries it and the municipality's choices make it apply.
The wording lives in templates/_points/<lang>.md.j2, one macro per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal

from tasks.models import Language, MunicipalityConfig

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


def applies(point: Point, config: MunicipalityConfig) -> bool:
    """Whether a point is true and useful for this municipality at all."""
    pay = config.payment
    if point is Point.LOGIN:
        return pay.self_service is not None
    if point is Point.NO_MITID:
        needs_mitid = pay.self_service is not None and pay.self_service.requires_mitid
        return needs_mitid or pay.invoices.digital_post
    return True


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
