"""A channel's recipients in chunks, each a task run, a few in flight at once, with progress."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.states import State
from prefect.utilities.annotations import quote

from tasks.breaker import Breaker
from tasks.delivery.worker import ChunkOutcome, deliver_chunk
from tasks.errors import CircuitOpenError, DeliveryError, TransientError
from tasks.ledger import Ledger
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.output import OutputFolder, PrivateFiles
from tasks.providers.base import Message, Recipient
from tasks.providers.registry import chunks_at_once, make_provider
from tasks.settings import DeliverySettings, settings

# Recipients per task run: a Prefect task run costs ~10-25 ms, so thousands go in each. Large
# audiences get about CHUNKS_PER_CHANNEL chunks (the progress artifact's steps), never fewer than
# MIN_CHUNK_SIZE recipients each; env FBSFLOW_CHUNK_SIZE fixes the size instead.
MIN_CHUNK_SIZE = 5_000
CHUNKS_PER_CHANNEL = 20
# Chunks in flight at once: bounded so a provider sees steady, not bursty, load. Each provider
# names its own default (`Provider.chunks_at_once`: 8 for SendGrid, far away; 2 for the others);
# env FBSFLOW_MAX_CONCURRENT_CHUNKS sets one bound for every channel.
# The flow's thread pool: room for the largest FBSFLOW_MAX_CONCURRENT_CHUNKS worth using.
MAX_WORKERS = 16


def chunk_size(recipients: int) -> int:
    """Recipients per chunk task run for a channel with `recipients` to send."""
    adaptive = max(MIN_CHUNK_SIZE, -(-recipients // CHUNKS_PER_CHANNEL))
    return settings(DeliverySettings).chunk_size or adaptive


def cut(recipients: list[Recipient]) -> list[list[Recipient]]:
    """`recipients` in chunks of `chunk_size`, in order."""
    size = chunk_size(len(recipients))
    return [recipients[i : i + size] for i in range(0, len(recipients), size)]


def worth_retrying(task: Any, task_run: Any, state: State) -> bool:
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
    retry_condition_fn=worth_retrying,
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


def send_chunks(
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
    open (their recipients stay pending; the caller reports the breaker's reason). Returns the
    delivery errors, one line each."""
    if not chunks:
        return []
    at_once = settings(DeliverySettings).max_concurrent_chunks or chunks_at_once(channel)
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
