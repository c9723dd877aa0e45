"""The `FBSFLOW_SPEED_<NAME>` switches: the one place a speed trick asks whether it is on."""

from __future__ import annotations

import os

from tasks.errors import ConfigError

PREFIX = "FBSFLOW_SPEED_"
# `FBSFLOW_SPEED_ALL=0` turns every trick off at once (to measure what they buy together).
ALL = "ALL"
# Each trick's name, and what turning it off gives instead (the README's table says the same).
SWITCHES: dict[str, str] = {
    "FORK_IMPORT": "the borrower file is parsed in one process, not half in a forked child",
    "PREFETCH": "the borrower file is parsed by the flow's import step, not before Prefect starts",
    "GC": "Python's cycle collector runs as usual through imports, bulk work and exit",
    "HEARTBEAT": "Prefect's engine sends flow-run heartbeats itself (and stops them up to 1 s late)",
    "LEDGER_SQL": "the ledger builds every statement with SQLAlchemy (no id-range claims)",
    "HMAC_STATES": "recipient keys through `hmac.digest`, deriving the key's states each time",
    "SQLITE_PAGES": "a new SQLite ledger gets SQLite's default page and cache sizes",
    "OVERLAP_REGISTER": "a channel's keys are all made first, then registered in one go",
}
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def enabled(name: str) -> bool:
    """Whether the speed trick `name` is on: every one is, unless its variable (or
    `FBSFLOW_SPEED_ALL`) says 0, false, no or off. Read at each call, so a test can flip it."""
    if name not in SWITCHES:
        raise KeyError(f"no speed switch {name!r}; the switches are {sorted(SWITCHES)}")
    return _read(ALL) and _read(name)


def _read(name: str) -> bool:
    raw = os.environ.get(PREFIX + name)
    if raw is None or raw.strip() == "":
        return True
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(f"{PREFIX}{name}={raw!r} is not on or off; use 1 (the default) or 0")
