"""Large SQLite pages change the ledger's file, not what it records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tasks.ledger import Ledger
from tests.speed.test_ledger_sql import KEY, _story


@pytest.mark.parametrize(("switch", "page_size"), [("1", 32768), ("0", 4096)])
def test_a_new_ledger_gets_its_page_size_from_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, switch: str, page_size: int
) -> None:
    monkeypatch.setenv("FBSFLOW_SPEED_SQLITE_PAGES", switch)
    path = tmp_path / "ledger.db"
    with Ledger(f"sqlite:///{path}", key=KEY):
        pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == page_size


def test_the_rows_are_the_same_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = []
    for switch in ("1", "0"):
        monkeypatch.setenv("FBSFLOW_SPEED_SQLITE_PAGES", switch)
        with Ledger(f"sqlite:///{tmp_path / f'{switch}.db'}", key=KEY) as ledger:
            rows.append(_story(ledger))
    assert rows[0] == rows[1]
