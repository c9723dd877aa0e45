"""The one table of provider outcome classifications, shared by the provider tests.

A row is a situation a provider can meet (an HTTP status, an SMTP reply, a failure of the
network or the disk) and, per provider, the outcome it must give: the error from tasks/errors.py
with its `no_answer` flag (which the circuit breaker counts), or the recipient's status when the
batch is answered. Each provider's test module stages every situation that names it on the real
stand-in (tests/servers/), through the real client library, and asserts the row; nothing in the
provider is patched. Reading across a row shows where providers differ, and why is in the
provider's module docstring (a 504 may have been sent by GatewayAPI, not by SendGrid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tasks.errors import (
    AmbiguousError,
    ConfigError,
    FbsflowError,
    PermanentError,
    TransientError,
)
from tasks.providers.base import BatchResult, DeliveryStatus, Recipient


@dataclass(frozen=True)
class Outcome:
    """An error class and its no_answer flag, or (error None) the recipient's status."""

    error: type[FbsflowError] | None = None
    no_answer: bool = False
    status: DeliveryStatus | None = None

    def __str__(self) -> str:
        if self.error is None:
            return str(self.status)
        return self.error.__name__ + (" (no answer)" if self.no_answer else "")


SENT = Outcome(status=DeliveryStatus.SENT)
FAILED = Outcome(status=DeliveryStatus.FAILED)
DEFERRED = Outcome(status=DeliveryStatus.DEFERRED)
UNKNOWN = Outcome(status=DeliveryStatus.UNKNOWN)
CONFIG = Outcome(ConfigError)
PERMANENT = Outcome(PermanentError)
TRANSIENT = Outcome(TransientError)
AMBIGUOUS = Outcome(AmbiguousError)
NOT_REACHED = Outcome(TransientError, no_answer=True)
LOST = Outcome(AmbiguousError, no_answer=True)

# situation -> provider -> outcome
TABLE: dict[str, dict[str, Outcome]] = {
    "accepted": {"sendgrid": SENT, "gatewayapi": SENT, "smtp": SENT, "outbox": SENT},
    # HTTP answers
    "HTTP 400": {"sendgrid": PERMANENT, "gatewayapi": PERMANENT},
    "HTTP 401": {"sendgrid": CONFIG, "gatewayapi": CONFIG},
    "HTTP 403": {"sendgrid": CONFIG, "gatewayapi": CONFIG},
    "HTTP 403 refusing a recipient": {"gatewayapi": PERMANENT},
    "HTTP 404": {"sendgrid": CONFIG, "gatewayapi": CONFIG},
    "HTTP 413": {"sendgrid": PERMANENT, "gatewayapi": PERMANENT},
    "HTTP 422": {"sendgrid": PERMANENT, "gatewayapi": PERMANENT},
    "HTTP 429": {"sendgrid": TRANSIENT, "gatewayapi": TRANSIENT},
    "HTTP 500": {"sendgrid": TRANSIENT, "gatewayapi": TRANSIENT},
    "HTTP 503": {"sendgrid": TRANSIENT, "gatewayapi": TRANSIENT},
    "HTTP 504": {"sendgrid": TRANSIENT, "gatewayapi": AMBIGUOUS},
    # SMTP replies (the one recipient of interest; another in the batch is accepted)
    "SMTP 550 on RCPT": {"smtp": FAILED},
    "SMTP 451 on RCPT": {"smtp": DEFERRED},
    "SMTP 452 on RCPT for everyone": {"smtp": TRANSIENT},
    "SMTP 550 on MAIL FROM": {"smtp": CONFIG},
    "SMTP 421 greeting": {"smtp": TRANSIENT},
    "SMTP 554 greeting": {"smtp": CONFIG},
    "SMTP 535 on AUTH": {"smtp": CONFIG},
    # The network
    "connection refused": {"sendgrid": NOT_REACHED, "gatewayapi": NOT_REACHED, "smtp": NOT_REACHED},
    "untrusted certificate": {"sendgrid": CONFIG, "gatewayapi": CONFIG, "smtp": CONFIG},
    "request read, then no answer": {"sendgrid": LOST, "gatewayapi": LOST},
    "connection dropped after the request": {"sendgrid": LOST, "gatewayapi": LOST, "smtp": UNKNOWN},
    "greeting, then no answer": {"smtp": NOT_REACHED},
    # The disk
    "outbox folder cannot be written": {"outbox": TRANSIENT},
}


def rows(provider: str) -> list[pytest.ParameterSet]:
    """The table's rows for one provider, as pytest parameters (situation, outcome)."""
    return [
        pytest.param(situation, outcomes[provider], id=situation)
        for situation, outcomes in TABLE.items()
        if provider in outcomes
    ]


def observe(send: Callable[[], BatchResult], recipient: Recipient) -> Outcome:
    """What sending gave for `recipient`; an error must not quote the recipient's address."""
    try:
        result = send()
    except FbsflowError as error:
        assert recipient.address not in str(error) + repr(error)
        return Outcome(type(error), no_answer=getattr(error, "no_answer", False))
    return Outcome(status=result.statuses.get(recipient.key))
