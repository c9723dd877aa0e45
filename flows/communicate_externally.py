"""The card "Forbered og kommunikér eksternt" as a flow: plan, inform per channel, mark complete."""

from __future__ import annotations

import json
import os
import queue
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from itertools import islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from tasks.audience import Audience
from tasks.breaker import Breaker
from tasks.delivery import ChunkOutcome, deliver_chunk
from tasks.errors import CircuitOpenError, ConfigError, DeliveryError, TransientError
from tasks.flowruns import record_owner
from tasks.ledger import Ledger
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.notify import failure_notice
from tasks.output import OutputFolder, PrivateFiles
from tasks.plan import campaign_id
from tasks.providers.base import Message, Recipient
from tasks.providers.registry import chunks_at_once, make_provider, provider_name
from tasks.speed.gcpause import gc_frozen, gc_paused
from tasks.speed.heartbeat import flow_heartbeats
from tasks.steps import (
    DELIVERED,
    ChannelOutcome,
    ask_for_confirmations,
    data_dir,
    import_borrowers,
    load_config,
    make_plan,
    mark_complete,
    obtain_approval,
    poster_mail,
    publish_files,
    record_checklist,
    render_content,
    server_mode,
    triggered_by,
    write_previews,
)
from tasks.translation import translated

# Recipients per task run: a Prefect task run costs ~10-25 ms, so thousands go in each. Large
# audiences get about CHUNKS_PER_CHANNEL chunks (the progress artifact's steps), never fewer than
# MIN_CHUNK_SIZE recipients each; env FBSFLOW_CHUNK_SIZE fixes the size instead.
MIN_CHUNK_SIZE = 5_000
CHUNKS_PER_CHANNEL = 20
# How long a claimed batch stays claimed without renewal before a rerun may judge its run dead.
LEASE_SECONDS = float(os.environ.get("FBSFLOW_LEASE_SECONDS", "600"))
# Chunks in flight at once: bounded so a provider sees steady, not bursty, load. Each provider
# names its own default (`Provider.chunks_at_once`: 8 for SendGrid, far away; 2 for the others);
# env FBSFLOW_MAX_CONCURRENT_CHUNKS sets one bound for every channel.
# The flow's thread pool: room for the largest FBSFLOW_MAX_CONCURRENT_CHUNKS worth using.
MAX_WORKERS = 16


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={raw!r} is not a positive whole number; unset it or use e.g. 2")
    return value


def chunk_size(recipients: int) -> int:
    """Recipients per chunk task run for a channel with `recipients` to send."""
    adaptive = max(MIN_CHUNK_SIZE, -(-recipients // CHUNKS_PER_CHANNEL))
    return _positive_int_env("FBSFLOW_CHUNK_SIZE", adaptive)


def _worth_retrying(task: Any, task_run: Any, state: State) -> bool:
    """Retry a chunk only after a TransientError: its recipients were released, not sent.

    A refused batch (PermanentError) or a possibly delivered one (AmbiguousError) must not be
    tried again: the first would burn more batches into `failed`, the second could duplicate.
    Nor a chunk stopped by the channel's open breaker: the provider stopped answering, and a
    retry would only wait out the delay to be stopped again (or, worse, ask it again).
    """
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError) and not isinstance(error, CircuitOpenError)


@task(
    name="deliver-chunk",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=_worth_retrying,
)
def deliver_chunk_task(
    channel: Channel,
    config: MunicipalityConfig,
    messages: dict[Language, Message],
    recipients: Sequence[Recipient],
    *,
    ledger: Ledger,
    campaign: str,
    outbox: PrivateFiles,
    run_id: str,
    breaker: Breaker,
) -> ChunkOutcome:
    """Send one chunk exactly once: claim in the ledger, send, record (retries live in deliver_chunk)."""
    breaker.check()  # a Prefect retry of a chunk, or one started late: not once it is open
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
            breaker=breaker,
        )
    finally:
        provider.close()


