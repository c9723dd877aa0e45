"""Delivering a channel's message to its recipients, each at most once, through the ledger."""

from tasks.delivery.worker import (
    BACKOFF_SCALE_ENV,
    OUTCOMES,
    ChunkOutcome,
    RetryPolicy,
    deliver_chunk,
)

__all__ = ["BACKOFF_SCALE_ENV", "OUTCOMES", "ChunkOutcome", "RetryPolicy", "deliver_chunk"]
