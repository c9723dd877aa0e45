"""End-to-end helpers: `fbsflow run` as a subprocess against local provider stand-ins, and checks of
what reached whom, of the ledger, and that no personal data leaked into outputs, logs or artifacts.

Every subprocess runs in its own process group (so a crash test can SIGKILL it together with its
temporary Prefect server), in embedded Prefect mode with its own PREFECT_HOME, and with a dead
proxy for anything that is not 127.0.0.1, so nothing leaves the machine.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.conftest import ROOT

# Any request to a host other than 127.0.0.1 goes to the discard port and is refused at once.
DEAD_PROXY = "http://127.0.0.1:9"
LEDGER_TABLE = "delivery_ledger"
# A campaign's channel's rows: the ledger names them by a delivery_stream id.
_OF_STREAM = "stream = (SELECT id FROM delivery_stream WHERE campaign = :c AND channel = :ch)"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect settings, fbsflow settings or provider
    credentials, with a dead proxy for non-local hosts, plus `extra`."""
    drop = ("PREFECT_", "FBSFLOW_", "SENDGRID_", "GATEWAYAPI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        env.pop(key, None)
        env.pop(key.lower(), None)
    env.update(
        HTTP_PROXY=DEAD_PROXY,
        HTTPS_PROXY=DEAD_PROXY,
        ALL_PROXY=DEAD_PROXY,
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_COLORS="false",
    )
    env.update(extra)
    return env


# --- Runs ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One `fbsflow run` subprocess: its own process group, output root and PREFECT_HOME."""

    name: str
    popen: subprocess.Popen[bytes]
    folder: Path  # stdout.txt and stderr.txt
    output: Path  # the --output root
    prefect_home: Path
    started: float
    finished: float | None = None

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session: the child leads its own group

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} still running after {timeout:.0f} s\n{self.tail()}"
            ) from None
        self.finished = self.finished or time.monotonic()
        return code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group: the CLI and the temporary Prefect server it started."""
        with suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)
        if sig == signal.SIGKILL:
            self.finished = self.finished or time.monotonic()
            self.popen.wait(timeout=30)

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def stdout(self) -> str:
        return (self.folder / "stdout.txt").read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return (self.folder / "stderr.txt").read_text(encoding="utf-8", errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return f"--- {self.name} stdout ---\n{self.stdout[-chars:]}\n--- stderr ---\n{self.stderr[-chars:]}"

    def completion(self, slug: str) -> dict[str, Any]:
        return json.loads((self.output / slug / "completion.json").read_text(encoding="utf-8"))


class PrefectHomes:
    """A PREFECT_HOME per run. A temporary server spends 20-30 s creating Prefect's database and
    registering block types on a busy machine, so once a run has exited cleanly its home (the
    database and the block-registration memo) is copied into later homes, which then skip the
    migration check too."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.template: Path | None = None
        self._lock = threading.Lock()

    def new(self, name: str) -> tuple[Path, dict[str, str]]:
        """A fresh home and the settings that go with it."""
        home = self.root / name
        with self._lock:
            if self.template is None:
                home.mkdir(parents=True)
                return home, {}
            shutil.copytree(self.template, home)
        return home, {"PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false"}

    def remember(self, home: Path) -> None:
        with self._lock:
            if self.template is None and (home / "prefect.db").is_file():
                template = self.root / "_template"
                template.mkdir()
                for file in home.iterdir():
                    if file.is_file() and (
                        file.name.startswith("prefect.db") or file.suffix == ".toml"
                    ):
                        shutil.copy2(file, template / file.name)
                self.template = template


class Slots:
    """At most `n` runs at once: the machine has two cores, and every run brings a server."""

    def __init__(self, n: int) -> None:
        self._free = n
        self._cond = threading.Condition()

    @contextmanager
    def take(self, n: int = 1) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._free >= n)
            self._free -= n
        try:
            yield
        finally:
            with self._cond:
                self._free += n
                self._cond.notify_all()


