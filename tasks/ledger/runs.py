"""Who holds a ledger's claims: one row per run (host, process id, heartbeat), not per recipient."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Connection, Float, Integer, MetaData, String, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

# A run killed mid-send leaves rows in `sending` whose lease (10 minutes) has not run out. With
# the holder known, a rerun need not wait for it: a run whose process is gone on this host, or
# that has sent no heartbeat for `STALE_SECONDS` (on any host), is dead, and its rows are judged
# interrupted at once. A claim or a renewal is the heartbeat, written at most every
# `HEARTBEAT_SECONDS`: one small statement now and then, never one per recipient.
#
# A live run claims or renews a batch far more often than this (every batch attempt, and an
# attempt is bounded by the provider's timeouts); a run silent this long has died, or hangs in
# one request. Its rows are then marked unknown, never sent again: a run that was only slow
# still records its outcome over them (`Ledger.mark` takes its own unknown rows).
STALE_SECONDS = 120.0
# How often a run writes its heartbeat at most, however many batches it claims.
HEARTBEAT_SECONDS = 20.0
HOST = socket.gethostname()


def _pid_space() -> str:
    """Where this process's id means something: the kernel's boot and the PID namespace.

    A host name alone is not enough: containers with host networking share it, each with
    process ids of its own. Empty where Linux's /proc does not tell.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


PID_SPACE = _pid_space()

metadata = MetaData()
runs = Table(
    "ledger_run",
    metadata,
    Column("run_id", String(200), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_space", String(80), nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    # Until when rows this run claimed may still be within their lease. A run that closed its
    # ledger sets it to its last heartbeat: its leftover rows (if any) wait for their own lease.
    Column("lease_until", Float, nullable=False),
)
_r = runs.c


@dataclass(frozen=True)
class Interruption:
    """Rows of one earlier run that `resolve_interrupted` turned unknown, and why."""

    count: int
    run_id: str | None = None
    host: str | None = None
    pid: int | None = None
    silent_for: float | None = None  # seconds without a heartbeat, when that was the reason

    def __str__(self) -> str:
        them = f"{self.count} recipient{'' if self.count == 1 else 's'}"
        doubt = "marked unknown (the provider may have accepted them)"
        if self.pid is None:
            return f"{them} of an earlier run whose lease ran out were {doubt}"
        run = f"the earlier run (pid {self.pid} on host {self.host})"
        if self.silent_for is None:
            return f"{run} is gone: its {them} were {doubt}"
        minutes = self.silent_for / 60
        return f"{run} has sent no heartbeat for {minutes:.0f} minutes: its {them} were {doubt}"

    @property
    def detail(self) -> str:
        """The reason stored in each row (no address: a host name and a process id)."""
        if self.pid is None:
            return "interrupted: the run sending it stopped before recording the outcome"
        return (
            f"interrupted: its run (pid {self.pid} on host {self.host}) stopped before recording "
            "the outcome"
        )


def record(
    conn: Connection, run_id: str, *, now: float, lease_seconds: float, postgres: bool
) -> None:
    """This process holds `run_id`'s claims, alive at `now`: insert or renew its row."""
    values = {
        "run_id": run_id,
        "host": HOST,
        "pid": os.getpid(),
        "pid_space": PID_SPACE,
        "heartbeat_at": now,
        "lease_until": now + lease_seconds,
    }
    renewed = {k: v for k, v in values.items() if k != "run_id"}
    insert = pg_insert(runs) if postgres else sqlite_insert(runs)
    conn.execute(
        insert.values(values).on_conflict_do_update(index_elements=["run_id"], set_=renewed)
    )


def release(conn: Connection, run_ids: Iterable[str]) -> None:
    """These runs closed their ledger: no longer candidates for `gone` (see `lease_until`)."""
    ids = list(run_ids)
    if ids:
        conn.execute(
            update(runs)
            .where(_r.run_id.in_(ids), _r.pid == os.getpid(), _r.pid_space == PID_SPACE)
            .values(lease_until=_r.heartbeat_at)
        )


def gone(conn: Connection, now: float) -> Iterator[Interruption]:
    """Runs that may still hold rows within their lease but are dead (counts left at 0).

    Dead: the process is gone from this host (and PID namespace), or no heartbeat for
    STALE_SECONDS. A heartbeat may come up to HEARTBEAT_SECONDS before the claims it covers:
    hence the margin.
    """
    stmt = select(_r.run_id, _r.host, _r.pid, _r.pid_space, _r.heartbeat_at).where(
        _r.lease_until > now - HEARTBEAT_SECONDS
    )
    for run_id, host, pid, space, heartbeat_at in conn.execute(stmt):
        if host == HOST and space == PID_SPACE and _process_gone(pid):
            yield Interruption(0, run_id, host, pid)
        elif now - heartbeat_at > STALE_SECONDS:
            yield Interruption(0, run_id, host, pid, silent_for=now - heartbeat_at)


def _process_gone(pid: int) -> bool:
    """Whether no process `pid` runs on this host (a zombie, dead but not reaped, is gone)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or it just ended: decide by the heartbeat
        return False
    # "pid (name) state ...": the name may hold spaces and parentheses, the state follows the last.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
