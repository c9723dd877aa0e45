"""A circuit breaker per channel: after a few failures in a row to get any answer, stop sending.

Why: a provider that never answers costs a full timeout per request, and each request that went
out unanswered leaves its batch `unknown`. Without a breaker, a SendGrid that never answered cost
30 s per batch, every batch, all ending unknown; an SMTP relay that hung after its greeting cost
about 8.5 minutes per chunk (5 attempts x 30 s x 3 task tries).

One breaker serves one channel in one run and is shared by its chunks sent at once. It counts
errors marked `no_answer` (a connection refused, lost or timed out, a name not resolved); any
answer (accepted, refused, rate-limited) resets the count. After `threshold` in a row it opens,
and stays open for the rest of the run: no batch is started or retried any more, so everything
not yet sent stays pending. There is no half-open probe: the next run is the retry, and nobody
waits inside a run for a provider to come back.
"""

from __future__ import annotations

import threading

from tasks.errors import CircuitOpenError, DeliveryError

DEFAULT_THRESHOLD = 3


class Breaker:
    """Counts consecutive unanswered requests to one provider; open after `threshold` of them."""

    def __init__(self, provider: str, *, threshold: int = DEFAULT_THRESHOLD) -> None:
        if threshold < 1:
            raise ValueError("a breaker needs a threshold of at least 1")
        self.provider = provider
        self.threshold = threshold
        self._lock = threading.Lock()
        self._failures = 0
        self._cause = ""
        self._open = False

    @property
    def open(self) -> bool:
        """Whether sending has stopped for this run."""
        return self._open

    def record(self, error: DeliveryError | None) -> bool:
        """Note one request's outcome (None: answered); True only for the call that opened it."""
        with self._lock:
            if error is None or not error.no_answer:
                if not self._open:
                    self._failures = 0
                return False
            self._failures += 1
            self._cause = str(error)
            if self._open or self._failures < self.threshold:
                return False
            self._open = True
            return True

    def check(self) -> None:
        """Raise CircuitOpenError if open: called before a batch is claimed or resent."""
        if self._open:
            raise CircuitOpenError(f"{self.reason()}; nothing more is tried in this run")

    def reason(self) -> str:
        """Why it opened, for the channel's outcome and the log (provider messages only)."""
        with self._lock:
            return f"{self.provider} did not answer {self._failures} times in a row ({self._cause})"
