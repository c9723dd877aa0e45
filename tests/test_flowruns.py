"""The sweep of flow runs whose process died, on Prefect's test harness."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.context import get_run_context
from prefect.states import Completed, Running

from flows.communicate_externally import communicate_externally
from flows.inform_channel import inform_channel
from tasks.flowruns import crash_dead_flow_runs, record_owner
from tasks.processes import Owner, this_host


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@flow(name="not-the-card")
def another_flow() -> None:
    """A flow of some other project on the same server."""


@pytest.fixture
def client(prefect_harness: None) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


def test_running_flow_runs_whose_process_died_are_marked_crashed(
    client: SyncPrefectClient,
) -> None:
    dead = Owner(this_host(), dead_pid())
    cases: dict[str, tuple[object, str | None, StateType]] = {
        "card, dead": (communicate_externally, str(dead), StateType.CRASHED),
        "channel, dead": (inform_channel, str(dead), StateType.CRASHED),
        "card, alive": (communicate_externally, str(Owner.me()), StateType.RUNNING),
        "card, other host": (communicate_externally, f"other-host:{dead.pid}", StateType.RUNNING),
        "card, no owner": (communicate_externally, None, StateType.RUNNING),
        "other flow, dead": (another_flow, str(dead), StateType.RUNNING),
    }
    runs: dict[str, UUID] = {}
    for name, (flow_, owner, _) in cases.items():
        run = client.create_flow_run(flow_, name=name.replace(", ", "-"), state=Running())  # type: ignore[arg-type]
        if owner:
            client.update_flow_run(run.id, infrastructure_pid=owner)
        runs[name] = run.id
    try:
        crashed = crash_dead_flow_runs()
        assert sorted(crashed) == ["card-dead", "channel-dead"]
        for name, (_, _, expected) in cases.items():
            state = client.read_flow_run(runs[name]).state
            assert state is not None and state.type == expected, name
            if expected == StateType.CRASHED:
                assert str(dead) in (state.message or "")
        assert crash_dead_flow_runs() == []  # a second sweep finds nothing left
    finally:
        for run_id in runs.values():
            client.set_flow_run_state(run_id, Completed(), force=True)


@flow
def records_its_owner() -> str:
    record_owner()
    return str(get_run_context().flow_run.id)  # type: ignore[union-attr]


def test_a_flow_run_records_its_process(client: SyncPrefectClient) -> None:
    run_id = records_its_owner()
    assert client.read_flow_run(UUID(run_id)).infrastructure_pid == str(Owner.me())
