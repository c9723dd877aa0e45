"""Providers' webhooks as the stand-ins post them: SendGrid's signed event batches, GatewayAPI's
JWT-signed delivery reports, with the delays, duplicates and disorder of the real services.

The keys are real: an ECDSA P-256 key pair made with `cryptography` (SendGrid's Signed Event
Webhook), an HS256 JWT made with PyJWT (GatewayAPI). Only ever posted to 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tasks.receipts.signatures import (
    GATEWAYAPI_SIGNATURE,
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    sign_sendgrid,
)


@dataclass
class SigningKey:
    """A fresh SendGrid-style key pair; `public` is what SendGrid shows (base64 DER SPKI)."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public(self) -> str:
        der = self.private.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()


def signed_batch(
    key: SigningKey, events: Sequence[dict[str, Any]], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of one signed SendGrid batch."""
    body = json.dumps(list(events)).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        SENDGRID_TIMESTAMP: stamp,
        SENDGRID_SIGNATURE: sign_sendgrid(key.private, stamp, body),
    }
    return body, headers


def disorder(
    items: Sequence[dict[str, Any]], *, duplicates: float = 0.0, seed: int = 0
) -> list[dict[str, Any]]:
    """`items` with a `duplicates` share repeated (the same event id), all shuffled."""
    rng = random.Random(seed)
    out = list(items) + [dict(i) for i in rng.sample(list(items), int(len(items) * duplicates))]
    rng.shuffle(out)
    return out


def post_events(
    url: str,
    key: SigningKey,
    events: Sequence[dict[str, Any]],
    *,
    batch: int = 1000,
    delay: float = 0.0,
    client: httpx.Client | None = None,
) -> list[int]:
    """Post `events` to a receiver's `/sendgrid/events` in signed batches; the statuses.

    A batch not answered 2xx is posted again (SendGrid retries for 24 h), up to 3 times.
    """
    assert url.startswith(("http://127.0.0.1", "http://localhost"))
    own = client is None
    client = client or httpx.Client(timeout=60)
    statuses = []
    try:
        for start in range(0, len(events), batch):
            for _ in range(3):
                body, headers = signed_batch(key, events[start : start + batch])
                status = client.post(f"{url}/sendgrid/events", content=body, headers=headers)
                if status.status_code < 300:
                    break
            statuses.append(status.status_code)
            if delay:
                time.sleep(delay)
    finally:
        if own:
            client.close()
    return statuses


def report_token(secret: str, report: dict[str, Any]) -> str:
    """The X-Gwapi-Signature GatewayAPI sends with a report: an HS256 JWT of its fields."""
    return jwt.encode(report, secret, algorithm="HS256")


def post_reports(
    url: str,
    secret: str,
    reports: Sequence[dict[str, Any]],
    *,
    delay: float = 0.0,
    client: httpx.Client | None = None,
) -> list[int]:
    """Post each GatewayAPI report to a receiver's `/gatewayapi/dlr`; the statuses."""
    assert url.startswith(("http://127.0.0.1", "http://localhost"))
    own = client is None
    client = client or httpx.Client(timeout=60)
    statuses = []
    try:
        for report in reports:
            headers = {GATEWAYAPI_SIGNATURE: report_token(secret, report)}
            answer = client.post(f"{url}/gatewayapi/dlr", json=report, headers=headers)
            statuses.append(answer.status_code)
            if delay:
                time.sleep(delay)
    finally:
        if own:
            client.close()
    return statuses
