"""Helpers of the receipts tests: a ledger with sent recipients, a receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import uvicorn

from tasks.ledger import Ledger
from tasks.receipts.app import make_app
from tasks.receipts.ingest import Receipts
from tasks.receipts.signatures import sendgrid_public_key
from tests.servers.webhooks import SigningKey

MUNICIPALITY = "testkommune"
CAMPAIGN = f"{MUNICIPALITY}:forbered-og-kommuniker-eksternt:2026-03-01"
SECRET = "gatewayapi-webhook-secret-for-tests"


def addresses(n: int, start: int = 0) -> list[str]:
    return [f"laaner{i}@example.test" for i in range(start, start + n)]


def send(
    ledger: Ledger, channel: str, addresses: Sequence[str], *, campaign: str = CAMPAIGN
) -> list[str]:
    """Register and mark `addresses` sent, as a run does; their keys, in order."""
    keys = ledger.recipient_keys(addresses)
    ledger.register(campaign, channel, keys)
    claimed = ledger.claim(campaign, channel, keys, batch_id="b1", run_id="run-1")
    assert len(claimed) == len(keys)
    ledger.mark(campaign, channel, dict.fromkeys(keys, "sent"), run_id="run-1")
    return keys


def events(
    addrs: Sequence[str], keys: Sequence[str] | None, event: str, *, campaign: str = CAMPAIGN
) -> list[dict]:
    """SendGrid webhook events, one per address; with the recipient key when `keys` given."""
    out = []
    for i, address in enumerate(addrs):
        e = {
            "email": address,
            "timestamp": int(time.time()),
            "event": event,
            "sg_event_id": hashlib.sha1(f"{event}{address}".encode()).hexdigest()[:22],
            "sg_message_id": "msg.filter0001",
            "campaign": campaign,
        }
        if keys is not None:
            e["recipient"] = keys[i]
        out.append(e)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def receiver(
    ledger: Ledger,
    key: SigningKey | None,
    *,
    secret: str | None = SECRET,
    max_age: float = 600,
    municipality: str = MUNICIPALITY,
    campaign: str = CAMPAIGN,
) -> Iterator[str]:
    """The receiver app on uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    app = make_app(
        Receipts(ledger, municipality, campaign),
        sendgrid_key=sendgrid_public_key(key.public) if key else None,
        gatewayapi_secret=secret,
        max_age=max_age,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
