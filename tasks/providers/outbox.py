"""The outbox provider: writes exactly what would be delivered into the output folder, sends nothing.

It is the default when no provider credentials are set. The message is written once per variant
(language) and each batch as the real provider's request body, so a project leader can see what
SendGrid or GatewayAPI would receive, and a developer can diff it. The request bodies hold
addresses and numbers, so they go through `PrivateFiles`: named only in the final folder (0600),
never in a staging folder a crash could leave behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from tasks.errors import TransientError
from tasks.output import PRIVATE_FOLDER, PrivateFiles
from tasks.providers.base import BatchResult, DeliveryStatus, Message, Provider, Recipient

# (message, recipients, batch_id) -> the provider's request body for that batch
Shape = Callable[[Message, Sequence[Recipient], str], dict[str, Any]]


class OutboxProvider(Provider):
    name = "outbox"

    def __init__(
        self, files: PrivateFiles, folder: str, *, shape: Shape, max_batch: int = 1000
    ) -> None:
        self.files = files
        self.folder = folder  # the channel's folder in the output, e.g. "sms"
        self.shape = shape
        self.max_batch = max_batch  # type: ignore[misc]  # per instance: mirrors the real provider

    def send_batch(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> BatchResult:
        body = self.shape(message, recipients, batch_id)
        name = f"{message.language.value}-{batch_id}.json"
        content = json.dumps(body, ensure_ascii=False, indent=1).encode()
        try:
            self.files.write(f"{self.folder}/{PRIVATE_FOLDER}/{name}", content)
        except OSError as exc:
            # Nothing was delivered (a full disk, a read-only folder): pending again, not unknown.
            raise TransientError(
                f"the outbox could not write {name} ({type(exc).__name__}: {exc.strerror}); "
                "fix: free disk space or make the output folder writable"
            ) from None
        return BatchResult(
            statuses={r.key: DeliveryStatus.SENT for r in recipients},
            provider_ids=[name],
        )
