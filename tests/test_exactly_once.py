"""Exactly-once proofs through the real `fbsflow run`: newsletter (SendGrid) and SMS (GatewayAPI).

Each run is `python -m flows.cli run` in its own process group, in embedded Prefect mode, against
local stand-ins of SendGrid and GatewayAPI that count every delivery (a request counts as
delivered once its body is read and validated, even when its answer is lost). The truth is the
audience import of the same CSV: every consenting borrower with a valid address must get exactly
one message, nobody else any (the example municipality, posters off). Scenarios: a clean run and an identical rerun; 429/5xx/dropped
connections; a SIGKILL mid-send and reruns; two runs of one campaign at once (SQLite and
PostgreSQL ledgers); and no personal data in any output, log or artifact.

Each run starts a temporary Prefect server, which takes most of its minute on a busy machine, so
the scenarios run side by side in threads (at most four runs at once) from the first test on; a
scenario records what it saw, and its test asserts on that record.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.audience import import_audience
from tasks.checklist import checklist_definitions
from tasks.config import load_card, load_municipality
from tasks.ledger import DeliveryState, Ledger
from tasks.models import Channel, MunicipalityConfig, StepKind
from tasks.plan import campaign_id
from tasks.providers.sendgrid import SendGridProvider
from tasks.synthetic import write_borrowers
from tests.conftest import EXAMPLE_CONFIG
from tests.servers.gatewayapi_server import Fault as GatewayFault
from tests.servers.gatewayapi_server import GatewayApiServer
from tests.servers.sendgrid_server import Fault as SendGridFault
from tests.servers.sendgrid_server import SendGridServer
from tests.support.e2e import (
    Fbsflow,
    HoldUntil,
    KillInFlight,
    LedgerProbe,
    PersonalData,
    PrefectHomes,
    Run,
    Scenarios,
    ledger_cli,
    prefect_db_texts,
)
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

ROWS = 20_000
SEED = 7
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHANNELS = ("newsletter", "sms")
# Short enough that a rerun soon after a SIGKILL may judge the dead run's claims interrupted.
CRASH_LEASE_SECONDS = 3.0
RUN_TIMEOUT = 600


# --- The truth and the harness --------------------------------------------------------------------


@dataclass
class Truth:
    """Who must get what, from the audience import of the CSV every run reads."""

    csv: Path
    config_path: Path
    config: MunicipalityConfig
    newsletter: set[str]  # e-mail addresses of consenting borrowers
    sms: set[int]  # MSISDNs (45xxxxxxxx) of consenting borrowers
    branches: set[str]  # poster e-mails go to branch contacts through the same provider, if on
    manual_steps: list[str]  # confirmed up front, so a fully delivered run exits 0
    personal: PersonalData

    @property
    def emails(self) -> set[str]:
        return self.newsletter | self.branches

    @property
    def slug(self) -> str:
        return self.config.municipality.slug

    @property
    def campaign(self) -> str:
        return campaign_id(self.config)


def write_config(folder: Path, slug: str | None = None) -> Path:
    """The example municipality without posters, info-screen slides and social media images:
    drawing them costs each run seconds of CPU, and they are not what these tests prove.
    `slug` gives the campaign an id of its own."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for drawn in ("poster", "info_screen", "social_post"):
        data["channels"][drawn].update(enabled=False, reason="Ikke med i denne test")
    if slug is not None:
        data["municipality"]["slug"] = slug
    path = folder / f"{data['municipality']['slug']}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Truth:
    folder = tmp_path_factory.mktemp("audience")
    csv = write_borrowers(folder / "laanere.csv", ROWS, seed=SEED)
    config_path = write_config(folder)
    config = load_municipality(config_path)
    audience = import_audience(csv, columns=config.audience.columns)
    card = load_card(config.card)
    posters = Channel.POSTER in config.channels.enabled()
    truth = Truth(
        csv=csv,
        config_path=config_path,
        config=config,
        newsletter={b.email for b in audience.newsletter_recipients() if b.email},
        sms={int(b.mobile.lstrip("+")) for b in audience.sms_recipients() if b.mobile},
        branches={
            str(b.contact_email) for b in config.library.branches if b.contact_email and posters
        },
        manual_steps=[
            s.id for s in checklist_definitions(card, config) if s.kind is StepKind.MANUAL
        ],
        personal=PersonalData.from_csv(csv),
    )
    # Enough recipients for several chunks of 2,000 and several requests per channel.
    assert len(truth.newsletter) > 10_000 and len(truth.sms) > 5_000
    return truth


