"""Flow runs whose process died: each run records its process, and the next start marks them Crashed.

A run killed with SIGKILL (or on a machine that lost power) never reports an end, and Prefect
shows it RUNNING for ever: a temporary server has nobody left to notice, and a long-lived one
only notices with heartbeats and an automation set up for them. So every flow of the card
records `host:pid` as its flow run's `infrastructure_pid` (the form Prefect's process workers
use) as it starts, and `fbsflow run` and `fbsflow serve` sweep before they start:
a RUNNING run of this card whose process on this host has ended is set to Crashed.
"""

from __future__ import annotations

import logging

from tasks.processes import Owner, this_host

log = logging.getLogger(__name__)

# The card's flows (flows/communicate_externally.py and flows/inform_channel.py).
FLOW_NAMES = ("communicate-externally", "inform-channel")


def record_owner() -> None:
    """Inside a flow: record this process as the flow run's owner (`host:pid`).

    Called first thing in the flow's body rather than as an `on_running` hook, which Prefect
    announces on the terminal with two lines of its own.
    """
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        # The engine's own client (a sync flow has a sync one): no new connection to open.
        if isinstance(context.client, SyncPrefectClient):
            context.client.update_flow_run(context.flow_run.id, infrastructure_pid=str(Owner.me()))
    except Exception:  # without it only this run's sweep after a crash is lost: go on
        log.warning("could not record this process on its flow run", exc_info=True)


def crash_dead_flow_runs() -> list[str]:
    """Set the card's RUNNING flow runs whose process died to Crashed; return their names.

    Runs of every municipality are swept: a dead process is dead whoever's card it ran. Runs on
    other hosts, runs whose process lives, and runs that never recorded a process (from before
    this sweep existed) are left as they are.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    crashed = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES))),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
        )
        for run in runs:
            owner = Owner.parse(run.infrastructure_pid)
            if owner is None or not owner.is_dead():
                continue
            message = (
                f"its process ({owner}) ended without reporting an end (killed, or the machine "
                f"stopped); marked crashed by the next fbsflow start on {this_host()}"
            )
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            crashed.append(run.name)
    return crashed
