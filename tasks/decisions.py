"""The municipality's decisions about paying library debts: every citizen sentence rests on these.

Every fact is optional: where a municipality decided nothing (or did not say), the texts say
nothing. Free text (a payment method's restriction, extra FAQ entries, one extra sentence per
channel) is given per language. /work/notes/decisions-schema.md and the README show every field.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, model_validator

from tasks.modeltypes import HttpsUrl, PlainText, Strict

Kroner = Annotated[int, Field(ge=0, le=100_000)]


class LocalText(Strict):
    """A free text per language; English is needed when the municipality writes in English."""

    da: PlainText
    en: PlainText | None = None

    def get(self, language: str) -> str | None:
        return self.da if language == "da" else self.en


# --- Old debts ---------------------------------------------------------------------------------


class Payable(StrEnum):
    """How long old debts can still be paid where they were paid before."""

    UNTIL = "until"  # until a set date (`until`, the last day)
    OPEN_ENDED = "open_ended"  # no end date
    NO = "no"  # not to the library any more


class OldDebtPlace(StrEnum):
    """Where old debts are paid."""

    LIBRARY_COUNTER = "library_counter"  # at the library, to the staff
    LIBRARY_WEBSITE = "library_website"  # the library website's self-service (account page)
    MUNICIPALITY = "municipality"  # handed over to the municipality with the new ones


class Method(StrEnum):
    """A way to pay."""

    CARD = "card"  # payment card in the payment self-service
    MOBILEPAY = "mobilepay"
    NETBANK = "netbank"  # pay the invoice in one's netbank (bank transfer)
    BETALINGSSERVICE = "betalingsservice"  # direct debit
    GIRO_SLIP = "giro_slip"  # girokort on a paper invoice
    CASH_BORGERSERVICE = "cash_borgerservice"  # cash at Borgerservice
    CASH_BANK = "cash_bank"  # cash at a bank


class OldDebts(Strict):
    """Debts from before the switch (or before an earlier cut-off date) that stay with the library."""

    # Debts arising before this day are old; unset: go_live is the boundary.
    before: date | None = None
    payable: Payable | None = None
    until: date | None = None  # with payable: until
    where: list[OldDebtPlace] = Field(default=[], max_length=3)
    methods: list[Method] = Field(default=[], max_length=7)

    @model_validator(mode="after")
    def _coherent(self) -> OldDebts:
        if self.payable is Payable.UNTIL and self.until is None:
            raise ValueError("payable is until: add `until: YYYY-MM-DD`, the last day")
        if self.payable is not Payable.UNTIL and self.until is not None:
            raise ValueError(
                "`until` is set but payable is not until: set `payable: until` or remove `until`"
            )
        if self.payable is Payable.NO and (self.where or self.methods):
            raise ValueError(
                "payable is no: remove `where` and `methods`, old debts are paid nowhere"
            )
        if len(set(self.where)) != len(self.where) or len(set(self.methods)) != len(self.methods):
            raise ValueError("a place or method is listed twice; list each once")
        return self


# --- New debts ---------------------------------------------------------------------------------


class Login(StrEnum):
    MITID = "mitid"
    NEMID = "nemid"  # go-lives before MitID (2021-2022)
    NONE = "none"  # no login needed


class Portal(Strict):
    """The municipality's payment self-service where citizens see and pay new debts."""

    name: PlainText = "Mit betalingsoverblik"
    url: HttpsUrl
    # Unset: the texts name no login (a default would state a fact the municipality never gave).
    login: Login | None = None
    # True only where old debts moved there too: then the portal shows every debt.
    shows_old_debts: bool = False


class InvoiceSent(StrEnum):
    """When an invoice is sent after a fee arises."""

    NEXT_WEEKDAY = "next_weekday"  # the first weekday after the fee arises
    MONTHLY = "monthly"  # once a month, for the month's fees


class Invoice(Strict):
    """The invoice for a new debt."""

    digital_post: bool = True  # sent through Digital Post (e-Boks / mit.dk)
    sent: InvoiceSent | None = None
    above_kr: Kroner | None = None  # only for debts above this amount


class LostItems(Strict):
    """When a late item counts as lost and a replacement bill follows; a refund if it turns up."""

    lost_after_days: int | None = Field(default=None, ge=1, le=365)
    refund_if_returned_within_days: int | None = Field(default=None, ge=1, le=730)


class NewDebts(Strict):
    """Debts from the switch on: the municipality invoices and collects them."""

    portal: Portal | None = None
    shows_after_days: int | None = Field(default=None, ge=0, le=30)  # 0 the same day, 1 the next
    payment_shows_within_hours: int | None = Field(default=None, ge=1, le=720)
    invoice: Invoice | None = None
    payment_days: int | None = Field(default=None, ge=1, le=365)  # the deadline on the invoice
    reminder_fee_kr: Kroner | None = None  # a new cost: never under "fees unchanged"
    lost_items: LostItems | None = None


# --- Payment methods, people without MitID, children, fees, consequences ------------------------


class PaymentMethod(Strict):
    """One way to pay new debts, with an optional restriction ("not American Express")."""

    method: Method
    restriction: LocalText | None = None


