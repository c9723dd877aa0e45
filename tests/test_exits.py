"""Exit codes a scheduler can trust: 0 done or waiting, 1 failed (one line and the log's path), 2 the
user's mistake, 3 checklist steps open; never a traceback on the terminal unless --debug."""

from __future__ import annotations

import logging
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flows import exits
from flows.cli import main as fbsflow
from tasks.models import ChannelStatus
from tasks.translation import mask_url
from tests.support.e2e import fbsflow_cli

from .conftest import EXAMPLE_CONFIG
from .test_flow import MANUAL, isolated  # noqa: F401  (a fixture)

PASSWORD = "hemmelig-kode"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"


def cli(
    *args: str, env: dict[str, str], wrap: list[str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`fbsflow ARGS` with only `env`'s settings (and no network), optionally wrapped."""
    program = [*(wrap or []), sys.executable, "-m", "flows.cli"]
    return fbsflow_cli(*args, env=env, program=program, timeout=timeout)


def one_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """The command exited `code` without a traceback, with one line on stderr that says `parts`.

    Prefect's temporary server may still say that it stops, after that line.
    """
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert PASSWORD not in output
    [line] = [x for x in result.stderr.splitlines() if x.startswith(("failed: ", "error: "))]
    for part in parts:
        assert part in line, line
    return line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


def read_only_sqlite(folder: Path) -> tuple[Path, str]:
    """A SQLite ledger file and a URL that opens it read-only (`mode=ro`: refused even to root)."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "ledger.db"
    sqlite3.connect(db).close()
    return db, f"sqlite:///file:{db}?mode=ro&uri=true"


def namespace(mounts: str) -> list[str]:
    """A wrapper running a command in its own mount namespace after `mounts` (shell commands).

    A full or read-only disk for real, also for root, without touching the machine's mounts.
    """
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        f'{mounts} && exec "$@"',
        "sh",
    ]


@pytest.fixture(scope="module")
def namespaces() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here")
    probe = subprocess.run(
        [*namespace("mount -t tmpfs -o size=64k tmpfs /mnt"), "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"mount namespaces are not allowed here: {probe.stderr.decode()[-200:]}")


# --- A run's outcome: one line and its exit code --------------------------------------------------


def record(status: str = "incomplete", awaiting: int = 0, **channels: str) -> dict[str, Any]:
    return {
        "status": status,
        "reasons": ["something"],
        "awaiting_confirmation": [f"step.{i}" for i in range(awaiting)],
        "channels": {
            name: {"status": state, "detail": f"{name} detail; more"}
            for name, state in channels.items()
        },
    }


@pytest.mark.parametrize(
    ("run", "code", "said"),
    [
        (record("complete", newsletter="done"), 0, "Færdig: opgavekortet er fuldført."),
        (
            record(awaiting=5, newsletter="done"),
            0,
            "Venter på 5 bekræftelser (fbsflow done C TRIN --by NAVN)",
        ),
        (
            record(newsletter="awaiting_approval"),
            0,
            "Venter på godkendelse (kør igen med --approve",
        ),
        (record(newsletter="rejected"), 0, "Afvist: intet blev sendt til borgerne"),
        (record(newsletter="in_progress"), 0, "Venter på en anden kørsel af kampagnen"),
        (
            record(newsletter="failed", sms="done"),
            1,
            "failed: newsletter failed (newsletter detail)",
        ),
        (record(awaiting=2, sms="unconfirmed"), 1, "failed: sms unconfirmed (sms detail)"),
    ],
    ids=["complete", "confirmations", "approval", "rejected", "another-run", "failed", "unknown"],
)
def test_a_runs_outcome_is_one_line_and_a_code(run: dict[str, Any], code: int, said: str) -> None:
    got, line = exits.run_outcome(run, "C")
    assert got == code and line.startswith(said) and "\n" not in line


@pytest.mark.parametrize("status", [s for s in ChannelStatus if s is not ChannelStatus.DONE])
def test_every_status_but_done_has_a_line_of_its_own(status: ChannelStatus) -> None:
    # Not the fallback for a state the list does not know, which quotes the first reason.
    assert exits.run_outcome(record(newsletter=status), "C")[1] != "Venter på something."


def test_an_operator_who_chose_english_reads_the_outcome_in_english() -> None:
    from tasks.operator_text import choose

    choose("en")
    try:
        both = record(awaiting=2, newsletter="awaiting_approval")
        assert exits.run_outcome(both, "C") == (
            0,
            "Waiting for approval (rerun with --approve, or approve in the Prefect UI) and "
            "2 confirmations (fbsflow done C STEP --by NAME).",
        )
    finally:
        choose(None)


# --- Failures before or outside Prefect: fast, through `fbsflow ledger` ---------------------------


def test_a_read_only_ledger_is_one_line_naming_the_file_and_the_log_holds_the_traceback(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db, url = read_only_sqlite(data)
    env = {"FBSFLOW_DATA_DIR": str(data), "FBSFLOW_DATABASE_URL": url}
    result = cli("ledger", str(EXAMPLE_CONFIG), env=env)
    line = one_line(result, 1, f"failed: {db}: the database is read-only", "fix:")
    log = data / exits.LOG_NAME
    assert line.endswith(f"(log: {log})")
    assert "Traceback" in log.read_text(encoding="utf-8") and "readonly" in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
    # --debug, before or after the command: the traceback on the terminal too.
    for args in (
        ["--debug", "ledger", str(EXAMPLE_CONFIG)],
        ["ledger", str(EXAMPLE_CONFIG), "--debug"],
    ):
        debug = cli(*args, env=env)
        assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_ledger_file_marked_read_only_is_one_line_naming_it_even_for_root(
    tmp_path: Path,
) -> None:
    """chmod a-w on the ledger: root may write any file, yet the operator meant it frozen."""
    data = tmp_path / "data"
    env = {"FBSFLOW_DATA_DIR": str(data)}
    assert cli("ledger", str(EXAMPLE_CONFIG), env=env).returncode == 0  # the ledger exists
    db = data / "ledger.db"
    db.chmod(0o444)
    before = db.read_bytes()
    result = cli("ledger", str(EXAMPLE_CONFIG), env=env)
    one_line(result, 1, f"failed: {db}: the database is read-only", "fix:")
    assert db.read_bytes() == before


def test_an_unreachable_database_is_exit_1_with_its_masked_url(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://fbsflow:{PASSWORD}@127.0.0.1:{free_port()}/fbsflow"
    env = {"FBSFLOW_DATA_DIR": str(tmp_path), "FBSFLOW_DATABASE_URL": url}
    one_line(cli("ledger", str(EXAMPLE_CONFIG), env=env), 1, mask_url(url), "cannot be reached")


@pytest.mark.skipif(not postgres_up(), reason="no PostgreSQL on 127.0.0.1:5432")
@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"{POSTGRES}/fbsflow_no_such_database", "'fbsflow_no_such_database' does not exist"),
        (
            f"postgresql+psycopg://fbsflow_nobody:{PASSWORD}@127.0.0.1:5432/postgres",
            "refused the login",
        ),
    ],
    ids=["unknown-database", "unknown-user"],
)
def test_a_database_that_is_not_there_is_the_users_mistake(
    tmp_path: Path, url: str, said: str
) -> None:
    env = {"FBSFLOW_DATA_DIR": str(tmp_path), "FBSFLOW_DATABASE_URL": url}
    one_line(cli("ledger", str(EXAMPLE_CONFIG), env=env), 2, "error:", said, "fix:")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("not a url", "is not a database URL"),
        (f"postgresql+psycopg://fbsflow:{PASSWORD}@host:port/db", "is not a database URL"),
        (f"postgresql+psycopg://fbsflow:hemmelig@{PASSWORD}@host:port/db", "is not a database URL"),
        (f"postgress://fbsflow:{PASSWORD}@127.0.0.1/db", "unknown kind of database 'postgress'"),
    ],
    ids=["words", "bad-port", "at-in-password", "unknown-kind"],
)
def test_an_unparsable_database_url_is_exit_2_without_its_password(
    tmp_path: Path, url: str, said: str
) -> None:
    env = {"FBSFLOW_DATA_DIR": str(tmp_path), "FBSFLOW_DATABASE_URL": url}
    line = one_line(cli("checklist", str(EXAMPLE_CONFIG), env=env), 2, "FBSFLOW_DATABASE_URL", said)
    assert "hemmelig" not in line


def test_a_missing_database_driver_is_exit_1_with_the_install_command(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://fbsflow:{PASSWORD}@127.0.0.1:5432/fbsflow"
    env = {"FBSFLOW_DATA_DIR": str(tmp_path), "FBSFLOW_DATABASE_URL": url}
    # As if psycopg were not installed: its import fails as a missing module's does.
    without = (
        "import sys, runpy; sys.modules['psycopg'] = None; "
        "runpy.run_module('flows.cli', run_name='__main__')"
    )
    program = [sys.executable, "-c", without]
    result = fbsflow_cli("ledger", str(EXAMPLE_CONFIG), env=env, program=program)
    one_line(result, 1, "driver 'psycopg'", "pip install 'psycopg[binary]'", "log:")


def test_a_full_disk_is_exit_1_naming_the_file(tmp_path: Path, namespaces: None) -> None:
    data = tmp_path / "data"
    data.mkdir()
    full = namespace(f"mount -t tmpfs -o size=16k tmpfs {data}")
    result = cli("ledger", str(EXAMPLE_CONFIG), env={"FBSFLOW_DATA_DIR": str(data)}, wrap=full)
    one_line(result, 1, f"{data}/ledger.db", "full")


def test_a_ledger_on_a_read_only_disk_is_exit_1_naming_the_file(
    tmp_path: Path, namespaces: None
) -> None:
    data = tmp_path / "data"
    env = {"FBSFLOW_DATA_DIR": str(data)}
    assert cli("ledger", str(EXAMPLE_CONFIG), env=env).returncode == 0  # the ledger exists
    read_only = namespace(f"mount --bind {data} {data} && mount -o remount,bind,ro {data}")
    result = cli("ledger", str(EXAMPLE_CONFIG), env=env, wrap=read_only)
    one_line(result, 1, f"{data}/ledger.db")


def test_a_bug_is_one_line_with_its_type_and_place_but_not_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FBSFLOW_DATA_DIR", str(tmp_path))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("laaner@example.com")  # a bug's text may hold an address

    monkeypatch.setattr("tasks.checklist.Checklist.open", broken)
    assert fbsflow(["checklist", str(EXAMPLE_CONFIG)]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("failed: unexpected ValueError at flows/cli.py:"), line
    assert "laaner@" not in line and f"log: {tmp_path / exits.LOG_NAME}" in line


def test_prefects_own_error_keeps_its_first_line() -> None:
    from prefect.flows import Flow

    with pytest.raises(TypeError) as raised:
        Flow(fn=1)  # type: ignore[arg-type]
    assert exits._unexpected(raised.value) == "Prefect: TypeError: 'fn' must be callable"


def test_the_log_goes_to_the_next_folder_when_one_cannot_take_it(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    log = exits.LogFile("test", lambda: [blocked / "sub", tmp_path / "next"])
    log.emit(logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None))
    log.close()
    assert log.path == tmp_path / "next" / exits.LOG_NAME
    assert "hello" in log.path.read_text(encoding="utf-8")


# --- The checklist: 3 while steps are open, 0 when the card is complete ---------------------------


@pytest.mark.usefixtures("prefect_harness", "isolated")  # isolated: data dir in tmp_path
def test_checklist_exits_3_while_steps_are_open_and_0_when_complete(tmp_path: Path) -> None:
    from flows.communicate_externally import communicate_externally

    assert fbsflow(["checklist", str(EXAMPLE_CONFIG)]) == exits.OPEN_STEPS
    record = communicate_externally(
        config_path=str(EXAMPLE_CONFIG),
        output_root=str(tmp_path / "outbox"),
        approve=True,
        confirm=MANUAL,
    )
    assert record["status"] == "complete", record["reasons"]
    assert fbsflow(["checklist", str(EXAMPLE_CONFIG)]) == exits.OK


# --- `fbsflow run` as a scheduler starts it: embedded Prefect, a few seconds each ----------------


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PREFECT_HOME for these runs, one after another: its database is made once."""
    return tmp_path_factory.mktemp("prefect-home")


def run(
    tmp_path: Path, home: Path, wrap: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`fbsflow run EXAMPLE --approve`, its output and data under `tmp_path`."""
    settings = {"PREFECT_HOME": str(home), "FBSFLOW_DATA_DIR": str(tmp_path / "data"), **env}
    output = str(tmp_path / "outbox")
    return cli(
        "run",
        str(EXAMPLE_CONFIG),
        "--approve",
        "--output",
        output,
        env=settings,
        wrap=wrap,
        timeout=300,
    )


@pytest.mark.slow
def test_run_of_the_example_approved_without_confirmations_exits_0(
    tmp_path: Path, prefect_home: Path
) -> None:
    result = run(tmp_path, prefect_home)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    # Every manual step of the example is open: no --confirm was given.
    assert last.startswith(f"Venter på {len(MANUAL)} bekræftelser (fbsflow done ")


@pytest.mark.slow
def test_run_with_a_read_only_ledger_is_one_line_naming_the_file(
    tmp_path: Path, prefect_home: Path
) -> None:
    db, url = read_only_sqlite(tmp_path / "data")
    result = run(tmp_path, prefect_home, FBSFLOW_DATABASE_URL=url)
    one_line(result, 1, f"failed: {db}: the database is read-only", f"log: {tmp_path / 'data'}")
    assert not list((tmp_path / "outbox").glob(".staging-*"))


@pytest.mark.slow
def test_run_with_an_unreachable_database_is_one_line(tmp_path: Path, prefect_home: Path) -> None:
    url = f"postgresql+psycopg://fbsflow:{PASSWORD}@127.0.0.1:{free_port()}/fbsflow"
    result = run(tmp_path, prefect_home, FBSFLOW_DATABASE_URL=url)
    one_line(result, 1, mask_url(url), "cannot be reached", "log:")


@pytest.mark.slow
def test_run_onto_a_full_disk_is_one_line_naming_the_output(
    tmp_path: Path, prefect_home: Path, namespaces: None
) -> None:
    out = tmp_path / "outbox"
    out.mkdir()
    full = namespace(f"mount -t tmpfs -o size=64k tmpfs {out}")
    result = run(tmp_path, prefect_home, wrap=full)
    one_line(result, 1, str(out), "no space left", "log:")
