"""Which process owns a thing (a staging folder, a flow run): its host and PID, and whether it died.

An owner is written as `host:pid`, the form Prefect's own process workers give a flow run's
`infrastructure_pid`. Only an owner on this host can be judged: another machine's process is
never called dead, so nothing a live run on another machine holds is ever taken from it.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

# Host names go into folder names: letters, digits and dashes only, as DNS labels are.
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def this_host() -> str:
    """This machine's name, reduced to what a folder name and `host:pid` can carry."""
    return _UNSAFE.sub("-", socket.gethostname()).strip("-")[:63] or "localhost"


@dataclass(frozen=True)
class Owner:
    """A process by host and PID."""

    host: str
    pid: int

    @classmethod
    def me(cls) -> Owner:
        return cls(this_host(), os.getpid())

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        """`host:pid` as `str(owner)` writes it; None for anything else."""
        host, sep, pid = (text or "").rpartition(":")
        if not sep or not host or not pid.isdigit():
            return None
        return cls(host, int(pid))

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"

    def is_dead(self) -> bool:
        """True only when this process is known to have ended: on this host, and not running.

        A reused PID reads as alive, which errs the safe way: its folder or flow run is left
        for a later sweep rather than taken from a process that may be its owner.
        """
        return self.host == this_host() and not pid_running(self.pid)


def pid_running(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (a zombie does not: it has ended)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # The state follows the parenthesised command name, which may itself hold spaces.
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): os.kill's answer stands
        return True
