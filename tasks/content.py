"""What citizens must be told: the questions they ask, the claims that answer them, and the facts.

Each channel declares which points it carries (`points` in tasks/channels/<channel>.py); a point is
rendered when the municipality's decisions answer it. The wording lives in
templates/_points/<lang>.md.j2, one macro per point, where every sentence is either a claim
(`{% call claim("decisions.new_debts.payment_days") %}...{% endcall %}`: it rests on those fields,
which must be set) or a fixed, card-level sentence (`fixed("key")`, from FIXED below). Rendering
records each as a `Claim`, so the review page can list every sentence with its fields and values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from enum import Enum, StrEnum
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal

from tasks.decisions import Method, OldDebtPlace
from tasks.models import Language, MunicipalityConfig, Strict

_LOCALES = {Language.DA: "da_DK", Language.EN: "en_GB"}


class Point(StrEnum):
    """The questions citizens ask (libraries' published FAQs), as content points."""

    WHAT_CHANGES = "what_changes"  # what changes and from when
    HOW_TO_PAY = "how_to_pay"  # how do I pay now?
    WHERE_TO_SEE = "where_to_see"  # where do I see what I owe?
    OLD_DEBTS = "old_debts"  # can I still pay at the library? (old debts)
    REGISTRATION_TIME = "registration_time"  # why does it still say I owe after I paid?
    FEES = "fees"  # have the fees gone up? (and the reminder fee, a new cost)
    NOT_PAYING = "not_paying"  # what happens if I do not pay?
    LOST_ITEMS = "lost_items"  # when an item counts as lost; a refund if found
    NO_MITID = "no_mitid"  # no MitID, or exempt from Digital Post
    CHILDREN = "children"  # my child has a debt
    WHO_TO_ASK = "who_to_ask"  # who do I contact?


# Sentences resting on no decision: what the card itself says for every municipality (debts move
# to the municipality on go-live; library staff take no payment for new debts; why -> the
# library), the questions, titles and labels. Placeholders are card-level fields only:
# {go_live} (go_live), {municipality} (municipality.name), {library} (library.name), {billing}
# (contacts.billing.name: the card routes questions about paying to the collection office).
FIXED: dict[str, dict[Language, str]] = {
    # Headings and labels
    "title": {
        Language.DA: "Ny måde at betale gebyrer på fra {go_live}",
        Language.EN: "A new way to pay library fees from {go_live}",
    },
    "headline": {Language.DA: "Nyt om gebyrer", Language.EN: "News about library fees"},
    "faq_title": {
        Language.DA: "Spørgsmål og svar om betaling af gebyrer",
        Language.EN: "Questions and answers about paying library fees",
    },
    "greeting": {Language.DA: "Kære låner", Language.EN: "Dear borrower"},
    "regards": {Language.DA: "Venlig hilsen {library}", Language.EN: "Kind regards, {library}"},
    "signature": {Language.DA: "{library}", Language.EN: "{library}"},
    "read_more": {Language.DA: "Læs mere:", Language.EN: "Read more:"},
    "more_questions": {
        Language.DA: "Har du flere spørgsmål? Læs spørgsmål og svar om betaling af gebyrer.",
        Language.EN: "More questions? Read the questions and answers about paying library fees.",
    },
    "scan_pay": {Language.DA: "Scan koden og betal", Language.EN: "Scan the code to pay"},
    "scan_read": {Language.DA: "Scan koden og læs mere", Language.EN: "Scan the code to read more"},
    "button_read": {Language.DA: "Læs om betaling", Language.EN: "Read about paying"},
    # The card's facts, true wherever the debtor integration is switched on
    "intro": {
        # The news itself, short words only: the article's LIX stays under 35 (issue 17's gate).
        Language.DA: "Fra {go_live} skal du betale nye gebyrer til kommunen og ikke til os.",
        Language.EN: "From {go_live}, you will pay new fees to the municipality, not to the library.",
    },
    "moves": {
        Language.DA: "Når du får et nyt gebyr, skal du betale det til {municipality}.",
        Language.EN: "When you get a new fee, you pay it to {municipality}.",
    },
    "moves_short": {
        Language.DA: "Fra {go_live} skal du betale nye gebyrer til kommunen og ikke til os.",
        Language.EN: "From {go_live}, you will pay new fees to the municipality, not to the library.",
    },
    # The SMS's own, when the longer one would cost a part (tasks/channels/sms.py picks).
    "moves_sms": {
        Language.DA: "Fra {go_live} skal du betale nye gebyrer til kommunen.",
        Language.EN: "From {go_live}, you will pay new fees to the municipality.",
    },
    "covers": {
        Language.DA: "Det gælder gebyrer for sen aflevering og erstatning for ting, du har mistet.",
        Language.EN: "This covers fees for late returns and charges for items you have lost.",
    },
    "staff_no_payment": {
        Language.DA: "Du kan ikke betale nye gebyrer til biblioteket.",
        Language.EN: "You cannot pay new fees to the library.",
    },
    "ask_library": {
        Language.DA: "Har du spørgsmål til et gebyr, så spørg biblioteket.",
        Language.EN: "If you have a question about a fee, ask the library.",
    },
    "ask_billing": {
        Language.DA: "Har du spørgsmål om betaling, så kontakt {billing}.",
        Language.EN: "If you have a question about paying, contact {billing}.",
    },
    # Questions: the FAQ's and the article's headings
    "q.what_changes": {Language.DA: "Hvad ændrer sig?", Language.EN: "What is changing?"},
    "q.how_to_pay": {Language.DA: "Hvordan betaler jeg nu?", Language.EN: "How do I pay now?"},
    "q.where_to_see": {
        Language.DA: "Hvor kan jeg se, hvad jeg skylder?",
        Language.EN: "Where can I see what I owe?",
    },
    "q.old_debts": {
        Language.DA: "Kan jeg stadig betale til biblioteket?",
        Language.EN: "Can I still pay the library?",
    },
    "q.registration_time": {
        Language.DA: "Jeg har betalt. Hvorfor står gebyret der stadig?",
        Language.EN: "I have paid. Why is the fee still there?",
    },
    "q.fees": {Language.DA: "Bliver gebyrerne dyrere?", Language.EN: "Are the fees going up?"},
    # The same point where the config gives only the rates: the question they answer.
    "q.fee_rates": {
        Language.DA: "Hvad koster gebyrerne?",
        Language.EN: "What are the fees?",
    },
    "q.not_paying": {
        Language.DA: "Hvad sker der, hvis jeg ikke betaler?",
        Language.EN: "What happens if I do not pay?",
    },
    "q.lost_items": {
        Language.DA: "Hvad hvis jeg har mistet noget, jeg har lånt?",
        Language.EN: "What if I have lost something I borrowed?",
    },
    "q.no_mitid": {
        Language.DA: "Jeg har ikke Digital Post. Hvad gør jeg?",
        Language.EN: "I do not use Digital Post. What do I do?",
    },
    "q.children": {
        Language.DA: "Mit barn har et gebyr. Hvad sker der?",
        Language.EN: "My child has a fee. What happens?",
    },
    "q.who_to_ask": {Language.DA: "Hvem kan jeg spørge?", Language.EN: "Who can I ask?"},
}

# The card-level fields a fixed sentence may name; everything else is a decision.
CARD_FIELDS = ("go_live", "municipality.name", "library.name", "contacts.billing.name")

_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def plain(text: str) -> str:
    """A sentence as a reader sees it: markdown links as their label, single spaces."""
    return " ".join(_MD_LINK.sub(r"\1", text).split())


def resolve(config: MunicipalityConfig, path: str) -> Any:
    """The value at a dotted field path ("decisions.new_debts.portal.name"); None when unset."""
    value: Any = config
    for part in path.split("."):
        if value is None:
            return None
        if isinstance(value, list):
            value = value[int(part)] if part.isdigit() and int(part) < len(value) else None
        else:
            value = getattr(value, part)
    return value


def is_set(value: Any) -> bool:
    """A decision is set when it is given: not None and not an empty list."""
    return value is not None and value != []


def show_value(value: Any, language: Language = Language.DA) -> str:
    """A field's value as the review page shows it."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return ", ".join(show_value(v, language) for v in value)
    if isinstance(value, Strict):
        if hasattr(value, "da"):
            return str(getattr(value, language.value, None) or value.da)  # LocalText
        return ", ".join(f"{k}={show_value(v, language)}" for k, v in value if v is not None)
    return str(value)


@dataclass(frozen=True)
class Claim:
    """One citizen sentence and the config fields it rests on (none: a fixed sentence)."""

    text: str
    fields: tuple[str, ...]
    values: tuple[str, ...]
    fixed: str | None = None  # its key in FIXED


class UnsetClaimError(LookupError):
    """A template claimed a field the config does not set: a bug in the template, never shown."""


@dataclass
class ClaimLog:
    """Collects the claims a channel's rendering makes in one language, in order, once each."""

    config: MunicipalityConfig
    language: Language
    claims: list[Claim] = field(default_factory=list)

    def _add(self, claim: Claim) -> str:
        if claim.text and all(c.text != claim.text for c in self.claims):
            self.claims.append(claim)
        return claim.text

    def claim(self, *given: str | list[str], caller: Callable[[], str]) -> str:
        """Jinja `{% call claim("a.b", ...) %}sentence{% endcall %}`: record, return the text.

        Each argument is a field path or a list of them (empty where a part is not said)."""
        fields = [p for g in given for p in ([g] if isinstance(g, str) else g)]
        values = []
        for path in fields:
            value = resolve(self.config, path)
            if not is_set(value):
                raise UnsetClaimError(f"a sentence claims {path}, which is not set: {caller()!r}")
            values.append(show_value(value, self.language))
        text = " ".join(str(caller()).split())
        self._add(Claim(plain(text), tuple(fields), tuple(values)))
        return text

    def fixed(self, key: str, **extra: str) -> str:
        """A fixed sentence from FIXED, with the card-level values filled in."""
        text = fixed_text(key, self.config, self.language, **extra)
        self._add(Claim(text, (), (), fixed=key))
        return text


def fixed_text(key: str, config: MunicipalityConfig, language: Language, **extra: str) -> str:
    return FIXED[key][language].format(
        go_live=format_day(config.go_live, language),
        municipality=config.municipality.name,
        library=config.library.name,
        billing=config.contacts.billing.name,
        **extra,
    )


def format_day(day: date, language: Language) -> str:
    return format_date(day, format="long", locale=_LOCALES[language])


def format_kr(amount: int, language: Language) -> str:
    number = format_decimal(amount, locale=_LOCALES[language])
    return f"{number} kr." if language is Language.DA else f"DKK {number}"


# How each method is said after "betale"/"pay", with its preposition.
_METHOD_NAMES = {
    Method.CARD: {Language.DA: "med betalingskort", Language.EN: "by card"},
    Method.MOBILEPAY: {Language.DA: "med MobilePay", Language.EN: "with MobilePay"},
    Method.NETBANK: {Language.DA: "i din netbank", Language.EN: "in your online bank"},
    Method.BETALINGSSERVICE: {
        Language.DA: "med Betalingsservice",
        Language.EN: "by Betalingsservice (direct debit)",
    },
    Method.GIRO_SLIP: {Language.DA: "med girokort", Language.EN: "with a payment slip (girokort)"},
    Method.CASH_BORGERSERVICE: {
        Language.DA: "kontant hos Borgerservice",
        Language.EN: "in cash at Borgerservice",
    },
    Method.CASH_BANK: {Language.DA: "kontant i en bank", Language.EN: "in cash at a bank"},
}
_AND = {Language.DA: "og", Language.EN: "and"}
_OR = {Language.DA: "eller", Language.EN: "or"}


def join(items: list[str], language: Language, word: dict[Language, str] = _AND) -> str:
    """ "a, b og c" / "a, b and c"."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word[language]} {items[-1]}"


@dataclass(frozen=True)
class Facts:
    """Values the texts state, formatted for one language (Babel: '14. december 2026', '250 kr.')."""

    language: Language
    go_live: str
    site: str  # the library website, e.g. https://bibliotek.eksempel.dk
    cutoff: str  # old debts are from before this day
    cutoff_field: str  # the field the cut-off rests on
    until: str | None
    old_places: str | None  # where old debts are paid, as a phrase
    old_places_short: str | None  # the same, shorter
    old_places_here: str | None  # the same on the library's own fee page: the website is "her"
    old_methods: str | None
    reminder_fee: str | None
    above_kr: str | None
    blocked_from: str | None
    rates: list[tuple[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _old_places(
    config: MunicipalityConfig,
    language: Language,
    site: str,
    *,
    compact: bool = False,
    here: bool = False,
) -> str | None:
    # compact (short texts): the site without the account page's name, which the site shows.
    # here (the library's own fee page): the website is the page the reader is on.
    page = None if compact else config.decisions.routing.account_page
    names = []
    for place in config.decisions.old_debts.where:
        if place is OldDebtPlace.LIBRARY_COUNTER:
            names.append("på biblioteket" if language is Language.DA else "at the library")
        elif place is OldDebtPlace.LIBRARY_WEBSITE and here:
            names.append("her" if language is Language.DA else "here")
        elif place is OldDebtPlace.LIBRARY_WEBSITE:
            # "på bibliotekets hjemmeside" would read as "på biblioteket": name the site instead.
            if language is Language.DA:
                names.append(f"under {page} på {site}" if page else f"på {site}")
            else:
                names.append(f"under {page} at {site}" if page else f"at {site}")
        else:
            names.append("til kommunen" if language is Language.DA else "to the municipality")
    return join(names, language, _OR) if names else None


def method_name(method: Method, language: Language) -> str:
    return _METHOD_NAMES[method][language]


def facts(config: MunicipalityConfig, language: Language) -> Facts:
    d = config.decisions
    old, new = d.old_debts, d.new_debts
    # The address as written, so it is a link in an SMS and not counted as words by LIX.
    site = str(config.library.website).rstrip("/")
    return Facts(
        language=language,
        go_live=format_day(config.go_live, language),
        site=site,
        cutoff=format_day(old.before or config.go_live, language),
        cutoff_field="decisions.old_debts.before" if old.before else "go_live",
        until=format_day(old.until, language) if old.until else None,
        old_places=_old_places(config, language, site),
        old_places_short=_old_places(config, language, site, compact=True),
        old_places_here=_old_places(config, language, site, compact=True, here=True),
        old_methods=join([method_name(m, language) for m in old.methods], language, _OR) or None,
        reminder_fee=format_kr(new.reminder_fee_kr, language)
        if new.reminder_fee_kr is not None
        else None,
        above_kr=format_kr(new.invoice.above_kr, language)
        if new.invoice and new.invoice.above_kr is not None
        else None,
        blocked_from=format_kr(d.not_paying.blocked_from_kr, language)
        if d.not_paying.blocked_from_kr is not None
        else None,
        rates=[
            (rate.what.get(language.value) or rate.what.da, format_kr(rate.amount_kr, language))
            for rate in d.fees.rates
        ],
    )


def applies(point: Point, config: MunicipalityConfig) -> bool:
    """Whether the decisions answer a point at all: its Danish answer says something."""
    from tasks.render import point_text

    return bool(point_text(config, Language.DA, point, "full").strip())