@pytest.fixture(scope="module")
def fbsflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fbsflow]:
    runner = Fbsflow(PrefectHomes(tmp_path_factory.mktemp("prefect-homes")))
    yield runner
    runner.kill_all()
    for run in runner.runs:
        print(f"timing: {run.name:<22} {run.seconds:6.1f} s  exit {run.popen.returncode}")


@pytest.fixture(scope="module")
def scenarios(
    request: pytest.FixtureRequest,
    truth: Truth,
    fbsflow: Fbsflow,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenarios]:
    """Start the scenarios the selected tests need, longest first, all at once."""
    wanted = {
        name
        for item in request.session.items
        if item.module is request.module
        for name in SCENARIOS
        if name in getattr(item, "fixturenames", ())
    }
    runner = Scenarios()
    for name, scenario in SCENARIOS.items():
        if name in wanted:
            folder = tmp_path_factory.mktemp(name)
            runner.start(name, lambda s=scenario, f=folder: s(truth, fbsflow, f))
    yield runner
    runner.join_all(timeout=60)


def provider_env(
    folder: Path, sendgrid: SendGridServer, gatewayapi: GatewayApiServer, **extra: str
) -> dict[str, str]:
    return {
        "SENDGRID_API_KEY": sendgrid.api_key,
        "SENDGRID_HOST": sendgrid.url,
        "GATEWAYAPI_TOKEN": gatewayapi.token,
        "GATEWAYAPI_URL": gatewayapi.url,
        "FBSFLOW_DATA_DIR": str(folder / "data"),
        "FBSFLOW_BACKOFF_SCALE": "0.01",
        # Small chunks: this audience then spans several chunk task runs per channel (the flow
        # alone would pick one or two), so a kill lands with chunks still pending.
        "FBSFLOW_CHUNK_SIZE": "2000",
        **extra,
    }


def start(
    fbsflow: Fbsflow,
    name: str,
    folder: Path,
    truth: Truth,
    env: dict[str, str],
    config: Path | None = None,
) -> Run:
    config = config or truth.config_path
    return fbsflow.start(name, folder, config, truth.csv, env, confirm=truth.manual_steps)


# --- Reading the ledger and the stand-ins ----------------------------------------------------------


def states(ledger: Ledger, campaign: str, channel: str, addresses: set[Any]) -> dict[Any, str]:
    """Ledger state per address (the ledger itself stores only keyed hashes)."""
    keys = {ledger.recipient_key(f"+{a}" if isinstance(a, int) else a): a for a in addresses}
    return {keys[k]: s.value for k, s in ledger.states(campaign, channel, keys).items()}


def sqlite_states(folder: Path, truth: Truth, channel: str) -> dict[Any, str]:
    """States in a scenario's SQLite ledger (its key file sits beside it)."""
    expected = truth.newsletter if channel == "newsletter" else truth.sms
    data = folder / "data"
    key = (data / "ledger.key").read_text().strip().encode()
    with Ledger(f"sqlite:///{data / 'ledger.db'}", key=key) as ledger:
        return states(ledger, truth.campaign, channel, expected)


def in_state(found: dict[Any, str], state: DeliveryState) -> set[Any]:
    return {a for a, s in found.items() if s == state.value}


