"""Domain models: the task card, a municipality's config and its choices, validated by pydantic."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)

from tasks.textmetrics import sms_sender_problem

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Free text from config ends up in HTML, SMS and PDF: markup in it is a mistake, not a feature.
# Markdown link and emphasis marks count too: citizen texts are written in a markdown subset.
_MARKUP = re.compile(r"<[^>]*>|&[a-zA-Z#0-9]+;|[\[\]*`]")


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _plain_text(value: str) -> str:
    if _MARKUP.search(value):
        raise ValueError(
            "must be plain text without markup (<...>, &...;, [ ], * or `); remove those characters"
        )
    return value


def _https(url: HttpUrl) -> HttpUrl:
    if url.scheme != "https":
        raise ValueError(
            "must start with https:// (citizens are sent to it); use the https address"
        )
    return url


# Characters that end a mail header line (or that clients may treat so): in a sender name,
# "Bibliotek\r\nBcc: ..." would add a header of its own.
_BREAKS = frozenset({"Cc", "Zl", "Zp"})
_CHARACTER_NAMES = {"\r": "a carriage return (\\r)", "\n": "a line feed (\\n)", "\t": "a tab"}


def character_name(char: str) -> str:
    """How a message names one character without quoting the text around it."""
    return _CHARACTER_NAMES.get(char) or f"the character U+{ord(char):04X}"


def header_problem(value: str) -> str | None:
    """Why `value` cannot go into a mail header (None: it can); names the character, not the text."""
    if value.isprintable():  # the usual case, in C; refuses more than _BREAKS, so look closer
        return None
    for position, char in enumerate(value, 1):
        if unicodedata.category(char) in _BREAKS:
            return f"holds {character_name(char)} at character {position}"
    return None


def _one_line(value: str) -> str:
    if problem := header_problem(value):
        raise ValueError(
            f"goes into a mail header, which must be one line, but {problem}; "
            "remove line breaks and control characters"
        )
    return value


PlainText = Annotated[str, Field(min_length=1), AfterValidator(_plain_text)]
HeaderText = Annotated[PlainText, AfterValidator(_one_line)]
HttpsUrl = Annotated[HttpUrl, AfterValidator(_https)]


# --- The task card ---------------------------------------------------------------------------


class StepKind(StrEnum):
    AUTOMATED = "automated"  # done by a flow
    MANUAL = "manual"  # confirmed by a person


class MethodStep(Strict):
    """One step of the card's method; `id` is stable so checklist state survives text edits."""

    id: str = Field(pattern=_SLUG.pattern)
    text: PlainText
    kind: StepKind = StepKind.AUTOMATED


