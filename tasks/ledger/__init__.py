"""The delivery ledger: a row per campaign x channel x recipient, so each borrower gets one message."""

from tasks.ledger.base import DEFAULT_LEASE_SECONDS
from tasks.ledger.core import DATABASE_URL_ENV, DB_FILE_NAME, Ledger, normalise_address
from tasks.ledger.runs import Interruption
from tasks.ledger.schema import DeliveryState, deliveries, streams
from tasks.ledger.secret_key import KEY_FILE_NAME, LEDGER_KEY_ENV

__all__ = [
    "DATABASE_URL_ENV",
    "DB_FILE_NAME",
    "DEFAULT_LEASE_SECONDS",
    "KEY_FILE_NAME",
    "LEDGER_KEY_ENV",
    "DeliveryState",
    "Interruption",
    "Ledger",
    "deliveries",
    "normalise_address",
    "streams",
]