def counts_of(run: Run, slug: str, channel: str) -> dict[str, int]:
    return run.completion(slug)["channels"][channel]["counts"]


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def settled(sendgrid: SendGridServer, gatewayapi: GatewayApiServer) -> None:
    """Wait until every request that arrived has been answered or delivered (held ones included)."""
    wait_for(lambda: len(sendgrid.requests) == sendgrid.stats()["requests"])
    # Without faults every GatewayAPI request that is read becomes one accepted message.
    wait_for(lambda: len(gatewayapi.accepted) == gatewayapi.requests)


def assert_exactly_once(delivered: Counter[Any], expected: set[Any], what: str) -> None:
    """Every expected recipient delivered once: no duplicate, nobody missed, nobody else."""
    duplicates = {k: n for k, n in delivered.items() if n > 1}
    missed = expected - set(delivered)
    others = set(delivered) - expected
    assert not duplicates, f"{what}: {len(duplicates)} recipients got more than one message"
    assert not missed, f"{what}: {len(missed)} of {len(expected)} recipients got nothing"
    assert not others, f"{what}: {len(others)} addresses that are not recipients got a message"


def ledger_line(output: str, channel: str) -> dict[str, int]:
    """`newsletter  pending 0  sending 0  sent 12760 ...` -> {"pending": 0, ...}."""
    for line in output.splitlines():
        words = line.split()
        if words and words[0] == channel:
            return {k: int(v) for k, v in zip(words[1::2], words[2::2], strict=True)}
    raise AssertionError(f"no {channel} line in:\n{output}")


# --- Scenario 1: a clean run and an identical rerun --------------------------------------------------


@dataclass
class Happy:
    first: Run
    second: Run
    emails: Counter[str]
    sms: Counter[int]
    requests_after_first: tuple[int, int]
    requests_after_second: tuple[int, int]
    ledger_output: str
    states: dict[str, dict[Any, str]]
    max_in_flight: int


def run_happy(truth: Truth, fbsflow: Fbsflow, folder: Path) -> Happy:
    with SendGridServer(keep_bodies=False) as sg, GatewayApiServer() as gw:
        # Chunks of 1,000 (one request each): more chunks than SendGrid's bound on those at once.
        env = provider_env(folder, sg, gw, FBSFLOW_CHUNK_SIZE="1000")
        # The first answers wait until the bound's worth of requests is in flight (delivered
        # meanwhile): every chunk that may run at once then does.
        bound = SendGridProvider.chunks_at_once
        sg.fail_next(*[SendGridFault.hold(bound)] * bound)
        with fbsflow.slots.take():
            first = fbsflow.finish(start(fbsflow, "happy-1", folder, truth, env), RUN_TIMEOUT)
        after_first = (sg.stats()["requests"], gw.requests)
        emails, sms = Counter(sg.deliveries), gw.delivered
        with fbsflow.slots.take():
            second = fbsflow.finish(start(fbsflow, "happy-2", folder, truth, env), RUN_TIMEOUT)
        after_second = (sg.stats()["requests"], gw.requests)
        output = ledger_cli(truth.config_path, env)
        in_flight = sg.stats()["max_in_flight"]
    found = {c: sqlite_states(folder, truth, c) for c in CHANNELS}
    return Happy(first, second, emails, sms, after_first, after_second, output, found, in_flight)


@pytest.fixture(scope="module")
def happy(scenarios: Scenarios) -> Happy:
    return scenarios.result("happy")


def test_every_consenting_borrower_gets_exactly_one_message(happy: Happy, truth: Truth) -> None:
    assert_exactly_once(happy.emails, truth.emails, "newsletter")
    assert_exactly_once(happy.sms, truth.sms, "sms")
    record = happy.first.completion(truth.slug)
    assert record["status"] == "complete", record["reasons"]
    for channel, expected in (("newsletter", truth.newsletter), ("sms", truth.sms)):
        counts = record["channels"][channel]["counts"]
        assert counts["sent"] == len(expected)
        assert counts["failed"] == counts["unknown"] == counts["pending"] == counts["sending"] == 0
        assert len(happy.states[channel]) == len(expected)
        assert set(happy.states[channel].values()) == {"sent"}


