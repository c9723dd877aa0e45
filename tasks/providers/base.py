"""The provider contract and the base that fixes the steps of sending one batch.

Every provider sends a batch in the same four steps, `Provider.send_batch`, and writes only the
steps that differ (the way django-anymail's base backend does):

    check_message   refuse a message part the provider cannot carry (UnsupportedFeatureError),
                    instead of dropping it silently
    build_request   the provider's request for the whole batch; a mistake found here raises
                    before anything is sent
    post            send it; a failure to get any answer is classified here
    read_statuses   each recipient's status from the answer; an answer that refuses the batch
                    raises from the one error tree (tasks/errors.py)

Providers hold no delivery state: retries, the ledger and progress live in tasks/delivery.py.
A provider raises the errors of tasks/errors.py and nothing else; translating a client
library's errors happens in one place per library (tasks/providers/http.py for HTTP APIs).
Which provider a channel uses, and its credentials, is the table in tasks/providers/registry.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from tasks.errors import ConfigError, UnsupportedFeatureError
from tasks.models import Channel, Language, character_name, header_problem


class DeliveryStatus(StrEnum):
    """A recipient's outcome; the closed set a ledger row can take after sending."""

    SENT = "sent"  # accepted by the provider
    FAILED = "failed"  # refused for good (invalid address, content refused)
    UNKNOWN = "unknown"  # may or may not have been accepted (timeout after sending)
    DEFERRED = "deferred"  # definitely not accepted this time (e.g. SMTP 4xx): safe to retry


class Recipient(NamedTuple):
    """One addressee. `address` is personal data: never log it, put it in artifacts or errors.

    A NamedTuple, not a frozen dataclass: a million of them are built per run, and a tuple is
    built about 4x faster and is smaller, while staying immutable.
    """

    key: str  # stable, non-personal id (a keyed hash); what logs and the ledger carry
    address: str  # e-mail address, or E.164 number for SMS
    language: Language = Language.DA

    def __repr__(self) -> str:  # keeps addresses out of tracebacks and Prefect logs
        return f"Recipient(key={self.key!r}, language={self.language.value!r})"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str


@dataclass(frozen=True)
class Message:
    """A message rendered once per variant (channel x language); the same for every recipient."""

    channel: Channel
    language: Language
    text: str
    subject: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass
class BatchResult:
    """What the provider said about one batch."""

    statuses: dict[str, DeliveryStatus]  # recipient key -> status
    provider_ids: list[str] = field(default_factory=list)
    detail: str = ""  # non-personal reason, e.g. "400: invalid from address"


# The optional parts of a Message, beyond its text, that a provider may or may not carry.
MESSAGE_PARTS = ("subject", "html", "attachments")

RequestT = TypeVar("RequestT")  # what build_request makes and post sends
AnswerT = TypeVar("AnswerT")  # what post gets back and read_statuses reads


class Provider(ABC, Generic[RequestT, AnswerT]):
    """Base of every provider: `send_batch` runs the fixed steps; a subclass writes the steps."""

    name: ClassVar[str]
    # The parts of a message (MESSAGE_PARTS) this provider delivers; any other part set on a
    # message stops the batch before sending rather than being dropped.
    carries: ClassVar[frozenset[str]] = frozenset()
    # Largest batch the provider's API takes in one request.
    max_batch: ClassVar[int] = 1000
    # Chunk task runs worth sending at once, each on its own connection (env
    # FBSFLOW_MAX_CONCURRENT_CHUNKS overrides): two keep one request on the wire while the other
    # thread records the last one; a provider far away gains from more (see SendGridProvider).
    chunks_at_once: ClassVar[int] = 2
    # Seconds to wait for a connection, and for each answer once connected: tuned per provider
    # (a constructor argument overrides). Short enough that a provider that stops answering
    # trips the channel's breaker (tasks/breaker.py) within about a minute per chunk.
    connect_timeout: ClassVar[float] = 10.0
    read_timeout: ClassVar[float] = 30.0

    @classmethod
    def from_env(cls, settings: Any, env: Mapping[str, str] | None = None) -> Provider[Any, Any]:
        """Build from the channel's settings and the credentials the registry table names for
        this provider (tasks/providers/registry.py), read from `env` when given, else from
        this process's settings (tasks/settings.py: `credentials`)."""
        raise NotImplementedError(f"{cls.__name__} is not built from the environment")

    def send_batch(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> BatchResult:
        """Deliver `message` to `recipients` in one request: the fixed steps, in order."""
        if not recipients:
            return BatchResult(statuses={})
        self.check_message(message)
        request = self.build_request(message, recipients, campaign=campaign, batch_id=batch_id)
        answer = self.post(request)
        return self.read_statuses(answer, recipients)

    def check_message(self, message: Message) -> None:
        """Raise UnsupportedFeatureError for a message part this provider cannot carry."""
        for part in MESSAGE_PARTS:
            if getattr(message, part) and part not in self.carries:
                raise UnsupportedFeatureError(
                    f"{self.name} cannot carry the {message.channel.value} message's {part}, "
                    "so nothing was sent rather than sending it without; fix: leave the "
                    f"{part} out of the {message.channel.value} template, or use a provider "
                    "that carries it"
                )

    @abstractmethod
    def build_request(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> RequestT:
        """The provider's request for the whole batch; raise before anything is sent."""

    @abstractmethod
    def post(self, request: RequestT) -> AnswerT:
        """Send the request; raise from tasks/errors.py when no answer comes."""

    @abstractmethod
    def read_statuses(self, answer: AnswerT, recipients: Sequence[Recipient]) -> BatchResult:
        """Each recipient's status from the answer; raise when it refuses the batch."""

    def close(self) -> None:  # an optional hook: most providers hold nothing
        """Release connections; called once when a flow run is done with the provider."""


def check_headers(message: Message, **fields: str) -> None:
    """Raise ConfigError if the subject or one of `fields` (name=value) would break a mail header.

    Once per batch, before anything is sent: a line break in a sender name or subject would
    otherwise either add headers of the sender's choosing or fail inside the client library
    after the batch was claimed, which used to record it as `unknown`.
    """
    for name, value in {"subject": message.subject or "", **fields}.items():
        if problem := header_problem(value):
            raise ConfigError(
                f"the {message.channel.value} e-mail's {name} {problem}, which a mail header "
                "cannot carry; nothing was sent (fix: remove line breaks and control characters "
                "from it in the municipality's config or the template, then run again)"
            )


def secret_problem(value: str) -> str | None:
    """Why `value` cannot be an API key or token (None: it can), naming where, never the value.

    A key is printable ASCII without spaces; a copy from a file saved on Windows ends in a
    carriage return, which HTTP refuses in a header before anything is sent.
    """
    if value.isascii() and value.isprintable() and " " not in value:
        return None
    for position, char in enumerate(value, 1):
        if not (char.isascii() and char.isprintable()) or char == " ":
            where = "at the end" if position == len(value) else f"at character {position}"
            name = "a space" if char == " " else character_name(char)
            if not char.isascii() and char.isprintable():
                name = "a character outside ASCII"
            return f"holds {name} {where}"
    return None
