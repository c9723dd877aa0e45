"""The outbox provider: writes exactly what would be delivered into the output folder, sends nothing.

It is the default when no provider credentials are set. The message is written once per variant
(language) and each batch as the real provider's request body, so a project leader can see what
SendGrid or GatewayAPI would receive, and a developer can diff it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tasks.errors import TransientError
from tasks.providers.base import BatchResult, DeliveryStatus, Message, Provider, Recipient

# (message, recipients, batch_id) -> the provider's request body for that batch
Shape = Callable[[Message, Sequence[Recipient], str], dict[str, Any]]


class OutboxProvider(Provider):
    name = "outbox"

    def __init__(self, folder: Path, *, shape: Shape, max_batch: int = 1000) -> None:
        self.folder = folder
        self.shape = shape
        self.max_batch = max_batch  # type: ignore[misc]  # per instance: mirrors the real provider

    def send_batch(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> BatchResult:
        requests = self.folder / "requests"
        body = self.shape(message, recipients, batch_id)
        path = requests / f"{message.language.value}-{batch_id}.json"
        try:
            requests.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
        except OSError as exc:
            # Nothing was delivered (a full disk, a read-only folder): pending again, not unknown.
            raise TransientError(
                f"the outbox could not write {path.name} ({type(exc).__name__}: {exc.strerror}); "
                f"fix: free disk space or make {self.folder} writable"
            ) from None
        return BatchResult(
            statuses={r.key: DeliveryStatus.SENT for r in recipients},
            provider_ids=[path.name],
        )
