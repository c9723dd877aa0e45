"""Newsletter benchmark: `fbsflow run` end to end against the SendGrid stand-in, next to bare loops.

Usage: python bench/email.py [--sizes 10k,100k,1M] [--prefect both|server|embedded]
       [--sdk-sample 2000] [--smtp-sample 2000] [--prefect-email-sample 300] [--skip-smtp]
       [--profile] [--keep]

Each size is a number of borrower rows that opted in to the newsletter (see bench/README.md).
"""

# This file is named email.py, so its folder must leave sys.path before anything imports the
# standard library's `email` package (http.client does); the repo root goes in its place.
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import (  # noqa: E402
    PYTHON,
    ROOT,
    Server,
    clean_env,
    first_runs,
    http_json,
    import_seconds,
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
    sendgrid_bodies,
    start_server,
    summary,
    timed,
    with_fresh_ledger,
    workspace,
    write_audience,
    write_config,
)
from tests.support.tls import self_signed  # noqa: E402

API_KEY = "SG.stand-in-test-key"
JSON_UTF8 = "application/json; charset=utf-8"  # what SendGridProvider sends
TRANSPORT_TEXT = {
    "https": "HTTPS, as api.sendgrid.com serves it (a new connection costs a TLS handshake)",
    "http": "plain HTTP, which SendGrid does not serve (a new connection costs next to nothing)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k,1M", help="opted-in rows per run")
    parser.add_argument("--sdk-sample", type=int, default=2000, help="recipients sent one by one")
    parser.add_argument("--smtp-sample", type=int, default=2000, help="SMTP messages per client")
    parser.add_argument(
        "--prefect-email-sample", type=int, default=300, help="prefect-email task runs"
    )
    parser.add_argument("--skip-smtp", action="store_true", help="leave out the SMTP comparison")
    parser.add_argument("--profile", action="store_true", help="profile the delivery path")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, files)")
    parser.add_argument(
        "--prefect",
        choices=("both", "server", "embedded"),
        default="both",
        help="run against a long-lived Prefect server, an embedded one, or both (default)",
    )
    parser.add_argument(
        "--transport",
        choices=("both", "https", "http"),
        default="both",
        help="the stand-in speaks HTTPS as SendGrid does, plain HTTP, or both in turn (default)",
    )
    args = parser.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    transports = ("https", "http") if args.transport == "both" else (args.transport,)

    ws = workspace(args.keep)
    out(f"E-mail benchmark, {os.cpu_count()} CPUs, load average {load_average()}, workspace {ws}")
    config = write_config(ws, "newsletter")
    messages = messages_for(config, "newsletter")
    tls: list[str] = []
    if "https" in transports:
        cert, key = self_signed(ws, "stand-in")
        # The runs, the bare loop and the SDK trust the throw-away certificate through OpenSSL's
        # own variable, as a machine behind a company CA would; set before any TLS context.
        os.environ["SSL_CERT_FILE"] = str(cert)
        tls = ["--tls", str(cert), str(key)]
    env = clean_env(PREFECT_HOME=str(ws / "prefect-home"), SENDGRID_API_KEY=API_KEY)
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        envs = prefect_modes(args.prefect, env, ws, stack)
        for n, transport in enumerate(transports):
            server = start_server(
                [
                    "-m",
                    "tests.servers.sendgrid_server",
                    "--port",
                    "0",
                    *(tls if transport == "https" else []),
                ],
                ws / f"sg-{transport}.log",
            )
            # Stopped when its transport is done: the next one's runs meet one stand-in only.
            transport_done = stack.enter_context(contextlib.ExitStack())
            transport_done.callback(server.stop)
            for mode_env in envs.values():
                mode_env["SENDGRID_HOST"] = server.url
            out(f"\n######## The SendGrid stand-in over {TRANSPORT_TEXT[transport]}: {server.url}")
            # A fresh Prefect database is migrated on first use: that run is measured apart.
            if n == 0:
                if not first_runs(envs, ws, config, "newsletter"):
                    return 1
                out(
                    f"Importing the flow module (fbsflow + Prefect) alone takes "
                    f"{import_seconds(env):.1f} s."
                )
            rows: list[dict[str, Any]] = []
            for size in sizes:
                rows.extend(_one_size(size, ws, config, messages, envs, server))
            largest = max(rows, key=lambda r: r["recipients"])
            _sdk(args.sdk_sample, largest, config, messages, server, transport)
            if args.profile and n == 0:
                _profile(ws, config, messages, server, min(largest["recipients"], 20_000))
            for row in rows:
                del row["recipients_list"]  # a million Recipients per size: not kept twice
                row["transport"] = transport
            results.extend(rows)
            transport_done.close()
    if not args.skip_smtp:
        _smtp(args.smtp_sample, args.prefect_email_sample, ws, config, env)
    summary(results, "Targets: 1M recipients <= 30 s and <= 1 GiB peak RSS; e2e / bare <= 1.3x.")
    return 0 if all(r["ok"] for r in results) else 1


