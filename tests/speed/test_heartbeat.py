"""Flow-run heartbeats handed from Prefect's engine to the flow: same event, prompt stop."""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.settings import get_current_settings

from tasks.speed.heartbeat import HEARTBEAT_EVENT, flow_heartbeats, handed_over, run_heartbeats


@task
def _a_task() -> int:
    return 1


@flow
def _beating(hold: float) -> dict[str, Any]:
    """A flow that runs a task, then holds its heartbeats open for `hold` seconds."""
    _a_task()
    with flow_heartbeats():
        senders = [t for t in threading.enumerate() if t.name == "fbsflow-heartbeat"]
        time.sleep(hold)
        started_stopping = time.perf_counter()
    return {
        "run_id": str(get_run_context().flow_run.id),
        "senders": len(senders),
        "stop_seconds": time.perf_counter() - started_stopping,
    }


def _heartbeats_of(run_id: str) -> list[dict[str, Any]]:
    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/events/filter",
            json={
                "filter": {
                    "event": {"name": [HEARTBEAT_EVENT]},
                    "resource": {"id": [f"prefect.flow-run.{UUID(run_id)}"]},
                },
                "limit": 50,
            },
        )
    return response.json()["events"]


def test_handing_over_turns_prefects_own_heartbeats_off_and_back_on() -> None:
    assert get_current_settings().flows.heartbeat_frequency is not None  # Prefect's default: on
    with handed_over() as seconds:
        assert seconds is not None and seconds >= 30
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == seconds


def test_a_flow_sends_its_heartbeat_as_prefect_does_and_stops_sending_at_once(
    prefect_harness: None,
) -> None:
    with handed_over():
        result = _beating(0.3)

    assert result["senders"] == 1
    # Prefect's engine joins a thread that sleeps in 1 s steps: up to a second. This one wakes.
    assert result["stop_seconds"] < 0.2
    deadline = time.monotonic() + 20
    while not (events := _heartbeats_of(result["run_id"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    # One: the heartbeat at the start (the next is due only after Prefect's interval), and none
    # from Prefect's engine, whose heartbeats were handed over.
    [event] = events
    assert event["resource"]["prefect.resource.id"] == f"prefect.flow-run.{result['run_id']}"
    roles = {r["prefect.resource.role"] for r in event["related"]}
    # The flow, as on Prefect's own heartbeat; not the task run that ran before.
    assert roles == {"flow"}
    assert event["related"][0]["prefect.resource.name"] == _beating.name


def test_without_handing_over_the_flow_leaves_heartbeats_to_prefect(prefect_harness: None) -> None:
    # Deployed and served runs: Prefect's engine sends them; the flow starts no sender. (Held
    # open a moment: Prefect's sender sends nothing if the run is over before its thread runs.)
    result = _beating(0.3)

    assert result["senders"] == 0
    deadline = time.monotonic() + 20
    while not (events := _heartbeats_of(result["run_id"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(events) == 1  # Prefect's own, at the start of the run


def test_a_temporary_server_gets_no_heartbeats_unless_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Heartbeats let a long-lived server notice a dead run; a temporary one dies with it."""
    prefects = get_current_settings().flows.heartbeat_frequency
    assert prefects is not None  # Prefect's default: on
    with run_heartbeats(temporary_server=True):
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == prefects
    monkeypatch.setenv("FBSFLOW_SPEED_HEARTBEAT", "0")
    for temporary_server in (True, False):
        with run_heartbeats(temporary_server=temporary_server):
            assert get_current_settings().flows.heartbeat_frequency == prefects


def test_switched_off_prefect_sends_the_same_heartbeat(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain path: nothing handed over, Prefect's engine sends the heartbeat, for the same
    flow run and related flow as the flow's own sender. (Prefect's may also name a task run that
    ran before: its events worker's context, which the flow's sender leaves out on purpose.)"""
    monkeypatch.setenv("FBSFLOW_SPEED_HEARTBEAT", "0")
    with handed_over() as seconds:
        assert seconds is None
        assert get_current_settings().flows.heartbeat_frequency is not None
        result = _beating(0.3)
    assert result["senders"] == 0
    deadline = time.monotonic() + 20
    while not (events := _heartbeats_of(result["run_id"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    [event] = events
    assert event["resource"]["prefect.resource.id"] == f"prefect.flow-run.{result['run_id']}"
    assert "flow" in {r["prefect.resource.role"] for r in event["related"]}