class TaskCard(Strict):
    """A KOMBIT FBS task card (opgavekort) with every field the printed cards have."""

    id: str = Field(pattern=_SLUG.pattern)
    title: PlainText
    project: PlainText
    phase: PlainText
    theme: PlainText
    priority: PlainText
    sts_infrastructure: bool
    goal: PlainText
    description: PlainText
    example: str = ""
    links: list[HttpUrl] = []
    method_steps: list[MethodStep] = Field(min_length=1)
    recommended_executor: PlainText
    result: PlainText
    involved_parties: list[PlainText] = []

    @field_validator("method_steps")
    @classmethod
    def _unique_step_ids(cls, steps: list[MethodStep]) -> list[MethodStep]:
        ids = [s.id for s in steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique; rename the repeated id(s): {dupes}")
        return steps


# --- The municipality's config ---------------------------------------------------------------


class Channel(StrEnum):
    """The channels the card names, in the order a plan usually runs them."""

    WEBSITE = "website"
    FAQ = "faq"
    NEWSLETTER = "newsletter"
    POSTER = "poster"
    SMS = "sms"
    SELF_SERVICE = "self_service"
    INFO_SCREEN = "info_screen"
    SOCIAL_POST = "social_post"


class Language(StrEnum):
    DA = "da"
    EN = "en"


class Contact(Strict):
    """Who answers a kind of question: the library (why a fee) or the billing office (paying)."""

    name: PlainText
    email: EmailStr | None = None
    phone: PlainText | None = None
    url: HttpsUrl | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if not (self.email or self.phone or self.url):
            raise ValueError("give at least one of email, phone or url so citizens can reach them")
        return self


class Branch(Strict):
    name: PlainText
    address: PlainText | None = None
    # Receives the poster PDFs for printing, and confirms when they are up.
    contact_email: EmailStr | None = None


class Library(Strict):
    name: PlainText
    website: HttpsUrl
    branches: list[Branch] = Field(min_length=1)


class Municipality(Strict):
    name: PlainText
    slug: str = Field(pattern=_SLUG.pattern, description="folder name, e.g. eksempel-kommune")


class SelfServicePortal(Strict):
    """The municipality's payment self-service, e.g. "Mit betalingsoverblik"."""

    name: PlainText = "Mit betalingsoverblik"
    url: HttpsUrl
    requires_mitid: bool = True


class Invoices(Strict):
    """Invoices sent through Digital Post (e-Boks / mit.dk)."""

    digital_post: bool = True
    payment_days: int = Field(default=30, ge=1, le=365)


class OldDebts(Strict):
    """Debts from before go-live: still payable at the library for a while, or not."""

    payable_at_library: bool
    until: date | None = None

    @model_validator(mode="after")
    def _until_needed(self) -> OldDebts:
        if self.payable_at_library and self.until is None:
            raise ValueError("payable_at_library is true: add `until: YYYY-MM-DD`, the last day")
        if not self.payable_at_library and self.until is not None:
            raise ValueError("payable_at_library is false: remove `until`, it would be misleading")
        return self


class Payment(Strict):
    """The municipality's payment decisions; every citizen text follows from these."""

    self_service: SelfServicePortal | None = None
    invoices: Invoices = Invoices()
    # For citizens without MitID or exempt from Digital Post.
    paper_invoice: bool = True
    bank_transfer: bool = True
    betalingsservice: bool = False
    borgerservice: bool = False
    old_debts: OldDebts
    library_pages_show: Literal["all", "old_only"] = "old_only"
    reminder_fee_kr: int | None = Field(default=None, ge=0, le=10_000)

    @model_validator(mode="after")
    def _some_way_to_pay(self) -> Payment:
        ways = (
            self.self_service,
            self.invoices.digital_post,
            self.paper_invoice,
            self.bank_transfer,
            self.betalingsservice,
            self.borgerservice,
        )
        if not any(ways):
            raise ValueError("no way to pay is chosen; enable at least one payment option")
        return self


class ChannelSettings(Strict):
    """What every channel has: on/off, when (days relative to go-live) and who is responsible."""

    enabled: bool = True
    offset_days: int = Field(default=0, ge=-180, le=180, description="negative = before go-live")
    responsible: PlainText = "Projektleder"


class PageSettings(ChannelSettings):
    """A web page channel (news article, FAQ): where it will be published, for links to it."""

    page_url: HttpsUrl | None = None


class NewsletterSettings(ChannelSettings):
    from_email: EmailStr  # email-validator refuses line breaks and control characters
    from_name: HeaderText
    sandbox_mode: bool = False
    unsubscribe_group_id: int | None = None


class SmsSettings(ChannelSettings):
    sender: str
    max_parts: int = Field(default=2, ge=1, le=6)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if problem := sms_sender_problem(value):
            raise ValueError(f"{problem}; shorten it")
        return value


class PosterSettings(ChannelSettings):
    paper: Literal["A4", "A3"] = "A4"


class SelfServiceSettings(ChannelSettings):
    cms: Literal["dpl", "ddb", "both"] = "dpl"


class InfoScreenSettings(ChannelSettings):
    """The branches' info screens: a 1920x1080 slide per language, put on the screens by a person."""


_HASHTAG = re.compile(r"#\w{1,100}")


def _hashtag(value: str) -> str:
    # As the platforms read one: "#" and letters, digits or "_" (æøå included), no spaces.
    if not _HASHTAG.fullmatch(value):
        raise ValueError(
            "a hashtag is # followed by letters, digits or _ without spaces, e.g. #bibliotek"
        )
    return value


Hashtag = Annotated[str, AfterValidator(_hashtag)]


class SocialPostSettings(ChannelSettings):
    """A post on the library's own Facebook and Instagram pages: text and a 1080x1080 image."""

    platforms: list[Literal["facebook", "instagram"]] = Field(
        default=["facebook", "instagram"], min_length=1
    )
    # Only what the library decides to use; none by default. Instagram allows at most 30.
    hashtags: list[Hashtag] = Field(default=[], max_length=30)


class Channels(Strict):
    """One entry per channel; a channel left out is not used."""

    website: PageSettings | None = None
    faq: PageSettings | None = None
    newsletter: NewsletterSettings | None = None
    poster: PosterSettings | None = None
    sms: SmsSettings | None = None
    self_service: SelfServiceSettings | None = None
    info_screen: InfoScreenSettings | None = None
    social_post: SocialPostSettings | None = None

    def enabled(self) -> list[Channel]:
        """Enabled channels in plan order."""
        return [c for c in Channel if (s := getattr(self, c.value)) is not None and s.enabled]

    def settings(self, channel: Channel) -> ChannelSettings:
        value = getattr(self, channel.value)
        if value is None:
            raise KeyError(channel)
        return value


class AudienceSettings(Strict):
    """Where borrowers come from: a CSV export, relative to the config file."""

    file: str | None = None
    # Header name in the file -> our field (email, mobile, sms_consent, newsletter_consent,
    # language, name, borrower_id), for exports whose headers we do not recognise.
    columns: dict[str, str] = {}
    suppression_file: str | None = None


class Contacts(Strict):
    library: Contact  # questions about why a fee was charged
    billing: Contact  # questions about paying (opkrævningen / debitor)


class MunicipalityConfig(Strict):
    """Everything one municipality decides; the project leader edits only this file."""

    municipality: Municipality
    library: Library
    contacts: Contacts
    go_live: date
    payment: Payment
    channels: Channels
    audience: AudienceSettings = AudienceSettings()
    languages: list[Language] = Field(default=[Language.DA, Language.EN], min_length=1)
    card: str = "forbered-og-kommuniker-eksternt"

    @model_validator(mode="after")
    def _coherent(self) -> MunicipalityConfig:
        if Language.DA not in self.languages:
            raise ValueError("languages must include da (Danish is the citizens' first language)")
        old = self.payment.old_debts
        if old.until is not None and old.until < self.go_live:
            raise ValueError(
                "payment.old_debts.until is before go_live; old debts can only be paid at the "
                "library after the switch, so set a later date"
            )
        if not self.channels.enabled():
            raise ValueError("no channel is enabled; enable at least one under `channels`")
        return self
