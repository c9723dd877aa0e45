"""Recipient keys from prepared HMAC states are `hmac.digest`'s, with the switch on or off."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from tasks.ledger import Ledger
from tasks.speed.hmac_keys import hmac_keyer

ADDRESSES = ["anna@example.dk", "+4512345678", "bo@example.dk", "æøå@example.dk", ""]


@pytest.mark.parametrize("secret", [b"k" * 16, b"0123456789abcdef" * 4, b"x" * 100])
@pytest.mark.parametrize("switch", ["1", "0"])
def test_both_paths_give_the_standard_hmac(
    monkeypatch: pytest.MonkeyPatch, secret: bytes, switch: str
) -> None:
    """Short, block-sized and long keys (a long one is hashed first, RFC 2104)."""
    monkeypatch.setenv("FBSFLOW_SPEED_HMAC_STATES", switch)
    expected = [hmac.new(secret, a.encode(), "sha256").hexdigest()[:32] for a in ADDRESSES]
    assert hmac_keyer(secret, 32)(ADDRESSES) == expected
    assert hmac_keyer(secret, 32)(iter(ADDRESSES)) == expected  # any iterable, once


def test_a_ledger_keys_alike_with_the_switch_on_and_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = b"test-ledger-key-0123456789abcdef"
    keys = []
    for switch in ("1", "0"):
        monkeypatch.setenv("FBSFLOW_SPEED_HMAC_STATES", switch)
        with Ledger(f"sqlite:///{tmp_path / f'{switch}.db'}", key=secret) as ledger:
            keys.append(ledger.recipient_keys([" Anna@Example.DK ", "0045 12 34 56 78"]))
    assert keys[0] == keys[1]
