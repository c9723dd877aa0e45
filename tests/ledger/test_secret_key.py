"""Recipient keys, and the ledger's key: where it comes from and how a wrong one is stopped."""

from __future__ import annotations

import hmac
import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import ConfigError
from tasks.ledger import (
    DATABASE_URL_ENV,
    KEY_FILE_NAME,
    LEDGER_KEY_ENV,
    DeliveryState,
    Ledger,
    normalise_address,
)
from tasks.ledger import secret_key as ledger_key
from tests.ledger.common import CHANNEL, KEY

# --- recipient keys ----------------------------------------------------------------------------


def test_recipient_key_is_a_keyed_hash_of_the_normalised_address(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'a.db'}", key=KEY) as a:
        key = a.recipient_key(" Anna.Hansen@Example.DK ")
        assert key == a.recipient_key("anna.hansen@example.dk")
        assert len(key) == 32 and int(key, 16) >= 0
        assert "anna" not in key and "example" not in key
        assert a.recipient_key("+45 12 34 56 78") == a.recipient_key("004512345678")
        assert a.recipient_key("+4512345678") != a.recipient_key("+4512345679")
        assert a.recipient_key("anna@example.dk") != a.recipient_key("anne@example.dk")
    with Ledger(f"sqlite:///{tmp_path / 'b.db'}", key=b"another-key-0123456789abcdef") as b:
        assert b.recipient_key("anna.hansen@example.dk") != key


def test_keys_that_need_escaping_register_and_claim(ledger: Ledger, campaign: str) -> None:
    odd = ['a"b', "c\\d", "e\nf", "æøå", "plain"]
    assert ledger.register(campaign, CHANNEL, odd) == 5
    assert sorted(ledger.claim(campaign, CHANNEL, odd, batch_id="1", run_id="r")) == sorted(odd)
    assert ledger.mark(campaign, CHANNEL, dict.fromkeys(odd, DeliveryState.SENT)) == 5


@pytest.mark.parametrize("secret", [b"k" * 16, b"0123456789abcdef" * 4, b"x" * 100])
def test_recipient_keys_are_exactly_hmac_sha256(tmp_path: Path, secret: bytes) -> None:
    """The prepared-state shortcut must give the standard HMAC, for short, block-sized and long keys."""
    addresses = ["anna@example.dk", "+4512345678", "bo@example.dk"]
    with Ledger(f"sqlite:///{tmp_path / 'k.db'}", key=secret) as ledger:
        expected = [hmac.new(secret, a.encode(), "sha256").hexdigest()[:32] for a in addresses]
        assert ledger.recipient_keys(addresses) == expected
        assert ledger.recipient_keys(addresses, normalised=True) == expected
        assert [ledger.recipient_key(a) for a in addresses] == expected


def test_normalise_address() -> None:
    assert normalise_address("  Ole@EXAMPLE.dk\n") == "ole@example.dk"
    assert normalise_address("+45 (12) 34-56.78") == "+4512345678"
    assert normalise_address("0045 12345678") == "+4512345678"


def test_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        Ledger(f"sqlite:///{tmp_path / 'x.db'}", key=b"short")


def test_open_makes_a_private_key_file_once_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(LEDGER_KEY_ENV, raising=False)
    data = tmp_path / "data"
    with Ledger.open(data) as first:
        key = first.recipient_key("borger@example.dk")
        assert first.dialect == "sqlite"
    key_file = data / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (data / "ledger.db").is_file()
    assert not [p for p in data.iterdir() if p.name.startswith(f".{KEY_FILE_NAME}")]
    with Ledger.open(data) as second:
        assert second.recipient_key("borger@example.dk") == key
    with Ledger.open(tmp_path / "elsewhere") as other:
        assert other.recipient_key("borger@example.dk") != key


def test_open_takes_the_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv(LEDGER_KEY_ENV, "a-shared-secret-for-all-machines")
    with Ledger.open(tmp_path / "one") as one, Ledger.open(tmp_path / "two") as two:
        assert one.recipient_key("borger@example.dk") == two.recipient_key("borger@example.dk")
    assert not (tmp_path / "one" / KEY_FILE_NAME).exists()
    monkeypatch.setenv(LEDGER_KEY_ENV, "short")
    with pytest.raises(ConfigError, match=LEDGER_KEY_ENV):
        Ledger.open(tmp_path / "three")