def test_chunks_of_a_channel_are_sent_as_many_at_a_time_as_sendgrid_names_at_most(
    happy: Happy, truth: Truth
) -> None:
    # More 1,000-recipient chunks than the bound, one request each, the first answers slow: the
    # default bound of chunk task runs at once is that many requests at once, and all run.
    assert len(truth.emails) > 1000 * SendGridProvider.chunks_at_once
    assert happy.max_in_flight == SendGridProvider.chunks_at_once


def test_an_identical_rerun_sends_nothing_and_fbsflow_ledger_prints_the_counts(
    happy: Happy, truth: Truth
) -> None:
    assert happy.requests_after_second == happy.requests_after_first, "the rerun sent requests"
    assert happy.second.completion(truth.slug)["status"] == "complete"
    for channel, expected in (("newsletter", truth.newsletter), ("sms", truth.sms)):
        first = counts_of(happy.first, truth.slug, channel)
        assert counts_of(happy.second, truth.slug, channel) == first
        printed = ledger_line(happy.ledger_output, channel)
        assert printed["sent"] == len(expected)
        assert printed["failed"] == printed["unknown"] == printed["pending"] == 0


# --- Scenario 2: provider faults -----------------------------------------------------------------------


@dataclass
class Faults:
    first: Run
    second: Run
    sendgrid_answers: Counter[int | None]
    gatewayapi_requests: int
    gatewayapi_accepted: int
    dropped: list[set[str]]  # recipients of each request whose connection was dropped
    emails: Counter[str]
    sms: Counter[int]
    newsletter: dict[str, str]
    sms_states: dict[int, str]
    requests_before_rerun: tuple[int, int]
    requests_after_rerun: tuple[int, int]
    emails_after_rerun: Counter[str]
    newsletter_after_rerun: dict[str, str]


def run_faults(truth: Truth, fbsflow: Fbsflow, folder: Path) -> Faults:
    with SendGridServer() as sg, GatewayApiServer() as gw:
        sg.fail_next(
            SendGridFault.rate_limit(retry_after=1),
            SendGridFault.server_error(),
            SendGridFault.drop(),
            SendGridFault.server_error(503),
        )
        gw.inject(GatewayFault.rate_limited(retry_after=1), GatewayFault.server_error())
        env = provider_env(folder, sg, gw)
        with fbsflow.slots.take():
            first = start(fbsflow, "faults-1", folder, truth, env)
            fbsflow.finish(first, RUN_TIMEOUT, codes=(0, 1))
        dropped = [
            {p["to"][0]["email"] for p in (r.body or {}).get("personalizations", ())}
            for r in sg.requests
            if r.fault == "drop"
        ]
        snapshot = {
            "sendgrid_answers": Counter(r.status for r in sg.requests),
            "gatewayapi_requests": gw.requests,
            "gatewayapi_accepted": len(gw.accepted),
            "emails": Counter(sg.deliveries),
            "sms": gw.delivered,
            "newsletter": sqlite_states(folder, truth, "newsletter"),
            "sms_states": sqlite_states(folder, truth, "sms"),
        }
        before = (sg.stats()["requests"], gw.requests)
        with fbsflow.slots.take():
            second = start(fbsflow, "faults-2", folder, truth, env)
            fbsflow.finish(second, RUN_TIMEOUT, codes=(0, 1))
        after = (sg.stats()["requests"], gw.requests)
        emails_after = Counter(sg.deliveries)
    return Faults(
        first,
        second,
        dropped=dropped,
        requests_before_rerun=before,
        requests_after_rerun=after,
        emails_after_rerun=emails_after,
        newsletter_after_rerun=sqlite_states(folder, truth, "newsletter"),
        **snapshot,
    )


@pytest.fixture(scope="module")
def faults(scenarios: Scenarios) -> Faults:
    return scenarios.result("faults")


