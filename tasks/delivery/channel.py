"""One channel's delivery as a task: register its recipients, send the pending, report the counts."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.audience import Audience
from tasks.breaker import Breaker
from tasks.channels import spec
from tasks.delivery.chunks import cut, send_chunks
from tasks.delivery.keying import branch_recipients, keyed_parts
from tasks.delivery.status import channel_status, stopped
from tasks.ledger import Ledger
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.output import OutputFolder
from tasks.plan import campaign_id
from tasks.providers.base import Message, Recipient
from tasks.providers.registry import provider_name
from tasks.receipts.suppression import honour_suppressions
from tasks.settings import DeliverySettings, settings
from tasks.speed.gcpause import gc_frozen, gc_paused
from tasks.speed.overlap_register import register_while_keying
from tasks.steps import DELIVERED, ChannelOutcome


def _lease_seconds() -> float:
    """How long a claimed batch stays claimed without renewal before a rerun may judge its run
    dead (FBSFLOW_LEASE_SECONDS)."""
    return settings(DeliverySettings).lease_seconds


@task(name="check-ledger-key", cache_policy=NO_CACHE)
def check_ledger_key(channels: Sequence[Channel], data: Path) -> None:
    """Open the real ledger once, if a channel delivers through a provider: a key that does not
    match the ledger's then stops the run at its start (ConfigError), before approval is asked
    for and before any channel sends."""
    delivering = [c for c in channels if spec(c).delivers is not None]
    if any(provider_name(c) != "outbox" for c in delivering):
        Ledger.open(data, lease_seconds=_lease_seconds()).close()


@task(name="deliver", cache_policy=NO_CACHE, task_run_name="deliver-{channel.value}")
def deliver_channel(
    channel: Channel,
    config: MunicipalityConfig,
    messages: dict[Language, Message],
    audience: Audience | None,
    out: OutputFolder,
    *,
    data: Path,
    run_id: str,
    at_least_once: bool = False,
    files: Sequence[str] = (),
) -> ChannelOutcome:
    """Send one channel's message to its recipients exactly once: register, then send the
    pending, as task runs of a chunk each (`tasks.delivery.chunks`).

    `audience` is the borrowers for the newsletter and the SMS, None for the posters (their
    recipients are the branches' contacts). `data` is the run's `data_dir`, where the ledger
    (or its key) lives; `files` are the channel's published files, for its outcome.
    """
    logger = get_run_logger()
    provider = provider_name(channel)
    if audience is None and channel in DELIVERED:
        detail = "no audience file (fix: --audience CSV)"
        return ChannelOutcome(channel, "failed", provider, list(files), detail=detail)
    campaign = campaign_id(config)
    notes: list[str] = []
    with _ledger(provider, data) as ledger:
        for interrupted in ledger.resolve_interrupted(campaign, channel.value):
            logger.warning("%s: %s", channel.value, interrupted)
            notes.append(str(interrupted))
        if at_least_once:
            ledger.requeue_unknown(campaign, channel.value)
        with ExitStack() as frozen:
            with gc_paused():  # a million recipients built beside a million borrowers
                todo, total = pending_recipients(channel, config, audience, ledger, campaign)
                chunks = cut(todo)
                del todo
                # Frozen before the collector resumes: else its first run would walk all that
                # was just built, only to find nothing to collect.
                frozen.enter_context(gc_frozen())
            sending = sum(map(len, chunks))
            logger.info(
                "%s via %s: %d recipients, %d to send in %d chunks",
                *(channel.value, provider, total, sending, len(chunks)),
            )
            breaker = Breaker(provider)  # one per channel and run, shared by its chunks
            errors = send_chunks(
                channel, config, messages, chunks, ledger, campaign, out, run_id, breaker
            )
        counts = ledger.counts(campaign, channel.value)
    if breaker.open:
        errors.insert(0, stopped(breaker, counts))
        logger.error("%s: %s", channel.value, errors[0])
    status, detail = channel_status(channel, counts, errors, notes)
    excluded = audience.exclusions(channel.value) if audience and channel in DELIVERED else {}
    return ChannelOutcome(channel, status, provider, list(files), counts, detail, excluded)


def pending_recipients(
    channel: Channel,
    config: MunicipalityConfig,
    audience: Audience | None,
    ledger: Ledger,
    campaign: str,
) -> tuple[list[Recipient], int]:
    """Register the channel's recipients; return those still to send, in ledger order, and how
    many recipients the channel has."""
    if audience is not None and channel in DELIVERED:
        parts = keyed_parts(channel, audience, ledger, config.languages)
        # Bounced, complained and unsubscribed addresses of earlier campaigns are skipped.
        parts = honour_suppressions(
            ledger, config.municipality.slug, campaign, channel.value, parts
        )
        recipients, registered = register_while_keying(ledger, campaign, channel.value, parts)
    else:
        recipients = branch_recipients(config, ledger)
        registered = ledger.register(campaign, channel.value, (r.key for r in recipients))
    if registered == len(recipients):
        # A first run: every recipient is new, hence pending, in the order registered.
        return recipients, len(recipients)
    by_key = {r.key: r for r in recipients}
    # In the ledger's storage order: a batch's claim and mark touch neighbouring rows.
    pending = ledger.pending_keys(campaign, channel.value)
    return [by_key[k] for k in pending if k in by_key], len(by_key)


@contextmanager
def _ledger(provider: str, data: Path) -> Iterator[Ledger]:
    """The real ledger in `data`; for the outbox, which delivers to nobody, a throw-away one
    (never the real one, not even with FBSFLOW_DATABASE_URL set), where its rows would pass for
    deliveries. Each outbox run writes all."""
    if provider != "outbox":
        with Ledger.open(data, lease_seconds=_lease_seconds()) as ledger:
            yield ledger
        return
    with (
        tempfile.TemporaryDirectory() as scratch,
        Ledger.scratch(Path(scratch), lease_seconds=_lease_seconds()) as ledger,
    ):
        yield ledger
