"""The card "Forbered og kommunikér eksternt" as a flow: plan, inform per channel, mark complete."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.task_runners import ThreadPoolTaskRunner
from tasks.delivery import ChunkOutcome, deliver_chunk

from tasks.audience import Audience
from tasks.errors import DeliveryError
from tasks.ledger import Ledger
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.output import OutputFolder
from tasks.plan import campaign_id
from tasks.providers.base import Message, Recipient
from tasks.providers.registry import make_provider, provider_name
from tasks.steps import (
    DELIVERED,
    ChannelOutcome,
    import_borrowers,
    load_config,
    make_plan,
    mark_complete,
    publish_files,
    render_content,
    triggered_by,
)

# Recipients per task run: a Prefect task run costs ~10-25 ms, so thousands go in each.
CHUNK_SIZE = 5_000
# Chunks in flight at once: bounded so a provider sees steady, not bursty, load.
MAX_CONCURRENT_CHUNKS = 4


def data_dir() -> Path:
    """Where the delivery ledger lives when no FBSFLOW_DATABASE_URL is set."""
    import os

    return Path(os.environ.get("FBSFLOW_DATA_DIR", ".fbsflow"))


@task(name="deliver-chunk", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def deliver_chunk_task(
    channel: Channel,
    config: MunicipalityConfig,
    messages: dict[Language, Message],
    recipients: Sequence[Recipient],
    *,
    ledger: Ledger,
    campaign: str,
    outbox: Path,
    run_id: str,
) -> ChunkOutcome:
    """Send one chunk exactly once: claim in the ledger, send, record (retries live in deliver_chunk)."""
    provider = make_provider(channel, config, campaign=campaign, outbox=outbox)
    try:
        return deliver_chunk(
            provider,
            ledger,
            messages,
            recipients,
            campaign=campaign,
            channel=channel.value,
            run_id=run_id,
        )
    finally:
        provider.close()


def _recipients(channel: Channel, audience: Audience, ledger: Ledger) -> list[Recipient]:
    chosen = (
        audience.newsletter_recipients()
        if channel is Channel.NEWSLETTER
        else audience.sms_recipients()
    )
    attr = "email" if channel is Channel.NEWSLETTER else "mobile"
    key = ledger.recipient_key
    return [Recipient(key(getattr(b, attr)), getattr(b, attr), b.language) for b in chosen]


def deliver(
    channel: Channel,
    config: MunicipalityConfig,
    messages: dict[Language, Message],
    audience: Audience | None,
    out: OutputFolder,
    *,
    run_id: str,
    at_least_once: bool,
) -> ChannelOutcome:
    """Inform one channel's named borrowers: register them, send the pending ones in chunks."""
    logger = get_run_logger()
    provider = provider_name(channel)
    if audience is None:
        return ChannelOutcome(
            channel, "failed", provider, detail="no audience file (fix: --audience CSV)"
        )
    campaign = campaign_id(config)
    # The outbox delivers to nobody, so it gets a throw-away ledger: each run writes the full set.
    scratch = tempfile.TemporaryDirectory() if provider == "outbox" else None
    ledger = Ledger.open(Path(scratch.name)) if scratch else Ledger.open(data_dir())
    try:
        interrupted = ledger.resolve_interrupted(campaign, channel.value)
        if interrupted:
            logger.warning(
                "%s: %d recipients were left mid-send by an earlier run: marked unknown",
                channel.value,
                interrupted,
            )
        if at_least_once:
            ledger.requeue_unknown(campaign, channel.value)
        recipients = _recipients(channel, audience, ledger)
        ledger.register(campaign, channel.value, (r.key for r in recipients))
        pending = set(ledger.pending_keys(campaign, channel.value))
        todo = [r for r in recipients if r.key in pending]
        chunks = [todo[i : i + CHUNK_SIZE] for i in range(0, len(todo), CHUNK_SIZE)]
        logger.info(
            "%s via %s: %d recipients, %d to send in %d chunks",
            channel.value,
            provider,
            len(recipients),
            len(todo),
            len(chunks),
        )
        progress = (
            create_progress_artifact(
                progress=0.0, description=f"{channel.value}: chunks sent", key=None
            )
            if chunks
            else None
        )
        errors: list[str] = []
        # Bounded concurrency: keep at most MAX_CONCURRENT_CHUNKS task runs in flight.
        done = 0
        for start in range(0, len(chunks), MAX_CONCURRENT_CHUNKS):
            futures = [
                deliver_chunk_task.submit(
                    channel,
                    config,
                    messages,
                    chunk,
                    ledger=ledger,
                    campaign=campaign,
                    outbox=out.staging / channel.value,
                    run_id=run_id,
                )
                for chunk in chunks[start : start + MAX_CONCURRENT_CHUNKS]
            ]
            for future in futures:
                try:
                    future.result()
                except DeliveryError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                done += 1
            if progress is not None:
                update_progress_artifact(progress, progress=100.0 * done / len(chunks))
        counts = ledger.counts(campaign, channel.value)
    finally:
        ledger.close()
        if scratch:
            scratch.cleanup()
    unsettled = counts.get("pending", 0) + counts.get("sending", 0)
    status = "failed" if errors or unsettled else "done"
    detail = "; ".join(errors[:3])
    if counts.get("unknown"):
        detail = (detail + "; " if detail else "") + (
            f"{counts['unknown']} may or may not have been delivered (provider did not answer): "
            "check with the provider; rerun with --at-least-once to send them again"
        )
    return ChannelOutcome(channel, status, provider, counts=counts, detail=detail)


