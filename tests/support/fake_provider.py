"""A scripted Provider for testing the delivery worker: records every call, raises on cue.

It is a real subclass of tasks.providers.base.Provider, over the same fixed steps, so the worker
sees exactly the contract the real providers implement; those are tested against local servers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from tasks.models import Language
from tasks.providers.base import (
    MESSAGE_PARTS,
    BatchResult,
    DeliveryStatus,
    Message,
    Provider,
    Recipient,
)

# One scripted step: an exception to raise, or None to accept the batch.
Step = BaseException | None


@dataclass(frozen=True)
class Call:
    """One send_batch call as the provider saw it."""

    keys: tuple[str, ...]
    language: Language
    batch_id: str
    campaign: str
    at: float  # time.monotonic() when the call came in
    accepted: bool  # the batch reached the "provider" (success, or ambiguous after sending)
    deferred: frozenset[str] = frozenset()  # keys answered DEFERRED (not delivered)


class FakeProvider(Provider[tuple[Message, Sequence[Recipient], str, str], BatchResult]):
    """Accepts batches, or raises the scripted errors in order, then accepts.

    `script` is consumed one step per call, across threads. `statuses` overrides the status of
    given keys in an accepted batch (others are sent); `defer` answers DEFERRED for a key in that
    many accepted calls; `omit` leaves keys out of the result. `accepted_on` lists exception
    types after which the batch counts as delivered (AmbiguousError: sent, then timed out).
    """

    name: ClassVar[str] = "fake"
    carries: ClassVar[frozenset[str]] = frozenset(MESSAGE_PARTS)

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        max_batch: int = 1000,
        statuses: dict[str, DeliveryStatus] | None = None,
        omit: Iterable[str] = (),
        defer: dict[str, int] | None = None,
        delay: float = 0.0,
        accepted_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.max_batch = max_batch  # type: ignore[misc]  # per-instance limit for tests
        self._script = list(script)
        self._statuses = statuses or {}
        self._omit = set(omit)
        self._defer = Counter(defer or {})
        self._delay = delay
        self._accepted_on = accepted_on
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.closed = False

    def build_request(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> tuple[Message, Sequence[Recipient], str, str]:
        return message, recipients, campaign, batch_id

    def post(self, request: tuple[Message, Sequence[Recipient], str, str]) -> BatchResult:
        message, recipients, campaign, batch_id = request
        if self._delay:
            time.sleep(self._delay)
        statuses: dict[str, DeliveryStatus] = {}
        with self._lock:
            step = self._script.pop(0) if self._script else None
            for r in recipients if step is None else ():
                if r.key in self._omit:
                    continue
                if self._defer[r.key] > 0:
                    self._defer[r.key] -= 1
                    statuses[r.key] = DeliveryStatus.DEFERRED
                else:
                    statuses[r.key] = self._statuses.get(r.key, DeliveryStatus.SENT)
            self.calls.append(
                Call(
                    keys=tuple(r.key for r in recipients),
                    language=message.language,
                    batch_id=batch_id,
                    campaign=campaign,
                    at=time.monotonic(),
                    accepted=step is None or isinstance(step, self._accepted_on),
                    deferred=frozenset(
                        k for k, v in statuses.items() if v is DeliveryStatus.DEFERRED
                    ),
                )
            )
        if step is not None:
            raise step
        return BatchResult(
            statuses=statuses, provider_ids=[f"fake-{batch_id}"], detail="202 accepted"
        )

    def read_statuses(self, answer: BatchResult, recipients: Sequence[Recipient]) -> BatchResult:
        return answer

    def deliveries(self) -> Counter[str]:
        """How many accepted requests carried each key: exactly-once means every value is 1.

        A key the provider deferred in a call was not delivered by that call.
        """
        with self._lock:
            return Counter(
                k
                for call in self.calls
                if call.accepted
                for k in call.keys
                if k not in call.deferred
            )

    def close(self) -> None:
        self.closed = True
