"""The one delivery worker: sends each recipient of a chunk once through a provider and the ledger."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter

from tasks.breaker import Breaker
from tasks.errors import AmbiguousError, ConfigError, PermanentError, TransientError
from tasks.ledger import DeliveryState, Ledger
from tasks.models import Language
from tasks.providers.base import BatchResult, DeliveryStatus, Message, Provider, Recipient

log = logging.getLogger(__name__)

BACKOFF_SCALE_ENV = "FBSFLOW_BACKOFF_SCALE"
OUTCOMES = ("sent", "failed", "unknown", "skipped", "released")
_KEY = attrgetter("key")
_LANGUAGE = attrgetter("language")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before resending a batch the provider did not accept.

    Delay before retry n (1-based): min(cap, base * 2**(n-1)), spread by +-jitter (a fraction),
    so parallel runs do not retry in step. A provider's Retry-After replaces the backoff (plus up
    to `jitter` more, never less); one longer than `cap` ends the retries at once, since sleeping
    that long inside a task would hold the batch's lease for nothing. Every delay is multiplied by
    env FBSFLOW_BACKOFF_SCALE (default 1; tests set it to 0 or a small number).
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.25

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 = the first resend)."""
        delay = min(self.cap, self.base * 2 ** (retry - 1))
        return _scale() * delay * (1 + random.uniform(-self.jitter, self.jitter))

    def delay(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry `retry`; None if the provider asks for too long a wait."""
        if retry_after is None:
            return self.backoff(retry)
        if retry_after > self.cap:
            return None
        return _scale() * retry_after * (1 + random.uniform(0, self.jitter))


def _scale() -> float:
    from tasks.settings import DeliverySettings, settings

    return settings(DeliverySettings).backoff_scale


@dataclass
class ChunkOutcome:
    """What one `deliver_chunk` call did; `requests` counts provider calls, retries included."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    requests: int = 0


def deliver_chunk(
    provider: Provider,
    ledger: Ledger,
    messages: Mapping[Language, Message],
    recipients: Sequence[Recipient],
    *,
    campaign: str,
    channel: str,
    run_id: str,
    retry: RetryPolicy = RetryPolicy(),  # frozen, so one shared default is safe
    breaker: Breaker | None = None,
) -> ChunkOutcome:
    """Send `messages` to `recipients` (one message per language), each recipient at most once.

    Register the audience first (one `Ledger.register` call); a recipient the ledger has never
    seen is registered when its batch comes up, so it is never silently left out. Only keys this
    call claims are sent:
    keys sent, failed or unknown before, or claimed right now by a parallel run, count as
    `skipped`. Raises TransientError after releasing a batch the provider kept refusing for now
    (a rerun sends it), PermanentError after a batch was refused for good, ConfigError if a
    recipient's language has no message (before anything is sent), CircuitOpenError once
    `breaker` (shared by the channel's chunks; by default this call's own) is open.
    """
    by_language = _by_language(recipients)
    unique = sum(map(len, by_language.values()))
    missing = sorted({lang.value for lang in by_language} - {lang.value for lang in messages})
    if missing:
        raise ConfigError(
            f"no rendered {channel} message for language(s) {missing}; render one or map those "
            "recipients to a language the municipality offers"
        )

    outcome = ChunkOutcome()
    outcome.counts["skipped"] += len(recipients) - unique
    breaker = breaker or Breaker(provider.name)

    for language, group in by_language.items():
        # Kept in the order given, which the flow makes the ledger's storage order: each batch
        # then claims and marks one run of neighbouring rows.
        for start in range(0, len(group), provider.max_batch):
            batch = group[start : start + provider.max_batch]
            _deliver_batch(
                provider,
                ledger,
                messages[language],
                batch,
                campaign,
                channel,
                run_id,
                retry,
                outcome,
                breaker,
            )
    log.info(
        "%s/%s via %s: %s in %d requests",
        campaign,
        channel,
        provider.name,
        _summary(outcome.counts),
        outcome.requests,
    )
    return outcome


def _by_language(recipients: Sequence[Recipient]) -> dict[Language, list[Recipient]]:
    """Each key once (its first occurrence), grouped by language, in the order given."""
    if len(set(map(_KEY, recipients))) == len(recipients):
        # The flow's chunks: no repeats, one run per language. Found in C, not per recipient.
        runs = [(lang, list(group)) for lang, group in groupby(recipients, _LANGUAGE)]
        if len({lang for lang, _ in runs}) == len(runs):
            return dict(runs)
    unique: dict[str, Recipient] = {}
    for recipient in recipients:
        unique.setdefault(recipient.key, recipient)
    grouped: dict[Language, list[Recipient]] = {}
    for recipient in unique.values():
        grouped.setdefault(recipient.language, []).append(recipient)
    return grouped


def _deliver_batch(
    provider: Provider,
    ledger: Ledger,
    message: Message,
    batch: list[Recipient],
    campaign: str,
    channel: str,
    run_id: str,
    retry: RetryPolicy,
    outcome: ChunkOutcome,
    breaker: Breaker,
) -> None:
    """Claim, send and mark one batch. Providers hold no state and never retry; this does:

        claim (pending -> sending; keys another run holds or already handled are skipped)
        send  TransientError  -> sleep (backoff, or the provider's Retry-After) and resend the same
                                 claimed batch; attempts exhausted -> release (-> pending) and raise
              PermanentError  -> the whole batch is refused: mark failed, stop the chunk and raise
                                 (the next batches carry the same content and would be refused too)
              AmbiguousError  -> mark unknown (it may have been accepted), never resend; go on
              ConfigError     -> nothing was sent: release and raise
              anything else   -> mark unknown (a bug may strike after the request left), raise
                                 AmbiguousError
        breaker  every outcome is reported to the channel's Breaker (tasks/breaker.py); once it is
              open (the provider did not answer N times in a row), no batch is claimed or resent:
              the claimed one is released and CircuitOpenError raised, the rest stays pending
        mark  the per-recipient statuses the provider returned, as given; DEFERRED ones (definitely
              not sent, e.g. an SMTP 4xx) are resent alone after a backoff, like a TransientError

    A crash between claim and mark leaves rows in `sending`; `Ledger.resolve_interrupted` turns them
    into `unknown` on the next run once their lease has run out, so nobody is sent to twice.
    """
    breaker.check()  # before the claim: a batch never started stays pending
    # The ledger row already names the run; a short id keeps each of a million rows small.
    batch_id = uuid.uuid4().hex[:16]
    keys = list(map(_KEY, batch))
    claimed = set(ledger.claim(campaign, channel, keys, batch_id=batch_id, run_id=run_id))
    if len(claimed) < len(keys):
        # Keys the ledger has never seen are registered here (cheaply, only when some key was
        # not claimable), so a forgotten register step can never mean "silently not sent".
        unseen = set(keys) - claimed - set(ledger.states(campaign, channel, keys))
        if unseen:
            ledger.register(campaign, channel, unseen)
            claimed |= set(
                ledger.claim(campaign, channel, sorted(unseen), batch_id=batch_id, run_id=run_id)
            )
    outcome.counts["skipped"] += len(keys) - len(claimed)
    todo = batch if len(claimed) == len(keys) else [r for r in batch if r.key in claimed]
    attempt = 0
    while todo:
        attempt += 1
        todo_keys = keys if todo is batch else list(map(_KEY, todo))
        if attempt > 1:
            if breaker.open:  # opened by another chunk while this one waited to resend
                _release(ledger, todo_keys, campaign, channel, run_id, outcome)
                breaker.check()
            ledger.renew_claim(campaign, channel, todo_keys, run_id=run_id)
        outcome.requests += 1
        try:
            result = provider.send_batch(message, todo, campaign=campaign, batch_id=batch_id)
        except TransientError as exc:
            _note(breaker, exc, provider.name, channel)
            _wait_or_give_up(
                provider,
                ledger,
                todo_keys,
                attempt,
                retry,
                exc,
                campaign,
                channel,
                run_id,
                batch_id,
                outcome,
                breaker,
            )
            continue
        except PermanentError as exc:
            breaker.record(None)
            _record(
                ledger,
                todo_keys,
                DeliveryState.FAILED,
                f"refused: {exc}",
                campaign,
                channel,
                run_id,
                outcome,
            )
            raise PermanentError(
                f"{provider.name}: batch {batch_id} refused ({exc}); its {len(todo)} "
                "recipients are marked failed and the rest of this chunk is left pending; fix "
                "the cause, then Ledger.requeue_failed and rerun",
                status=exc.status,
            ) from exc
        except AmbiguousError as exc:
            _note(breaker, exc, provider.name, channel)
            _record(
                ledger,
                todo_keys,
                DeliveryState.UNKNOWN,
                f"ambiguous: {exc}",
                campaign,
                channel,
                run_id,
                outcome,
            )
            log.error(
                "%s: batch %s may or may not have been accepted (%s); %d recipients marked "
                "unknown and not resent",
                provider.name,
                batch_id,
                exc,
                len(todo),
            )
            return
        except ConfigError:
            _release(ledger, todo_keys, campaign, channel, run_id, outcome)
            raise
        except Exception as exc:
            name = type(exc).__name__
            _record(
                ledger,
                todo_keys,
                DeliveryState.UNKNOWN,
                f"unexpected {name} while sending",
                campaign,
                channel,
                run_id,
                outcome,
            )
            # Only the type: a foreign exception's text (and traceback) may carry an address.
            log.error("%s: unexpected %s while sending batch %s", provider.name, name, batch_id)
            raise AmbiguousError(
                f"{provider.name}: unexpected {name} while sending batch {batch_id}; its "
                f"{len(todo)} recipients are marked unknown"
            ) from None
        breaker.record(None)
        deferred = _record_result(ledger, result, todo_keys, campaign, channel, run_id, outcome)
        todo = [r for r in todo if r.key in deferred] if deferred else []
        if todo:
            exc = TransientError(f"{len(todo)} recipients deferred ({result.detail})")
            _wait_or_give_up(
                provider,
                ledger,
                [r.key for r in todo],
                attempt,
                retry,
                exc,
                campaign,
                channel,
                run_id,
                batch_id,
                outcome,
                breaker,
            )


def _note(
    breaker: Breaker, exc: TransientError | AmbiguousError, provider: str, channel: str
) -> None:
    if breaker.record(exc):
        log.error("%s: %s; no more batches are started for %s", provider, breaker.reason(), channel)


def _release(
    ledger: Ledger,
    keys: list[str],
    campaign: str,
    channel: str,
    run_id: str,
    outcome: ChunkOutcome,
) -> None:
    ledger.release(campaign, channel, keys, run_id=run_id)
    outcome.counts["released"] += len(keys)


def _wait_or_give_up(
    provider: Provider,
    ledger: Ledger,
    keys: list[str],
    attempt: int,
    retry: RetryPolicy,
    exc: TransientError,
    campaign: str,
    channel: str,
    run_id: str,
    batch_id: str,
    outcome: ChunkOutcome,
    breaker: Breaker,
) -> None:
    """Sleep before resending `keys`; or, attempts spent or the breaker open, release them and
    raise TransientError (CircuitOpenError for the breaker)."""
    if breaker.open:
        _release(ledger, keys, campaign, channel, run_id, outcome)
        breaker.check()
    wait = retry.delay(attempt, exc.retry_after) if attempt < retry.attempts else None
    if wait is None:
        _release(ledger, keys, campaign, channel, run_id, outcome)
        raise TransientError(
            f"{provider.name}: batch {batch_id} not accepted after {attempt} attempt(s) "
            f"({exc}); its {len(keys)} recipients are pending again for a rerun; "
            f"this chunk so far: {_summary(outcome.counts)}",
            status=exc.status,
            retry_after=exc.retry_after,
        ) from exc
    log.warning(
        "%s: batch %s not accepted (%s); retry %d of %d in %.2fs",
        provider.name,
        batch_id,
        exc,
        attempt,
        retry.attempts - 1,
        wait,
    )
    time.sleep(wait)


def _record(
    ledger: Ledger,
    keys: list[str],
    state: DeliveryState,
    detail: str,
    campaign: str,
    channel: str,
    run_id: str,
    outcome: ChunkOutcome,
) -> None:
    ledger.mark(campaign, channel, dict.fromkeys(keys, state), detail=detail, run_id=run_id)
    outcome.counts[state.value] += len(keys)


def _record_result(
    ledger: Ledger,
    result: BatchResult,
    sent_keys: list[str],
    campaign: str,
    channel: str,
    run_id: str,
    outcome: ChunkOutcome,
) -> set[str]:
    """Record each status as the provider gave it; return the deferred keys (not sent: retry).

    A key the provider left out becomes unknown: it was part of an accepted request.
    """
    given = result.statuses
    if (
        len(given) == len(sent_keys)
        and set(given.values()) == {DeliveryStatus.SENT}
        and given.keys() == set(sent_keys)
    ):
        # The usual answer, every recipient accepted: recorded without a loop in Python.
        accepted = dict.fromkeys(sent_keys, DeliveryState.SENT)
        _mark(ledger, campaign, channel, accepted, "", result.provider_ids, run_id, outcome)
        return set()
    # DeliveryStatus values are DeliveryState values; the ledger converts once per distinct one.
    statuses = {key: given[key] for key in sent_keys if key in given}
    deferred = {key for key, status in statuses.items() if status == DeliveryStatus.DEFERRED}
    for key in deferred:
        del statuses[key]
    # A sent row needs no reason, and a million copies of the request's note ("accepted, 1
    # message id(s), cost ...") would be a fifth of what marking writes. Other outcomes keep it.
    sent = {k: s for k, s in statuses.items() if s == DeliveryStatus.SENT}
    others = {k: s for k, s in statuses.items() if s != DeliveryStatus.SENT}
    groups = [("", sent), (result.detail, others)]
    if len(statuses) + len(deferred) < len(sent_keys):
        silent = dict.fromkeys((k for k in sent_keys if k not in given), DeliveryState.UNKNOWN)
        log.warning("provider returned no status for %d recipients; marked unknown", len(silent))
        groups.append(("accepted, but the provider reported no status for this recipient", silent))
    for detail, group in groups:
        if group:
            _mark(ledger, campaign, channel, group, detail, result.provider_ids, run_id, outcome)
    return deferred


def _mark(
    ledger: Ledger,
    campaign: str,
    channel: str,
    group: dict[str, DeliveryState | DeliveryStatus],
    detail: str,
    provider_ids: Sequence[str],
    run_id: str,
    outcome: ChunkOutcome,
) -> None:
    ledger.mark(campaign, channel, group, provider_ids=provider_ids, detail=detail, run_id=run_id)
    for state, count in Counter(group.values()).items():
        outcome.counts[DeliveryState(state).value] += count


def _summary(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {counts[name]}" for name in OUTCOMES if counts.get(name))
