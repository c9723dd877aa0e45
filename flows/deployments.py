"""Deployments of the card and of each channel, and scheduled runs on the plan's dates.

`fbsflow serve CONFIG` serves every deployment from one process (one machine). For a server with
a work pool, `prefect deploy --all` reads prefect.yaml and `fbsflow schedule CONFIG` adds the
plan's scheduled runs. Either way, the leader sees the channel runs as upcoming runs in the UI.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments.runner import RunnerDeployment
from prefect.states import Scheduled

from flows.communicate_externally import communicate_externally
from flows.confirm_steps import confirm_steps
from flows.inform_channel import inform_channel
from tasks.config import load_municipality
from tasks.models import Channel
from tasks.plan import COPENHAGEN, SEND_TIME, channel_day

CARD_DEPLOYMENT = "card"
CONFIRM_DEPLOYMENT = "confirm-steps"


@dataclass(frozen=True)
class ScheduledRun:
    channel: Channel
    deployment: str
    at: datetime
    flow_run_id: str | None  # None when the planned date has passed


def build_deployments(config_path: str) -> list[RunnerDeployment]:
    """The card's deployment (triggered by hand) and one deployment per enabled channel."""
    config = load_municipality(config_path)
    tags = [config.municipality.slug, "fbsflow"]
    deployments = [
        communicate_externally.to_deployment(
            name=CARD_DEPLOYMENT,
            parameters={"config_path": config_path},
            description=f"The whole card for {config.municipality.name}: plan, inform, mark complete.",
            tags=tags,
        )
    ]
    # Manual steps are confirmed whenever they happen, in one form, without a card run.
    deployments.append(
        confirm_steps.to_deployment(
            name=CONFIRM_DEPLOYMENT,
            parameters={"config_path": config_path},
            description=f"Bekræft manuelle trin for {config.municipality.name} (én formular).",
            tags=tags,
        )
    )
    for channel in config.channels.enabled():
        deployments.append(
            inform_channel.to_deployment(
                name=channel.value,
                parameters={"config_path": config_path, "channel": channel.value},
                description=f"Inform via {channel.value} on its planned date.",
                tags=[*tags, channel.value],
            )
        )
    return deployments


def planned_times(config_path: str) -> dict[Channel, datetime]:
    config = load_municipality(config_path)
    return {
        channel: datetime.combine(channel_day(config, channel), SEND_TIME, tzinfo=COPENHAGEN)
        for channel in config.channels.enabled()
    }


async def _schedule(config_path: str, now: datetime) -> list[ScheduledRun]:
    config = load_municipality(config_path)
    runs: list[ScheduledRun] = []
    async with get_client() as client:
        for channel, at in planned_times(config_path).items():
            name = f"{inform_channel.name}/{channel.value}"
            deployment = await client.read_deployment_by_name(name)
            # The idempotency key makes rescheduling safe: one run per channel and date.
            key = f"{config.municipality.slug}:{channel.value}:{at.isoformat()}"
            # A run planned for another date (go_live or offset_days changed) would fire on it.
            waiting = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    ),
                    tags=FlowRunFilterTags(all_=[config.municipality.slug]),
                ),
            )
            for stale in waiting:
                if stale.idempotency_key != key:
                    await client.delete_flow_run(stale.id)
            if at <= now:
                runs.append(ScheduledRun(channel, name, at, None))
                continue
            flow_run: FlowRun = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"config_path": config_path, "channel": channel.value},
                state=Scheduled(scheduled_time=at),
                idempotency_key=key,
                tags=[config.municipality.slug, channel.value],
            )
            runs.append(ScheduledRun(channel, name, at, str(flow_run.id)))
    return runs


def schedule_channel_runs(config_path: str, *, now: datetime | None = None) -> list[ScheduledRun]:
    """Create a scheduled run of each channel's deployment at its planned date (past dates are skipped)."""
    return asyncio.run(_schedule(config_path, now or datetime.now(COPENHAGEN)))


def serve_all(config_path: str) -> None:
    """Register and serve every deployment from this process, after scheduling the channel runs."""
    deployments = build_deployments(config_path)
    for deployment in deployments:
        deployment.apply()
    for run in schedule_channel_runs(config_path):
        when = run.at.strftime("%Y-%m-%d %H:%M %Z")
        note = "scheduled" if run.flow_run_id else "date has passed: trigger it by hand"
        print(f"  {run.deployment:<28} {when}  {note}")
    serve(*deployments)


def resolve(config_path: str) -> str:
    """Deployments store the config path; an absolute path keeps runs independent of the cwd."""
    return str(Path(config_path).resolve())
