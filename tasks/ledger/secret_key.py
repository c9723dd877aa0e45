"""The ledger's hashing key: where it comes from, and the check value that binds it to one ledger."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Column, Connection, Float, Integer, MetaData, String, Table, Text, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from tasks.errors import ConfigError
from tasks.settings import StorageSettings, settings

LEDGER_KEY_ENV = "FBSFLOW_LEDGER_KEY"
KEY_FILE_NAME = "ledger.key"
MIN_SECRET_BYTES = 16
# What the check value is an HMAC of. Changing it would make every recorded check a mismatch.
_LABEL = b"fbsflow ledger key check v1"
# Hex characters of the check value shown as a key's id: enough to tell two keys apart.
_ID_CHARS = 12
_FIX_SHORT = "e.g. from: python -c 'import secrets; print(secrets.token_hex(32))'"

metadata = MetaData()
key_check = Table(
    "ledger_key",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: a ledger has one key
    Column("check_value", String(64), nullable=False),
    # Where the first key came from (the variable or a file, and the host): for the message a
    # run with another key gets. Not secret.
    Column("origin", Text, nullable=False),
    Column("recorded_at", Float, nullable=False),
)


@dataclass(frozen=True)
class LedgerKey:
    """A ledger key and where it was found (`FBSFLOW_LEDGER_KEY` or a key file's absolute path)."""

    secret: bytes = field(repr=False)
    origin: str


def check_value(secret: bytes) -> str:
    """The value a ledger records for its key: HMAC-SHA256 of a fixed label (hex)."""
    return hmac.new(secret, _LABEL, hashlib.sha256).hexdigest()


def key_id(secret: bytes) -> str:
    """A short, non-secret name for a key, to tell two keys apart in a message."""
    return check_value(secret)[:_ID_CHARS]


def find_key(data_dir: Path) -> LedgerKey | None:
    """The key from env FBSFLOW_LEDGER_KEY, else from `data_dir/ledger.key`; None if neither."""
    if from_env := settings(StorageSettings).ledger_key:
        secret = from_env.get_secret_value().encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"{LEDGER_KEY_ENV} is shorter than {MIN_SECRET_BYTES} characters; set a long "
                f"random value, {_FIX_SHORT}"
            )
        return LedgerKey(secret, LEDGER_KEY_ENV)
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        return None
    secret = path.read_text().strip().encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path} holds too short a key; delete it only if nothing was sent yet")
    return LedgerKey(secret, str(path))


def make_key_file(data_dir: Path) -> LedgerKey:
    """A new random key in `data_dir/ledger.key` (private), unless another process made one first."""
    path = data_dir / KEY_FILE_NAME
    # Write aside, then link into place: if two processes race, both use the winner's key.
    tmp = data_dir / f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    found = find_key(data_dir)
    assert found is not None  # the file was just linked into place, by us or the winner
    return found


def refuse_a_new_key(conn: Connection, deliveries_table: str, where: str, data_dir: Path) -> None:
    """ConfigError if the ledger was used already: a key made now could not be the one it holds.

    Called before a new key file is made, so that a machine or folder without the key stops
    instead of starting a second, empty set of recipient keys in a shared ledger.
    """
    from sqlalchemy import inspect

    inspector = inspect(conn)
    recorded = None
    if inspector.has_table(key_check.name):
        recorded = conn.execute(select(key_check.c.check_value, key_check.c.origin)).first()
    if recorded is not None:
        used = f"was first used with key {recorded[0][:_ID_CHARS]} (from {recorded[1]})"
    elif (
        inspector.has_table(deliveries_table)
        and conn.exec_driver_sql(f"SELECT 1 FROM {deliveries_table} LIMIT 1").first()
    ):
        used = "holds deliveries made with a key this run does not have"
    else:
        return
    raise ConfigError(
        f"the ledger {where} {used}, and this run found no key: neither {LEDGER_KEY_ENV} is set "
        f"nor is there a {data_dir / KEY_FILE_NAME}. A new key would send to everyone again, so "
        f"nothing was sent. Fix: set {LEDGER_KEY_ENV} to the key used before (the content of the "
        f"ledger.key that runs used), or copy that ledger.key into {data_dir}"
    )


def verify(conn: Connection, *, postgres: bool, secret: bytes, origin: str, where: str) -> None:
    """Record the key's check value in a ledger that has none; else ConfigError on a mismatch.

    A ledger stores an HMAC of each address under a secret key. A run with another key computes
    other recipient keys, finds none of them in the ledger and sends to everyone again. So the first
    open of a ledger records a check value of its key (an HMAC of a fixed label under the key, never
    the key), and every later open compares: a run with another key stops before it sends anything.

    In the caller's transaction. Two processes recording at once: one insert wins (the primary
    key), and the other then compares against it like any later open.
    """
    mine = check_value(secret)
    recorded = conn.execute(select(key_check.c.check_value, key_check.c.origin)).first()
    if recorded is None:
        values = {
            "id": 1,
            "check_value": mine,
            "origin": f"{origin} on host {socket.gethostname()}",
            "recorded_at": time.time(),
        }
        if postgres:
            conn.execute(pg_insert(key_check).values(values).on_conflict_do_nothing())
        else:
            conn.execute(key_check.insert().prefix_with("OR IGNORE").values(values))
        recorded = conn.execute(select(key_check.c.check_value, key_check.c.origin)).one()
    expected, first_origin = recorded
    if hmac.compare_digest(expected, mine):
        return
    raise ConfigError(
        f"the ledger {where} belongs to another key: its recipient keys were made with key "
        f"{expected[:_ID_CHARS]} (from {first_origin}), and this run's key is "
        f"{mine[:_ID_CHARS]} (from {origin}). With it every borrower would be sent to again, so "
        f"nothing was sent. Fix: set {LEDGER_KEY_ENV} to the key used before (the value behind "
        f"key {expected[:_ID_CHARS]}), or point FBSFLOW_DATABASE_URL / FBSFLOW_DATA_DIR at the "
        "ledger this key belongs to"
    )
