"""Flow-run heartbeats that stop the moment the flow returns (switch: `FBSFLOW_SPEED_HEARTBEAT=0`)."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from tasks.speed.switches import enabled

log = logging.getLogger(__name__)

SWITCH = "HEARTBEAT"

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
# Seconds between heartbeats the flow sends itself; None: Prefect's engine sends them (or nobody).
_HANDED_OVER: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "fbsflow_heartbeat_seconds", default=None
)


def run_heartbeats(*, temporary_server: bool) -> AbstractContextManager[object]:
    """The heartbeats of a run `fbsflow run` starts: none on its own temporary server, else
    handed over to the flow (`handed_over`); with the switch off, Prefect's as configured.

    A temporary server lives in this process's tree and ends with it: there is no one left to
    notice a dead run, and stopping Prefect's heartbeat thread costs up to a second at the end
    of every run (embedded 1M SMS: 0.95x end to end).
    """
    if not enabled(SWITCH):
        return nullcontext()
    if temporary_server:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    return handed_over()


@contextmanager
def handed_over() -> Iterator[int | None]:
    """Within: Prefect's engine sends no heartbeats; a flow using `flow_heartbeats` does.

    Why: Prefect sends a flow run's heartbeats from a thread that sleeps in steps of one second,
    and joins that thread when the flow returns: every run against a server ends up to a second
    late (10k e-mails: 1.94 s against 2.37 s, 0.80x over six pairs; at 1M inside the noise).
    `flow_heartbeats` sends the same event, at the same interval, from a thread that a stop wakes
    at once. Deployed and served runs keep Prefect's own: nothing here is on unless `fbsflow
    run` turned it on.

    Yields the interval handed over (None when heartbeats are off in Prefect's settings, which
    then stay off, or when the switch is off: Prefect's engine keeps sending them).
    """
    if not enabled(SWITCH):
        yield None
        return
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    seconds = get_current_settings().flows.heartbeat_frequency
    if seconds is None:
        yield None
        return
    token = _HANDED_OVER.set(seconds)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield seconds
    finally:
        _HANDED_OVER.reset(token)


@contextmanager
def flow_heartbeats() -> Iterator[None]:
    """Inside a flow: send its heartbeats while the block runs, if they were handed over."""
    from prefect.context import FlowRunContext

    seconds = _HANDED_OVER.get()
    context = FlowRunContext.get()
    if seconds is None or context is None or context.flow_run is None:
        yield
        return
    resource, related = _event_template(context)
    stop = threading.Event()

    def beat() -> None:
        from prefect.context import TaskRunContext
        from prefect.events import emit_event

        # No task run here, said outright: Prefect's events worker lays each event's context
        # over its own thread's, and that thread may have been started inside a task run,
        # whose id would then ride on every heartbeat.
        TaskRunContext.__var__.set(None)
        while True:
            try:
                emit_event(event=HEARTBEAT_EVENT, resource=resource, related=related)
            except Exception:  # a missed heartbeat must not fail the run
                log.debug("flow-run heartbeat not sent", exc_info=True)
            if stop.wait(seconds):
                return

    # The thread sees this context's Prefect settings (the API URL), as Prefect's own does.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name="fbsflow-heartbeat", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)


def _event_template(context: Any) -> tuple[dict[str, str], list[Any]]:
    """The resource and related resources Prefect's engine puts on a flow run's heartbeat."""
    from prefect import __version__
    from prefect.events.related import RelatedResource, tags_as_related_resources

    run = context.flow_run
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run.id}",
        "prefect.resource.name": run.name or "",
        "prefect.version": __version__,
    }
    related: list[Any] = []
    if run.flow_id:
        flow_name = context.flow.name if context.flow else ""
        related.append(
            RelatedResource.model_validate(
                {
                    "prefect.resource.id": f"prefect.flow.{run.flow_id}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": flow_name,
                }
            )
        )
    if run.deployment_id:
        related.append(
            RelatedResource.model_validate(
                {
                    "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            )
        )
    related += tags_as_related_resources(set(run.tags or []))
    return resource, related
