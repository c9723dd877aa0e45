"""The circuit breaker: a provider that stops answering stops its channel; the rest stays pending.

The scenarios run the delivery worker as the flow does (two chunks at once, a provider each, one
breaker shared by the channel) against the local stand-ins with short timeouts: SendGrid and
GatewayAPI that read a request and never answer, an SMTP relay that greets and then hangs, and
a SendGrid port that refuses connections. Then a rerun against a healthy provider.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.states import Failed

from tasks.breaker import DEFAULT_THRESHOLD, Breaker
from tasks.delivery import RetryPolicy, deliver_chunk
from tasks.delivery.chunks import worth_retrying
from tasks.errors import AmbiguousError, CircuitOpenError, DeliveryError, TransientError
from tasks.ledger import DeliveryState, Ledger
from tasks.models import Channel, Language
from tasks.providers.base import Message, Provider, Recipient
from tasks.providers.gatewayapi import GatewayApiProvider
from tasks.providers.sendgrid import SendGridProvider
from tasks.providers.smtp import SmtpProvider
from tests.servers.gatewayapi_server import GatewayApiServer
from tests.servers.sendgrid_server import SendGridServer
from tests.servers.smtp_relays import SilentRelay, SinkRelay
from tests.support.fake_provider import FakeProvider

KEY = b"breaker-test-key-0123456789abcdef"
CAMPAIGN = "eksempel-kommune-2026"
EMAIL = Message(Channel.NEWSLETTER, Language.DA, "Sådan betaler du nu", subject="Nyt")
SMS = Message(Channel.SMS, Language.DA, "Sådan betaler du gebyrer nu")
SENDER = {"from_email": "bibliotek@eksempel-kommune.test", "from_name": "Eksempel Bibliotekerne"}
TIMEOUT = 0.3  # each provider's connect and read timeout in these tests
CHUNKS, CHUNK_SIZE, AT_ONCE = 8, 5, 2
# Generous for a loaded 2-core machine; the request counts below are the exact measure.
TIME_BOUND = 10.0
RETRY = RetryPolicy(attempts=5, base=0.0, jitter=0.0)


def unanswered() -> TransientError:
    return TransientError("not reached (ConnectionRefusedError)", no_answer=True)


# --- the breaker alone ---------------------------------------------------------------------------


NO = unanswered()
LOST = AmbiguousError("no answer after sending (TimeoutError)", no_answer=True)
BUSY = TransientError("server error (503)", status=503)


@pytest.mark.parametrize(
    ("outcomes", "opens"),
    [
        ([NO, NO, NO], True),
        ([NO, LOST, LOST], True),
        ([NO, NO, None, NO, NO], False),  # an answer in between: not three in a row
        ([NO, NO, BUSY, NO, NO], False),  # a refusal is an answer too
        ([NO, NO, NO, None, None], True),  # once open, open for the rest of the run
    ],
)
def test_opens_after_three_unanswered_in_a_row(
    outcomes: list[DeliveryError | None], opens: bool
) -> None:
    breaker = Breaker("sendgrid")
    opened = [breaker.record(outcome) for outcome in outcomes]
    assert breaker.open is opens
    assert opened.count(True) == int(opens)  # one call reports the opening, for one log line
    if opens:
        with pytest.raises(CircuitOpenError, match="sendgrid did not answer 3 times in a row"):
            breaker.check()
    else:
        breaker.check()


def test_prefect_retries_a_transient_chunk_but_never_one_the_breaker_stopped() -> None:
    assert worth_retrying(None, None, Failed(data=TransientError("503")))
    assert not worth_retrying(None, None, Failed(data=CircuitOpenError("stopped")))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", key=KEY) as led:
        yield led


def test_a_batch_is_resent_only_until_the_breaker_opens(ledger: Ledger) -> None:
    recipients = [Recipient(f"k{i}", f"borger{i}@example.dk") for i in range(30)]
    ledger.register(CAMPAIGN, "newsletter", [r.key for r in recipients])
    provider = FakeProvider([unanswered() for _ in range(5)], max_batch=10)
    with pytest.raises(CircuitOpenError, match="did not answer 3 times"):
        deliver_chunk(
            provider, ledger, {Language.DA: EMAIL}, recipients,
            campaign=CAMPAIGN, channel="newsletter", run_id="run-1", retry=RETRY,
        )  # fmt: skip
    assert len(provider.calls) == DEFAULT_THRESHOLD  # not the policy's 5 attempts
    assert ledger.counts(CAMPAIGN, "newsletter")["pending"] == 30


# --- providers that stop answering -------------------------------------------------------------


@dataclass
class Scenario:
    """A provider that does not answer, and how to make it answer again."""

    channel: str
    message: Message
    address: Callable[[int], str]
    make: Callable[[], Provider]  # a fresh provider per chunk, as the flow makes them
    heal: Callable[[], None]
    reached: Callable[[], int] | None  # requests (or connections) that reached it
    delivered: Callable[[], Counter[str]]  # per address, as the stand-in counted them
    sent_before_silence: bool  # its requests went out whole (then unknown), or did not


def email(i: int) -> str:
    return f"borger{i}@example.dk"


def mobile(i: int) -> str:
    return f"+4520{i:06d}"


@contextmanager
def silent_sendgrid() -> Iterator[Scenario]:
    with SendGridServer(keep_bodies=False) as server:
        server.never_answer()
        yield Scenario(
            "newsletter",
            EMAIL,
            email,
            lambda: SendGridProvider(
                server.api_key, host=server.url, timeout=TIMEOUT, connect_timeout=TIMEOUT, **SENDER
            ),
            lambda: server.never_answer(False),
            lambda: server.stats()["requests"],
            lambda: Counter(server.deliveries),
            sent_before_silence=True,
        )


@contextmanager
def silent_gatewayapi() -> Iterator[Scenario]:
    with GatewayApiServer() as server:
        server.never_answer()
        yield Scenario(
            "sms",
            SMS,
            mobile,
            lambda: GatewayApiProvider(
                server.token,
                base_url=server.url,
                sender="EksBibl",
                timeout=TIMEOUT,
                connect_timeout=TIMEOUT,
            ),
            lambda: server.never_answer(False),
            lambda: server.requests,
            lambda: Counter({f"+{m}": n for m, n in server.delivered.items()}),
            sent_before_silence=True,
        )


@contextmanager
def hung_smtp_relay() -> Iterator[Scenario]:
    with SilentRelay() as relay, SinkRelay() as healthy:
        port = [relay.port]

        def make() -> SmtpProvider:
            return SmtpProvider(
                "127.0.0.1", port[0], starttls=False, timeout=TIMEOUT, connect_timeout=TIMEOUT,
                **SENDER,
            )  # fmt: skip

        def heal() -> None:
            port[0] = healthy.port

        yield Scenario(
            "newsletter",
            EMAIL,
            email,
            make,
            heal,
            lambda: relay.connections,
            lambda: healthy.deliveries,
            sent_before_silence=False,  # EHLO is never answered: no message left
        )


@contextmanager
def refused_sendgrid() -> Iterator[Scenario]:
    closed = SendGridServer().start()
    url = [closed.url]
    closed.stop()  # nothing listens on its port any more
    with SendGridServer(keep_bodies=False) as server:

        def heal() -> None:
            url[0] = server.url

        yield Scenario(
            "newsletter",
            EMAIL,
            email,
            lambda: SendGridProvider(
                server.api_key, host=url[0], timeout=TIMEOUT, connect_timeout=TIMEOUT, **SENDER
            ),
            heal,
            None,
            lambda: Counter(server.deliveries),
            sent_before_silence=False,
        )


SCENARIOS = {
    "sendgrid-never-answers": silent_sendgrid,
    "gatewayapi-never-answers": silent_gatewayapi,
    "smtp-relay-hangs-after-greeting": hung_smtp_relay,
    "sendgrid-refuses-connections": refused_sendgrid,
}


def send_channel(
    scenario: Scenario, ledger: Ledger, chunks: list[list[Recipient]], run: str
) -> tuple[Breaker, list[str]]:
    """The flow's way: AT_ONCE chunks at a time, each with its own provider, one breaker."""
    breaker = Breaker("stand-in")

    def chunk(recipients: list[Recipient]) -> str:
        provider = scenario.make()
        try:
            deliver_chunk(
                provider, ledger, {Language.DA: scenario.message}, recipients,
                campaign=CAMPAIGN, channel=scenario.channel, run_id=run, retry=RETRY,
                breaker=breaker,
            )  # fmt: skip
            return "done"
        except DeliveryError as exc:
            return type(exc).__name__
        finally:
            provider.close()

    with ThreadPoolExecutor(AT_ONCE) as pool:
        return breaker, list(pool.map(chunk, chunks))


