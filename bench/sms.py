"""SMS benchmark: `fbsflow run` end to end against the GatewayAPI stand-in, next to a bare loop.

Usage: python bench/sms.py [--sizes 100k,1M] [--prefect both|server|embedded] [--keep]

Each size is a number of borrower rows in the SMS scheme (see bench/README.md).
"""

# bench/email.py lies beside this file and would shadow the standard library's `email` package
# (which http.client imports): the folder leaves sys.path, the repo root goes in its place.
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import base64  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import (  # noqa: E402
    Server,
    batches,
    clean_env,
    first_runs,
    http_json,
    load_average,
    messages_for,
    out,
    parse_sizes,
    post_all,
    prefect_modes,
    rate,
    recipients_for,
    report_mode_run,
    run_fbsflow,
    start_server,
    summary,
    timed,
    with_fresh_ledger,
    workspace,
    write_audience,
    write_config,
)

TOKEN = "test-token"
BATCH = 10_000  # GatewayAPI's recipients per request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1M", help="rows in the SMS scheme, per run")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, files)")
    parser.add_argument(
        "--prefect",
        choices=("both", "server", "embedded"),
        default="both",
        help="run against a long-lived Prefect server, an embedded one, or both (default)",
    )
    args = parser.parse_args(argv)

    ws = workspace(args.keep)
    out(f"SMS benchmark, {os.cpu_count()} CPUs, load average {load_average()}, workspace {ws}")
    config = write_config(ws, "sms")
    messages = messages_for(config, "sms")
    server = start_server(
        ["-m", "tests.servers.gatewayapi_server", "--port", "0", "--token", TOKEN], ws / "gw.log"
    )
    env = clean_env(
        PREFECT_HOME=str(ws / "prefect-home"), GATEWAYAPI_TOKEN=TOKEN, GATEWAYAPI_URL=server.url
    )
    results: list[dict[str, Any]] = []
    try:
        with contextlib.ExitStack() as stack:
            envs = prefect_modes(args.prefect, env, ws, stack)
            if not first_runs(envs, ws, config, "sms"):
                return 1
            for size in parse_sizes(args.sizes):
                results.extend(_one_size(size, ws, config, messages, envs, server))
    finally:
        final = server.stop()
    out(f"\nStand-in's own count at exit: {final}")
    summary(
        results,
        "Target (issue 5): 1M SMS recipients <= 15 s; the ratio to the bare loop is reported.",
    )
    return 0 if all(r["ok"] for r in results) else 1


def _delivered(server: Server) -> tuple[int, int]:
    """(recipients delivered, requests) so far: the stand-in has no reset, so runs use deltas."""
    stats = http_json(server.url, "/_stats")
    return stats["delivered"], stats["requests"]


def _one_size(
    size: int,
    ws: Path,
    config: Path,
    messages: dict[Any, Any],
    envs: dict[str, dict[str, str]],
    server: Server,
) -> list[dict[str, Any]]:
    from tasks.config import load_municipality
    from tasks.delivery.chunks import chunk_size
    from tasks.providers.gatewayapi import encode_payload

    audience = write_audience(ws, size, "sms")
    runs = {}
    for mode, env in envs.items():
        load_before = load_average()
        before, requests_before = _delivered(server)
        folder = ws / f"run-{size}-{mode}"
        run = run_fbsflow(config, audience.path, folder, with_fresh_ledger(env, folder), "run")
        after, requests_after = _delivered(server)
        runs[mode] = (run, after - before, requests_after - requests_before, load_before)

    import_seconds, recipients = timed(lambda: recipients_for(audience.path, "sms"))
    settings = load_municipality(config).channels.sms
    assert settings is not None
    auth = base64.b64encode(f"{TOKEN}:".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    chunk = chunk_size(len(recipients))

    # The same request bodies (encode_payload, as the provider sends them, grouped by the
    # flow's chunks and by language), posted one after the other on one connection: no ledger,
    # no Prefect.
    bodies = (
        encode_payload(
            message,
            group,
            sender=settings.sender,
            campaign="bench",
            batch_id=uuid.uuid4().hex[:12],
            max_parts=settings.max_parts,
        )
        for message, group in batches(recipients, messages, chunk, BATCH)
    )
    start, _ = _delivered(server)
    bare_seconds, bare_requests = timed(
        lambda: post_all(server.url, "/rest/mtsms", headers, bodies, (200,))
    )
    bare_delivered = _delivered(server)[0] - start
    results = []
    bare_line = (
        f"  bare loop, the flow's payloads (chunks of {chunk:,} split by language, up to "
        f"{BATCH:,} per request: {bare_requests} requests on one connection): "
        f"{bare_seconds:.2f} s, {rate(bare_delivered, bare_seconds)}; the in-process import "
        f"takes {import_seconds:.2f} s"
    )
    for mode, (run, delivered, requests, load_before) in runs.items():
        results.append(
            report_mode_run(
                size,
                mode,
                len(recipients),
                run,
                delivered,
                requests,
                load_before,
                bare_line=bare_line,
                bare_seconds=bare_seconds,
                bare_delivered=bare_delivered,
                import_seconds=import_seconds,
                ratio_target="",  # issue 5 asks for the ratio only
            )
        )
    return results


if __name__ == "__main__":
    sys.exit(main())