class Fbsflow:
    """Starts `fbsflow run` subprocesses and remembers every one (the privacy test reads them all)."""

    def __init__(self, homes: PrefectHomes, slots: int = 4) -> None:
        self.homes = homes
        self.slots = Slots(slots)
        self.runs: list[Run] = []
        self._lock = threading.Lock()

    def start(
        self,
        name: str,
        folder: Path,
        config: Path,
        audience: Path,
        env: dict[str, str],
        *,
        confirm: Iterable[str] = (),
        output: Path | None = None,
        home: Path | None = None,
    ) -> Run:
        """Start a run; by default with an output root and a PREFECT_HOME of its own.

        `output` and `home` let runs share them: the next run then finds what the last one left.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if home is None:
            home, settings = self.homes.new(f"{folder.name}-{name}")
        else:
            settings = {}
        output = output or folder / f"out-{name}"
        args = [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            str(config),
            "--audience",
            str(audience),
            "--approve",
            "--output",
            str(output),
        ]
        for step in confirm:
            args += ["--confirm", step]
        logs = folder / name
        logs.mkdir()
        with (logs / "stdout.txt").open("wb") as out, (logs / "stderr.txt").open("wb") as err:
            popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env=clean_env(PREFECT_HOME=str(home), **settings, **env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        run = Run(name, popen, logs, output, home, time.monotonic())
        with self._lock:
            self.runs.append(run)
        return run

    def finish(self, run: Run, timeout: float = 400, codes: tuple[int, ...] = (0,)) -> Run:
        """Wait for a run; it must exit with one of `codes` and without a traceback."""
        code = run.wait(timeout)
        assert code in codes, f"{run.name} exited {code}\n{run.tail()}"
        # The temporary Prefect server may print a CancelledError traceback of its own while
        # shutting down; a traceback through fbsflow's code is a bug.
        ours = [f'File "{ROOT / d}' for d in ("flows", "tasks")]
        assert not any(frame in run.stderr for frame in ours), run.tail()
        self.homes.remember(run.prefect_home)
        return run

    def kill_all(self) -> None:
        """Teardown: SIGKILL runs that are still alive (only those this object started)."""
        for run in self.runs:
            if run.popen.poll() is None:
                run.kill()


def fbsflow_cli(
    *args: str,
    env: dict[str, str],
    program: Iterable[str] = (sys.executable, "-m", "flows.cli"),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`fbsflow ARGS` to its end, with only `env`'s settings (`clean_env`); `program` may wrap it."""
    return subprocess.run(
        [*program, *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def ledger_cli(config: Path, env: dict[str, str]) -> str:
    """`fbsflow ledger CONFIG` with the runs' environment; returns its stdout."""
    done = fbsflow_cli("ledger", str(config), env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- The ledger, read from outside the runs --------------------------------------------------------


class LedgerProbe:
    """Raw reads of the delivery ledger while runs write it (the test's view, not the product's)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = create_engine(url)

    def close(self) -> None:
        self._engine.dispose()

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        self._scalar("SELECT 1")

    def _scalar(self, sql: str, **params: Any) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar() or 0)

    def sending_batches(self, campaign: str, channel: str) -> int:
        return self._scalar(
            f"SELECT COUNT(DISTINCT batch_id) FROM {LEDGER_TABLE} "
            f"WHERE {_OF_STREAM} AND state = 'sending'",
            c=campaign,
            ch=channel,
        )

    def claiming_runs(self, campaign: str, channel: str) -> int:
        return self._scalar(
            f"SELECT COUNT(DISTINCT run_id) FROM {LEDGER_TABLE} "
            f"WHERE {_OF_STREAM} AND run_id IS NOT NULL",
            c=campaign,
            ch=channel,
        )

    def sent_by_run(self, campaign: str, channel: str) -> dict[str, int]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT run_id, COUNT(*) FROM {LEDGER_TABLE} WHERE {_OF_STREAM} "
                    "AND state = 'sent' GROUP BY run_id"
                ),
                {"c": campaign, "ch": channel},
            ).all()
        return {str(run_id): int(n) for run_id, n in rows}


# --- Stand-in hooks ---------------------------------------------------------------------------------


class KillInFlight:
    """A stand-in `on_request` hook: SIGKILL a run while its nth request (and any others) are in flight.

    From the nth request on, each arriving request is held before the stand-in reads its body.
    The run is killed only at a moment when it is frozen (SIGSTOP), every batch the ledger shows
    as `sending` has its request held here, and the last request held arrived long enough ago
    for its body to follow its headers (httpx writes them in two calls). Then no batch is
    claimed but not on the wire, and the batches in flight at the kill are exactly those the
    stand-in goes on to deliver: released after the kill, the held handlers read the bodies the
    dead client had written.
    """

    BODY_SECONDS = 0.5  # time for a client to write a body after its headers, on a busy machine

    def __init__(
        self, nth: int, probe: LedgerProbe, campaign: str, channel: str, *, timeout: float = 20
    ) -> None:
        self.nth = nth
        self.probe = probe
        self.campaign, self.channel = campaign, channel
        self.timeout = timeout
        self.run: Run | None = None
        self.held = 0
        self.last_held = 0.0
        self.killed_at_requests: int | None = None  # requests held at the kill (None: timed out)
        self.killed = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, index: int) -> None:
        if self.run is None or index < self.nth or self.killed.is_set():
            return
        with self._lock:
            self.held += 1
            self.last_held = time.monotonic()
            first = self.held == 1
        if first:
            threading.Thread(target=self._kill_when_settled, daemon=True).start()
        self.killed.wait(self.timeout + 10)

    def _since_last_held(self) -> float:
        with self._lock:
            return time.monotonic() - self.last_held

    def _kill_when_settled(self) -> None:
        assert self.run is not None
        deadline = time.monotonic() + self.timeout
        while True:
            time.sleep(max(0.0, self.BODY_SECONDS - self._since_last_held()))
            stopped_at = time.monotonic()
            self.run.kill(signal.SIGSTOP)
            time.sleep(0.1)  # headers already on the wire still reach the hook
            with self._lock:
                held, last_held = self.held, self.last_held
            settled = (
                stopped_at - last_held >= self.BODY_SECONDS
                and self.probe.sending_batches(self.campaign, self.channel) == held
            )
            if settled or time.monotonic() > deadline:
                self.killed_at_requests = held if settled else None
                self.run.kill(signal.SIGKILL)
                self.killed.set()
                return
            self.run.kill(signal.SIGCONT)
            time.sleep(0.1)


class HoldUntil:
    """A stand-in `on_request` hook that makes sure two runs send at the same time.

    Until `ready()` is true (the second run has claimed a batch), each request is held for up to
    `hold` seconds, then let through: the first run crawls until the second joins, and no request
    waits as long as the client's 30 s timeout. Once ready, the gate stays open.
    """

    def __init__(self, ready: Callable[[], bool], *, hold: float = 18) -> None:
        self.ready = ready
        self.hold = hold
        self.opened = threading.Event()
        self.held_through = 0  # requests let through unready, after a full hold
        self._lock = threading.Lock()

    def __call__(self, _index: int) -> None:
        deadline = time.monotonic() + self.hold
        while not self.opened.is_set():
            with self._lock:
                if self.ready():
                    self.opened.set()
                    return
            if time.monotonic() > deadline:
                with self._lock:
                    self.held_through += 1
                return
            time.sleep(0.1)


class Scenarios:
    """Scenarios run in threads, side by side (each run mostly waits on its Prefect server);
    a test asks for its scenario's result and gets its exception if it failed."""

    def __init__(self) -> None:
        self._threads: dict[str, threading.Thread] = {}
        self._results: dict[str, Any] = {}
        self._errors: dict[str, BaseException] = {}

    def start(self, name: str, scenario: Callable[[], Any]) -> None:
        def target() -> None:
            try:
                self._results[name] = scenario()
            except BaseException as exc:  # handed to the test that asks for this result
                self._errors[name] = exc

        thread = threading.Thread(target=target, name=f"scenario-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def result(self, name: str, timeout: float = 1200) -> Any:
        thread = self._threads[name]
        thread.join(timeout)
        assert not thread.is_alive(), f"scenario {name} still running after {timeout:.0f} s"
        if name in self._errors:
            raise self._errors[name]
        return self._results[name]

    def join_all(self, timeout: float = 1200) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))


# --- Personal data -------------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_NUMBER = re.compile(r"(?<![0-9A-Za-z])\+?[0-9]{8,12}(?![0-9A-Za-z])")
# UUIDs and long hex ids are full of digit runs that are not phone numbers.
_IDS = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,}"
)