def settled(read: Callable[[], int]) -> int:
    """A stand-in's count once it has not changed for 0.3 s: under load, its threads may still be
    accepting a connection the client has already given up on."""
    value, deadline = read(), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        previous, value = value, read()
        if previous == value:
            break
    return value


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_provider_that_stops_answering_stops_its_channel_and_the_rest_stays_pending(
    ledger: Ledger, name: str
) -> None:
    with SCENARIOS[name]() as scenario:
        addresses = [scenario.address(i) for i in range(CHUNKS * CHUNK_SIZE)]
        recipients = [Recipient(ledger.recipient_key(a), a) for a in addresses]
        ledger.register(CAMPAIGN, scenario.channel, [r.key for r in recipients])
        chunks = [recipients[i : i + CHUNK_SIZE] for i in range(0, len(recipients), CHUNK_SIZE)]

        started = time.monotonic()
        breaker, results = send_channel(scenario, ledger, chunks, "run-1")
        elapsed = time.monotonic() - started

        assert breaker.open
        assert elapsed < TIME_BOUND
        # At most the threshold, plus one more per other chunk in flight when it opened.
        attempts = settled(scenario.reached) if scenario.reached else DEFAULT_THRESHOLD
        assert DEFAULT_THRESHOLD <= attempts <= DEFAULT_THRESHOLD + AT_ONCE - 1
        assert results.count("CircuitOpenError") >= CHUNKS - attempts
        counts = ledger.counts(CAMPAIGN, scenario.channel)
        # Unknown only for requests that really went out; everything else is pending.
        unknown = attempts * CHUNK_SIZE if scenario.sent_before_silence else 0
        assert counts["unknown"] == unknown
        assert counts["pending"] == len(recipients) - unknown
        assert counts["sending"] == counts["sent"] == 0

        scenario.heal()
        rerun, results = send_channel(scenario, ledger, chunks, "run-2")
        assert not rerun.open and set(results) == {"done"}
        counts = ledger.counts(CAMPAIGN, scenario.channel)
        assert counts["sent"] == len(recipients) - unknown and counts["unknown"] == unknown
        # Each one left pending was sent exactly once; the unknown ones (never delivered by the
        # silent stand-in) were not sent again.
        states = ledger.states(CAMPAIGN, scenario.channel, [r.key for r in recipients])
        sent = Counter(r.address for r in recipients if states[r.key] is DeliveryState.SENT)
        assert scenario.delivered() == sent


def test_default_timeouts_bound_a_hung_smtp_relay_to_about_a_minute_per_chunk() -> None:
    # Each attempt waits out one timeout (the connection or greeting, or one command), and the
    # breaker stops after three attempts in a row that got no answer.
    per_attempt = max(SmtpProvider.connect_timeout, SmtpProvider.read_timeout)
    assert per_attempt * DEFAULT_THRESHOLD <= 60
    for provider in (SendGridProvider, GatewayApiProvider):
        assert provider.connect_timeout <= 10 and provider.read_timeout <= 30
