"""Receipts benchmark: events ingested per second by a running `fbsflow receipts serve`, on
SQLite and on PostgreSQL, next to a bare loop inserting the same rows.

Usage: python bench/receipts.py [--events 1M] [--batch 5000] [--backends sqlite,postgresql]

The ledger is prepared with N recipients recorded as sent; the benchmark then posts N signed
SendGrid `delivered` events (one per recipient, batches of --batch, bodies signed before the
clock starts) over two connections and times until the last batch is acknowledged, i.e.
committed. The bare loop writes the same rows (one receipt_event and one delivery_outcome row
per event) with the database driver alone, one transaction per batch, no HTTP, no checks.
Target (issue 19): 1M events in at most 60 s.
"""

# bench/email.py lies beside this file and would shadow the standard library's `email` package
# (which http.client imports): the folder leaves sys.path, the repo root goes in its place.
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy import func, select, update  # noqa: E402

from tasks.ledger import Ledger  # noqa: E402
from tasks.ledger.outcome_tables import outcomes  # noqa: E402
from tasks.ledger.schema import deliveries, streams  # noqa: E402
from tests.servers.webhooks import SigningKey, signed_batch  # noqa: E402
from tests.support.postgres import fresh_schema, postgres_url, reachable  # noqa: E402

ROOT = _HERE.parent
CONFIG = ROOT / "config" / "municipalities" / "eksempel-kommune.yaml"
LEDGER_KEY = "bench-receipts-ledger-key-0123456789"


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def backend_env(name: str, folder: Path) -> Iterator[dict[str, str]]:
    """Environment variables pointing fbsflow at a fresh ledger on `name`."""
    env = {"FBSFLOW_LEDGER_KEY": LEDGER_KEY, "FBSFLOW_DATA_DIR": str(folder / "data")}
    if name == "sqlite":
        yield env
        return
    with fresh_schema(postgres_url(), "bench") as url:
        yield {**env, "FBSFLOW_DATABASE_URL": url}


def prepare(env: dict[str, str], campaign: str, n: int) -> list[str]:
    """A ledger with n newsletter recipients recorded as sent; their keys."""
    os.environ.update(env)
    from tasks.settings import reload

    reload()
    with Ledger.open(Path(env["FBSFLOW_DATA_DIR"])) as ledger:
        keys = ledger.recipient_keys(f"laaner{i}@example.test" for i in range(n))
        ledger.register(campaign, "newsletter", keys)
        named = select(streams.c.id).where(streams.c.campaign == campaign)
        with ledger._transaction() as conn:
            conn.execute(
                update(deliveries).where(deliveries.c.stream.in_(named)).values(state="sent")
            )
    return keys


def bodies(key: SigningKey, campaign: str, keys: list[str], batch: int) -> list[tuple]:
    now = int(time.time())
    out = []
    for start in range(0, len(keys), batch):
        events = [
            {
                "email": f"laaner{start + i}@example.test",
                "timestamp": now,
                "event": "delivered",
                "sg_event_id": f"ev{start + i:09d}",
                "sg_message_id": "bench.filter0001",
                "campaign": campaign,
                "recipient": k,
            }
            for i, k in enumerate(keys[start : start + batch])
        ]
        out.append(signed_batch(key, events))
    return out


