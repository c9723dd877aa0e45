"""Deployments of the card and of each channel, their scheduled runs, and what the server needs.

`fbsflow serve CONFIG` serves every deployment from one process (one machine). For a server with
a work pool, `prefect deploy --all` reads prefect.yaml and `fbsflow schedule CONFIG` adds the
plan's scheduled runs. Either way, the leader sees the channel runs as upcoming runs in the UI.
Both give a deployment the same name, so the two must not run at once: `serve` refuses names a
`prefect deploy` has given to a work pool, and stops if one is deployed while it serves.
Both also set up, on the server, the municipality's concurrency limit (one card run at a time,
tasks/card_slot.py) and the notice deployment with its trigger (flows/notify_leader.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from babel.dates import format_datetime
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
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled

from flows.communicate_externally import communicate_externally
from flows.confirm_steps import confirm_steps
from flows.form import known_configs, municipality_schema
from flows.inform_channel import inform_channel
from flows.notify_leader import notify_leader
from tasks.card_slot import ensure_limit, limit_name
from tasks.channels import spec
from tasks.config import load_municipality
from tasks.errors import ConfigError
from tasks.models import Channel, MunicipalityConfig
from tasks.plan import COPENHAGEN, SEND_TIME, channel_day

# The channels' names in deployment names: Danish, as the project leader reads them in the UI.
CHANNEL_NAMES = {
    Channel.WEBSITE: "hjemmeside",
    Channel.FAQ: "spoergsmaal-og-svar",
    Channel.NEWSLETTER: "nyhedsbrev",
    Channel.POSTER: "plakater",
    Channel.SMS: "sms",
    Channel.SELF_SERVICE: "selvbetjening",
    Channel.INFO_SCREEN: "infoskaerm",
    Channel.SOCIAL_POST: "sociale-medier",
}
# The state events that start the notice flow (see flows/notify_leader.py for why not Failed).
NOTICE_EVENTS = {
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
    "prefect.flow-run.Crashed",
}
NOTICE_TAG = "fbsflow-besked"
# How often a serving process checks that `prefect deploy` has not taken its deployments over.
WATCH_SECONDS = 15.0


def card_deployment(slug: str) -> str:
    return f"kort-{slug}"


def channel_deployment(slug: str, channel: Channel) -> str:
    return f"{CHANNEL_NAMES[channel]}-{slug}"


def notice_deployment(slug: str) -> str:
    return f"besked-{slug}"


def qualified(flow_name: str, deployment: str) -> str:
    """`flow/deployment`, the name the Prefect client and CLI look a deployment up by."""
    return f"{flow_name}/{deployment}"


def confirm_deployment(slug: str) -> str:
    return f"bekraeft-trin-{slug}"


@dataclass(frozen=True)
class ScheduledRun:
    channel: Channel
    deployment: str
    at: datetime
    flow_run_id: str | None  # None when the planned date has passed


def danish_time(at: datetime) -> str:
    return format_datetime(at.astimezone(COPENHAGEN), "d. MMMM y 'kl.' HH:mm", locale="da")


def notice_trigger(config: MunicipalityConfig) -> DeploymentEventTrigger:
    """Start the notice deployment when one of the municipality's runs waits or has crashed."""
    return DeploymentEventTrigger(
        name=f"fbsflow: e-mail til projektlederen ({config.municipality.name})",
        description=(
            "Sender projektlederen en e-mail med et link, når en kørsel venter på godkendelse "
            "eller er gået ned."
        ),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.id": f"prefect.tag.{config.municipality.slug}"},
        expect=NOTICE_EVENTS,
        parameters={"flow_run_id": "{{ event.resource.id }}"},
    )