class WithoutMitid(Strict):
    """Citizens without MitID or exempt from Digital Post."""

    # Citizens exempt from Digital Post get the invoice as a letter by post, with a giro slip.
    # It says nothing about citizens who merely lack MitID (they may still have Digital Post).
    paper_invoice: bool | None = None
    # Exemption from Digital Post is applied for in person at Borgerservice.
    exemption_at_borgerservice: bool | None = None


class Children(Strict):
    """Who is invoiced for a child's debt: the financially responsible adult until this age,
    then the child (18: the adult for every child under 18)."""

    adult_invoiced_under_age: int = Field(ge=1, le=18)


class Rate(Strict):
    what: LocalText  # e.g. "Aflevering 1-7 dage for sent"
    amount_kr: Kroner


class Fees(Strict):
    """The library's fee rates: unchanged by the switch, and/or a table of rates."""

    unchanged: bool | None = None
    rates: list[Rate] = Field(default=[], max_length=20)


class NotPaying(Strict):
    """What follows when a debt is not paid; each part optional."""

    gaeldsstyrelsen: bool | None = None  # unpaid claims go to Gældsstyrelsen
    offsetting: bool | None = None  # modregning, e.g. in a tax refund
    blocked_from_kr: Kroner | None = None  # borrowing blocked from this amount owed
    blocked_notice_days: int | None = Field(default=None, ge=1, le=90)  # written notice first


class OldOrAll(StrEnum):
    OLD_ONLY = "old_only"
    ALL = "all"


class Routing(Strict):
    """Names the texts send citizens to (the contacts themselves are `contacts:`)."""

    account_page: PlainText | None = None  # the library website's account page: "Mine sider"
    # What the account page shows after the switch.
    account_page_shows: OldOrAll | None = None


# --- Free text ---------------------------------------------------------------------------------


class FaqEntry(Strict):
    question: LocalText
    answer: LocalText


class ChannelSentences(Strict):
    """One extra sentence per channel, where no field fits (checked like the channel's own text)."""

    website: LocalText | None = None
    faq: LocalText | None = None
    newsletter: LocalText | None = None
    poster: LocalText | None = None
    sms: LocalText | None = None
    self_service: LocalText | None = None
    info_screen: LocalText | None = None
    social_post: LocalText | None = None


# An extra SMS sentence must leave room for the facts in one or two parts.
SMS_EXTRA_MAX = 70


class Extra(Strict):
    faq: list[FaqEntry] = Field(default=[], max_length=20)
    sentences: ChannelSentences = ChannelSentences()

    @model_validator(mode="after")
    def _sms_fits(self) -> Extra:
        from tasks.textmetrics import is_gsm7

        sms = self.sentences.sms
        for lang, text in (("da", sms.da), ("en", sms.en)) if sms else ():
            if text is None:
                continue
            if not is_gsm7(text):
                raise ValueError(
                    f"sentences.sms.{lang} has characters SMS cannot carry in GSM-7; "
                    "write it with letters, digits, æøå and plain punctuation"
                )
            if len(text) > SMS_EXTRA_MAX:
                raise ValueError(
                    f"sentences.sms.{lang} has {len(text)} characters, more than {SMS_EXTRA_MAX}; "
                    "shorten it"
                )
        return self


# --- All of them -------------------------------------------------------------------------------


class Decisions(Strict):
    """What the municipality decided about paying library debts. Every part is optional."""

    old_debts: OldDebts = OldDebts()
    new_debts: NewDebts = NewDebts()
    payment_methods: list[PaymentMethod] = Field(default=[], max_length=7)
    without_mitid: WithoutMitid = WithoutMitid()
    children: Children | None = None
    fees: Fees = Fees()
    not_paying: NotPaying = NotPaying()
    routing: Routing = Routing()
    extra: Extra = Extra()

    @model_validator(mode="after")
    def _methods_once(self) -> Decisions:
        methods = [m.method for m in self.payment_methods]
        if len(set(methods)) != len(methods):
            raise ValueError("payment_methods lists a method twice; list each once")
        return self

    def method(self, method: Method) -> PaymentMethod | None:
        return next((m for m in self.payment_methods if m.method is method), None)


def local_texts(value: Any, path: str = "decisions") -> list[tuple[str, LocalText]]:
    """Every free text under `value` with its dotted path, to check each has every language."""
    if isinstance(value, LocalText):
        return [(path, value)]
    if isinstance(value, Strict):
        return [
            found
            for name in type(value).model_fields
            for found in local_texts(getattr(value, name), f"{path}.{name}")
        ]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in local_texts(item, f"{path}.{i}")]
    return []


def free_text_warnings(decisions: Decisions, limit: float = 35.0) -> list[str]:
    """The free texts that are hard to read (LIX above `limit`), for `fbsflow check` to warn of."""
    from tasks.textmetrics import lix

    warnings = []
    for path, text in local_texts(decisions):
        for lang in ("da", "en"):
            value = text.get(lang)
            if value and (score := lix(value)) > limit:
                warnings.append(
                    f"{path}.{lang}: LIX {score:.0f} is above {limit:.0f} (hard to read); "
                    "use shorter sentences and words"
                )
    return warnings