def _previous_outcomes(out: OutputFolder, skip: set[Channel]) -> list[ChannelOutcome]:
    """Outcomes of channels this run does not touch, from the last completion record."""
    path = out.final / "completion.json"
    if not path.is_file():
        return []
    previous = json.loads(path.read_text(encoding="utf-8")).get("channels", {})
    return [
        ChannelOutcome(
            Channel(name),
            o["status"],
            o["provider"],
            o.get("files", []),
            o.get("counts", {}),
            o.get("detail", ""),
        )
        for name, o in previous.items()
        if name in Channel._value2member_map_ and Channel(name) not in skip
    ]


@flow(
    name="communicate-externally",
    description="FBS card 'Forbered og kommunikér eksternt': plan, inform per channel, mark complete.",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_CHUNKS),
)
def communicate_externally(
    config_path: str,
    audience: str | None = None,
    approve: bool = False,
    output_root: str = "outbox",
    at_least_once: bool = False,
    channels: list[Channel] | None = None,
) -> dict[str, Any]:
    """Run the card for one municipality; returns the completion record.

    `channels` limits the run to some channels (a scheduled run on a channel's planned date);
    the other channels keep the output and outcome of their last run.
    """
    started = datetime.now(UTC)
    run_id = str(get_run_context().flow_run.id)
    config, card = load_config(config_path)
    selected = [c for c in config.channels.enabled() if channels is None or c in channels]
    with OutputFolder(Path(output_root), config.municipality.slug) as out:
        if channels is not None:
            out.keep_previous({c.value for c in selected} | {"plan.md", "completion.json"})
        # 1. Plan: import the audience, render every channel, write the plan.
        borrowers = import_borrowers(config, config_path, audience, out)
        contents = render_content(config)
        plan = make_plan(config, card, contents, borrowers, out)

        # 2. Inform via each channel. Files for people to publish are always written;
        #    nothing reaches a citizen's inbox or phone without approval.
        approval = {"approved": approve, "how": "parameter" if approve else "not given"}
        outcomes: list[ChannelOutcome] = _previous_outcomes(out, set(selected))
        for channel in selected:
            content = contents[channel]
            published = publish_files(content, out)
            if channel not in DELIVERED:
                outcomes.append(published)
            elif not approve:
                outcomes.append(
                    ChannelOutcome(
                        channel, "awaiting_approval", provider_name(channel), files=published.files
                    )
                )
            else:
                outcome = deliver(
                    channel,
                    config,
                    content.messages,
                    borrowers,
                    out,
                    run_id=run_id,
                    at_least_once=at_least_once,
                )
                outcome.files = published.files
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: list(Channel).index(o.channel))

        # 3. Mark the card complete (or say why not).
        record = mark_complete(
            config,
            card,
            plan,
            outcomes,
            out,
            started_at=started,
            triggered=triggered_by(),
            approval=approval,
            flow_run_id=run_id,
        )
        out.commit()
    return record
