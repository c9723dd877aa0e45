"""The one delivery worker: claim a batch in the ledger, send it, record the outcome; retries live here.

Providers only translate one API call; this worker decides what happens next:

- TransientError: the request was definitely not accepted. Sleep (exponential backoff with
  jitter, or the provider's Retry-After) and send the same claimed batch again. When attempts run
  out, release the batch to `pending` and raise, so a rerun sends it.
- PermanentError: refused for good; the batch is `failed` with the provider's reason.
- AmbiguousError, or anything unexpected during the send: the provider may have accepted it.
  The batch is `unknown` and is never re-sent automatically (that is how duplicates happen).
- A recipient missing from a BatchResult (an SMTP 4xx for one address) was not sent: it is
  retried with the next attempt, alone.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tasks.errors import AmbiguousError, ConfigError, PermanentError, TransientError
from tasks.ledger import DeliveryState, Ledger
from tasks.models import Language
from tasks.providers.base import DeliveryStatus, Message, Provider, Recipient

log = logging.getLogger(__name__)

_STATE = {
    DeliveryStatus.SENT: DeliveryState.SENT,
    DeliveryStatus.FAILED: DeliveryState.FAILED,
    DeliveryStatus.UNKNOWN: DeliveryState.UNKNOWN,
}


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient errors; FBSFLOW_BACKOFF_SCALE multiplies every delay (0 in tests)."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None) -> float:
        scale = float(os.environ.get("FBSFLOW_BACKOFF_SCALE", "1"))
        if retry_after is not None:
            return max(0.0, retry_after) * scale
        backoff = min(self.cap, self.base * 2 ** (attempt - 1))
        return backoff * (1 + random.uniform(-self.jitter, self.jitter)) * scale


@dataclass
class ChunkOutcome:
    """Counts of one chunk (no personal data) and how many API requests it took."""

    counts: dict[str, int] = field(default_factory=dict)
    requests: int = 0

    def add(self, state: str, n: int = 1) -> None:
        self.counts[state] = self.counts.get(state, 0) + n


def deliver_chunk(
    provider: Provider,
    ledger: Ledger,
    messages: Mapping[Language, Message],
    recipients: Sequence[Recipient],
    *,
    campaign: str,
    channel: str,
    run_id: str,
    retry: RetryPolicy | None = None,
) -> ChunkOutcome:
    """Send `recipients` their language's message, each at most once, in provider-sized batches."""
    retry = retry or RetryPolicy()
    outcome = ChunkOutcome()
    by_language: dict[Language, list[Recipient]] = {}
    for r in recipients:
        language = r.language if r.language in messages else Language.DA
        by_language.setdefault(language, []).append(r)
    for language, group in by_language.items():
        for start in range(0, len(group), provider.max_batch):
            batch = group[start : start + provider.max_batch]
            _deliver_batch(
                provider,
                ledger,
                messages[language],
                batch,
                outcome,
                campaign=campaign,
                channel=channel,
                run_id=run_id,
                retry=retry,
            )
    return outcome


def _deliver_batch(
    provider: Provider,
    ledger: Ledger,
    message: Message,
    batch: Sequence[Recipient],
    outcome: ChunkOutcome,
    *,
    campaign: str,
    channel: str,
    run_id: str,
    retry: RetryPolicy,
) -> None:
    batch_id = uuid.uuid4().hex[:12]
    claimed = set(
        ledger.claim(campaign, channel, [r.key for r in batch], batch_id=batch_id, run_id=run_id)
    )
    outcome.add("skipped", len(batch) - len(claimed))  # already handled, or a parallel run has them
    todo = [r for r in batch if r.key in claimed]
    attempt = 0
    while todo:
        attempt += 1
        if attempt > 1:
            ledger.renew_claim(campaign, channel, [r.key for r in todo], run_id=run_id)
        outcome.requests += 1
        try:
            result = provider.send_batch(message, todo, campaign=campaign, batch_id=batch_id)
        except TransientError as exc:
            if attempt >= retry.attempts:
                ledger.release(campaign, channel, [r.key for r in todo], run_id=run_id)
                outcome.add("released", len(todo))
                raise TransientError(
                    f"{channel}: {len(todo)} recipients not accepted after {attempt} attempts "
                    f"({exc}); they stay pending for a rerun",
                    status=exc.status,
                ) from None
            wait = retry.delay(attempt, exc.retry_after)
            log.warning("%s batch %s: %s; retrying in %.1f s", channel, batch_id, exc, wait)
            time.sleep(wait)
            continue
        except PermanentError as exc:
            _mark(ledger, campaign, channel, todo, DeliveryState.FAILED, outcome, run_id, str(exc))
            return
        except ConfigError:
            # A refused key or a wrong URL: nothing was accepted; let the person fix it and rerun.
            ledger.release(campaign, channel, [r.key for r in todo], run_id=run_id)
            outcome.add("released", len(todo))
            raise
        except AmbiguousError as exc:
            _mark(ledger, campaign, channel, todo, DeliveryState.UNKNOWN, outcome, run_id, str(exc))
            return
        except Exception as exc:  # an unexpected failure mid-send may still have delivered
            _mark(
                ledger,
                campaign,
                channel,
                todo,
                DeliveryState.UNKNOWN,
                outcome,
                run_id,
                f"unexpected {type(exc).__name__}",
            )
            raise AmbiguousError(
                f"{channel}: unexpected {type(exc).__name__} while sending"
            ) from None
        statuses = {k: _STATE[s] for k, s in result.statuses.items() if k in claimed}
        ledger.mark(
            campaign,
            channel,
            statuses,
            provider_ids=result.provider_ids,
            detail=result.detail,
            run_id=run_id,
        )
        for state in statuses.values():
            outcome.add(state.value)
        # Recipients without a status were not sent (e.g. deferred by an SMTP server): retry them.
        todo = [r for r in todo if r.key not in statuses]
        if todo:
            if attempt >= retry.attempts:
                ledger.release(campaign, channel, [r.key for r in todo], run_id=run_id)
                outcome.add("released", len(todo))
                raise TransientError(
                    f"{channel}: {len(todo)} recipients deferred after {attempt} attempts"
                )
            time.sleep(retry.delay(attempt, None))


def _mark(
    ledger: Ledger,
    campaign: str,
    channel: str,
    batch: Sequence[Recipient],
    state: DeliveryState,
    outcome: ChunkOutcome,
    run_id: str,
    detail: str,
) -> None:
    ledger.mark(campaign, channel, {r.key: state for r in batch}, detail=detail, run_id=run_id)
    outcome.add(state.value, len(batch))
