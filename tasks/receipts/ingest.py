"""Take in providers' events for one municipality: checked, keyed, recorded in one transaction.

Used by the receiver (tasks/receipts/app.py) for each signed request and by
`fbsflow receipts import` for a downloaded file; both end in `outcomes.record`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError
from tasks.ledger import Ledger
from tasks.ledger.outcomes import Ingested, KeyedEvent, record
from tasks.receipts.events import (
    MalformedBody,
    check_report,
    gatewayapi_events,
    sendgrid_events,
)


class Receipts:
    """Events into one municipality's ledger. Thread-safe as the ledger is."""

    def __init__(self, ledger: Ledger, municipality: str, campaign: str) -> None:
        self.ledger = ledger
        self.municipality = municipality
        # Events that name no campaign (an import without custom args) belong to this one.
        self.campaign = campaign
        self._prefix = f"{municipality}:"

    def _keys(self, addresses: Sequence[str]) -> list[str]:
        return self.ledger.recipient_keys(addresses)

    def _ours(self, events: list[KeyedEvent]) -> list[KeyedEvent]:
        # A provider account shared with another municipality posts its events here too.
        return [e for e in events if e.campaign.startswith(self._prefix)]

    def sendgrid(self, body: bytes) -> Ingested:
        """Record a SendGrid batch (MalformedBody: nothing recorded)."""
        events = sendgrid_events(body, default_campaign=self.campaign, keyer=self._keys)
        return self._record(events)

    def gatewayapi(self, reports: Sequence[dict[str, Any]]) -> Ingested:
        """Record checked GatewayAPI reports."""
        events = gatewayapi_events(reports, default_campaign=self.campaign, keyer=self._keys)
        return self._record(events)

    def _record(self, events: list[KeyedEvent]) -> Ingested:
        ours = self._ours(events)
        done = record(self.ledger, self.municipality, ours)
        done.events = len(events)
        done.unmatched += len(events) - len(ours)
        return done

    def import_file(self, path: Path) -> Ingested:
        """Record the events of a downloaded file: a JSON list, or one JSON object per line.

        Each object is a SendGrid event (it has `sg_event_id`) or a GatewayAPI report (it has
        `msisdn`). A file that is neither is refused whole (ConfigError naming the line).
        """
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: cannot read ({type(exc).__name__}); fix: give a UTF-8 JSON file"
            ) from None
        items = _items(path, text)
        sendgrid = [i for i in items if "sg_event_id" in i]
        reports = [i for i in items if "sg_event_id" not in i]
        for number, report in enumerate(reports, 1):
            try:
                check_report(report)
            except MalformedBody as problem:
                raise ConfigError(
                    f"{path}: item {number} is neither a SendGrid event (no `sg_event_id`) nor a "
                    f"GatewayAPI report ({problem}); fix: export the provider's events as JSON"
                ) from None
        done = Ingested()
        for start in range(0, len(sendgrid), 10_000):
            body = json.dumps(sendgrid[start : start + 10_000]).encode()
            try:
                done.add(self.sendgrid(body))
            except MalformedBody as problem:
                raise ConfigError(
                    f"{path}: {problem}; fix: export SendGrid's events as JSON"
                ) from None
        if reports:
            done.add(self.gatewayapi(reports))
        return done


def _items(path: Path, text: str) -> list[dict[str, Any]]:
    stripped = text.strip()
    try:
        if stripped.startswith("["):
            loaded = json.loads(stripped)
            items = loaded if isinstance(loaded, list) else [loaded]
        else:
            items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        raise ConfigError(
            f"{path}: line {line} is not JSON; fix: give the provider's events as a JSON list "
            "or one JSON object per line"
        ) from None
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: item {number} is not a JSON object; fix: remove it")
    return items
