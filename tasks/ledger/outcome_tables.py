"""The tables of what providers said after accepting a message (see tasks/ledger/outcomes.py)."""

from sqlalchemy import Column, Float, Integer, MetaData, PrimaryKeyConstraint, String, Table

metadata = MetaData()
receipt_events = Table(
    "receipt_event",
    metadata,
    Column("source", String(16), nullable=False),
    Column("event_id", String(120), nullable=False),
    Column("received_at", Float, nullable=False),
    PrimaryKeyConstraint("source", "event_id", name="receipt_event_pk"),
    # On SQLite the rows live in their key's B-tree: one tree to write per event, not two.
    sqlite_with_rowid=False,
)
outcomes = Table(
    "delivery_outcome",
    metadata,
    Column("stream", Integer, nullable=False),  # delivery_stream.id
    Column("recipient_key", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("stream", "recipient_key", name="delivery_outcome_pk"),
    sqlite_with_rowid=False,
)
suppressions = Table(
    "suppression",
    metadata,
    Column("municipality", String(100), nullable=False),
    Column("recipient_key", String(64), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("medium", String(8), nullable=False),  # "email" or "sms"
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("municipality", "recipient_key", name="suppression_pk"),
    sqlite_with_rowid=False,
)