class PersonalData:
    """Every name, e-mail address and mobile number in a borrower CSV, and a scanner for them.

    Findings are counts per kind, never the values (they are synthetic, but the habit matters).
    """

    def __init__(self, names: set[str], emails: set[str], mobiles: set[str]) -> None:
        self.emails = emails
        self.mobiles = mobiles  # 8 national digits
        ordered = sorted(names, key=len, reverse=True)
        self._names = re.compile("|".join(re.escape(n) for n in ordered)) if ordered else None

    @classmethod
    def from_csv(cls, path: Path) -> PersonalData:
        names: set[str] = set()
        emails: set[str] = set()
        mobiles: set[str] = set()
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh, delimiter=";"):
                if name := (row.get("Navn") or "").strip():
                    names.add(name)
                    # A quoted export name ('Anne Bæk "Lille"') still holds the plain name.
                    names.add(" ".join(name.split()[:2]))
                email = (row.get("E-mail") or "").strip().lower()
                if "@" in email:
                    emails.add(email)
                if (national := _national(row.get("Mobil") or "")) is not None:
                    mobiles.add(national)
        return cls(names, emails, mobiles)

    def find(self, content: str) -> dict[str, int]:
        """How many names, addresses and numbers of the CSV occur in `content`."""
        found = {"name": 0, "email": 0, "mobile": 0}
        if self._names is not None:
            found["name"] = len(self._names.findall(content))
        found["email"] = sum(m.group().lower() in self.emails for m in _EMAIL.finditer(content))
        stripped = _IDS.sub(" ", content)
        found["mobile"] = sum(
            _national(m.group()) in self.mobiles for m in _NUMBER.finditer(stripped)
        )
        return {k: v for k, v in found.items() if v}


def _national(value: str) -> str | None:
    """The 8 national digits of a Danish number written as 8 digits, 45..., +45... or 0045..."""
    digits = re.sub(r"\D", "", value)
    if len(digits) == 8:
        return digits
    if len(digits) == 10 and digits.startswith("45"):
        return digits[2:]
    if len(digits) == 12 and digits.startswith("0045"):
        return digits[4:]
    return None


def prefect_db_texts(home: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for every table of the run's Prefect database and every other file in its home."""
    db = home / "prefect.db"
    if db.is_file():
        with closing_sqlite(db) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                parts = []
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    for value in row:
                        if isinstance(value, bytes):
                            parts.append(value.decode("utf-8", errors="replace"))
                        elif isinstance(value, str):
                            parts.append(value)
                yield f"{home.name}/prefect.db:{table}", "\n".join(parts)
    for file in home.rglob("*"):
        if file.is_file() and not file.name.startswith("prefect.db"):
            yield f"{home.name}/{file.relative_to(home)}", file.read_text(errors="replace")


@contextmanager
def closing_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, timeout=30)
    try:
        yield conn
    finally:
        conn.close()
