"""`fbsflow receipts serve` killed with SIGKILL mid-batch loses no acknowledged event, records no
batch in part, and its log holds no address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tasks.config import load_municipality
from tasks.ledger import Ledger
from tasks.ledger.outcome_tables import receipt_events
from tasks.plan import campaign_id
from tasks.steps import data_dir
from tests.servers.webhooks import SigningKey, signed_batch
from tests.test_ledger_flow import municipality  # noqa: F401

from .support import addresses, events, send

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BATCH = 2000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_killed_receiver_loses_no_acknowledged_event(
    municipality: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FBSFLOW_LEDGER_KEY", "a-ledger-key-for-the-kill-test-0123")
    config = load_municipality(municipality)
    campaign = campaign_id(config)
    sent = addresses(40 * BATCH)
    with Ledger.open(data_dir(municipality)) as ledger:
        keys = send(ledger, "newsletter", sent, campaign=campaign)
    key = SigningKey()
    port = _port()
    env = {**os.environ, "SENDGRID_WEBHOOK_PUBLIC_KEY": key.public}
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "receipts", "serve", str(municipality),
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.1)
        batches = [
            events(sent[i : i + BATCH], keys[i : i + BATCH], "delivered", campaign=campaign)
            for i in range(0, len(sent), BATCH)
        ]
        acknowledged: list[int] = []

        def kill_soon() -> None:
            while len(acknowledged) < 3:
                time.sleep(0.01)
            time.sleep(0.05)  # into a later batch's transaction, most likely
            server.send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        with httpx.Client(timeout=30) as client:
            for number, batch in enumerate(batches):
                body, headers = signed_batch(key, batch)
                try:
                    answer = client.post(f"{url}/sendgrid/events", content=body, headers=headers)
                except httpx.TransportError:
                    break
                if answer.status_code == 200:
                    acknowledged.append(number)
        killer.join()
        server.wait(10)
    assert server.returncode == -signal.SIGKILL
    assert 3 <= len(acknowledged) < len(batches)
    with Ledger.open(data_dir(municipality)) as ledger, ledger._engine.connect() as conn:
        recorded = {e for (e,) in conn.execute(select(receipt_events.c.event_id))}
    for number, batch in enumerate(batches):
        ids = {e["sg_event_id"] for e in batch}
        if number in acknowledged:
            assert ids <= recorded, f"batch {number} was acknowledged but not kept"
        else:
            assert not ids & recorded or ids <= recorded, f"batch {number} recorded in part"
    text = log.read_text()
    assert "sendgrid: " in text  # the receiver logged its batches, by counts
    assert "@" not in text and "laaner" not in text