def test_open_uses_the_database_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Ledger.open(tmp_path / "data") as led:
        led.register("c", CHANNEL, ["a"])
    assert (tmp_path / "elsewhere.db").is_file()
    assert not (tmp_path / "data" / "ledger.db").exists()


# --- the key belongs to the ledger ------------------------------------------------------------


OTHER_KEY = b"another-ledger-key-fedcba9876543210"


def _recorded_key(url: str) -> list[tuple[str, str]]:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.exec_driver_sql("SELECT check_value, origin FROM ledger_key")
            ]
    finally:
        engine.dispose()


def test_a_ledger_records_its_keys_check_value_and_refuses_another_key(
    db_url: str, campaign: str
) -> None:
    with Ledger(db_url, key=KEY, key_origin="/srv/fbsflow/.fbsflow/ledger.key") as first:
        first.register(campaign, CHANNEL, ["a", "b"])
    [(check, origin)] = _recorded_key(db_url)
    assert check == ledger_key.check_value(KEY) and KEY.decode() not in check + origin
    assert origin.startswith("/srv/fbsflow/.fbsflow/ledger.key on host ")
    with Ledger(db_url, key=KEY) as again:  # the same key: opens as before
        assert again.counts(campaign, CHANNEL)["pending"] == 2

    with pytest.raises(ConfigError) as refused:
        Ledger(db_url, key=OTHER_KEY, key_origin=LEDGER_KEY_ENV)
    message = str(refused.value)
    # Which key the ledger expects and where it came from, this run's key and its source, the fix.
    assert f"key {ledger_key.key_id(KEY)} (from /srv/fbsflow/.fbsflow/ledger.key on host" in message
    assert f"this run's key is {ledger_key.key_id(OTHER_KEY)} (from {LEDGER_KEY_ENV})" in message
    assert "nothing was sent" in message and f"Fix: set {LEDGER_KEY_ENV}" in message
    assert KEY.decode() not in message and OTHER_KEY.decode() not in message
    assert _recorded_key(db_url) == [(check, origin)]


def _open_with(url: str, key: bytes, start: Any, results: Any) -> None:
    start.wait(30)
    try:
        Ledger(url, key=key).close()
        results.put(("opened", key))
    except ConfigError:
        results.put(("refused", key))


def test_a_ledger_from_before_the_check_records_the_first_key_once_when_two_race(
    db_url: str, campaign: str
) -> None:
    from sqlalchemy import create_engine

    with Ledger(db_url, key=KEY) as led:
        led.register(campaign, CHANNEL, ["a"])
    engine = create_engine(db_url)
    with engine.begin() as conn:  # a ledger written before keys were recorded
        conn.exec_driver_sql("DROP TABLE ledger_key")
    engine.dispose()

    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    racers = [
        ctx.Process(target=_open_with, args=(db_url, key, start, results))
        for key in (KEY, OTHER_KEY)
    ]
    for racer in racers:
        racer.start()
    start.set()
    outcomes = dict(results.get(timeout=60) for _ in racers)
    for racer in racers:
        racer.join(30)
    # Exactly one key was recorded, and the other process was refused.
    assert sorted(outcomes) == ["opened", "refused"]
    assert _recorded_key(db_url)[0][0] == ledger_key.check_value(outcomes["opened"])


def test_open_makes_no_new_key_for_a_ledger_used_before(
    db_url: str, campaign: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine or folder without the key file meets a shared ledger that has deliveries."""
    monkeypatch.setenv(DATABASE_URL_ENV, db_url)
    monkeypatch.delenv(LEDGER_KEY_ENV, raising=False)
    with Ledger.open(tmp_path / "first") as first:
        first.register(campaign, CHANNEL, ["a"])
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(ConfigError) as refused:
        Ledger.open(elsewhere)
    message = str(refused.value)
    assert "this run found no key" in message and str(elsewhere / KEY_FILE_NAME) in message
    # Which key the ledger holds, and where it was found.
    first_key = (tmp_path / "first" / KEY_FILE_NAME).read_text().strip()
    used = f"was first used with key {ledger_key.key_id(first_key.encode())} (from "
    assert used + str(tmp_path / "first" / KEY_FILE_NAME) in message
    assert first_key not in message
    assert not (elsewhere / KEY_FILE_NAME).exists()
    # With the key used before, from the environment, the same ledger opens.
    monkeypatch.setenv(LEDGER_KEY_ENV, first_key)
    with Ledger.open(elsewhere) as shared:
        assert shared.counts(campaign, CHANNEL)["pending"] == 1