def build_deployments(config_path: str) -> list[RunnerDeployment]:
    """The card's deployment (triggered by hand), one per enabled channel, and the notice's."""
    config = load_municipality(config_path)
    slug, name = config.municipality.slug, config.municipality.name
    tags = [slug, "fbsflow"]
    times = planned_times(config_path)
    card = communicate_externally.to_deployment(
        name=card_deployment(slug),
        parameters={"config_path": config_path},
        description=(
            f"Hele opgavekortet 'Forbered og kommunikér eksternt' for {name}: plan, tekster til "
            "hver kanal, din godkendelse, udsendelse og afkrydsning. Start den med 'Run'."
        ),
        tags=tags,
    )
    deployments = [card]
    # Manual steps are confirmed whenever they happen, in one form, without a card run.
    deployments.append(
        confirm_steps.to_deployment(
            name=confirm_deployment(slug),
            parameters={"config_path": config_path},
            description=(
                f"Bekræft manuelle trin for {name} (fx plakater hængt op) i én formular, "
                "når de er gjort: uden en ny kørsel af kortet."
            ),
            tags=tags,
        )
    )
    for channel in config.channels.enabled():
        deployments.append(
            inform_channel.to_deployment(
                name=channel_deployment(slug, channel),
                parameters={"config_path": config_path, "channel": channel.value},
                description=(
                    f"{spec(channel).labels.da}, {name}: planlagt {danish_time(times[channel])} "
                    "(kørslen står under 'Upcoming')."
                ),
                tags=[*tags, channel.value],
            )
        )
    # The form offers the configs beside the served one, by the absolute path runs need.
    offered = municipality_schema([config_path, *known_configs(Path(config_path).parent)])
    for deployment in deployments:
        schema = deployment._parameter_openapi_schema
        schema.properties["config_path"] = {**schema.properties["config_path"], **offered}
    deployments.append(
        notify_leader.to_deployment(
            name=notice_deployment(slug),
            description=f"E-mail til projektlederen i {name}, når en kørsel venter eller går ned.",
            tags=[NOTICE_TAG],
            triggers=[notice_trigger(config)],
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
    slug = config.municipality.slug
    runs: list[ScheduledRun] = []
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(limit_name(slug), 1)
        for channel, at in planned_times(config_path).items():
            name = qualified(inform_channel.name, channel_deployment(slug, channel))
            deployment = await client.read_deployment_by_name(name)
            # The idempotency key makes rescheduling safe: one run per channel and date.
            key = f"{slug}:{channel.value}:{at.isoformat()}"
            waiting = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    ),
                    tags=FlowRunFilterTags(all_=[slug]),
                ),
            )
            for stale in waiting:
                # A run planned for another date (go_live or offset_days changed) would fire on
                # it; one made while `serve` had the deployment has no work queue, and a worker
                # would never see it once `prefect deploy` gave the deployment a pool.
                if stale.idempotency_key != key or stale.work_queue_name != (
                    deployment.work_queue_name
                ):
                    await client.delete_flow_run(stale.id)
            if at <= now:
                runs.append(ScheduledRun(channel, name, at, None))
                continue
            flow_run: FlowRun = await client.create_flow_run_from_deployment(
                deployment.id,
                # The deployment's own config_path (relative, in prefect.yaml's case): the form
                # offers only the configs the deployment knows, and this is the same file.
                parameters={
                    "channel": channel.value,
                    "config_path": deployment.parameters.get("config_path", config_path),
                },
                state=Scheduled(scheduled_time=at),
                idempotency_key=key,
                tags=[slug, channel.value],
                work_queue_name=deployment.work_queue_name,
            )
            runs.append(ScheduledRun(channel, name, at, str(flow_run.id)))
    return runs


def schedule_channel_runs(config_path: str, *, now: datetime | None = None) -> list[ScheduledRun]:
    """Create a scheduled run of each channel's deployment at its planned date (past dates are
    skipped), after making sure the server has the municipality's concurrency limit."""
    return asyncio.run(_schedule(config_path, now or datetime.now(COPENHAGEN)))


def deployed_to_a_pool(names: list[str]) -> dict[str, str]:
    """Those of `names` (flow/deployment) that `prefect deploy` has given a work pool: {name: pool}."""
    found: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                deployment = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if deployment.work_pool_name:
                found[name] = deployment.work_pool_name
    return found


def _mixing_message(taken: dict[str, str]) -> str:
    first, pool = next(iter(taken.items()))
    return (
        f"deployment {first} belongs to work pool '{pool}' (made by `prefect deploy`); serving it "
        "too would let this process take the workers' runs (fix: use either `fbsflow serve` or "
        "prefect.yaml with workers, not both; to go back to serve, delete the deployments with "
        f"`prefect deployment delete {first}` and the others)"
    )


def _watch(names: list[str]) -> None:
    """Stop serving (as Ctrl-C would) once `prefect deploy` has taken a served deployment over."""
    while True:
        threading.Event().wait(WATCH_SECONDS)
        try:
            taken = deployed_to_a_pool(names)
        except Exception:
            continue  # the server may be restarting: look again next time
        if taken:
            print(f"fbsflow serve stops: {_mixing_message(taken)}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def serve_all(config_path: str) -> None:
    """Register and serve every deployment from this process, after scheduling the channel runs."""
    deployments = build_deployments(config_path)
    names = [qualified(d.flow_name, d.name) for d in deployments]
    taken = deployed_to_a_pool(names)
    if taken:
        raise ConfigError(_mixing_message(taken))
    config = load_municipality(config_path)
    with get_client(sync_client=True) as client:
        limit = ensure_limit(client, config.municipality.slug)
    print(f"  one card run at a time: concurrency limit {limit}")
    for deployment in deployments:
        deployment.apply()
    for run in schedule_channel_runs(config_path):
        when = run.at.strftime("%Y-%m-%d %H:%M %Z")
        note = "scheduled" if run.flow_run_id else "date has passed: trigger it by hand"
        print(f"  {run.deployment:<52} {when}  {note}")
    threading.Thread(target=_watch, args=(names,), name="deploy-watch", daemon=True).start()
    # Stopping serve leaves the deployments as they are: pausing them (Prefect's default) made
    # every deployment show as paused after a restart, and kept a later `prefect deploy` paused.
    serve(*deployments, pause_on_shutdown=False)


def resolve(config_path: str) -> str:
    """Deployments store the config path; an absolute path keeps runs independent of the cwd."""
    return str(Path(config_path).resolve())
