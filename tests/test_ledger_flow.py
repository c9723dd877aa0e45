"""The ledger through the flow and the CLI: its key bound to its database, its place beside the
config, the outbox kept out of it, what outbox runs left repaired, and a dead run's claims taken
over at once.

Flows run on the Prefect test harness against the local provider stand-ins (tests/servers), which
count what each recipient received; PostgreSQL ledgers get a schema of their own.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from flows.cli import main as fbsflow
from flows.communicate_externally import communicate_externally
from tasks.audience import import_audience
from tasks.config import load_municipality
from tasks.delivery.keying import borrower_recipients
from tasks.errors import ConfigError
from tasks.ledger import DATABASE_URL_ENV, LEDGER_KEY_ENV, Ledger
from tasks.ledger.runs import HOST
from tasks.ledger.secret_key import key_id
from tasks.models import Channel
from tasks.plan import campaign_id
from tasks.steps import data_dir
from tests.servers.gatewayapi_server import GatewayApiServer
from tests.servers.sendgrid_server import SendGridServer
from tests.support.postgres import fresh_schema, postgres_url, reachable

from .conftest import EXAMPLE_AUDIENCE, EXAMPLE_CONFIG, ROOT

NEWSLETTER, SMS = 645, 348  # consenting borrowers with a valid address in the example export
SHARED_KEY = "a-key-several-machines-share-0123456789"


@pytest.fixture
def municipality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example municipality's config in a folder of its own (posters off: their PDFs cost
    seconds a run), and no provider, data folder, ledger key or database in the environment."""
    for name in (
        "SENDGRID_API_KEY", "GATEWAYAPI_TOKEN", "FBSFLOW_SMTP_HOST", "PREFECT_API_URL",
        "FBSFLOW_DATA_DIR", DATABASE_URL_ENV, LEDGER_KEY_ENV,
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["channels"]["poster"].update(enabled=False, reason="Ingen plakater i denne test")
    data["audience"]["file"] = str(EXAMPLE_AUDIENCE)
    folder = tmp_path / "config"
    folder.mkdir()
    path = folder / "kommune.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """FBSFLOW_DATABASE_URL: a PostgreSQL schema of this test's own."""
    url = postgres_url()
    if not reachable(url):
        pytest.skip("PostgreSQL not reachable")
    with fresh_schema(url, "flow") as fresh:
        monkeypatch.setenv(DATABASE_URL_ENV, fresh)
        yield fresh


@contextmanager
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SendGridServer, GatewayApiServer]]:
    with SendGridServer(keep_bodies=False) as sendgrid, GatewayApiServer() as gatewayapi:
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
        monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
        monkeypatch.setenv("GATEWAYAPI_TOKEN", gatewayapi.token)
        monkeypatch.setenv("GATEWAYAPI_URL", gatewayapi.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield sendgrid, gatewayapi


def run(config: Path, output: Path, **kwargs: object) -> dict:
    return communicate_externally(
        config_path=str(config), audience=str(EXAMPLE_AUDIENCE), output_root=str(output),
        approve=True, **kwargs,
    )  # fmt: skip


def ledger_output(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert fbsflow(["ledger", *args]) == 0
    return capsys.readouterr().out


def counts_line(output: str, channel: str) -> dict[str, int]:
    [line] = [x for x in output.splitlines() if x.split()[:1] == [channel]]
    words = line.split()[1:]
    return dict(zip(words[::2], map(int, words[1::2]), strict=True))


def sms_through_gatewayapi_once(
    config: Path, output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the SMS channel through the GatewayAPI stand-in: each recipient gets exactly one
    SMS, and the channel is done with every recipient sent."""
    with stand_ins(monkeypatch) as (_sendgrid, gatewayapi):
        sms = run(config, output, channels=[Channel.SMS])["channels"]["sms"]
    assert len(gatewayapi.delivered) == SMS and set(gatewayapi.delivered.values()) == {1}
    assert sms["provider"] == "gatewayapi" and sms["status"] == "done"
    assert sms["counts"] == {"pending": 0, "sending": 0, "sent": SMS, "failed": 0, "unknown": 0}


# --- where the ledger lives, and its key ---------------------------------------------------------


def test_the_data_dir_is_beside_the_config_whatever_the_working_directory(
    municipality: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = municipality.parent.resolve() / ".fbsflow"
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        assert data_dir(municipality) == beside
    monkeypatch.chdir(tmp_path)
    assert data_dir("config/kommune.yaml") == beside  # a relative config path: made absolute
    monkeypatch.setenv("FBSFLOW_DATA_DIR", "state")
    assert data_dir(municipality) == tmp_path.resolve() / "state"


def test_a_ledger_an_earlier_fbsflow_left_in_the_working_directory_is_not_replaced_unseen(
    municipality: Path, tmp_path: Path
) -> None:
    earlier = tmp_path / ".fbsflow"
    earlier.mkdir()
    (earlier / "ledger.key").write_text(secrets.token_hex(32))
    with pytest.raises(ConfigError) as refused:
        data_dir(municipality)
    beside = municipality.parent.resolve() / ".fbsflow"
    assert f"Fix: move them there (mv {earlier} {beside})" in str(refused.value)
    assert f"FBSFLOW_DATA_DIR={earlier}" in str(refused.value)
    earlier.rename(beside)
    assert data_dir(municipality) == beside


def test_make_clean_never_deletes_a_ledger_or_its_key() -> None:
    done = subprocess.run(
        ["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "rm -rf" in done.stdout and ".fbsflow" not in done.stdout


def test_runs_from_two_working_directories_against_one_database_send_each_recipient_once(
    prefect_harness: None,
    municipality: Path,
    postgres: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same campaign from two folders, one FBSFLOW_DATABASE_URL, no FBSFLOW_LEDGER_KEY."""
    records = []
    with stand_ins(monkeypatch) as (sendgrid, gatewayapi):
        for folder in ("one", "two"):
            (tmp_path / folder).mkdir()
            monkeypatch.chdir(tmp_path / folder)
            records.append(run(municipality, tmp_path / "outbox"))
            if folder == "one":
                after_first = (sendgrid.stats()["requests"], gatewayapi.requests)
        after_second = (sendgrid.stats()["requests"], gatewayapi.requests)
    assert after_second == after_first, "the run from the second folder sent again"
    assert sendgrid.stats()["unique_addresses"] == NEWSLETTER
    assert sendgrid.stats()["duplicate_deliveries"] == 0
    assert len(gatewayapi.delivered) == SMS and set(gatewayapi.delivered.values()) == {1}
    for record in records:
        assert record["channels"]["newsletter"]["counts"]["sent"] == NEWSLETTER
        assert record["channels"]["sms"]["counts"]["sent"] == SMS
    # One key, beside the config; none in either working directory.
    assert (municipality.parent / ".fbsflow" / "ledger.key").is_file()
    assert not (tmp_path / "one" / ".fbsflow").exists()
    assert not (tmp_path / "two" / ".fbsflow").exists()


def test_a_run_with_another_key_stops_before_sending_and_says_which_key_the_ledger_has(
    prefect_harness: None,
    municipality: Path,
    postgres: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with stand_ins(monkeypatch) as (sendgrid, gatewayapi):
        run(municipality, tmp_path / "outbox", channels=[Channel.SMS])
        before = (sendgrid.stats()["requests"], gatewayapi.requests)
        key_file = municipality.parent / ".fbsflow" / "ledger.key"
        recorded = key_id(key_file.read_text().strip().encode())
        other = "another-machines-key-0123456789abcdef"
        monkeypatch.setenv(LEDGER_KEY_ENV, other)
        with pytest.raises(ConfigError) as refused:
            run(municipality, tmp_path / "outbox")
        assert (sendgrid.stats()["requests"], gatewayapi.requests) == before
    message = str(refused.value)
    where = f"(from {key_file.resolve()} on host {socket.gethostname()})"
    assert f"made with key {recorded} {where}" in message
    assert f"this run's key is {key_id(other.encode())} (from {LEDGER_KEY_ENV})" in message
    assert f"Fix: set {LEDGER_KEY_ENV} to the key used before" in message
    assert other not in message and key_file.read_text().strip() not in message
    # The CLI: the same message and exit 2.
    assert fbsflow(["ledger", str(municipality)]) == 2
    assert f"made with key {recorded}" in capsys.readouterr().err


# --- the outbox is not a provider of record --------------------------------------------------------


def test_an_outbox_run_leaves_the_real_ledger_alone_and_the_real_provider_then_sends_each_once(
    prefect_harness: None,
    municipality: Path,
    postgres: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A shared database with its key in the environment, as the README advises, and no SMS
    # token yet: the SMS goes to the outbox.
    monkeypatch.setenv(LEDGER_KEY_ENV, SHARED_KEY)
    outbox = run(municipality, tmp_path / "outbox", channels=[Channel.SMS])["channels"]["sms"]
    assert outbox["provider"] == "outbox" and outbox["counts"]["sent"] == SMS
    assert set(counts_line(ledger_output(capsys, str(municipality)), "sms").values()) == {0}
    sms_through_gatewayapi_once(municipality, tmp_path / "outbox", monkeypatch)


def test_fbsflow_ledger_explains_and_repairs_the_rows_outbox_runs_left(
    prefect_harness: None,
    municipality: Path,
    postgres: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(LEDGER_KEY_ENV, SHARED_KEY)
    config = load_municipality(municipality)
    campaign = campaign_id(config)
    audience = import_audience(EXAMPLE_AUDIENCE, columns=config.audience.columns)
    outbox_ids = ["da-0123456789abcdef.json"]
    # What outbox runs of an earlier fbsflow left in this database: one under a random key of its
    # own, killed mid-send; one under the shared key, which recorded 100 borrowers' SMS as sent
    # though nobody got one.
    with Ledger.open(data_dir(municipality), lease_seconds=0) as ledger:
        keys = [r.key for r in borrower_recipients(Channel.SMS, audience, ledger, config.languages)]
        strays = [secrets.token_hex(16) for _ in range(SMS)]
        ledger.register(campaign, "sms", strays)
        ledger.claim(campaign, "sms", strays[:300], batch_id="ob1", run_id="outbox-run-1")
        ledger.mark(campaign, "sms", dict.fromkeys(strays[:200], "sent"), provider_ids=outbox_ids)
        ledger.register(campaign, "sms", keys[:100])
        ledger.claim(campaign, "sms", keys[:100], batch_id="ob2", run_id="outbox-run-2")
        ledger.mark(campaign, "sms", dict.fromkeys(keys[:100], "sent"), provider_ids=outbox_ids)

    before = counts_line(ledger_output(capsys, str(municipality)), "sms")
    assert before == {"pending": 48, "sending": 100, "sent": 300, "failed": 0, "unknown": 0}
    args = [str(municipality), "--audience", str(EXAMPLE_AUDIENCE)]
    explained = ledger_output(capsys, *args)
    assert f"sms: {SMS} rows are not recipients of this audience" in explained
    assert f"{SMS} of them record no delivery" in explained and "--repair removes them" in explained
    assert "sms: 100 recipients are recorded only by an outbox run" in explained
    assert "newsletter: hver række er en modtager i denne låneroversigt" in explained
    assert counts_line(explained, "sms") == before  # explaining changes nothing

    repaired = ledger_output(capsys, *args, "--repair")
    assert f"sms: removed {SMS} rows" in repaired
    assert "sms: put 100 recipients back to pending" in repaired
    assert counts_line(repaired, "sms") == {
        "pending": 100, "sending": 0, "sent": 0, "failed": 0, "unknown": 0
    }  # fmt: skip
    assert "@" not in explained + repaired  # counts only, no addresses

    sms_through_gatewayapi_once(municipality, tmp_path / "outbox", monkeypatch)


def test_repair_needs_the_audience(municipality: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fbsflow(["ledger", str(municipality), "--repair"]) == 2
    assert "--repair needs --audience CSV" in capsys.readouterr().err


# --- a dead run's claims ----------------------------------------------------------------------------

_CLAIM_AND_DIE = """
import json, os, signal, sys
from pathlib import Path
from tasks.ledger import Ledger
job = json.load(sys.stdin)
ledger = Ledger.open(Path(job["data"]))
ledger.claim(job["campaign"], "newsletter", job["keys"], batch_id="killed", run_id="killed-run")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rerun_takes_over_at_once_what_a_killed_run_held_and_says_so(
    prefect_harness: None,
    municipality: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load_municipality(municipality)
    campaign = campaign_id(config)
    data = data_dir(municipality)
    audience = import_audience(EXAMPLE_AUDIENCE, columns=config.audience.columns)
    with Ledger.open(data) as ledger:
        recipients = borrower_recipients(Channel.NEWSLETTER, audience, ledger, config.languages)
        keys = [r.key for r in recipients]
        ledger.register(campaign, "newsletter", keys)
    # A run claims 100 recipients (a lease of 10 minutes) and is killed with kill -9.
    job = {"data": str(data), "campaign": campaign, "keys": keys[:100]}
    killed = subprocess.Popen(
        [sys.executable, "-c", _CLAIM_AND_DIE], cwd=ROOT, stdin=subprocess.PIPE
    )
    killed.communicate(json.dumps(job).encode(), timeout=120)
    assert killed.returncode == -signal.SIGKILL

    with stand_ins(monkeypatch) as (sendgrid, _gatewayapi):
        record = run(municipality, tmp_path / "outbox", channels=[Channel.NEWSLETTER])
    news = record["channels"]["newsletter"]
    assert news["counts"]["unknown"] == 100 and news["counts"]["sending"] == 0
    assert news["counts"]["sent"] == NEWSLETTER - 100
    assert news["status"] == "unconfirmed"  # a person decides about the 100, as after any crash
    assert (
        f"the earlier run (pid {killed.pid} on host {HOST}) is gone: its 100 recipients were "
        "marked unknown" in news["detail"]
    )
    assert "being sent by another run" not in news["detail"]
    assert sendgrid.stats()["unique_addresses"] == NEWSLETTER - 100
    assert sendgrid.stats()["duplicate_deliveries"] == 0
