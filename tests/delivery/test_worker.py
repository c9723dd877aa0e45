"""The delivery worker: each recipient once through retries, refusals, timeouts and races."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.delivery import BACKOFF_SCALE_ENV, ChunkOutcome, RetryPolicy, deliver_chunk
from tasks.errors import AmbiguousError, ConfigError, PermanentError, TransientError
from tasks.ledger import DeliveryState, Ledger
from tasks.models import Channel, Language
from tasks.providers.base import DeliveryStatus, Message, Recipient
from tests.support.fake_provider import FakeProvider

KEY = b"delivery-test-key-0123456789abcdef"
CAMPAIGN = "eksempel-kommune-2026"
CHANNEL = "newsletter"
MESSAGES = {
    Language.DA: Message(Channel.NEWSLETTER, Language.DA, "Sådan betaler du nu", subject="Nyt"),
    Language.EN: Message(Channel.NEWSLETTER, Language.EN, "How to pay now", subject="News"),
}
NO_WAIT = RetryPolicy(attempts=3, base=0.0, cap=30.0, jitter=0.0)


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the worker may catch it."""


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKOFF_SCALE_ENV, "0")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url, key=KEY) as led:
        yield led


def people(ledger: Ledger, n: int, *, english_every: int = 0) -> list[Recipient]:
    """Synthetic borrowers; every `english_every`-th prefers English."""
    result = []
    for i in range(n):
        address = f"borger{i}@example.dk"
        lang = Language.EN if english_every and i % english_every == 0 else Language.DA
        result.append(Recipient(ledger.recipient_key(address), address, lang))
    return result


def deliver(
    provider: FakeProvider,
    ledger: Ledger,
    recipients: list[Recipient],
    *,
    run_id: str = "run-1",
    retry: RetryPolicy = NO_WAIT,
) -> ChunkOutcome:
    return deliver_chunk(
        provider,
        ledger,
        MESSAGES,
        recipients,
        campaign=CAMPAIGN,
        channel=CHANNEL,
        run_id=run_id,
        retry=retry,
    )


def states(ledger: Ledger, recipients: list[Recipient]) -> dict[str, DeliveryState]:
    return ledger.states(CAMPAIGN, CHANNEL, [r.key for r in recipients])


# --- the normal path ---------------------------------------------------------------------------


def test_sends_each_recipient_once_in_batches_per_language(ledger: Ledger) -> None:
    recipients = people(ledger, 2500, english_every=5)
    ledger.register(CAMPAIGN, CHANNEL, [r.key for r in recipients])
    provider = FakeProvider(max_batch=1000)
    outcome = deliver(provider, ledger, recipients)

    assert set(provider.deliveries().values()) == {1}
    assert len(provider.deliveries()) == 2500
    assert all(len(call.keys) <= 1000 for call in provider.calls)
    language_of = {r.key: r.language for r in recipients}
    for call in provider.calls:
        assert {language_of[k] for k in call.keys} == {call.language}
    assert outcome.counts == {"sent": 2500, "failed": 0, "unknown": 0, "skipped": 0, "released": 0}
    assert outcome.requests == len(provider.calls) == 2 + 1  # 2000 Danish, 500 English
    assert ledger.counts(CAMPAIGN, CHANNEL)["sent"] == 2500
    row = ledger.rows(CAMPAIGN, CHANNEL, [recipients[0].key])[recipients[0].key]
    assert row["provider_id"] == f"fake-{row['batch_id']}" and row["run_id"] == "run-1"
    assert row["attempts"] == 1 and row["detail"] is None  # a sent row needs no reason

    again = deliver(provider, ledger, recipients, run_id="run-2")
    assert again.counts["skipped"] == 2500 and again.requests == 0


def test_unregistered_and_duplicate_recipients(ledger: Ledger) -> None:
    recipients = people(ledger, 30)
    ledger.register(CAMPAIGN, CHANNEL, [r.key for r in recipients[:10]])
    provider = FakeProvider(max_batch=1000)
    outcome = deliver(provider, ledger, [*recipients, recipients[0]])
    assert provider.deliveries() == {r.key: 1 for r in recipients}
    assert outcome.counts["sent"] == 30 and outcome.counts["skipped"] == 1