def test_faults_duplicate_nobody_and_a_dropped_batch_is_unknown(
    faults: Faults, truth: Truth
) -> None:
    # Every fault was served: SendGrid's 429, 500 and 503 and GatewayAPI's 429 and 500.
    assert [faults.sendgrid_answers[s] for s in (429, 500, 503)] == [1, 1, 1]
    assert faults.gatewayapi_requests == faults.gatewayapi_accepted + 2
    assert len(faults.dropped) == 1 and faults.dropped[0]
    dropped = faults.dropped[0]
    # The stand-ins delivered to everyone once, the dropped batch included.
    assert_exactly_once(faults.emails, truth.emails, "newsletter")
    assert_exactly_once(faults.sms, truth.sms, "sms")
    # The ledger knows the dropped batch only as "may have been delivered".
    assert in_state(faults.newsletter, DeliveryState.UNKNOWN) == dropped
    assert in_state(faults.newsletter, DeliveryState.SENT) == truth.newsletter - dropped
    assert in_state(faults.sms_states, DeliveryState.SENT) == truth.sms

    record = faults.first.completion(truth.slug)["channels"]
    counts = record["newsletter"]["counts"]
    assert counts["sent"] + counts["unknown"] + counts["failed"] == len(truth.newsletter)
    assert counts["unknown"] == len(dropped)
    assert counts["failed"] == counts["pending"] == counts["sending"] == 0
    detail = record["newsletter"]["detail"]
    assert f"{len(dropped)} may or may not have been delivered" in detail
    assert "--accept-unknown newsletter" in detail and "--at-least-once" in detail
    # A person must decide about them: the channel is not done, and the card stays open.
    assert record["newsletter"]["status"] == "unconfirmed"
    assert faults.first.completion(truth.slug)["status"] == "incomplete"
    assert record["sms"]["counts"]["sent"] == len(truth.sms)
    assert record["sms"]["status"] == "done"


def test_a_rerun_after_faults_does_not_resend_the_unknown_batch(
    faults: Faults, truth: Truth
) -> None:
    assert faults.requests_after_rerun == faults.requests_before_rerun, "the rerun sent requests"
    assert faults.emails_after_rerun == faults.emails
    assert faults.newsletter_after_rerun == faults.newsletter
    for channel in CHANNELS:
        assert counts_of(faults.second, truth.slug, channel) == counts_of(
            faults.first, truth.slug, channel
        )


# --- Scenario 3: SIGKILL mid-send, then reruns -------------------------------------------------------------


@dataclass
class Crash:
    runs: list[Run]
    kills: list[int | None]  # requests held at each kill (None: no settled moment was found)
    # After run 1 (killed in the newsletter):
    emails_1: Counter[str]
    newsletter_1: dict[str, str]
    sms_requests_1: int
    # After run 2 (finished the newsletter, killed in the SMS):
    emails_2: Counter[str]
    sms_2: Counter[int]
    newsletter_2: dict[str, str]
    sms_states_2: dict[int, str]
    # After run 3:
    sendgrid_requests: tuple[int, int]  # before and after run 3
    emails_3: Counter[str]
    sms_3: Counter[int]
    sms_states_3: dict[int, str]


