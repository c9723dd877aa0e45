"""The provider contract: a rendered message plus a batch of recipients in, one status per recipient out.

Providers hold no delivery state: retries, the ledger and progress live in tasks/delivery.py.
A provider raises the errors of tasks/errors.py and nothing else; translating a client
library's errors happens inside the provider module, in one place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, NamedTuple

from tasks.errors import ConfigError
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


class Provider(ABC):
    """Base of every provider; a subclass overrides only what its API needs."""

    name: ClassVar[str]
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

    @abstractmethod
    def send_batch(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> BatchResult:
        """Deliver `message` to `recipients` in as few API calls as the API allows."""

    def close(self) -> None:  # noqa: B027  (optional hook: most providers hold nothing)
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
