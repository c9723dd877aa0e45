"""One channel of the card on its planned date: the flow behind each channel's scheduled deployment."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.communicate_externally import communicate_externally
from flows.run_states import channel_run_name, copy_state
from tasks.flowruns import record_owner
from tasks.models import Channel


@flow(
    name="inform-channel",
    description="Inform citizens through one channel of the card.",
    flow_run_name=channel_run_name,
)
def inform_channel(
    config_path: str,
    channel: Channel,
    audience: str | None = None,
    approve: bool = False,
    output_root: str = "outbox",
    approved_by: str | None = None,
) -> State[Any]:
    """Run the card for `channel` only; the other channels keep their last outcome. Ends in
    the card run's state (its Danish name and reasons); a direct call returns the record."""
    record_owner()  # so that a sweep can mark this run crashed if its process dies
    state = communicate_externally(
        config_path=config_path,
        audience=audience,
        approve=approve,
        approved_by=approved_by,
        output_root=output_root,
        channels=[channel],
        return_state=True,
    )
    return copy_state(state)