def test_missing_language_is_refused_before_anything_is_sent(ledger: Ledger) -> None:
    provider = FakeProvider()
    with pytest.raises(ConfigError, match="en"):
        deliver_chunk(
            provider,
            ledger,
            {Language.DA: MESSAGES[Language.DA]},
            people(ledger, 10, english_every=3),
            campaign=CAMPAIGN,
            channel=CHANNEL,
            run_id="r",
        )
    assert provider.calls == []


# --- transient errors --------------------------------------------------------------------------


def test_transient_then_success_resends_the_same_claimed_batch(ledger: Ledger) -> None:
    recipients = people(ledger, 50)
    ledger.register(CAMPAIGN, CHANNEL, [r.key for r in recipients])
    provider = FakeProvider([TransientError("503"), TransientError("429")])
    outcome = deliver(provider, ledger, recipients)

    assert outcome.requests == 3
    assert len({call.batch_id for call in provider.calls}) == 1
    assert [call.keys for call in provider.calls] == [provider.calls[0].keys] * 3
    assert provider.deliveries() == {r.key: 1 for r in recipients}
    assert outcome.counts["sent"] == 50
    assert ledger.rows(CAMPAIGN, CHANNEL, [recipients[0].key])[recipients[0].key]["attempts"] == 3


def test_transient_exhausted_releases_and_a_rerun_sends_once(ledger: Ledger) -> None:
    recipients = people(ledger, 25)
    ledger.register(CAMPAIGN, CHANNEL, [r.key for r in recipients])
    # First batch (10) goes through, the second is refused for now three times.
    provider = FakeProvider(
        [None, TransientError("503"), TransientError("503"), TransientError("503")], max_batch=10
    )
    with pytest.raises(TransientError, match="pending again") as caught:
        deliver(provider, ledger, recipients)
    assert "borger" not in str(caught.value)
    counts = ledger.counts(CAMPAIGN, CHANNEL)
    assert counts["sent"] == 10 and counts["pending"] == 15 and counts["sending"] == 0

    rerun = deliver(provider, ledger, recipients, run_id="run-2")
    assert rerun.counts["sent"] == 15 and rerun.counts["skipped"] == 10
    assert provider.deliveries() == {r.key: 1 for r in recipients}
    assert ledger.counts(CAMPAIGN, CHANNEL)["sent"] == 25


def test_retry_after_is_honoured(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKOFF_SCALE_ENV, "0.01")
    recipients = people(ledger, 5)
    provider = FakeProvider([TransientError("429", status=429, retry_after=20)])
    deliver(provider, ledger, recipients, retry=RetryPolicy(base=0.001, jitter=0.25))
    first, second = provider.calls
    waited = second.at - first.at
    # 20 s scaled by 0.01, plus at most 25 % jitter, never less; the backoff would be ~0.
    assert 0.2 <= waited < 0.6
    assert provider.deliveries() == {r.key: 1 for r in recipients}


def test_retry_after_beyond_the_cap_gives_up_at_once(ledger: Ledger) -> None:
    recipients = people(ledger, 5)
    provider = FakeProvider([TransientError("429", retry_after=3600)])
    with pytest.raises(TransientError) as caught:
        deliver(provider, ledger, recipients, retry=RetryPolicy(cap=30))
    assert caught.value.retry_after == 3600
    assert len(provider.calls) == 1
    assert ledger.counts(CAMPAIGN, CHANNEL)["pending"] == 5


def test_backoff_grows_exponentially_within_jitter_and_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(BACKOFF_SCALE_ENV, "1")
    policy = RetryPolicy(base=0.5, cap=30, jitter=0.25)
    for retry, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (8, 30.0), (20, 30.0)]:
        for _ in range(20):
            assert nominal * 0.75 <= policy.backoff(retry) <= nominal * 1.25
    assert policy.delay(1, retry_after=10) >= 10
    assert policy.delay(1, retry_after=31) is None
    monkeypatch.setenv(BACKOFF_SCALE_ENV, "0")
    assert policy.backoff(5) == 0
    monkeypatch.setenv(BACKOFF_SCALE_ENV, "fast")
    with pytest.raises(ConfigError, match=BACKOFF_SCALE_ENV):
        policy.backoff(1)


# --- refusals, timeouts, crashes ---------------------------------------------------------------