def borrower_recipients(
    channel: Channel, audience: Audience, ledger: Ledger, languages: Sequence[Language]
) -> list[Recipient]:
    """The consenting borrowers of a channel, keyed by the ledger's hash of their address.

    Grouped by language, and each group in up to KEY_PARTS parts, each sorted by key: the
    order they are registered and sent in. Each batch is then one language and one run of
    neighbouring ledger rows, and the ledger's key index is filled in a few sorted runs (as fast
    as one, twice as fast as at random). A borrower whose language the municipality does not
    publish in gets the Danish text.
    """
    return _recipients(_keyed_parts(channel, audience, ledger, languages))


# A large language group is keyed and sorted in this many parts, each handed to the ledger as
# soon as it is ready: while the ledger inserts one (SQLite works without the GIL), this thread
# keys and sorts the next. Parts below MIN_PART recipients are not worth the split.
KEY_PARTS = 4
MIN_PART = 50_000


def _keyed_parts(
    channel: Channel, audience: Audience, ledger: Ledger, languages: Sequence[Language]
) -> Iterator[tuple[Language, list[str], list[str]]]:
    """(language, keys, addresses) parts, both sorted by key: see borrower_recipients."""
    if channel is Channel.NEWSLETTER:
        chosen, attr = audience.newsletter_recipients(), "email"
    else:
        chosen, attr = audience.sms_recipients(), "mobile"
    offered = set(languages)
    groups: dict[Language, list[str]] = {}
    for borrower in chosen:
        language = borrower.language if borrower.language in offered else Language.DA
        groups.setdefault(language, []).append(getattr(borrower, attr))
    del chosen
    for language, addresses in groups.items():
        size = max(MIN_PART, -(-len(addresses) // KEY_PARTS))
        for start in range(0, len(addresses), size):
            part = addresses[start : start + size]
            # The import's addresses are in the ledger's normal form already (tested).
            keys = ledger.recipient_keys(part, normalised=True)
            pairs = sorted(zip(keys, part, strict=True), key=itemgetter(0))
            yield language, list(map(itemgetter(0), pairs)), list(map(itemgetter(1), pairs))


def _recipients(keyed: Iterable[tuple[Language, list[str], list[str]]]) -> list[Recipient]:
    make = Recipient._make  # from a tuple, in C: a quarter faster than Recipient(k, a, l)
    recipients: list[Recipient] = []
    for language, keys, addresses in keyed:
        recipients.extend(map(make, zip(keys, addresses, repeat(language))))
    return recipients


def branch_recipients(config: MunicipalityConfig, ledger: Ledger) -> list[Recipient]:
    """Branch contacts who print and put up the posters (staff, not borrowers)."""
    emails = [str(b.contact_email) for b in config.library.branches if b.contact_email]
    return [Recipient(ledger.recipient_key(e), e, Language.DA) for e in emails]


def deliver(
    channel: Channel,
    config: MunicipalityConfig,
    messages: dict[Language, Message],
    audience: Audience | None,
    out: OutputFolder,
    *,
    data: Path,
    run_id: str,
    at_least_once: bool,
) -> ChannelOutcome:
    """Send one channel's message to its recipients exactly once: register, then send the pending.

    `data` is the run's `data_dir`, where the ledger (or its key) lives.
    """
    logger = get_run_logger()
    provider = provider_name(channel)
    if audience is None and channel in DELIVERED:
        return ChannelOutcome(
            channel, "failed", provider, detail="no audience file (fix: --audience CSV)"
        )
    campaign = campaign_id(config)
    # The outbox delivers to nobody: a throw-away ledger, never the real one (not even with
    # FBSFLOW_DATABASE_URL set), where its rows would pass for deliveries. Each run writes all.
    scratch = tempfile.TemporaryDirectory() if provider == "outbox" else None
    if scratch:
        ledger = Ledger.scratch(Path(scratch.name), lease_seconds=LEASE_SECONDS)
    else:
        ledger = Ledger.open(data, lease_seconds=LEASE_SECONDS)
    notes: list[str] = []
    try:
        for interrupted in ledger.resolve_interrupted(campaign, channel.value):
            logger.warning("%s: %s", channel.value, interrupted)
            notes.append(str(interrupted))
        if at_least_once:
            ledger.requeue_unknown(campaign, channel.value)
        with ExitStack() as frozen:
            with gc_paused():  # a million recipients built beside a million borrowers
                todo, total = _pending_recipients(channel, config, audience, ledger, campaign)
                size = chunk_size(len(todo))
                chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
                del todo
                # Frozen before the collector resumes: else its first run would walk all that
                # was just built (~0.25 s on 1M), only to find nothing to collect.
                frozen.enter_context(gc_frozen())
            logger.info(
                "%s via %s: %d recipients, %d to send in %d chunks",
                channel.value,
                provider,
                total,
                sum(map(len, chunks)),
                len(chunks),
            )
            breaker = Breaker(provider)  # one per channel and run, shared by its chunks
            errors = _send_chunks(
                channel, config, messages, chunks, ledger, campaign, out, run_id, breaker
            )
        counts = ledger.counts(campaign, channel.value)
    finally:
        ledger.close()
        if scratch:
            scratch.cleanup()
    if breaker.open:
        stopped = _stopped(breaker, counts)
        logger.error("%s: %s", channel.value, stopped)
        errors.insert(0, stopped)
    status, detail = _status(channel, counts, errors, notes)
    excluded = audience.exclusions(channel.value) if audience and channel in DELIVERED else {}
    return ChannelOutcome(
        channel, status, provider, counts=counts, detail=detail, excluded=excluded
    )


def _stopped(breaker: Breaker, counts: dict[str, int]) -> str:
    """The channel's message when its breaker stopped it (counts only, no personal data)."""
    return (
        f"stopped sending: {breaker.reason()}; {counts.get('pending', 0)} recipients left "
        "pending: run again when the provider answers"
    )


def _status(
    channel: Channel, counts: dict[str, int], errors: list[str], notes: Sequence[str] = ()
) -> tuple[str, str]:
    """A channel's status and detail from its ledger counts after a run's send; `notes` (an
    earlier run's takeover) go into the detail without failing the channel.

    `done` only when every recipient has an outcome: none pending and none `sending` (held by
    another run of the campaign right now, whose outcome is not known yet).
    """
    status = "failed" if errors or counts.get("pending") else "done"
    detail = "; ".join([*notes, *errors[:3]])
    if counts.get("sending") and status == "done":
        # Another run of the same campaign holds these right now; it records their outcome.
        status = "in_progress"
        detail = (
            f"{counts['sending']} are being sent by another run of this campaign right now: "
            "run again after it has finished to record the final counts"
        )
    if counts.get("unknown"):
        unknown = (
            f"{counts['unknown']} may or may not have been delivered (the provider did not answer)"
        )
        if channel in DELIVERED:
            # Not "done": the card must not read as complete while some borrowers may have had
            # no message. A person decides, one way or the other; the next approved run of this
            # channel records it.
            status = "unconfirmed" if status == "done" else status
            how = (
                "check the provider's activity log, then either accept them as delivered "
                f"(fbsflow ledger CONFIG --accept-unknown {channel.value} --by NAME "
                f"--expect {counts['unknown']}) or send them "
                "again (rerun with --at-least-once)"
            )
        else:
            # Staff e-mails (the posters' branch contacts): each branch's poster step is
            # confirmed by a person anyway, and that is where a missing e-mail shows.
            how = "ask those branches whether the poster e-mail arrived"
        detail = (detail + "; " if detail else "") + f"{unknown}: {how}"
    return status, detail


def _pending_recipients(
    channel: Channel,
    config: MunicipalityConfig,
    audience: Audience | None,
    ledger: Ledger,
    campaign: str,
) -> tuple[list[Recipient], int]:
    """Register the channel's recipients; return those still to send, in ledger order, and how
    many recipients the channel has."""
    if audience is not None and channel in DELIVERED:
        # SQLite inserts without holding the GIL: a helper thread registers each part of the
        # keys while this one keys and sorts the next and builds the recipients.
        handoff = _Handoff()
        parts = _keyed_parts(channel, audience, ledger, config.languages)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fbsflow-register") as pool:
            registering = pool.submit(ledger.register_parts, campaign, channel.value, handoff)
            try:
                recipients = _recipients(handoff.passing(parts))
            except BaseException:
                handoff.abort()  # the registration rolls back: nothing half-registered
                raise
            handoff.close()
            registered = registering.result()
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


class _Handoff:
    """Parts of keys from the thread computing them to the thread registering them, in order."""

    _END = object()
    _ABORT = object()

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def passing(
        self, parts: Iterable[tuple[Language, list[str], list[str]]]
    ) -> Iterator[tuple[Language, list[str], list[str]]]:
        """`parts` as they are, each part's keys handed over before the part goes on."""
        for part in parts:
            self._queue.put(part[1])
            yield part

    def close(self) -> None:
        self._queue.put(self._END)

    def abort(self) -> None:
        self._queue.put(self._ABORT)

    def __iter__(self) -> Iterator[list[str]]:
        while (item := self._queue.get()) is not self._END:
            if item is self._ABORT:
                raise RuntimeError("the recipients' keys were not all computed; nothing registered")
            yield cast(list[str], item)


def _send_chunks(
    channel: Channel,
    config: MunicipalityConfig,
    messages: dict[Language, Message],
    chunks: list[list[Recipient]],
    ledger: Ledger,
    campaign: str,
    out: OutputFolder,
    run_id: str,
    breaker: Breaker,
) -> list[str]:
    """Submit the chunks as task runs, a few at a time, with progress; none once `breaker` is
    open (their recipients stay pending; the caller reports the breaker's reason)."""
    if not chunks:
        return []
    at_once = _positive_int_env("FBSFLOW_MAX_CONCURRENT_CHUNKS", chunks_at_once(channel))
    progress = create_progress_artifact(progress=0.0, description=f"{channel.value}: chunks sent")
    errors: list[str] = []

    def submit(chunk: list[Recipient]) -> PrefectFuture[ChunkOutcome]:
        # quote(): Prefect would otherwise walk every recipient looking for futures.
        return deliver_chunk_task.submit(
            channel,
            quote(config),
            quote(messages),
            quote(chunk),
            ledger=quote(ledger),
            campaign=campaign,
            outbox=quote(out.private),
            run_id=run_id,
            breaker=quote(breaker),
        )

    # A window, not waves: the next chunk starts the moment any one finishes, so no thread
    # idles while the slower chunk of a pair finishes.
    waiting = iter(chunks)
    running = [submit(chunk) for chunk in islice(waiting, at_once)]
    done = 0
    while running:
        future = next(as_completed(running))
        running.remove(future)
        try:
            future.result()
        except CircuitOpenError:
            pass  # said once for the channel, with the count left pending
        except DeliveryError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        except BaseException:
            # Not a delivery outcome (a ConfigError: a refused key, an untrusted certificate):
            # start no more chunks, and let those in flight finish and record their batches
            # before the ledger is closed under them.
            wait(running)
            raise
        done += 1
        update_progress_artifact(progress, progress=100.0 * done / len(chunks))
        if not breaker.open and (chunk := next(waiting, None)) is not None:
            running.append(submit(chunk))
    return errors


def check_ledger_key(channels: Sequence[Channel], data: Path) -> None:
    """Open the real ledger once, if a channel delivers through a provider: a key that does not
    match the ledger's then stops the run at its start (ConfigError), before approval is asked
    for and before any channel sends."""
    if any(provider_name(c) != "outbox" for c in channels if c in (*DELIVERED, Channel.POSTER)):
        Ledger.open(data, lease_seconds=LEASE_SECONDS).close()


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
            o.get("excluded", {}),
        )
        for name, o in previous.items()
        if name in Channel._value2member_map_ and Channel(name) not in skip
    ]