def through_receiver(env: dict[str, str], config: Path, posts: list[tuple]) -> float:
    """Seconds from the first post to the last acknowledgement, against the real receiver."""
    key_env = {**os.environ, **env}
    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "receipts", "serve", str(config), "--port", str(port)],
        env=key_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the receiver did not start")
            time.sleep(0.1)

        def post_share(share: list[tuple]) -> None:
            with httpx.Client(timeout=300) as client:
                for body, headers in share:
                    answer = client.post(f"{url}/sendgrid/events", content=body, headers=headers)
                    if answer.status_code != 200:
                        raise SystemExit(f"the receiver answered {answer.status_code}")

        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(post_share, [posts[0::2], posts[1::2]]))
        return time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def bare_loop(env: dict[str, str], keys: list[str], campaign: str, batch: int) -> float:
    """The same rows written with the driver alone, one transaction per batch."""
    os.environ.update(env)
    from tasks.settings import reload

    reload()
    with Ledger.open(Path(env["FBSFLOW_DATA_DIR"])) as ledger:
        with ledger._engine.connect() as conn:
            stream = conn.execute(
                select(streams.c.id).where(streams.c.campaign == campaign)
            ).scalar()
        raw = ledger._engine.raw_connection()
        postgres = ledger.dialect == "postgresql"
        try:
            cursor = raw.cursor()
            now = time.time()
            started = time.perf_counter()
            for start in range(0, len(keys), batch):
                chunk = keys[start : start + batch]
                ids = [f"ev{start + i:09d}" for i in range(len(chunk))]
                if postgres:
                    cursor.execute(
                        "INSERT INTO receipt_event (source, event_id, received_at) "
                        "SELECT 'sendgrid', unnest(%s::text[]), %s",
                        (ids, now),
                    )
                    cursor.execute(
                        "INSERT INTO delivery_outcome (stream, recipient_key, outcome, rank, "
                        "updated_at) SELECT %s, unnest(%s::text[]), 'delivered', 20, %s",
                        (stream, chunk, now),
                    )
                else:
                    cursor.execute("BEGIN")
                    cursor.executemany(
                        "INSERT INTO receipt_event VALUES ('sendgrid', ?, ?)",
                        [(i, now) for i in ids],
                    )
                    cursor.executemany(
                        "INSERT INTO delivery_outcome VALUES (?, ?, 'delivered', 20, ?)",
                        [(stream, k, now) for k in chunk],
                    )
                raw.commit()
            return time.perf_counter() - started
        finally:
            raw.close()


def count_outcomes(env: dict[str, str]) -> int:
    os.environ.update(env)
    from tasks.settings import reload

    reload()
    with Ledger.open(Path(env["FBSFLOW_DATA_DIR"])) as ledger, ledger._engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outcomes)).scalar() or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="1M", help="events to ingest (e.g. 100k, 1M)")
    parser.add_argument("--batch", type=int, default=5000, help="events per signed batch")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    n = parse_size(args.events)
    for name in ("SENDGRID_API_KEY", "GATEWAYAPI_TOKEN", "FBSFLOW_DATABASE_URL"):
        os.environ.pop(name, None)
    key = SigningKey()
    os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"] = key.public
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        if backend == "postgresql" and not reachable(postgres_url()):
            print("postgresql: not reachable, skipped")
            continue
        with ExitStack() as stack:
            folder = Path(tempfile.mkdtemp(prefix="bench-receipts-"))
            stack.callback(shutil.rmtree, folder, True)
            config = folder / "kommune.yaml"
            data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
            config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
            from tasks.config import load_municipality
            from tasks.plan import campaign_id

            campaign = campaign_id(load_municipality(config))
            env = stack.enter_context(backend_env(backend, folder / "receiver"))
            keys = prepare(env, campaign, n)
            posts = bodies(key, campaign, keys, args.batch)
            receiver = through_receiver(env, config, posts)
            recorded = count_outcomes(env)
            del posts
            bare_env = stack.enter_context(backend_env(backend, folder / "bare"))
            prepare(bare_env, campaign, n)
            bare = bare_loop(bare_env, keys, campaign, args.batch)
        if recorded != n:
            raise SystemExit(f"{backend}: {recorded} outcomes recorded, not {n}")
        rows.append({"backend": backend, "receiver": receiver, "bare": bare})
        print(f"{backend}: receiver {receiver:.1f} s, bare loop {bare:.1f} s", flush=True)
    load = os.getloadavg()[0]
    print(f"\nreceipts: {n:,} events, batches of {args.batch:,}, load {load:.1f}")
    print(f"{'backend':<11} {'receiver':>10} {'events/s':>10} {'bare loop':>10} {'events/s':>10}")
    for row in rows:
        print(
            f"{row['backend']:<11} {row['receiver']:>9.1f}s {n / row['receiver']:>10,.0f} "
            f"{row['bare']:>9.1f}s {n / row['bare']:>10,.0f}"
        )
    print(json.dumps({"events": n, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
