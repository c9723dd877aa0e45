"""The `FBSFLOW_SPEED_<NAME>` switches: the one place a speed trick asks whether it is on."""

from __future__ import annotations

PREFIX = "FBSFLOW_SPEED_"
# `FBSFLOW_SPEED_ALL=0` turns every trick off at once (to measure what they buy together).
ALL = "ALL"


def switches() -> list[str]:
    """Every trick's switch name (`FORK_IMPORT`, ...), as tasks/settings.py declares them."""
    from tasks.settings import SpeedSettings

    return [name.upper() for name in SpeedSettings.model_fields if name != "all"]


def enabled(name: str) -> bool:
    """Whether the speed trick `name` is on: every one is, unless its variable (or
    `FBSFLOW_SPEED_ALL`) says 0, false, no or off. Read at each call (tasks/settings.py reads
    the environment again only when it changed), so a test can flip it."""
    # Imported here: `fbsflow` asks for the GC switch first thing, before the heavy imports.
    from tasks.settings import SpeedSettings, settings

    field = name.lower()
    if field == "all" or field not in SpeedSettings.model_fields:
        raise KeyError(f"no speed switch {name!r}; the switches are {switches()}")
    speed = settings(SpeedSettings)
    return speed.all and bool(getattr(speed, field))
