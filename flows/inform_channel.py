"""One channel of the card on its planned date: the flow behind each channel's scheduled deployment."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.communicate_externally import communicate_externally
from tasks.flowruns import record_owner
from tasks.models import Channel


@flow(name="inform-channel", description="Inform citizens through one channel of the card.")
def inform_channel(
    config_path: str,
    channel: Channel,
    audience: str | None = None,
    approve: bool = False,
    output_root: str = "outbox",
) -> dict[str, Any]:
    """Run the card for `channel` only; the other channels keep their last outcome."""
    record_owner()  # so that a sweep can mark this run crashed if its process dies
    return communicate_externally(
        config_path=config_path,
        audience=audience,
        approve=approve,
        output_root=output_root,
        channels=[channel],
    )
