"""The one exception tree of fbsflow; every library error is translated into it in one place.

    FbsflowError
    ├── ConfigError          the user's input is wrong: never retried, exit code 2
    │   └── UnsupportedFeatureError  a message part the provider cannot carry
    ├── StorageError         the database or a disk cannot be used (read-only, full,
    │                        unreachable, no driver): exit code 1 (tasks/translation.py)
    └── DeliveryError        a provider call did not succeed
        ├── PermanentError   this recipient or content is refused: record it, never retry
        ├── TransientError   definitely not accepted: safe to retry (maybe after `retry_after`)
        │   └── CircuitOpenError  the provider stopped answering: no more tries in this run
        └── AmbiguousError   may have been accepted: never re-sent automatically

A DeliveryError with `no_answer` set means the provider gave no answer at all (a connection
refused, lost or timed out, a name not resolved), as opposed to an answer that refused; the
circuit breaker (tasks/breaker.py) counts those.

Messages never carry a borrower's name, address or number: they name rows, fields and counts.
"""

from __future__ import annotations


class FbsflowError(Exception):
    """Base of every error fbsflow raises on purpose."""


class ConfigError(FbsflowError):
    """A config, card or audience file is wrong. The message names the file, the field and the fix."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class UnsupportedFeatureError(ConfigError):
    """A message carries a part (a subject, HTML, attachments) its provider cannot deliver.

    Raised before anything is sent, instead of sending the message without that part.
    """


class StorageError(FbsflowError):
    """The ledger's database or a folder cannot be used. The message names it and the fix.

    Not the user's input: a read-only or full disk, a database server that cannot be reached,
    a database driver that is not installed. Made from the library's error in one place,
    `tasks.translation.translate`.
    """


class DeliveryError(FbsflowError):
    """A provider call failed; subclasses say whether a retry is safe."""

    def __init__(self, message: str, *, status: int | None = None, no_answer: bool = False) -> None:
        self.status = status
        self.no_answer = no_answer
        super().__init__(message)


class PermanentError(DeliveryError):
    """The provider refused this content or these recipients: retrying cannot help."""


class TransientError(DeliveryError):
    """The provider definitely did not accept the request: a retry is safe."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        no_answer: bool = False,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, no_answer=no_answer)


class CircuitOpenError(TransientError):
    """The provider failed to answer too often in a row: this run starts nothing more for the
    channel. Nothing it covers was sent, so a later run may send it; Prefect must not retry it
    now (the provider would be asked again at once)."""


class AmbiguousError(DeliveryError):
    """The request may have been accepted (e.g. timeout after sending): never re-send blindly."""
