"""Domain models: the task card, a municipality's config and its choices, and what a run records."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    PlainSerializer,
    field_validator,
    model_validator,
)

from tasks.decisions import Decisions, local_texts
from tasks.modeltypes import (  # noqa: F401  (re-exported: the models' home names them)
    _SLUG,
    HeaderText,
    HttpsUrl,
    PlainText,
    Strict,
    character_name,
    header_problem,
)
from tasks.textmetrics import sms_sender_problem

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
    links: list[HttpUrl] = Field(default=[])
    method_steps: list[MethodStep] = Field(min_length=1)
    recommended_executor: PlainText
    result: PlainText
    involved_parties: list[PlainText] = Field(default=[])

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


class ChannelSettings(Strict):
    """What every channel has: on/off, when (days relative to go-live) and who is responsible."""

    enabled: bool = True
    # Why a channel is switched off: the plan, the checklist and the completion record show it,
    # so a channel never vanishes without a word (required with `enabled: false`).
    reason: PlainText | None = None
    offset_days: int = Field(default=0, ge=-180, le=180, description="negative = before go-live")
    responsible: PlainText = "Projektleder"

    @model_validator(mode="after")
    def _reason_when_off(self) -> ChannelSettings:
        # An error rather than a warning: a switched-off channel without its reason is the
        # silent gap this field exists to close, and the fix is one line.
        if not self.enabled and self.reason is None:
            raise ValueError(
                "enabled is false but no reason is given; add `reason: <why>` (the plan, "
                "checklist and completion record show it), or remove the channel"
            )
        if self.enabled and self.reason is not None:
            raise ValueError(
                "`reason` is for a switched-off channel; remove it, or set enabled: false"
            )
        return self


class PageSettings(ChannelSettings):
    """A web page channel (news article, FAQ): where it will be published, for links to it."""

    page_url: HttpsUrl | None = None


class NewsletterSettings(ChannelSettings):
    from_email: EmailStr  # email-validator refuses line breaks and control characters
    from_name: HeaderText
    sandbox_mode: bool = False
    unsubscribe_group_id: int | None = None
    # One-click unsubscribe (RFC 8058): the https address the List-Unsubscribe header and the
    # newsletter's unsubscribe line point at. Unset: no such header or line is invented.
    unsubscribe_url: HttpsUrl | None = None


class SmsSettings(ChannelSettings):
    # Required while the channel is on; a library without an SMS scheme, switching it off with
    # its reason, has no sender name to give.
    sender: str | None = None
    max_parts: int = Field(default=2, ge=1, le=6)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and (problem := sms_sender_problem(value)):
            raise ValueError(f"{problem}; shorten it")
        return value

    @model_validator(mode="after")
    def _sender_when_on(self) -> SmsSettings:
        if self.enabled and self.sender is None:
            raise ValueError(
                "add `sender:`, the name the SMS comes from (at most 11 letters and digits), "
                "or switch the channel off with `enabled: false` and a `reason:`"
            )
        return self


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

    def not_used(self) -> dict[Channel, str | None]:
        """Channels that are not used, in plan order: switched off -> its reason; left out of
        the config -> None."""
        unused: dict[Channel, str | None] = {}
        for c in Channel:
            s = getattr(self, c.value)
            if s is None or not s.enabled:
                unused[c] = None if s is None else s.reason
        return unused

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
    columns: dict[str, str] = Field(default={})
    suppression_file: str | None = None


class Contacts(Strict):
    library: Contact  # questions about why a fee was charged
    billing: Contact  # questions about paying (opkrævningen / debitor)


class ProjectLeader(Strict):
    """The library's project leader, who signs the e-mails to staff (the branches' poster mail)."""

    name: HeaderText
    role: HeaderText = Field(description="e.g. Projektleder, Udviklingskonsulent")
    email: EmailStr | None = None


class MunicipalityConfig(Strict):
    """Everything one municipality decides; the project leader edits only this file."""

    municipality: Municipality
    library: Library
    contacts: Contacts
    # Optional: without it, staff e-mails are signed with the library's name.
    project_leader: ProjectLeader | None = None
    go_live: date
    # Replaces the old `payment:` block (tasks/config.py explains a config that still has one).
    decisions: Decisions = Decisions()
    channels: Channels
    audience: AudienceSettings = AudienceSettings()
    languages: list[Language] = Field(default=[Language.DA, Language.EN], min_length=1)
    # The language fbsflow speaks to the project leader in (plan, checklist, notices);
    # `fbsflow --lang` overrides it. Citizens' languages are `languages` above.
    operator_language: Language = Language.DA
    card: str = "forbered-og-kommuniker-eksternt"

    @model_validator(mode="after")
    def _coherent(self) -> MunicipalityConfig:
        if Language.DA not in self.languages:
            raise ValueError("languages must include da (Danish is the citizens' first language)")
        old = self.decisions.old_debts
        # An end for old debts before go-live is allowed (texts go out weeks ahead); `fbsflow
        # check` warns about it (tasks/config_warnings.py).
        if old.before is not None and old.before > self.go_live:
            raise ValueError(
                "decisions.old_debts.before is after go_live; debts after the switch are new "
                "debts, so set go_live or an earlier date"
            )
        if Language.EN in self.languages:
            missing = [path for path, text in local_texts(self.decisions) if text.en is None]
            if missing:
                raise ValueError(
                    f"languages include en but {missing[0]} has no `en:` text; add the English "
                    "text (or remove en from languages)"
                )
        if not self.channels.enabled():
            raise ValueError("no channel is enabled; enable at least one under `channels`")
        return self


# --- What a run records ----------------------------------------------------------------------


class ChannelStatus(StrEnum):
    """Where a channel stands after a run: the completion record, the CLI's last line and the
    exit code say it. A StrEnum, so a status reads and compares as its plain word."""

    # Its files are written; a channel that delivers has an outcome for every recipient (sent
    # or refused), none pending, none being sent, none unknown.
    DONE = "done"
    # It stopped with an error, or recipients are left pending: run again (exit code 1).
    FAILED = "failed"
    # Another run of the same campaign is sending some recipients right now: run again after it.
    IN_PROGRESS = "in_progress"
    # The provider may or may not have accepted some recipients: a person decides, accepting
    # them (`fbsflow ledger --accept-unknown`) or sending again (`--at-least-once`) (exit 1).
    UNCONFIRMED = "unconfirmed"
    # Nothing sent: nobody has approved sending to citizens yet (`--approve`, or the form).
    AWAITING_APPROVAL = "awaiting_approval"
    # Nothing sent: the project leader rejected sending in the Prefect form.
    REJECTED = "rejected"


class ApprovalHow(StrEnum):
    """How an approval decision came about."""

    PARAMETER = "parameter"  # approve=True: the CLI's --approve or the flow's parameter
    PREFECT_FORM = "prefect-form"  # a person answered the run's pause form
    NOT_GIVEN = "not given"  # nobody was asked: nothing to send, or no server to ask on


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# "2026-11-23T09:15:00+00:00" in the completion record, as it has always read (pydantic's own
# JSON would write "Z" and microseconds).
UtcSeconds = Annotated[
    AwareDatetime,
    PlainSerializer(lambda at: at.isoformat(timespec="seconds"), return_type=str, when_used="json"),
]


class Approval(BaseModel):
    """The decision whether to send to citizens, as the checklist and the completion record keep it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approved: bool
    by: str | None = Field(description="who decided; None when nobody was asked")
    comment: str | None = Field(default=None, description="the form's comment; None otherwise")
    how: ApprovalHow
    at: UtcSeconds = Field(default_factory=_utc_now)

    @model_validator(mode="after")
    def _coherent(self) -> Approval:
        if self.how is ApprovalHow.NOT_GIVEN and (self.approved or self.by is not None):
            raise ValueError("an approval that was not given approves nothing and names nobody")
        if self.how is not ApprovalHow.NOT_GIVEN and not self.by:
            raise ValueError("an approval decision names who made it")
        return self

    @classmethod
    def by_parameter(cls, by: str) -> Approval:
        return cls(approved=True, by=by, how=ApprovalHow.PARAMETER)

    @classmethod
    def not_given(cls) -> Approval:
        return cls(approved=False, by=None, how=ApprovalHow.NOT_GIVEN)

    @property
    def rejected(self) -> bool:
        """A person said no (in the form); not merely not asked."""
        return self.how is ApprovalHow.PREFECT_FORM and not self.approved

    @property
    def decision(self) -> Literal["approve", "reject"] | None:
        """The form's answer; None when no form was answered."""
        if self.how is not ApprovalHow.PREFECT_FORM:
            return None
        return "approve" if self.approved else "reject"

    def record(self) -> dict[str, object]:
        """For completion.json, in the shape it has always had: `comment` and `decision` only
        when a form was answered."""
        record = self.model_dump(mode="json", exclude={"comment"} if self.comment is None else None)
        if self.decision is not None:
            record["decision"] = self.decision
        return record

    # Read access by key, for code that still reads the decision as the dict it used to be
    # (flows/communicate_externally.py, rewritten in parallel): remove once nothing indexes it.
    def __getitem__(self, key: str) -> object:
        return self.record()[key]

    def get(self, key: str, default: object = None) -> object:
        return self.record().get(key, default)


class Confirmation(BaseModel):
    """A person's answer on whether a manual step (e.g. posters up in a branch) is done."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str
    done: bool
    by: str
    note: str = ""
    how: Literal["prefect-form"] = "prefect-form"
    at: UtcSeconds = Field(default_factory=_utc_now)