@flow(
    name="communicate-externally",
    description="FBS card 'Forbered og kommunikér eksternt': plan, inform per channel, mark complete.",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),
    on_failure=[failure_notice],
    on_crashed=[failure_notice],
)
def communicate_externally(
    config_path: str,
    audience: str | None = None,
    approve: bool = False,
    output_root: str = "outbox",
    at_least_once: bool = False,
    channels: list[Channel] | None = None,
    confirm: list[str] | None = None,
    confirmed_by: str | None = None,
    wait_for_confirmations: bool = False,
) -> dict[str, Any]:
    """Run the card for one municipality; returns the completion record.

    `channels` limits the run to some channels (a scheduled run on a channel's planned date);
    the other channels keep the output and outcome of their last run. `confirm` lists manual
    steps (e.g. `inform.poster.hovedbiblioteket`) a person says are done.
    """
    started = datetime.now(UTC)
    run_id = str(get_run_context().flow_run.id)
    record_owner()  # so that a sweep can mark this run crashed if its process dies
    config, card = load_config(config_path)
    selected = [c for c in config.channels.enabled() if channels is None or c in channels]
    data = data_dir(config_path)
    # A database or disk fault ends the run as fbsflow's error, naming the file and the fix:
    # that is the message Prefect records for the run and the CLI prints.
    places = (data, Path(output_root))
    with (
        translated(places),
        flow_heartbeats(),
        OutputFolder(Path(output_root), config.municipality.slug) as out,
    ):
        check_ledger_key(selected, data)
        if channels is not None:
            out.keep_previous({c.value for c in selected} | {"plan.md", "completion.json"})
        # 1. Plan: import the audience, render every channel, write the plan and the previews.
        borrowers = import_borrowers(config, config_path, audience, out)
        contents = render_content(config)
        plan = make_plan(config, card, contents, quote(borrowers), out)
        write_previews(config, contents, out)

        # 2. Inform via each channel. Files for people to publish are always written;
        #    nothing reaches a citizen's inbox or phone without approval.
        sends = any(c in DELIVERED for c in selected)
        approval = obtain_approval(approve, sends, out)
        outcomes: list[ChannelOutcome] = _previous_outcomes(out, set(selected))
        for channel in selected:
            content = contents[channel]
            published = publish_files(content, out)
            if channel is Channel.POSTER:
                outcome = deliver(
                    channel,
                    config,
                    {Language.DA: poster_mail(config, content)},
                    None,
                    out,
                    data=data,
                    run_id=run_id,
                    at_least_once=False,
                )
                published.counts, published.provider = outcome.counts, outcome.provider
                # Its delivery decides: not done while a branch e-mail is pending or sending.
                published.status, published.detail = outcome.status, outcome.detail
                outcomes.append(published)
            elif channel not in DELIVERED:
                outcomes.append(published)
            elif not approval["approved"]:
                status = "rejected" if approval.get("decision") == "reject" else "awaiting_approval"
                outcomes.append(
                    ChannelOutcome(channel, status, provider_name(channel), files=published.files)
                )
            else:
                outcome = deliver(
                    channel,
                    config,
                    content.messages,
                    borrowers,
                    out,
                    data=data,
                    run_id=run_id,
                    at_least_once=at_least_once,
                )
                outcome.files = published.files
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: list(Channel).index(o.channel))

        # 3. Record the checklist, then mark the card complete (or say why not).
        confirmations = list(confirm or [])
        if wait_for_confirmations and server_mode():
            confirmations += ask_for_confirmations(config, card, data)
        checklist = record_checklist(
            config, card, outcomes, approval, confirmations, confirmed_by or triggered_by(), data
        )
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
            checklist=checklist,
        )
        out.commit()
    return record
