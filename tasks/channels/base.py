"""What a channel declares, in one class per module: config, content points, rendering, audience,
checklist steps, gallery view and delivery. A class missing a piece fails when it is defined.

The plan, the checklist, the gallery, the audience and the flow read these declarations through
the registry (`tasks.channels`) instead of keeping tables of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from tasks.content import Point, applies
from tasks.models import Channel, Channels, ChannelSettings, Language, MunicipalityConfig, StepKind

if TYPE_CHECKING:
    from tasks.providers.base import Message
    from tasks.render import ChannelContent

# The card's method step that splits into one sub-step per channel: `inform.<channel>[.<part>]`.
INFORM_STEP = "inform"


class Reach(StrEnum):
    """Whom a channel's provider delivers to."""

    BORROWERS = "borrowers"  # borrowers in the audience file who gave the channel's consent
    BRANCHES = "branches"  # the branches' contact e-mails (staff, e.g. to print posters)


class Medium(StrEnum):
    """What a provider carries; `tasks/providers/registry.py` picks the provider for it."""

    EMAIL = "email"
    SMS = "sms"  # billed per part


@dataclass(frozen=True)
class Delivery:
    """How a channel reaches people through a provider; a channel without one produces files."""

    medium: Medium
    reach: Reach
    # For borrowers: the Borrower field sent to and the consent column it needs (tasks/audience.py).
    address: Literal["email", "mobile"] | None = None
    consent: Literal["newsletter_consent", "sms_consent"] | None = None

    def __post_init__(self) -> None:
        named = self.address is not None and self.consent is not None
        if (self.reach is Reach.BORROWERS) != named:
            raise TypeError(
                "a delivery to borrowers names its address field and consent column; a delivery "
                "to branches names neither (fix: set or remove address= and consent=)"
            )


class View(StrEnum):
    """How the preview gallery shows a channel (tasks/gallery.py draws each)."""

    PAGE = "page"  # web pages in frames: <name>.<lang>.html, linked with <name>.<lang>.md
    EMAIL = "email"  # subject, HTML part and plain-text part
    TEXT_MESSAGE = "text_message"  # the exact text with characters, encoding and parts
    PRINT = "print"  # page 1 of <name>.<lang>.pdf as a picture, and its lines
    IMAGE = "image"  # <name>.<lang>.png, and <name>.<lang>.txt beside it when there is one
    FILES = "files"  # every file as text


@dataclass(frozen=True)
class GalleryView:
    kind: View
    name: str = ""  # the file stem the view shows, e.g. "article" for article.da.html


@dataclass(frozen=True)
class Labels:
    """The channel's name in the gallery and previews, per language of the labels."""

    da: str
    en: str

    def __getitem__(self, lang: str) -> str:
        return self.da if lang == Language.DA.value else self.en


@dataclass(frozen=True)
class Step:
    """A checklist sub-step the channel adds under `inform`; manual ones a person confirms."""

    id: str
    kind: StepKind
    text: str  # Danish, shown to the project leader


# Class attributes every channel declares itself (a `None` delivery is a declaration too),
# with what each must be.
_REQUIRED: dict[str, tuple[type | tuple[type, ...], str]] = {
    "channel": (Channel, "a Channel"),
    "settings": (type, "a settings model"),
    "points": (tuple, "a tuple of Point"),
    "audience": (Labels, "Labels(da=..., en=...), who it reaches"),
    "labels": (Labels, "Labels(da=..., en=...)"),
    "gallery": (GalleryView, "a GalleryView"),
    "delivers": ((Delivery, type(None)), "a Delivery or None"),
    "step_order": (int, "a whole number"),
}
_REQUIRED_METHODS = ("render", "checklist_steps")
_declared: dict[Channel, type[ChannelSpec]] = {}


