"""The cycle-collector helpers leave the collector as they found it, and do nothing when off."""

from __future__ import annotations

import gc

import pytest

from tasks.speed.gcpause import (
    collect_from_here,
    freeze_for_exit,
    gc_frozen,
    gc_paused,
    start_without_collector,
)


def test_gc_paused_restores_the_collector_and_nests() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one does not turn it back on early
    assert gc.isenabled()


def test_gc_frozen_unfreezes_only_what_it_froze() -> None:
    gc.unfreeze()
    with gc_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0

    # Frozen before (as `fbsflow run` freezes its imports): stays frozen after.
    gc.freeze()
    try:
        with gc_frozen():
            kept = [object() for _ in range(10)]  # noqa: F841 - alive while frozen
        # Still frozen (unfreezing empties the permanent generation). Not ">= the count before":
        # frozen objects are still freed by reference counting, also by other threads meanwhile.
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_switched_off_the_collector_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_SPEED_GC", "0")
    gc.unfreeze()
    with gc_paused():
        assert gc.isenabled()
    with gc_frozen():
        assert gc.get_freeze_count() == 0
    start_without_collector()
    assert gc.isenabled()
    freeze_for_exit()
    assert gc.get_freeze_count() == 0
    collect_from_here()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_program_keeps_the_collector_off_its_imports_and_heap() -> None:
    try:
        start_without_collector()
        assert not gc.isenabled()
        collect_from_here()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        freeze_for_exit()
        assert gc.get_freeze_count() > 0
    finally:
        gc.enable()
        gc.unfreeze()


def test_a_bulk_import_is_the_same_with_the_collector_on_or_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The paused collector frees nothing the import keeps: the same audience either way."""
    from tasks.audience import import_audience
    from tests.conftest import EXAMPLE_AUDIENCE
    from tests.speed.test_fork_import import fingerprint

    paused = fingerprint(import_audience(EXAMPLE_AUDIENCE))
    monkeypatch.setenv("FBSFLOW_SPEED_GC", "0")
    assert fingerprint(import_audience(EXAMPLE_AUDIENCE)) == paused
