"""The cycle-collector helpers leave the collector as they found it."""

from __future__ import annotations

import gc

from tasks.speed.gcpause import gc_frozen, gc_paused


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