def test_permanent_error_marks_the_batch_failed_and_stops(ledger: Ledger) -> None:
    recipients = people(ledger, 30)
    ledger.register(CAMPAIGN, CHANNEL, [r.key for r in recipients])
    provider = FakeProvider([PermanentError("400: invalid from address", status=400)], max_batch=10)
    with pytest.raises(PermanentError, match="requeue_failed"):
        deliver(provider, ledger, recipients)
    assert len(provider.calls) == 1
    failed = set(provider.calls[0].keys)
    by_state = states(ledger, recipients)
    assert {k for k, s in by_state.items() if s is DeliveryState.FAILED} == failed
    assert ledger.counts(CAMPAIGN, CHANNEL)["pending"] == 20
    key = next(iter(failed))
    assert "invalid from address" in ledger.rows(CAMPAIGN, CHANNEL, [key])[key]["detail"]

    # After the fix a person requeues the refused batch; the rerun sends everyone once.
    ledger.requeue_failed(CAMPAIGN, CHANNEL)
    fixed = FakeProvider(max_batch=10)
    deliver(fixed, ledger, recipients, run_id="run-2")
    assert fixed.deliveries() == {r.key: 1 for r in recipients}


def test_ambiguous_error_marks_unknown_and_is_never_resent(ledger: Ledger) -> None:
    recipients = people(ledger, 20)
    provider = FakeProvider(
        [AmbiguousError("read timeout after sending")], max_batch=10, accepted_on=(AmbiguousError,)
    )
    outcome = deliver(provider, ledger, recipients)
    assert outcome.requests == 2  # no retry of the ambiguous batch; the next batch is sent
    assert outcome.counts["unknown"] == 10 and outcome.counts["sent"] == 10

    rerun = deliver(provider, ledger, recipients, run_id="run-2")
    assert rerun.requests == 0 and rerun.counts["skipped"] == 20
    assert provider.deliveries() == {r.key: 1 for r in recipients}
    assert ledger.counts(CAMPAIGN, CHANNEL)["unknown"] == 10


def test_unexpected_exception_marks_unknown_and_propagates(ledger: Ledger) -> None:
    recipients = people(ledger, 20)
    ledger.register(CAMPAIGN, CHANNEL, [r.key for r in recipients])
    provider = FakeProvider([RuntimeError("bug near borger0@example.dk")], max_batch=10)
    with pytest.raises(AmbiguousError, match="RuntimeError") as caught:
        deliver(provider, ledger, recipients)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "borger0" not in str(caught.value)
    assert ledger.counts(CAMPAIGN, CHANNEL) == {
        "pending": 10,
        "sending": 0,
        "sent": 0,
        "failed": 0,
        "unknown": 10,
    }


def test_deferred_recipients_are_resent_alone(ledger: Ledger) -> None:
    recipients = people(ledger, 8)
    slow = recipients[3].key
    provider = FakeProvider(defer={slow: 1})
    outcome = deliver(provider, ledger, recipients)
    assert [len(call.keys) for call in provider.calls] == [8, 1]
    assert provider.calls[1].keys == (slow,)
    assert provider.deliveries() == {r.key: 1 for r in recipients}
    assert outcome.counts["sent"] == 8 and outcome.requests == 2
    assert ledger.rows(CAMPAIGN, CHANNEL, [slow])[slow]["attempts"] == 2


def test_deferred_until_attempts_run_out_is_released_for_a_rerun(ledger: Ledger) -> None:
    recipients = people(ledger, 4)
    slow = recipients[0].key
    provider = FakeProvider(defer={slow: 3})
    with pytest.raises(TransientError, match="deferred"):
        deliver(provider, ledger, recipients)  # NO_WAIT allows 3 attempts
    assert states(ledger, recipients)[slow] is DeliveryState.PENDING
    assert ledger.counts(CAMPAIGN, CHANNEL)["sent"] == 3
    deliver(provider, ledger, recipients, run_id="run-2")
    assert provider.deliveries() == {r.key: 1 for r in recipients}


def test_config_error_from_the_provider_releases_the_batch(ledger: Ledger) -> None:
    recipients = people(ledger, 5)
    provider = FakeProvider([ConfigError("no API key")])
    with pytest.raises(ConfigError):
        deliver(provider, ledger, recipients)
    assert ledger.counts(CAMPAIGN, CHANNEL)["pending"] == 5