def _one_size(
    size: int,
    ws: Path,
    config: Path,
    messages: dict[Any, Any],
    envs: dict[str, dict[str, str]],
    server: Server,
) -> list[dict[str, Any]]:
    audience = write_audience(ws, size, "newsletter")
    runs = {}
    for mode, env in envs.items():
        http_json(server.url, "/_reset", "POST")
        load_before = load_average()
        # A folder and ledger per transport too: else the campaign counts as sent already.
        folder = ws / f"run-{size}-{mode}-{server.url.partition(':')[0]}"
        run = run_fbsflow(config, audience.path, folder, with_fresh_ledger(env, folder), "run")
        runs[mode] = (run, http_json(server.url, "/_stats"), load_before)

    # The bare loop: the same recipients, the same request bodies (encode_payload, 1000 per
    # request, grouped by chunk and language as the flow does), one keep-alive connection, no
    # ledger.
    import_seconds, recipients = timed(lambda: recipients_for(audience.path, "newsletter"))
    bodies = sendgrid_bodies(config, recipients, messages)
    http_json(server.url, "/_reset", "POST")
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": JSON_UTF8}
    bare_seconds, requests = timed(
        lambda: post_all(server.url, "/v3/mail/send", headers, bodies, ok=(202,))
    )
    bare_delivered = http_json(server.url, "/_stats")["deliveries"]
    results = []
    bare_line = (
        f"  bare loop (encode_payload + http.client, {requests} requests on one connection): "
        f"{bare_seconds:.2f} s, {rate(bare_delivered, bare_seconds)}; the in-process import "
        f"of the same file takes {import_seconds:.2f} s more"
    )
    for mode, (run, stats, load_before) in runs.items():
        row = report_mode_run(
            size,
            mode,
            len(recipients),
            run,
            stats["deliveries"],
            stats["requests"],
            load_before,
            bare_line=bare_line,
            bare_seconds=bare_seconds,
            bare_delivered=bare_delivered,
            import_seconds=import_seconds,
        )
        results.append({**row, "recipients_list": recipients})
    return results


def _settings(config: Path) -> Any:
    from tasks.config import load_municipality

    settings = load_municipality(config).channels.newsletter
    assert settings is not None
    return settings


