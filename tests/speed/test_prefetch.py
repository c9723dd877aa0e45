"""The borrower file read ahead is the import step's own result; switched off, nothing is read."""

from __future__ import annotations

import pytest

from tasks.audience import import_audience
from tasks.config import load_municipality
from tasks.speed.prefetch import Prefetch, audience_source, prefetch_audience, take_prefetched
from tests.conftest import EXAMPLE_AUDIENCE, EXAMPLE_CONFIG
from tests.speed.test_fork_import import fingerprint


def test_the_audience_read_ahead_is_what_the_import_step_reads() -> None:
    config = load_municipality(EXAMPLE_CONFIG)
    assert prefetch_audience(config, str(EXAMPLE_CONFIG), str(EXAMPLE_AUDIENCE))
    source = audience_source(config, str(EXAMPLE_CONFIG), str(EXAMPLE_AUDIENCE))
    assert source is not None
    taken = take_prefetched(config, *source)
    assert taken is not None
    audience, processes = taken
    assert processes == 1
    assert fingerprint(audience) == fingerprint(import_audience(EXAMPLE_AUDIENCE))


def test_switched_off_nothing_is_read_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_SPEED_PREFETCH", "0")
    config = load_municipality(EXAMPLE_CONFIG)
    assert Prefetch.start(config, str(EXAMPLE_CONFIG), str(EXAMPLE_AUDIENCE), split=True) is None
    assert prefetch_audience(config, str(EXAMPLE_CONFIG), str(EXAMPLE_AUDIENCE)) is False
    source = audience_source(config, str(EXAMPLE_CONFIG), str(EXAMPLE_AUDIENCE))
    assert source is not None and take_prefetched(config, *source) is None