def run_crash(truth: Truth, fbsflow: Fbsflow, folder: Path) -> Crash:
    """Run 1 dies at the 6th newsletter request (of ~14), run 2 at the 2nd SMS request (of ~5:
    chunks of 2,000, split where the language changes), run 3 finishes. Every request from the nth on is
    held until the kill, so each sending thread stops at its current batch and later ones stay
    pending for the rerun."""
    probe = LedgerProbe(f"sqlite:///{folder / 'data' / 'ledger.db'}")
    kill_newsletter = KillInFlight(6, probe, truth.campaign, "newsletter")
    kill_sms = KillInFlight(2, probe, truth.campaign, "sms")
    try:
        with (
            SendGridServer(keep_bodies=False, on_request=kill_newsletter) as sg,
            GatewayApiServer(on_request=kill_sms) as gw,
        ):
            env = provider_env(folder, sg, gw, FBSFLOW_LEASE_SECONDS=str(CRASH_LEASE_SECONDS))
            with fbsflow.slots.take():
                run1 = start(fbsflow, "crash-1", folder, truth, env)
                kill_newsletter.run = run1
                assert run1.wait(RUN_TIMEOUT) == -signal.SIGKILL, run1.tail()
            killed_at = time.monotonic()
            settled(sg, gw)
            after_1 = (
                Counter(sg.deliveries),
                sqlite_states(folder, truth, "newsletter"),
                gw.requests,
            )

            # Only after the lease has run out may a rerun judge run 1's claims interrupted.
            time.sleep(max(0.0, CRASH_LEASE_SECONDS + 0.5 - (time.monotonic() - killed_at)))
            with fbsflow.slots.take():
                run2 = start(fbsflow, "crash-2", folder, truth, env)
                kill_sms.run = run2
                assert run2.wait(RUN_TIMEOUT) == -signal.SIGKILL, run2.tail()
            killed_at = time.monotonic()
            settled(sg, gw)
            after_2 = (
                Counter(sg.deliveries),
                gw.delivered,
                sqlite_states(folder, truth, "newsletter"),
                sqlite_states(folder, truth, "sms"),
            )

            time.sleep(max(0.0, CRASH_LEASE_SECONDS + 0.5 - (time.monotonic() - killed_at)))
            before_3 = sg.stats()["requests"]
            with fbsflow.slots.take():
                run3 = start(fbsflow, "crash-3", folder, truth, env)
                fbsflow.finish(run3, RUN_TIMEOUT, codes=(0, 1))
            after_3 = (sg.stats()["requests"], Counter(sg.deliveries), gw.delivered)
    finally:
        probe.close()
    return Crash(
        [run1, run2, run3],
        [kill_newsletter.killed_at_requests, kill_sms.killed_at_requests],
        *after_1,
        *after_2,
        (before_3, after_3[0]),
        after_3[1],
        after_3[2],
        sqlite_states(folder, truth, "sms"),
    )


@pytest.fixture(scope="module")
def crash(scenarios: Scenarios) -> Crash:
    return scenarios.result("crash")


def test_the_batches_in_flight_at_a_sigkill_were_delivered(crash: Crash, truth: Truth) -> None:
    assert all(crash.kills), f"no moment with every claimed batch on the wire: {crash.kills}"
    in_flight = in_state(crash.newsletter_1, DeliveryState.SENDING)
    assert in_flight, "nothing was in flight at the kill"
    assert in_flight <= set(crash.emails_1), "a batch in flight at the kill was not delivered"
    assert in_state(crash.newsletter_1, DeliveryState.SENT) <= set(crash.emails_1)
    assert in_state(crash.newsletter_1, DeliveryState.PENDING), "run 1 finished the newsletter"
    assert crash.sms_requests_1 == 0  # the SMS comes after the newsletter
    sms_in_flight = in_state(crash.sms_states_2, DeliveryState.SENDING)
    assert sms_in_flight and sms_in_flight <= set(crash.sms_2)
    assert in_state(crash.sms_states_2, DeliveryState.PENDING), "run 2 finished the SMS"


def test_reruns_after_a_sigkill_leave_the_in_flight_batches_unknown_and_send_the_rest(
    crash: Crash, truth: Truth
) -> None:
    in_flight = in_state(crash.newsletter_1, DeliveryState.SENDING)
    sms_in_flight = in_state(crash.sms_states_2, DeliveryState.SENDING)
    # Run 2 finished the newsletter without touching what run 1 had in flight.
    assert_exactly_once(crash.emails_2, truth.emails, "newsletter after run 2")
    assert in_state(crash.newsletter_2, DeliveryState.UNKNOWN) == in_flight
    assert in_state(crash.newsletter_2, DeliveryState.SENT) == truth.newsletter - in_flight
    # Run 3 sent only the SMS nobody had yet.
    assert crash.sendgrid_requests[0] == crash.sendgrid_requests[1]
    assert_exactly_once(crash.emails_3, truth.emails, "newsletter after run 3")
    assert_exactly_once(crash.sms_3, truth.sms, "sms after run 3")
    assert in_state(crash.sms_states_3, DeliveryState.UNKNOWN) == sms_in_flight
    assert in_state(crash.sms_states_3, DeliveryState.SENT) == truth.sms - sms_in_flight
    record = crash.runs[2].completion(truth.slug)["channels"]
    for channel, unknown, expected in (
        ("newsletter", in_flight, truth.newsletter),
        ("sms", sms_in_flight, truth.sms),
    ):
        counts = record[channel]["counts"]
        assert counts["unknown"] == len(unknown)
        assert counts["sent"] + counts["unknown"] == len(expected)
        assert counts["failed"] == counts["pending"] == counts["sending"] == 0