def _sdk(
    sample: int,
    largest: dict[str, Any],
    config: Path,
    messages: dict[Any, Any],
    server: Server,
    transport: str,
) -> None:
    """(b) The SendGrid SDK sending one request per recipient, extrapolated per recipient.

    The SDK as it ships: `SendGridAPIClient(...).client.mail.send.post` per recipient, through
    its own transport (urllib, a connection per request: over HTTPS, a TLS handshake each),
    each body exactly what our provider writes for a batch of one. Beside it, our provider with one recipient per call, on the
    connection it keeps: how much of the ratio is batching and how much the kept connection.
    """
    import sendgrid

    from tasks.providers.sendgrid import SendGridProvider, encode_payload

    recipients = largest["recipients_list"][:sample]
    settings = _settings(config)
    sender = {"from_email": str(settings.from_email), "from_name": settings.from_name}
    headers = {"Content-Type": "application/json; charset=utf-8"}
    sdk = sendgrid.SendGridAPIClient(api_key=API_KEY, host=server.url)
    provider = SendGridProvider(API_KEY, host=server.url, **sender)

    def message_for(r: Any) -> Any:
        return messages.get(r.language) or next(iter(messages.values()))

    def stock() -> None:
        for r in recipients:
            body = encode_payload(
                message_for(r), [r], campaign="bench", batch_id=uuid.uuid4().hex[:12], **sender
            )
            response = sdk.client.mail.send.post(request_body=body, request_headers=headers)
            if response.status_code != 202:
                raise RuntimeError(f"SDK one per request: answered {response.status_code}")

    def ours() -> None:
        for r in recipients:
            provider.send_batch(
                message_for(r), [r], campaign="bench", batch_id=uuid.uuid4().hex[:12]
            )

    http_json(server.url, "/_reset", "POST")
    seconds, _ = timed(stock)
    stats = http_json(server.url, "/_stats")
    http_json(server.url, "/_reset", "POST")
    kept_seconds, _ = timed(ours)
    provider.close()
    kept_stats = http_json(server.url, "/_stats")
    for counted in (stats, kept_stats):
        counted["connections"] -= 1  # the /_stats request's own
    per_sdk, per_kept = seconds / len(recipients), kept_seconds / len(recipients)
    n = largest["recipients"]
    per_e2e, per_bare = largest["wall"] / n, largest["bare"] / n
    out(
        f"\n== SendGrid SDK, one request per recipient over {transport.upper()} "
        f"({len(recipients):,} recipients, stand-in counted {stats['deliveries']:,} over "
        f"{stats['connections']:,} connections) =="
    )
    out(
        f"  {seconds:.2f} s = {per_sdk * 1e3:.2f} ms per recipient; for {n:,} recipients "
        f"that is {per_sdk * n:,.0f} s"
    )
    best_case = (
        "" if transport == "https" else "; plain HTTP is the one-per-request loop's best case"
    )
    out(
        f"  ratio one-per-request / our end to end ({n:,}, {largest['mode']}, {transport.upper()}): "
        f"{per_sdk / per_e2e:.1f}x (expected >= 60x{best_case}); / bare batched loop: "
        f"{per_sdk / per_bare:.0f}x"
    )
    out(
        f"  our provider, one recipient per request on its kept connection "
        f"({kept_stats['deliveries']:,} over {kept_stats['connections']:,} connection(s)): "
        f"{per_kept * 1e3:.2f} ms per recipient; our end to end is {per_kept / per_e2e:.1f}x "
        "faster than that"
    )