class ChannelSpec:
    """One channel as declared data plus its renderer: subclass it in tasks/channels/<channel>.py.

    Declare every attribute below and write `render` and `checklist_steps`; the class statement
    raises TypeError naming what is missing or wrong, so a half-made channel never loads.
    """

    channel: ClassVar[Channel]
    settings: ClassVar[type[ChannelSettings]]  # its model in tasks/models.py, field of Channels
    points: ClassVar[tuple[Point, ...]]  # content points it carries, in reading order
    audience: ClassVar[Labels]  # who it reaches, as the plan says it
    labels: ClassVar[Labels]
    gallery: ClassVar[GalleryView]
    delivers: ClassVar[Delivery | None]
    # Where its steps come among the inform sub-steps, lowest first: the order a project leader
    # works through them (website before newsletter, SMS just before go-live, posters after the
    # newsletter, self-service pages on the day). Unique; the registry checks.
    step_order: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__name__}"
        problems = []
        for name, (kind, what) in _REQUIRED.items():
            if not hasattr(cls, name):
                problems.append(f"declare `{name}` ({what})")
            elif not isinstance(getattr(cls, name), kind):
                problems.append(f"`{name}` must be {what}")
        for name in _REQUIRED_METHODS:
            if getattr(cls, name) is getattr(ChannelSpec, name):
                problems.append(f"write `{name}`")
        if problems:
            raise TypeError(f"channel {where} is incomplete: " + "; ".join(problems))
        problems = _check_declarations(cls)
        if problems:
            raise TypeError(f"channel {where}: " + "; ".join(problems))
        _declared[cls.channel] = cls

    # --- What every channel writes ---------------------------------------------------------

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        """Every language's output of this channel: files, messages to deliver, metrics."""
        raise NotImplementedError

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        """The sub-steps of `inform` for this channel, in working order (make each with `step`)."""
        raise NotImplementedError

    # --- Shared behaviour --------------------------------------------------------------------

    def step(self, kind: StepKind, text: str, part: str | None = None) -> Step:
        """A sub-step `inform.<channel>`, or `inform.<channel>.<part>` (e.g. one per branch)."""
        suffix = f".{part}" if part else ""
        return Step(f"{INFORM_STEP}.{self.channel.value}{suffix}", kind, text)

    def manual_steps(self, config: MunicipalityConfig) -> list[str]:
        """Ids of the steps a person confirms (published, put up) before the card is complete."""
        return [s.id for s in self.checklist_steps(config) if s.kind is StepKind.MANUAL]

    def points_for(self, config: MunicipalityConfig) -> list[Point]:
        """The points this channel carries for this municipality, in reading order."""
        return [p for p in self.points if applies(p, config)]

    def context(self, config: MunicipalityConfig, language: Language) -> dict[str, Any]:
        """The template context of this channel in `language` (tasks/render.py)."""
        from tasks.render import context

        return context(config, language, self.points_for(config))

    def audience_label(self, config: MunicipalityConfig, lang: str = "en") -> str:
        """Who the channel reaches, for the plan (in `lang`, the operator language); a channel
        may add figures from the config."""
        return self.audience[lang]

    def branch_messages(
        self, config: MunicipalityConfig, content: ChannelContent
    ) -> dict[Language, Message]:
        """The message to the branches' contacts, per language (channels that reach branches)."""
        raise NotImplementedError

    @property
    def reaches_borrowers(self) -> bool:
        return self.delivers is not None and self.delivers.reach is Reach.BORROWERS

    @property
    def reaches_branches(self) -> bool:
        return self.delivers is not None and self.delivers.reach is Reach.BRANCHES

    @property
    def billed_per_part(self) -> bool:
        """SMS are billed per part: the plan shows parts x recipients."""
        return self.delivers is not None and self.delivers.medium is Medium.SMS


def _check_declarations(cls: type[ChannelSpec]) -> list[str]:
    """What is declared but inconsistent: settings against Channels, points, a branch message."""
    problems = []
    name = cls.channel.value
    if cls.channel in _declared:
        problems.append(f"{_declared[cls.channel].__name__} already declares channel {name}")
    field = Channels.model_fields.get(name)
    if field is None:
        problems.append(
            f"tasks/models.py has no `channels.{name}` (fix: add `{name}: "
            f"{cls.settings.__name__} | None = None` to Channels)"
        )
    elif cls.settings not in get_args(field.annotation):
        problems.append(
            f"`settings` is {cls.settings.__name__} but Channels.{name} is {field.annotation} "
            "(fix: make them the same model)"
        )
    if not issubclass(cls.settings, ChannelSettings):
        problems.append(f"`settings` ({cls.settings.__name__}) must extend ChannelSettings")
    if not cls.points or not all(isinstance(p, Point) for p in cls.points):
        problems.append("`points` must be a non-empty tuple of Point")
    if not (cls.audience.da.strip() and cls.audience.en.strip()):
        problems.append("`audience` must say who the channel reaches")
    if (
        cls.delivers is not None
        and cls.delivers.reach is Reach.BRANCHES
        and (cls.branch_messages is ChannelSpec.branch_messages)
    ):
        problems.append("it delivers to branches: write `branch_messages`")
    return problems


def declared() -> dict[Channel, type[ChannelSpec]]:
    """Every channel class defined so far, by channel (the registry checks it is all of them)."""
    return dict(_declared)