# --- Scenario 4: two runs of one campaign at once ----------------------------------------------------------


@dataclass
class Together:
    runs: list[Run]
    gate_opened: bool
    held_through: int
    emails: Counter[str]
    sms: Counter[int]
    sent_by_run: dict[str, int]
    states: dict[str, dict[Any, str]]


def _together(
    truth: Truth,
    fbsflow: Fbsflow,
    folder: Path,
    *,
    config: Path,
    campaign: str,
    probe: LedgerProbe,
    read: Callable[[str], dict[Any, str]],
    extra_env: dict[str, str],
) -> Together:
    """Start two runs at once; hold the first's requests until the second has claimed a batch."""
    gate = HoldUntil(lambda: _claimed_by_two(probe, campaign))
    with SendGridServer(keep_bodies=False, on_request=gate) as sg, GatewayApiServer() as gw:
        env = provider_env(folder, sg, gw, **extra_env)
        with fbsflow.slots.take(2):
            # Both write `<output>/<slug>`: each gets its own output root.
            runs = [start(fbsflow, f"{folder.name}-{x}", folder, truth, env, config) for x in "ab"]
            for run in runs:
                # The run that ends first may still see the other's batches `sending` (exit 1).
                fbsflow.finish(run, RUN_TIMEOUT, codes=(0, 1))
        emails, sms = Counter(sg.deliveries), gw.delivered
    return Together(
        runs,
        gate.opened.is_set(),
        gate.held_through,
        emails,
        sms,
        probe.sent_by_run(campaign, "newsletter"),
        {c: read(c) for c in CHANNELS},
    )


def _claimed_by_two(probe: LedgerProbe, campaign: str) -> bool:
    try:
        return probe.claiming_runs(campaign, "newsletter") >= 2
    except Exception:  # the table does not exist until a run creates it
        return False


def run_together_sqlite(truth: Truth, fbsflow: Fbsflow, folder: Path) -> Together:
    probe = LedgerProbe(f"sqlite:///{folder / 'data' / 'ledger.db'}")
    try:
        return _together(
            truth,
            fbsflow,
            folder,
            config=truth.config_path,
            campaign=truth.campaign,
            probe=probe,
            read=lambda channel: sqlite_states(folder, truth, channel),
            extra_env={},
        )
    finally:
        probe.close()


def run_together_postgres(truth: Truth, fbsflow: Fbsflow, folder: Path) -> Together | None:
    probe = LedgerProbe(POSTGRES_URL)
    try:
        probe.ping()
    except Exception:  # no server, or no such database
        return None
    finally:
        probe.close()
    # A schema of its own: a ledger records its key, and this one's key is made for this run.
    with fresh_schema(POSTGRES_URL, "e2e") as url:
        config_path = write_config(folder, slug=f"e2e-{secrets.token_hex(4)}")
        campaign = campaign_id(load_municipality(config_path))
        key = secrets.token_hex(32)
        probe = LedgerProbe(url)
        expected = {"newsletter": truth.newsletter, "sms": truth.sms}
        try:
            with Ledger(url, key=key.encode()) as ledger:
                return _together(
                    truth,
                    fbsflow,
                    folder,
                    config=config_path,
                    campaign=campaign,
                    probe=probe,
                    read=lambda channel: states(ledger, campaign, channel, expected[channel]),
                    extra_env={"FBSFLOW_DATABASE_URL": url, "FBSFLOW_LEDGER_KEY": key},
                )
        finally:
            probe.close()


