"""Keeping Python's cycle collector off a million live objects (switch: `FBSFLOW_SPEED_GC=0`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.speed.switches import enabled

SWITCH = "GC"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cycle collector off; restore it after (nesting is safe).

    Why: while a million borrowers are alive, building another million tuples or strings makes
    the collector walk the whole heap again and again. Measured: a list of 914k (address,
    language) pairs beside the imported audience took 2.0-2.9 s with the collector on and 0.15 s
    with it off, the same in a fresh interpreter. The bulk work this wraps (parsing, keying,
    building recipients) makes no reference cycles, and reference counting still frees what it
    drops. Off: the block runs with the collector as it was.
    """
    enabled_before = gc.isenabled()
    if enabled(SWITCH):
        gc.disable()
    try:
        yield
    finally:
        if enabled_before:
            gc.enable()


@contextmanager
def gc_frozen() -> Iterator[None]:
    """Run the block with every object alive now left out of the cycle collector's walks.

    Why: sending builds thousands of short-lived dicts per request while a million recipients
    and borrowers stay alive; each full collection then walks all of them (profiled: building
    the payloads took several times longer than with them frozen), and the first collection
    after the recipients are built walks them only to find nothing (~0.25 s on 1M). Unlike
    pausing, new garbage is still collected. Frozen objects are still freed by reference
    counting; on the way out they return to the collector, unless something was frozen before
    (`fbsflow run` freezes its imports and the borrowers): unfreezing would hand that back too.
    Off: nothing is frozen.
    """
    if not enabled(SWITCH):
        yield
        return
    frozen_before = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def start_without_collector() -> None:
    """At the start of the `fbsflow` program: the collector off until the imports are done.

    Why: the imports (Prefect, SQLAlchemy, FastAPI, pydantic) make ~470k objects that live as
    long as the process, and the collector walked them again and again while they were made:
    the imports took 2.0 s with it and 1.6 s without (1M SMS: 0.94-0.99x end to end). A command
    that goes on running turns it back on (`collect_from_here`); short ones end first.
    """
    gc.disable()  # first: reading the switch imports the settings (pydantic)
    if not enabled(SWITCH):
        gc.enable()


def collect_from_here() -> None:
    """Turn the cycle collector back on, leaving out what exists now (see
    `start_without_collector`); off: just make sure it is on."""
    if enabled(SWITCH):
        gc.freeze()
    gc.enable()


def freeze_for_exit() -> None:
    """Before the program exits: freeze the heap, so that the interpreter does not run the
    collector over all of it again while taking the modules apart (0.8 s after the work was
    done and printed; 0.03 s frozen). The atexit handlers still run as always."""
    if enabled(SWITCH):
        gc.freeze()
