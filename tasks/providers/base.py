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

from tasks.models import Channel, Language


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

    @abstractmethod
    def send_batch(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> BatchResult:
        """Deliver `message` to `recipients` in as few API calls as the API allows."""

    def close(self) -> None:  # noqa: B027  (optional hook: most providers hold nothing)
        """Release connections; called once when a flow run is done with the provider."""