@pytest.fixture(scope="module")
def together_sqlite(scenarios: Scenarios) -> Together:
    return scenarios.result("together_sqlite")


@pytest.fixture(scope="module")
def together_postgres(scenarios: Scenarios) -> Together:
    result = scenarios.result("together_postgres")
    if result is None:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    return result


def assert_together(together: Together, truth: Truth) -> None:
    assert together.gate_opened, "the second run never claimed a batch while the first was sending"
    # Both runs sent part of the newsletter: their claims really interleaved.
    assert len(together.sent_by_run) == 2 and all(together.sent_by_run.values()), (
        together.sent_by_run
    )
    assert_exactly_once(together.emails, truth.emails, "newsletter")
    assert_exactly_once(together.sms, truth.sms, "sms")
    for channel in CHANNELS:
        assert set(together.states[channel].values()) == {"sent"}


def test_two_runs_at_once_on_a_sqlite_ledger_send_each_message_once(
    together_sqlite: Together, truth: Truth
) -> None:
    assert_together(together_sqlite, truth)


def test_two_runs_at_once_on_a_postgres_ledger_send_each_message_once(
    together_postgres: Together, truth: Truth
) -> None:
    assert_together(together_postgres, truth)


# --- 5. Personal data ------------------------------------------------------------------------------------


def test_no_personal_data_in_output_logs_or_artifacts(
    happy: Happy, scenarios: Scenarios, fbsflow: Fbsflow, truth: Truth
) -> None:
    """Scans every run of this module (at least the two happy ones): their stdout and stderr,
    every file they wrote (outbox request files would be exempt, but with real providers set
    the newsletter and SMS write none), and every table of their Prefect databases."""
    scenarios.join_all()
    runs = [r for r in fbsflow.runs if r.popen.poll() is not None]
    assert happy.first in runs and happy.second in runs
    findings: dict[str, dict[str, int]] = {}
    scanned = 0

    def scan(where: str, content: str) -> None:
        nonlocal scanned
        scanned += 1
        if found := truth.personal.find(content):
            findings[where] = found

    scan("fbsflow ledger output", happy.ledger_output)
    for run in runs:
        scan(f"{run.name}: stdout", run.stdout)
        scan(f"{run.name}: stderr", run.stderr)
        files = [f for f in run.output.rglob("*") if f.is_file()] if run.output.exists() else []
        outbox = [
            f for f in files if f.parent.name == "requests" and f.parent.parent.name in CHANNELS
        ]
        assert not outbox, f"{run.name}: outbox request files although providers are set"
        for file in files:
            if file.suffix in (".pdf", ".png"):
                continue  # binary: posters and QR codes are rendered from the config only
            scan(f"{run.name}: {file.relative_to(run.output)}", file.read_text(errors="replace"))
        for where, content in prefect_db_texts(run.prefect_home):
            scan(f"{run.name}: {where}", content)
    assert not findings, f"personal data found (counts per kind): {findings}"
    names = {f.name for f in happy.first.output.rglob("*")}
    assert {"completion.json", "plan.md", "import-report.csv"} <= names
    assert scanned > 10
    # The scanner finds what it looks for, in the forms the product writes them.
    email, msisdn = sorted(truth.newsletter)[0], sorted(truth.sms)[0]
    assert set(truth.personal.find(f"to {email} and +{msisdn}, {str(msisdn)[2:]}")) == {
        "email",
        "mobile",
    }


SCENARIOS: dict[str, Callable[[Truth, Fbsflow, Path], Any]] = {
    "crash": run_crash,  # the longest: three runs one after another
    "faults": run_faults,
    "happy": run_happy,
    "together_sqlite": run_together_sqlite,
    "together_postgres": run_together_postgres,
}
