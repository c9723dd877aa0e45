"""Registering beside keying gives the recipients and ledger rows that one after the other gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.audience import import_audience
from tasks.delivery import keying
from tasks.delivery.keying import KeyedPart, keyed_parts
from tasks.ledger import Ledger
from tasks.models import Channel, Language
from tasks.speed.overlap_register import register_while_keying
from tests.conftest import EXAMPLE_AUDIENCE

KEY = b"test-ledger-key-0123456789abcdef"
LANGUAGES = [Language.DA, Language.EN]


@pytest.fixture(autouse=True)
def _small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parts of at least 100: the example's 645 newsletter recipients come in several parts.
    monkeypatch.setattr(keying, "MIN_PART", 100)


def test_both_paths_give_the_same_recipients_and_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audience = import_audience(EXAMPLE_AUDIENCE)
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv("FBSFLOW_SPEED_OVERLAP_REGISTER", switch)
        with Ledger(f"sqlite:///{tmp_path / f'{switch}.db'}", key=KEY) as ledger:
            parts = keyed_parts(Channel.NEWSLETTER, audience, ledger, LANGUAGES)
            recipients, added = register_while_keying(ledger, "camp", "newsletter", parts)
            rows = [row[:3] for row in ledger.channel_rows("camp", "newsletter")]
            results.append((recipients, added, rows))
    assert results[0] == results[1]
    recipients, added, rows = results[0]
    assert added == len(recipients) == len(rows) == 645
    assert [key for _, key, _ in rows] == [r.key for r in recipients]  # registered in send order


@pytest.mark.parametrize("switch", ["1", "0"])
def test_a_failure_while_keying_registers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    monkeypatch.setenv("FBSFLOW_SPEED_OVERLAP_REGISTER", switch)
    audience = import_audience(EXAMPLE_AUDIENCE)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", key=KEY) as ledger:

        def broken() -> Iterator[KeyedPart]:
            parts = keyed_parts(Channel.NEWSLETTER, audience, ledger, LANGUAGES)
            yield next(parts)
            raise ValueError("keying stopped")

        with pytest.raises(ValueError, match="keying stopped"):
            register_while_keying(ledger, "camp", "newsletter", broken())
        assert ledger.counts("camp", "newsletter")["pending"] == 0
