"""One card run at a time per municipality, through a Prefect global concurrency limit.

`fbsflow serve` and `fbsflow schedule` create the limit `fbsflow-<slug>` (one slot) on the server;
a run of the card holds its slot from start to end, so a second run for the same municipality
(from the UI, a channel's date, or a worker on another machine) waits until the first has ended.
Without the limit on the server (embedded Prefect, or a server set up without it) a run does not
wait: the delivery ledger still keeps every recipient from being sent to twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tasks.settings import prefect_server

PREFIX = "fbsflow-"
# A held slot is renewed while the run lives; a run whose process died frees it after this.
LEASE_SECONDS = 300


def limit_name(slug: str) -> str:
    """The global concurrency limit of one municipality's card runs."""
    return f"{PREFIX}{slug}"


@contextmanager
def card_slot(slug: str) -> Iterator[None]:
    """Hold the municipality's slot for the block (waiting for it first); a no-op without a server."""
    if not prefect_server():
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(
        limit_name(slug),
        occupy=1,
        lease_duration=LEASE_SECONDS,
        strict=False,
    ):
        yield


def ensure_limit(client: object, slug: str) -> str:
    """Create (or reset to one slot) the municipality's limit on the server; returns its name."""
    name = limit_name(slug)
    client.upsert_global_concurrency_limit_by_name(name, 1)  # type: ignore[attr-defined]
    return name
