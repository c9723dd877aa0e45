"""The SIGKILL suite, continued: clean after a crash, through the real `fbsflow run` with the outbox.

Runs killed during the staging write, during the outbox newsletter and during the outbox SMS
(the outbox's request files hold every address and number) must leave no personal data in any
staging or `.old-` folder; the next run must leave no such folder at all; and the killed runs'
flow runs must end Crashed, not RUNNING for ever. The runs share one output root and one
PREFECT_HOME, as one machine's runs do. A module of its own: the exactly-once module's privacy
test forbids outbox request files, which these runs write on purpose.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.checklist import checklist_definitions
from tasks.config import load_card, load_municipality
from tasks.models import StepKind
from tasks.output import OLD_PREFIX, PRIVATE_FOLDER, STAGING_PREFIX
from tasks.synthetic import write_borrowers
from tests.support.e2e import Fbsflow, PersonalData, PrefectHomes, Run, prefect_db_texts
from tests.test_exactly_once import write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

ROWS = 20_000
SEED = 7
RUN_TIMEOUT = 600


@dataclass
class Kill:
    """What one killed run left."""

    name: str
    code: int
    leftovers: list[str]  # staging and .old- folders in the output root after the kill
    completed: bool  # the kill came after the run had committed its output


@dataclass
class Cleanup:
    kills: list[Kill]
    last: Run
    last_code: int
    entries: list[str]  # the output root after the last run
    personal: dict[str, dict[str, int]]  # where -> counts, outside the final request files
    request_files: list[Path]
    flow_runs: Counter[str]  # state types in the shared Prefect database


def kill_when(run: Run, seen: Callable[[Run], bool]) -> int:
    """SIGKILL the run (its whole group) the moment `seen(run)` is true; return its exit code."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while run.popen.poll() is None and time.monotonic() < deadline:
        if seen(run):
            run.kill()
            break
        time.sleep(0.01)
    return run.wait(60)


def owned_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith((STAGING_PREFIX, OLD_PREFIX)))


def is_request_file(path: Path, root: Path, slug: str) -> bool:
    """A file where the outbox's requests belong: `<root>/<slug>/<channel>/requests/`."""
    parts = path.relative_to(root).parts
    return len(parts) == 4 and parts[0] == slug and parts[2] == PRIVATE_FOLDER


@pytest.fixture(scope="module")
def cleanup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cleanup]:
    folder = tmp_path_factory.mktemp("crash-cleanup")
    csv = write_borrowers(folder / "laanere.csv", ROWS, seed=SEED)
    config_path = write_config(folder)
    config = load_municipality(config_path)
    slug = config.municipality.slug
    manual = [
        s.id
        for s in checklist_definitions(load_card(config.card), config)
        if s.kind is StepKind.MANUAL
    ]
    personal = PersonalData.from_csv(csv)
    fbsflow = Fbsflow(PrefectHomes(tmp_path_factory.mktemp("prefect-homes")))
    output = folder / "outbox"
    env = {"FBSFLOW_DATA_DIR": str(folder / "data"), "FBSFLOW_CHUNK_SIZE": "1000"}
    home, _ = fbsflow.homes.new("shared")
    findings: dict[str, dict[str, int]] = {}

    def scan(where: str, content: str) -> None:
        if found := personal.find(content):
            findings[where] = found

    def start(name: str) -> Run:
        return fbsflow.start(
            name, folder, config_path, csv, env, confirm=manual, output=output, home=home
        )

    def scan_output(after: str) -> None:
        for path in output.rglob("*") if output.exists() else []:
            if path.is_file() and not is_request_file(path, output, slug):
                scan(f"after {after}: {path.relative_to(output)}", path.read_text(errors="replace"))

    kills = []
    try:
        seen: Callable[[Run], bool]
        for name, seen in (
            ("staging", lambda _run: any(output.glob(f"{STAGING_PREFIX}*"))),
            ("newsletter", lambda run: "newsletter via outbox" in run.stderr),
            ("sms", lambda run: "sms via outbox" in run.stderr),
        ):
            run = start(f"kill-{name}")
            code = kill_when(run, seen)
            scan_output(run.name)
            completed = (output / slug / "completion.json").is_file()
            kills.append(Kill(run.name, code, owned_folders(output), completed))
        last = start("after-the-kills")
        last_code = last.wait(RUN_TIMEOUT)
        scan_output(last.name)
        for run in fbsflow.runs:
            scan(f"{run.name}: stdout", run.stdout)
            scan(f"{run.name}: stderr", run.stderr)
        for where, content in prefect_db_texts(home):
            scan(where, content)
        if (log := folder / "data" / "fbsflow.log").is_file():
            scan("fbsflow.log", log.read_text(errors="replace"))
        with sqlite3.connect(home / "prefect.db") as conn:
            states = Counter(r[0] for r in conn.execute("SELECT state_type FROM flow_run"))
        yield Cleanup(
            kills,
            last,
            last_code,
            sorted(p.name for p in output.iterdir()),
            findings,
            [p for p in output.rglob("*") if p.is_file() and is_request_file(p, output, slug)],
            states,
        )
    finally:
        fbsflow.kill_all()


def test_each_kill_landed_mid_run_and_left_its_staging_folder(cleanup: Cleanup) -> None:
    for kill in cleanup.kills:
        assert kill.code == -signal.SIGKILL, f"{kill.name} exited {kill.code} before the kill"
        assert not kill.completed, f"{kill.name} was killed after its commit"
    # What a kill -9 leaves: the staging folders of the dead runs, until the next run.
    assert [len(k.leftovers) for k in cleanup.kills] == [1, 1, 1], cleanup.kills


def test_no_address_or_number_outside_the_final_request_files(cleanup: Cleanup) -> None:
    assert not cleanup.personal, f"personal data found (counts per kind): {cleanup.personal}"


def test_no_staging_folder_survives_the_next_run(cleanup: Cleanup) -> None:
    assert cleanup.last_code == 0, cleanup.last.tail()
    assert cleanup.entries == ["eksempel-kommune"], cleanup.entries
    assert cleanup.request_files, "the outbox wrote no request files"
    assert {p.stat().st_mode & 0o777 for p in cleanup.request_files} == {0o600}


def test_the_killed_runs_flow_runs_end_crashed(cleanup: Cleanup) -> None:
    assert cleanup.flow_runs == Counter({"CRASHED": 3, "COMPLETED": 1}), cleanup.flow_runs
    assert "1 flow-kørsel er markeret som crashed" in cleanup.last.stdout