def _smtp(sample: int, task_sample: int, ws: Path, config: Path, env: dict[str, str]) -> None:
    """(c) SmtpProvider (one connection, and as the flow runs it) vs prefect-email per message."""
    from tasks.models import Language
    from tasks.providers.base import Recipient
    from tasks.providers.smtp import SmtpProvider

    settings = _settings(config)
    message = messages_for(config, "newsletter")[Language.DA]
    sink = start_server(["-m", "bench.common", "smtp-sink"], ws / "smtp.log")
    try:
        recipients = [Recipient(f"{i:032x}", f"laaner{i}@example.com") for i in range(sample)]

        def send(part: list[Any]) -> int:
            """One provider (one connection) sending `part` in batches, as one chunk task does."""
            provider = SmtpProvider(
                "127.0.0.1",
                sink.port,
                starttls=False,
                from_email=str(settings.from_email),
                from_name=settings.from_name,
            )
            sent = 0
            for start in range(0, len(part), provider.max_batch):
                batch = part[start : start + provider.max_batch]
                result = provider.send_batch(message, batch, campaign="bench", batch_id="b")
                sent += len(result.statuses)
            provider.close()
            return sent

        ours, sent = timed(lambda: send(recipients))
        # As the flow sends: SmtpProvider.chunks_at_once chunk task runs at once, each with its
        # own provider and connection, over shares of the same recipients.
        from concurrent.futures import ThreadPoolExecutor

        at_once = SmtpProvider.chunks_at_once
        parts = [recipients[i::at_once] for i in range(at_once)]
        with ThreadPoolExecutor(at_once) as pool:
            cpu_before = time.process_time()
            flow_like, sent_flow = timed(lambda: sum(pool.map(send, parts)))
            client_cpu = time.process_time() - cpu_before
        proc = subprocess.run(
            [
                PYTHON,
                "-m",
                "bench.common",
                "prefect-email",
                str(task_sample),
                str(sink.port),
                str(config),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        final = sink.stop()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    per_one = ours / sample
    per_ours = flow_like / sample
    out(
        f"\n== SMTP against an aiosmtpd server on 127.0.0.1, a process per connection as Postfix "
        f"runs smtpd (sink counted: {final}) =="
    )
    out(
        f"  SmtpProvider, one connection: {sample:,} messages ({sent:,} accepted) in {ours:.2f} s "
        f"= {per_one * 1e3:.2f} ms per message"
    )
    out(
        f"  SmtpProvider as the flow sends ({at_once} chunks at once, a connection each): "
        f"{sample:,} messages ({sent_flow:,} accepted) in {flow_like:.2f} s = "
        f"{per_ours * 1e3:.2f} ms per message; the ratios below are to this. Our process used "
        f"{client_cpu / sample * 1e3:.2f} ms of CPU a message: the rest is the sink's"
    )
    if proc.returncode != 0 or not lines:
        out(f"  prefect-email run failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
        return
    pe = json.loads(lines[-1])
    per_fn, per_task = pe["fn"] / pe["n"], pe["task"] / pe["n"]
    out(
        f"  prefect-email email_send_message as a task run per message ({pe['n']:,}): "
        f"{pe['task']:.2f} s = {per_task * 1e3:.2f} ms per message; ratio {per_task / per_ours:.0f}x "
        f"(expected >= 20x)"
    )
    out(
        f"  prefect-email's function alone (.fn, a new SMTP connection per message, no task run): "
        f"{pe['fn']:.2f} s = {per_fn * 1e3:.2f} ms per message; ratio {per_fn / per_ours:.1f}x"
    )


def _profile(ws: Path, config: Path, messages: dict[Any, Any], server: Server, n: int) -> None:
    """Where the delivery path spends its time, outside Prefect and inside it."""
    import cProfile
    import io
    import pstats

    from prefect.utilities.collections import visit_collection
    from prefect.utilities.engine import collect_task_run_inputs_sync

    from tasks.audience import import_audience
    from tasks.delivery import deliver_chunk
    from tasks.delivery.chunks import chunk_size
    from tasks.ledger import Ledger
    from tasks.providers.sendgrid import SendGridProvider

    audience_file = write_audience(ws, n, "newsletter")
    audience = import_audience(audience_file.path)
    settings = _settings(config)
    ledger = Ledger.open(ws / "profile-data")
    from tasks.providers.base import Recipient

    # What a channel's delivery task does before the first chunk, step by step.
    keyed, recipients = timed(
        lambda: [
            Recipient(ledger.recipient_key(b.email), b.email, b.language)
            for b in audience.newsletter_recipients()
        ]
    )
    registered, _ = timed(
        lambda: ledger.register("bench", "newsletter", [r.key for r in recipients])
    )
    pending, _ = timed(lambda: set(ledger.pending_keys("bench", "newsletter")))
    per = 100_000 / len(recipients)
    out(
        f"\n== Profile: before the first chunk, per 100,000 recipients: keys (HMAC) "
        f"{keyed * per:.2f} s, ledger.register {registered * per:.2f} s, pending_keys "
        f"{pending * per:.2f} s =="
    )
    provider = SendGridProvider(
        API_KEY, host=server.url, from_email=str(settings.from_email), from_name=settings.from_name
    )
    per_chunk = chunk_size(len(recipients))  # as the flow cuts them
    profiler = cProfile.Profile()
    seconds, _ = timed(
        lambda: profiler.runcall(
            lambda: [
                deliver_chunk(
                    provider,
                    ledger,
                    messages,
                    recipients[i : i + per_chunk],
                    campaign="bench",
                    channel="newsletter",
                    run_id="bench",
                )
                for i in range(0, len(recipients), per_chunk)
            ]
        )
    )
    ledger.close()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
    out(
        f"\n== Profile: deliver_chunk without Prefect, {len(recipients):,} recipients, "
        f"{seconds:.2f} s ({rate(len(recipients), seconds)}; profiler overhead included) =="
    )
    out("\n".join(text.getvalue().splitlines()[4:24]))

    chunk = recipients[:per_chunk]
    collect, _ = timed(lambda: collect_task_run_inputs_sync(chunk))
    resolve, _ = timed(
        lambda: visit_collection(chunk, visit_fn=lambda x: x, return_data=True, max_depth=-1)
    )
    whole, _ = timed(lambda: collect_task_run_inputs_sync(audience))
    out(
        f"  Prefect walks every task parameter: for one {per_chunk:,}-recipient chunk, collecting "
        f"task inputs takes {collect:.2f} s and resolving parameters {resolve:.2f} s; the "
        f"Audience passed to make_plan ({len(audience.borrowers):,} borrowers): {whole:.2f} s "
        f"to collect, about as much again to resolve"
    )


if __name__ == "__main__":
    sys.exit(main())
