"""Providers' event bodies checked and turned into KeyedEvents: the address is keyed, then dropped.

SendGrid posts a JSON list of events (`event`, `email`, `timestamp`, `sg_event_id`, and the
message's `custom_args`: fbsflow sends `campaign`, `batch_id` and, per recipient, `recipient`,
the ledger key). GatewayAPI posts one delivery report (`id`, `msisdn`, `status`, `userref`, which
fbsflow sets to `campaign:batch_id`). A body that is not that shape is refused whole
(MalformedBody), so a half-read batch never changes anything. No message here quotes the body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tasks.ledger.outcomes import KeyedEvent

# SendGrid event -> outcome (None: it only proves SendGrid accepted the message).
SENDGRID_OUTCOMES: dict[str, str | None] = {
    "processed": None,
    "deferred": "deferred",
    "delivered": "delivered",
    "open": "delivered",
    "click": "delivered",
    "bounce": "bounced",
    "dropped": "dropped",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
SENDGRID_SUPPRESS = {"spamreport": "complained", "unsubscribe": "unsubscribed"}
SENDGRID_SUPPRESS["group_unsubscribe"] = "unsubscribed"
# GatewayAPI status -> outcome; statuses not named here (e.g. a new one) are ignored.
GATEWAYAPI_OUTCOMES: dict[str, str] = {
    "DELIVERED": "delivered",
    "UNDELIVERABLE": "undeliverable",
    "EXPIRED": "expired",
    "REJECTED": "rejected",
    "SKIPPED": "rejected",
    "DELETED": "dropped",
    "BUFFERED": "deferred",
    "ENROUTE": "deferred",
    "SCHEDULED": "deferred",
    "ACCEPTED": "deferred",
}
# A number GatewayAPI could not deliver to is dead or barred: later campaigns skip it.
GATEWAYAPI_SUPPRESS = {"UNDELIVERABLE": "undeliverable"}

Keyer = Callable[[Sequence[str]], list[str]]


class MalformedBody(ValueError):
    """A body that is not the provider's event format; the message names no personal data."""


def _campaign_of(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


def sendgrid_events(body: bytes, *, default_campaign: str, keyer: Keyer) -> list[KeyedEvent]:
    """The KeyedEvents of a SendGrid Event Webhook batch (MalformedBody if it is not one).

    An event without fbsflow's `recipient` custom arg (sent by another tool, or imported from a
    download without custom args) is keyed by its address, which is then forgotten.
    """
    try:
        batch = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("the body is not JSON") from None
    if not isinstance(batch, list):
        raise MalformedBody("the body is not a JSON list of events")
    parsed: list[tuple[str, str, str | None, str | None, str | None]] = []
    to_key: list[str] = []
    for number, event in enumerate(batch, 1):
        if not isinstance(event, dict):
            raise MalformedBody(f"event {number} is not a JSON object")
        kind, event_id = event.get("event"), event.get("sg_event_id")
        if not isinstance(kind, str) or not isinstance(event_id, str) or not event_id:
            raise MalformedBody(f"event {number} lacks `event` or `sg_event_id`")
        args = event.get("custom_args") if isinstance(event.get("custom_args"), dict) else {}
        # The webhook puts custom args at the top level of each event; a download may nest them.
        key = event.get("recipient", args.get("recipient"))
        campaign = event.get("campaign", args.get("campaign"))
        if not (isinstance(key, str) and key):
            address = event.get("email")
            if not isinstance(address, str) or "@" not in address:
                raise MalformedBody(f"event {number} has neither a recipient key nor an e-mail")
            key = None
            to_key.append(address)
        parsed.append((kind, event_id, key, campaign, event.get("type")))
    keys = iter(keyer(to_key)) if to_key else iter(())
    events = []
    for kind, event_id, key, campaign, bounce_type in parsed:
        if key is None:
            key = next(keys)
        if kind not in SENDGRID_OUTCOMES:
            continue  # an event fbsflow has no use for (e.g. group_resubscribe)
        suppress = SENDGRID_SUPPRESS.get(kind)
        # "blocked" is SendGrid's soft bounce (the receiving server refused for now).
        if kind == "bounce" and bounce_type != "blocked":
            suppress = "bounced"
        events.append(
            KeyedEvent(
                source="sendgrid",
                event_id=event_id,
                campaign=_campaign_of(campaign, default_campaign),
                recipient_key=key,
                outcome=SENDGRID_OUTCOMES[kind],
                suppress=suppress,
            )
        )
    return events


def gatewayapi_report(body: bytes) -> dict[str, Any]:
    """A GatewayAPI delivery report as a dict with `id`, `msisdn` and `status` checked."""
    try:
        report = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("the body is not JSON") from None
    if not isinstance(report, dict):
        raise MalformedBody("the body is not a JSON object")
    check_report(report)
    return report


def check_report(report: dict[str, Any]) -> None:
    """MalformedBody unless `report` has GatewayAPI's `id`, `msisdn` and `status`."""
    if not isinstance(report.get("id"), int) or isinstance(report.get("id"), bool):
        raise MalformedBody("the report lacks a numeric `id`")
    msisdn = report.get("msisdn")
    if not (isinstance(msisdn, int) and not isinstance(msisdn, bool) and msisdn > 0):
        raise MalformedBody("the report lacks a numeric `msisdn`")
    if not isinstance(report.get("status"), str):
        raise MalformedBody("the report lacks a `status`")


def gatewayapi_events(
    reports: Iterable[dict[str, Any]], *, default_campaign: str, keyer: Keyer
) -> list[KeyedEvent]:
    """The KeyedEvents of checked GatewayAPI reports; each number is keyed, then forgotten."""
    reports = [r for r in reports if r["status"] in GATEWAYAPI_OUTCOMES]
    keys = keyer([f"+{r['msisdn']}" for r in reports])
    events = []
    for report, key in zip(reports, keys, strict=True):
        userref = report.get("userref")
        # fbsflow's userref is "campaign:batch_id", and a campaign has colons of its own.
        campaign = userref.rsplit(":", 1)[0] if isinstance(userref, str) and ":" in userref else ""
        status = report["status"]
        events.append(
            KeyedEvent(
                source="gatewayapi",
                # One report per message, number and status: a retry repeats all three.
                event_id=f"{report['id']}:{key[:16]}:{status}",
                campaign=_campaign_of(campaign, default_campaign),
                recipient_key=key,
                outcome=GATEWAYAPI_OUTCOMES[status],
                suppress=GATEWAYAPI_SUPPRESS.get(status),
                medium="sms",
            )
        )
    return events
