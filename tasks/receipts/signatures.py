"""Is an event body the provider's? SendGrid's ECDSA signature, GatewayAPI's JWT.

SendGrid (Signed Event Webhook): ECDSA P-256 with SHA-256 over the timestamp header's text
followed by the raw body; the signature header is base64 of the DER signature, the public key
base64 of its DER SubjectPublicKeyInfo, as SendGrid's settings page shows it. A timestamp
further than `max_age` seconds from now is refused: a captured batch cannot be replayed later
(one replayed within the window is caught by its event ids).

GatewayAPI: a JWT signed HS256 with the webhook's secret, whose claims repeat the report;
the claims must match the body's `id`, `msisdn` and `status`.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tasks.errors import ConfigError

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
GATEWAYAPI_SIGNATURE = "X-Gwapi-Signature"


class Refused(Exception):
    """A body whose signature does not hold (or is stale); the reason names no body content."""


def sendgrid_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key from SENDGRID_WEBHOOK_PUBLIC_KEY (ConfigError if it is not one)."""
    try:
        key = load_der_public_key(base64.b64decode(text.strip(), validate=True))
    except (ValueError, binascii.Error):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ConfigError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 public key in base64; fix: copy "
            "the verification key from SendGrid (Settings > Mail Settings > Event Webhook > "
            "Signed Event Webhook) exactly as shown"
        )
    return key


def verify_sendgrid(
    key: ec.EllipticCurvePublicKey,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    *,
    max_age: float,
    now: float | None = None,
) -> None:
    """Refused unless `signature` is the key's over `timestamp` + `body` and `timestamp` is fresh."""
    if not signature or not timestamp:
        raise Refused("the signature or timestamp header is missing")
    try:
        stamp = int(timestamp)
    except ValueError:
        raise Refused("the timestamp header is not a number") from None
    if abs((time.time() if now is None else now) - stamp) > max_age:
        raise Refused("the timestamp is stale")
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        raise Refused("the signature does not match") from None


def sign_sendgrid(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """The signature header SendGrid would send (for the stand-in and the benchmark)."""
    der = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def verify_gatewayapi(secret: str, token: str | None, report: dict[str, Any]) -> None:
    """Refused unless `token` is an HS256 JWT under `secret` whose claims match `report`."""
    if not token:
        raise Refused("the X-Gwapi-Signature header is missing")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.PyJWTError:
        raise Refused("the JWT does not verify") from None
    for name in ("id", "msisdn", "status"):
        if claims.get(name) != report.get(name):
            raise Refused(f"the JWT's `{name}` is not the body's")
