"""The receipts receiver: a small ASGI app taking SendGrid's and GatewayAPI's signed events.

    POST /sendgrid/events   SendGrid Event Webhook batch, ECDSA-signed
    POST /gatewayapi/dlr    GatewayAPI delivery report, JWT in X-Gwapi-Signature
    GET  /healthz           "ok" once the ledger is open

Answers: 200 only after the batch's transaction has committed (a provider that gets no 2xx
sends the batch again, and the event ids make that harmless); 401 for a missing or wrong
signature, 403 for a stale one or an endpoint with no key configured; 400 for a body that is
not the format; 500 if the database fails (the provider retries). A refused or malformed body
changes nothing. Logs name the endpoint and counts, never anything from a body.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tasks.receipts.events import MalformedBody, gatewayapi_report
from tasks.receipts.ingest import Receipts
from tasks.receipts.signatures import (
    GATEWAYAPI_SIGNATURE,
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    Refused,
    verify_gatewayapi,
    verify_sendgrid,
)

log = logging.getLogger("fbsflow.receipts")
# SendGrid posts batches of up to a few thousand events; 32 MiB is far above any real one.
MAX_BODY = 32 * 1024 * 1024


def make_app(
    receipts: Receipts,
    *,
    sendgrid_key: ec.EllipticCurvePublicKey | None,
    gatewayapi_secret: str | None,
    max_age: float,
) -> Starlette:
    """The receiver for one municipality's ledger."""

    async def _body(request: Request) -> bytes | None:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return None
        body = await request.body()
        return body if len(body) <= MAX_BODY else None

    async def sendgrid_events(request: Request) -> Response:
        if sendgrid_key is None:
            log.warning("sendgrid: refused a batch: SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
            return _answer(403, "no verification key configured")
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        try:
            verify_sendgrid(
                sendgrid_key,
                request.headers.get(SENDGRID_SIGNATURE),
                request.headers.get(SENDGRID_TIMESTAMP),
                body,
                max_age=max_age,
            )
        except Refused as why:
            status = 403 if "stale" in str(why) else 401
            log.warning("sendgrid: refused a batch (%d): %s", status, why)
            return _answer(status, str(why))
        try:
            done = await run_in_threadpool(receipts.sendgrid, body)
        except MalformedBody as why:
            log.warning("sendgrid: a malformed batch (400): %s", why)
            return _answer(400, str(why))
        log.info(
            "sendgrid: %d events, %d new outcomes, %d duplicates, %d unmatched, %d settled, "
            "%d suppressed",
            *(done.events, sum(done.by_outcome.values()), done.duplicates, done.unmatched),
            *(done.settled, done.suppressed),
        )
        return JSONResponse({"events": done.events, "duplicates": done.duplicates})

    async def gatewayapi_dlr(request: Request) -> Response:
        if not gatewayapi_secret:
            log.warning("gatewayapi: refused a report: GATEWAYAPI_WEBHOOK_SECRET is not set")
            return _answer(403, "no webhook secret configured")
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        try:
            report = gatewayapi_report(body)
        except MalformedBody as why:
            # Checked first only to compare it with the JWT; nothing is recorded either way.
            log.warning("gatewayapi: a malformed report (400): %s", why)
            return _answer(400, str(why))
        try:
            verify_gatewayapi(gatewayapi_secret, request.headers.get(GATEWAYAPI_SIGNATURE), report)
        except Refused as why:
            log.warning("gatewayapi: refused a report (401): %s", why)
            return _answer(401, str(why))
        done = await run_in_threadpool(receipts.gatewayapi, [report])
        log.info(
            "gatewayapi: report recorded (%d new outcomes, %d duplicates, %d unmatched)",
            sum(done.by_outcome.values()),
            done.duplicates,
            done.unmatched,
        )
        return JSONResponse({"events": done.events, "duplicates": done.duplicates})

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/sendgrid/events", sendgrid_events, methods=["POST"]),
            Route("/gatewayapi/dlr", gatewayapi_dlr, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _answer(status: int, why: str) -> Response:
    body: dict[str, Any] = {"error": why}
    return JSONResponse(body, status_code=status)