def test_per_recipient_statuses_are_recorded_as_given(ledger: Ledger) -> None:
    recipients = people(ledger, 6)
    bounced, maybe, silent = recipients[0].key, recipients[1].key, recipients[2].key
    provider = FakeProvider(
        statuses={bounced: DeliveryStatus.FAILED, maybe: DeliveryStatus.UNKNOWN}, omit=[silent]
    )
    outcome = deliver(provider, ledger, recipients)
    assert outcome.counts == {"sent": 3, "failed": 1, "unknown": 2, "skipped": 0, "released": 0}
    got = states(ledger, recipients)
    assert got[bounced] is DeliveryState.FAILED
    assert got[maybe] is DeliveryState.UNKNOWN and got[silent] is DeliveryState.UNKNOWN
    assert "no status" in ledger.rows(CAMPAIGN, CHANNEL, [silent])[silent]["detail"]
    assert ledger.rows(CAMPAIGN, CHANNEL, [bounced])[bounced]["detail"] == "202 accepted"


def test_a_killed_run_is_resolved_unknown_and_not_resent(db_url: str) -> None:
    with Ledger(db_url, key=KEY, lease_seconds=0) as dying:
        recipients = people(dying, 20)
        provider = FakeProvider([None, Killed()], max_batch=10, accepted_on=(Killed,))
        with pytest.raises(Killed):
            deliver(provider, dying, recipients)
    time.sleep(0.01)  # the dead run's lease runs out
    with Ledger(db_url, key=KEY) as rerun_ledger:
        assert sum(i.count for i in rerun_ledger.resolve_interrupted(CAMPAIGN, CHANNEL)) == 10
        rerun = deliver(provider, rerun_ledger, recipients, run_id="run-2")
        assert rerun.requests == 0
        assert rerun_ledger.counts(CAMPAIGN, CHANNEL)["unknown"] == 10
    assert provider.deliveries() == {r.key: 1 for r in recipients}


# --- parallel runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False], ids=["shared-ledger", "own-ledgers"])
def test_parallel_deliveries_send_each_recipient_once(db_url: str, shared: bool) -> None:
    with Ledger(db_url, key=KEY) as ledger:
        recipients = people(ledger, 600, english_every=4)
        ledger.register(CAMPAIGN, CHANNEL, [r.key for r in recipients])
        provider = FakeProvider(max_batch=50, delay=0.005)
        outcomes = []
        errors: list[BaseException] = []

        def run(run_id: str, order: list[Recipient]) -> None:
            led = ledger if shared else Ledger(db_url, key=KEY)
            try:
                outcomes.append(deliver(provider, led, order, run_id=run_id))
            except BaseException as exc:  # surfaced by the assert below
                errors.append(exc)
            finally:
                if not shared:
                    led.close()

        threads = [
            threading.Thread(target=run, args=("run-a", recipients)),
            threading.Thread(target=run, args=("run-b", recipients[::-1])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert provider.deliveries() == {r.key: 1 for r in recipients}
        assert sum(o.counts["sent"] for o in outcomes) == 600
        assert sum(o.counts["skipped"] for o in outcomes) == 600
        assert ledger.counts(CAMPAIGN, CHANNEL)["sent"] == 600


# --- personal data -----------------------------------------------------------------------------


def test_addresses_stay_out_of_logs_errors_and_the_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "ledger.db"
    caplog.set_level(logging.DEBUG)
    raised: list[str] = []
    with Ledger(f"sqlite:///{db}", key=KEY) as ledger:
        recipients = people(ledger, 40, english_every=3)
        script = [TransientError("503"), AmbiguousError("timeout"), *[TransientError("503")] * 3]
        provider = FakeProvider(
            script, max_batch=10, statuses={recipients[5].key: DeliveryStatus.FAILED}
        )
        try:
            deliver(provider, ledger, recipients)
        except TransientError as exc:
            raised.append(str(exc) + repr(exc))
        try:
            deliver(FakeProvider([PermanentError("400")]), ledger, recipients, run_id="r2")
        except PermanentError as exc:
            raised.append(str(exc) + repr(exc))
    assert len(raised) == 2
    text = caplog.text + "".join(raised)
    assert "warning" in caplog.text.lower() or caplog.records  # something was logged
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for r in recipients:
        assert r.address not in text
        assert r.address.encode() not in stored
