"""The outbox provider: writes exactly what would be delivered into the output folder, sends nothing.

It is the default when no provider credentials are set. The message is written once per variant
(language) and each batch as the real provider's request body, so a project leader can see what
SendGrid or GatewayAPI would receive, and a developer can diff it. It mirrors that provider in
everything but sending: the same batch size, the same message parts carried, the same mistakes
refused before anything is written. The request bodies hold addresses and numbers, so they go
through `PrivateFiles`: named only in the final folder (0600), never in a staging folder a crash
could leave behind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, ClassVar

from tasks.errors import TransientError
from tasks.output import PRIVATE_FOLDER, PrivateFiles
from tasks.providers.base import BatchResult, DeliveryStatus, Message, Provider, Recipient
from tasks.providers.http import HttpProvider


class OutboxProvider(Provider[tuple[str, bytes], str]):
    """Writes each batch's request body (as `mirrors` would post it) to a private file."""

    name: ClassVar[str] = "outbox"

    def __init__(
        self, files: PrivateFiles, folder: str, *, mirrors: type[HttpProvider], settings: Any
    ) -> None:
        self.files = files
        self.folder = folder  # the channel's folder in the output, e.g. "sms"
        self.mirrors = mirrors
        self.settings = settings  # the channel settings `mirrors.document` reads
        # Per instance: whatever the mirrored provider takes and carries.
        self.max_batch = mirrors.max_batch  # type: ignore[misc]
        self.carries = mirrors.carries  # type: ignore[misc]

    def build_request(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> tuple[str, bytes]:
        body = self.mirrors.document(
            self.settings, message, recipients, campaign=campaign, batch_id=batch_id
        )
        name = f"{message.language.value}-{batch_id}.json"
        return name, json.dumps(body, ensure_ascii=False, indent=1).encode()

    def post(self, request: tuple[str, bytes]) -> str:
        name, content = request
        try:
            self.files.write(f"{self.folder}/{PRIVATE_FOLDER}/{name}", content)
        except OSError as exc:
            # Nothing was delivered (a full disk, a read-only folder): pending again, not unknown.
            raise TransientError(
                f"the outbox could not write {name} ({type(exc).__name__}: {exc.strerror}); "
                "fix: free disk space or make the output folder writable"
            ) from None
        return name

    def read_statuses(self, answer: str, recipients: Sequence[Recipient]) -> BatchResult:
        return BatchResult(
            statuses=dict.fromkeys(map(attrgetter("key"), recipients), DeliveryStatus.SENT),
            provider_ids=[answer],
        )
