"""Shared benchmark helpers: stand-in servers as processes, synthetic audiences, timed `fbsflow run`s.

Run as `python -m bench.common smtp-sink` (from the repo root) it is the SMTP sink the e-mail
benchmark talks to; `python -m bench.common prefect-email N PORT CONFIG` times prefect-email against it.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EXAMPLE_CONFIG = ROOT / "config" / "municipalities" / "eksempel-kommune.yaml"
# Shares of synthetic rows that opt in (tasks/synthetic.py draws 717/1024 and 410/1024).
OPT_IN_SHARE = {"newsletter": 717 / 1024, "sms": 410 / 1024}
CONSENT_COLUMN = {"newsletter": "Nyhedsbrev", "sms": "SMS-ordning"}
_URL = re.compile(r"https?://127\.0\.0\.1:\d+")

try:
    import psutil
except ImportError:  # optional: without it only the largest single process's peak is known
    psutil = None


# --- printing -------------------------------------------------------------------------------


def out(text: str = "") -> None:
    """Print at once: the benchmarks run for minutes and a reader wants to see progress."""
    print(text, flush=True)


def load_average() -> str:
    """The 1-minute load average: figures taken on a busy 2-core machine need this context."""
    return f"{os.getloadavg()[0]:.1f}"


def mib(n_bytes: float | None) -> str:
    return "n/a" if n_bytes is None else f"{n_bytes / 2**20:,.0f} MiB"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "n/a"


def parse_sizes(text: str) -> list[int]:
    """'10000,100k,1M' -> [10000, 100000, 1000000]."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        factor = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        sizes.append(int(float(part.rstrip("km")) * factor))
    return sizes


# --- stand-in servers as their own processes ------------------------------------------------


@dataclass
class Server:
    """A stand-in server process on 127.0.0.1; `url` is its base address."""

    proc: subprocess.Popen[str]
    url: str
    port: int

    def stop(self) -> str:
        """SIGTERM, wait, and return what it printed on the way out (its final counts)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        return (rest or "").strip()


def start_server(args: list[str], log: Path) -> Server:
    """Start `python -m ...` from the repo root; wait for the line naming its 127.0.0.1 URL."""
    proc = subprocess.Popen(
        [PYTHON, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    watchdog = threading.Timer(60, proc.kill)  # a server that never says READY must not hang us
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = _URL.search(line)
            if match:
                url = match.group(0)
                return Server(proc, url, int(url.rsplit(":", 1)[1]))
    finally:
        watchdog.cancel()
    raise RuntimeError(f"{' '.join(args)} did not start; see {log}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def prefect_server(home: Path, log: Path) -> Iterator[str]:
    """A long-lived `prefect server start` on 127.0.0.1, as a deployment runs one; yields its API URL.

    Started and healthy before any timing begins, like the stand-in provider: a run against it
    then pays for its own work, not for booting an ephemeral server.
    """
    port = _free_port()
    env = clean_env(PREFECT_HOME=str(home))
    env.pop("PYTHONPATH", None)
    prefect = Path(PYTHON).parent / "prefect"
    cmd = [
        str(prefect),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--analytics-off",
    ]
    with log.open("w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}; see {log}")
            with contextlib.suppress(OSError, ValueError):
                if http_json(f"http://127.0.0.1:{port}", "/api/health") is True:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not answer in 180 s; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _connect(url: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to a stand-in's base URL, HTTPS (trusting SSL_CERT_FILE) or plain."""
    scheme, _, address = url.partition("://")
    host, port = address.split(":")
    if scheme == "https":
        return http.client.HTTPSConnection(host, int(port), timeout=timeout)
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def http_json(url: str, path: str, method: str = "GET") -> Any:
    """A control call to a stand-in (`/_stats`, `/_reset`)."""
    conn = _connect(url, timeout=30)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None)
        return json.loads(conn.getresponse().read() or b"null")
    finally:
        conn.close()


def post_all(
    url: str, path: str, headers: dict[str, str], bodies: Iterable[Any], ok: tuple[int, ...]
) -> int:
    """POST each JSON body (a document, or bytes) over ONE keep-alive connection; return how many.

    The bare loop every benchmark compares against: `bodies` may be a generator that builds
    each payload, so building counts in the caller's timing as it does in the real pipeline.
    """
    conn = _connect(url, timeout=60)
    conn.connect()
    # Headers and body go out in one send (http.client joins bytes bodies), but a stand-in that
    # answers in two writes would otherwise meet Nagle's algorithm and delayed ACKs.
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = 0
    try:
        for body in bodies:
            # Bytes: a body the provider encodes itself (GatewayAPI); else what the SDK does.
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            conn.request("POST", path, body=data, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status not in ok:
                raise RuntimeError(f"bare loop: {path} answered {response.status}")
            sent += 1
    finally:
        conn.close()
    return sent


# --- synthetic audiences and configs --------------------------------------------------------


@dataclass(frozen=True)
class AudienceFile:
    path: Path
    rows: int  # data rows in the file (all opted in to the channel)
    generated: int  # rows the generator wrote before the filter


def write_audience(directory: Path, size: int, channel: str, seed: int = 1) -> AudienceFile:
    """A borrower export of `size` rows that all opted in to `channel`, from write_borrowers.

    The generator has no switch for "everyone opted in", so it writes enough rows and this keeps
    the opted-in ones, as the generator wrote them (dirt included: bad addresses, duplicates,
    quoting). A few of them are left out by the import, so recipients come out slightly lower.
    """
    from tasks.synthetic import write_borrowers

    path = directory / f"{channel}-{size}.csv"
    if path.exists():
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = sum(1 for _ in f) - 1
        return AudienceFile(path, rows, 0)
    generated = int(size / OPT_IN_SHARE[channel] * 1.05) + 100
    raw = directory / f"raw-{channel}-{size}.csv"
    write_borrowers(raw, generated, seed=seed)
    kept = 0
    with (
        raw.open(encoding="utf-8-sig", newline="") as src,
        path.open("w", encoding="utf-8-sig", newline="") as dst,
    ):
        reader = csv.reader(src, delimiter=";")
        writer = csv.writer(dst, delimiter=";", lineterminator="\r\n")
        header = next(reader)
        writer.writerow(header)
        consent = header.index(CONSENT_COLUMN[channel])
        for row in reader:
            if len(row) > consent and row[consent] == "Ja":
                writer.writerow(row)
                kept += 1
                if kept == size:
                    break
    raw.unlink()
    if kept < size:
        raise RuntimeError(f"only {kept} of {size} rows opted in to {channel}")
    return AudienceFile(path, kept, generated)


def write_config(directory: Path, channel: str) -> Path:
    """The example municipality with only `channel` switched on (no posters, pages or SMS).

    The benchmark measures one delivered channel; the example's other channels would add PDF
    rendering and, for e-mail, a full SMS outbox for the same audience.
    """
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["channels"] = {channel: config["channels"][channel]}
    config["audience"] = {}
    path = directory / f"bench-{channel}.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def messages_for(config_path: Path, channel: str) -> dict[Any, Any]:
    """The rendered messages per language, exactly as the flow renders them."""
    from tasks.channels import render_channel
    from tasks.config import load_municipality
    from tasks.models import Channel

    config = load_municipality(config_path)
    return render_channel(Channel(channel), config).messages


def recipients_for(audience: Path, channel: str) -> list[Any]:
    """The channel's recipients as the flow picks them, with 32-hex keys like the ledger's."""
    from tasks.audience import import_audience
    from tasks.providers.base import Recipient

    imported = import_audience(audience)
    chosen = (
        imported.newsletter_recipients() if channel == "newsletter" else imported.sms_recipients()
    )
    attr = "email" if channel == "newsletter" else "mobile"
    return [Recipient(f"{i:032x}", getattr(b, attr), b.language) for i, b in enumerate(chosen)]


def batches(
    recipients: list[Any], messages: dict[Any, Any], chunk: int, batch: int
) -> Iterator[tuple[Any, list[Any]]]:
    """(message, batch) in the order the flow sends them: per chunk, per language, per batch."""
    from tasks.models import Language

    for start in range(0, len(recipients), chunk):
        by_language: dict[Any, list[Any]] = {}
        for r in recipients[start : start + chunk]:
            language = r.language if r.language in messages else Language.DA
            by_language.setdefault(language, []).append(r)
        for language, group in by_language.items():
            for i in range(0, len(group), batch):
                yield messages[language], group[i : i + batch]


def sendgrid_bodies(
    config: Path, recipients: list[Any], messages: dict[Any, Any]
) -> Iterator[bytes]:
    """The bare loop's SendGrid request bodies: `encode_payload`, 1000 recipients a request,
    grouped by chunk and language as the flow sends them. Built as they are posted, so that
    building counts in the loop's time; the imports and the config are read now, so they don't."""
    from tasks.config import load_municipality
    from tasks.delivery.chunks import chunk_size
    from tasks.providers.sendgrid import MAX_RECIPIENTS, encode_payload

    settings = load_municipality(config).channels.newsletter
    assert settings is not None
    sender = {"from_email": str(settings.from_email), "from_name": settings.from_name}
    grouped = batches(recipients, messages, chunk_size(len(recipients)), MAX_RECIPIENTS)
    return (
        encode_payload(message, group, campaign="bench", batch_id=f"b{n}", **sender).encode()
        for n, (message, group) in enumerate(grouped)
    )


# --- one timed `fbsflow run` ----------------------------------------------------------------

# Runs its arguments and writes the peak RSS of its process tree's largest process
# (RUSAGE_CHILDREN: every waited-for descendant) to the file named first.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


@dataclass
class FlowTimes:
    """Seconds, from the Prefect run's own records (its database), relative to process start."""

    total_run_time: float  # what Prefect reports for the flow run
    flow_start: float  # process start -> flow run start (interpreter, imports, Prefect server)
    flow_end: float
    send_start: float | None = None  # first deliver-chunk task run starts
    send_end: float | None = None  # last deliver-chunk task run ends
    deliver_start: float | None = None  # end of the last task before the first chunk
    chunks: int = 0
    spans: list[tuple[str, float, float]] = field(default_factory=list)  # other task runs

    def timeline(self) -> str:
        """Each step's start and length; the gaps between them are Prefect's own work."""
        parts = [f"start-up {self.flow_start:.1f}"]
        for name, start, end in self.spans:
            if self.send_start is not None and start > self.send_start:
                continue
            parts.append(f"{name} @{start:.1f} {end - start:.1f}")
        if self.send_start is not None and self.send_end is not None:
            parts.append(
                f"register+pending @{self.deliver_start:.1f} "
                f"{self.send_start - (self.deliver_start or 0):.1f}"
            )
            parts.append(
                f"{self.chunks} chunk task runs @{self.send_start:.1f} "
                f"{self.send_end - self.send_start:.1f}"
            )
            after = [(n, s, e) for n, s, e in self.spans if s > self.send_start]
            parts += [f"{n} @{s:.1f} {e - s:.1f}" for n, s, e in after]
        parts.append(f"flow ends @{self.flow_end:.1f}")
        return " | ".join(parts)


@dataclass
class RunResult:
    wall: float
    returncode: int
    max_rss: int | None  # bytes, largest single process of the tree (getrusage)
    tree_rss: int | None  # bytes, peak of the whole tree's summed RSS (psutil, sampled)
    times: FlowTimes | None
    log: Path
    summary: str


def fbsflow_command() -> list[str]:
    script = Path(PYTHON).parent / "fbsflow"
    return [str(script)] if script.exists() else [PYTHON, "-m", "flows.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a run: embedded Prefect, no other provider's credentials, no telemetry."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENDGRID_", "GATEWAYAPI_", "FBSFLOW_", "PREFECT_API_", "PYTHONPATH"))
        # The speed switches pass, so that a bench can measure with tricks turned off.
        or k.startswith("FBSFLOW_SPEED_")
    }
    # FBSFLOW_BENCH_SOURCE: a patched copy of flows/ and tasks/ to measure a proposed fix.
    source = os.environ.get("FBSFLOW_BENCH_SOURCE")
    env.update(
        PYTHONPATH=os.pathsep.join([source, str(ROOT)] if source else [str(ROOT)]),
        # The embedded server would otherwise send usage heartbeats out of this machine.
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        FBSFLOW_TRIGGERED_BY="benchmark",
    )
    env.update(extra)
    return env


def run_fbsflow(
    config: Path, audience: Path, workdir: Path, env: dict[str, str], label: str
) -> RunResult:
    """`fbsflow run CONFIG --audience CSV --approve` as a subprocess, timed and measured."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{label}.log"
    rss_file = workdir / f"{label}.maxrss"
    cmd = [PYTHON, "-c", _WRAPPER, str(rss_file), *fbsflow_command()]
    cmd += ["run", str(config), "--audience", str(audience), "--approve"]
    cmd += ["--output", str(workdir / "outbox")]
    started_epoch = time.time()
    t0 = time.perf_counter()
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT, env=env
        )
        tree_peak = _sample_tree_rss(proc)
        wall = time.perf_counter() - t0
    try:
        max_rss = int(rss_file.read_text()) * 1024  # Linux reports KiB
    except (OSError, ValueError):
        max_rss = None
    text = log.read_text(errors="replace")
    times = _flow_times(Path(env["PREFECT_HOME"]), text, started_epoch)
    summary = "\n".join(
        line
        for line in text.splitlines()
        if line.startswith(("Card ", "Opgavekort ", "  newsletter", "  sms"))
    )
    return RunResult(wall, proc.returncode or 0, max_rss, tree_peak, times, log, summary)


def _sample_tree_rss(proc: subprocess.Popen[bytes]) -> int | None:
    """Wait for `proc`; meanwhile sample the summed RSS of its descendants every 0.1 s."""
    if psutil is None:
        proc.wait()
        return None
    peak = 0
    try:
        parent = psutil.Process(proc.pid)
    except psutil.Error:
        proc.wait()
        return None
    while proc.poll() is None:
        total = 0
        with contextlib.suppress(psutil.Error):
            for child in parent.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a child may end while we look
                    total += child.memory_info().rss
        peak = max(peak, total)
        time.sleep(0.1)
    return peak


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def _flow_times(prefect_home: Path, log: str, started: float) -> FlowTimes | None:
    """The flow run's and task runs' start and end times, read from Prefect's own database."""
    match = re.search(r"Beginning flow run '([^']+)'", log)
    db = prefect_home / "prefect.db"
    if not match or not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute(
                "SELECT id, start_time, end_time, total_run_time FROM flow_run WHERE name = ? "
                "ORDER BY created DESC LIMIT 1",
                (match.group(1),),
            ).fetchone()
            if row is None or row[1] is None or row[2] is None:
                return None
            tasks = conn.execute(
                "SELECT name, start_time, end_time FROM task_run WHERE flow_run_id = ? "
                "AND start_time IS NOT NULL AND end_time IS NOT NULL ORDER BY start_time",
                (row[0],),
            ).fetchall()
    except sqlite3.Error:
        return None
    total = row[3]
    # Prefect stores an interval as an offset from the epoch.
    total_seconds = _epoch(total) if isinstance(total, str) else float(total or 0.0)
    times = FlowTimes(total_seconds, _epoch(row[1]) - started, _epoch(row[2]) - started)
    spans = [
        (name.rsplit("-", 1)[0], _epoch(s) - started, _epoch(e) - started) for name, s, e in tasks
    ]
    # A channel's delivery task ("deliver-<channel>") spans its chunks: shown as the two phases.
    times.spans = [span for span in spans if span[0] not in ("deliver-chunk", "deliver")]
    chunks = [(s, e) for name, s, e in spans if name == "deliver-chunk"]
    if chunks:
        times.chunks = len(chunks)
        times.send_start = min(s for s, _ in chunks)
        times.send_end = max(e for _, e in chunks)
        before = [e for _, _, e in spans if e <= times.send_start]
        times.deliver_start = max(before) if before else times.flow_start
    return times


def import_seconds(env: dict[str, str]) -> float:
    """Wall seconds a fresh interpreter needs to import the flow (fbsflow, Prefect, SQLAlchemy)."""
    cmd = [PYTHON, "-c", "import flows.communicate_externally"]
    seconds, _ = timed(lambda: subprocess.run(cmd, cwd=ROOT, env=env, check=True))
    return seconds


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def workspace(keep: bool) -> Path:
    """A temp folder for audiences, configs, data dirs and logs (kept with --keep).

    Also makes SIGTERM unwind like Ctrl-C, so the stand-in servers are stopped, not orphaned.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    path = Path(tempfile.mkdtemp(prefix="fbsflow-bench-"))
    if not keep:
        import atexit

        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# --- reporting ------------------------------------------------------------------------------


MODE_TEXT = {
    "server": "against a long-lived Prefect server",
    "embedded": "embedded Prefect (a temporary server per run)",
}


def prefect_modes(
    which: str, env: dict[str, str], ws: Path, stack: contextlib.ExitStack
) -> dict[str, dict[str, str]]:
    """The environment of a run per Prefect mode: `server` starts one Prefect server (on `stack`).

    In both, PREFECT_HOME names the database that holds the runs, which is where the timeline is
    read from.
    """
    envs: dict[str, dict[str, str]] = {}
    if which in ("both", "server"):
        home = ws / "prefect-server-home"
        url = stack.enter_context(prefect_server(home, ws / "prefect-server.log"))
        envs["server"] = {**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": url}
    if which in ("both", "embedded"):
        envs["embedded"] = dict(env)
    return envs


def with_fresh_ledger(env: dict[str, str], folder: Path) -> dict[str, str]:
    """`env` with its own data folder, so the run starts on a new, empty SQLite ledger."""
    return {**env, "FBSFLOW_DATA_DIR": str(folder / "data")}


def first_runs(envs: dict[str, dict[str, str]], ws: Path, config: Path, channel: str) -> bool:
    """A 100-row run per Prefect mode: a new Prefect database is migrated on first use, so
    that run is measured and reported apart. False (with the log's tail printed) if one failed."""
    tiny = write_audience(ws, 100, channel)
    for mode, env in envs.items():
        folder = ws / f"cold-{mode}"
        cold = run_fbsflow(config, tiny.path, folder, with_fresh_ledger(env, folder), "cold")
        out(
            f"\nFirst run, {MODE_TEXT[mode]} (100 rows): {cold.wall:.1f} s wall, exit "
            f"{cold.returncode}; later runs reuse its database, as a user's runs do."
        )
        if cold.returncode != 0:
            out(cold.log.read_text(errors="replace")[-3000:])
            return False
    return True


def report_run(
    size: int,
    recipients: int,
    run: RunResult,
    delivered: int,
    requests: int,
    load: str,
    mode: str = "embedded",
) -> None:
    out(
        f"\n== {size:,} opted-in rows, {MODE_TEXT[mode]}: {recipients:,} recipients after the "
        f"import's checks (load average {load} -> {load_average()}) =="
    )
    out(
        f"  end to end `fbsflow run`: {run.wall:.1f} s wall, {rate(recipients, run.wall)}, "
        f"exit {run.returncode}; stand-in counted {delivered:,} in {requests:,} requests"
    )
    out(
        f"  peak RSS: largest process {mib(run.max_rss)} (getrusage); whole tree "
        f"{mib(run.tree_rss)} (psutil, sampled every 0.1 s)"
    )
    t = run.times
    if t is None:
        out(f"  (no Prefect timings found; log {run.log})")
        return
    out(
        f"  Prefect reports the flow run took {t.total_run_time:.1f} s; the process "
        f"{run.wall:.1f} s: {t.flow_start:.1f} s before the flow started (interpreter, imports, "
        f"{'connecting to the server' if mode == 'server' else 'starting a temporary server'}) "
        f"and {run.wall - t.flow_end:.1f} s after it ended"
    )
    out(f"  timeline (s from process start): {t.timeline()}")


def report_mode_run(
    size: int,
    mode: str,
    recipients: int,
    run: RunResult,
    delivered: int,
    requests: int,
    load_before: str,
    *,
    bare_line: str,
    bare_seconds: float,
    bare_delivered: int,
    import_seconds: float,
    ratio_target: str = " (target <= 1.3x)",
) -> dict[str, Any]:
    """Print one run of one size in one Prefect mode beside the bare loop; return its summary row.

    `ok` holds only if the run exited 0 and the stand-in counted every recipient once, for the
    run and for the bare loop alike.
    """
    ok = run.returncode == 0 and delivered == recipients == bare_delivered
    report_run(size, recipients, run, delivered, requests, load_before, mode)
    out(bare_line)
    ratios = report_ratios(run, bare_seconds, bare_seconds + import_seconds, ratio_target)
    if not ok:
        out(
            f"  CHECK FAILED: exit {run.returncode}, stand-in counted {delivered} (bare loop "
            f"{bare_delivered}) for {recipients} recipients; log {run.log}"
        )
    return {
        "size": size,
        "mode": mode,
        "recipients": recipients,
        "wall": run.wall,
        "bare": bare_seconds,
        "max_rss": run.max_rss,
        "tree_rss": run.tree_rss,
        "ok": ok,
        **ratios,
    }


def report_ratios(
    run: RunResult, bare: float, bare_with_import: float, target: str = ""
) -> dict[str, float]:
    ratios = {"e2e_ratio": run.wall / bare}
    line = f"  ratio end to end / bare loop: {run.wall / bare:.2f}x{target}"
    # Against the bare loop plus the import, the flow run alone is the same work minus start-up.
    t = run.times
    if t is not None:
        flow = t.flow_end - t.flow_start
        ratios["flow_ratio"] = flow / bare_with_import
        line += f"; flow run alone / (bare loop + import): {flow / bare_with_import:.2f}x"
        if t.send_start is not None and t.send_end is not None and t.deliver_start is not None:
            deliver = t.send_end - t.deliver_start
            send = t.send_end - t.send_start
            ratios["deliver_ratio"] = deliver / bare
            ratios["send_ratio"] = send / bare
            line += (
                f"\n  delivery phase alone: deliver() {deliver:.2f} s = {deliver / bare:.2f}x "
                f"the bare loop; its chunk task runs {send:.2f} s = {send / bare:.2f}x"
            )
    out(line)
    return ratios


def summary(results: list[dict[str, Any]], targets: str) -> None:
    out("\n== Summary ==")
    out(
        f"{'rows':>10} {'prefect':>9} {'via':>5} {'recipients':>11} {'e2e s':>7} {'rcpt/s':>8} {'bare s':>7} "
        f"{'e2e/bare':>8} {'deliver/bare':>12} {'send/bare':>9} {'max RSS':>9} {'tree RSS':>9}"
    )
    for r in results:
        out(
            f"{r['size']:>10,} {r.get('mode', 'embedded'):>9} {r.get('transport', 'http'):>5} "
            f"{r['recipients']:>11,} {r['wall']:>7.1f} "
            f"{r['recipients'] / r['wall']:>8,.0f} {r['bare']:>7.2f} {r['e2e_ratio']:>7.2f}x "
            f"{r.get('deliver_ratio', float('nan')):>11.2f}x {r.get('send_ratio', float('nan')):>8.2f}x "
            f"{mib(r['max_rss']):>9} {mib(r['tree_rss']):>9}"
        )
    out(targets)


# --- SMTP sink and prefect-email, as processes ----------------------------------------------


def _smtp_sink(workers: int = 2) -> None:
    """An aiosmtpd server on 127.0.0.1 that counts messages; prints its URL, then the count.

    Like Postfix, which runs an smtpd process per connection, it serves each connection in a
    process of its own: `workers` forked processes share one listening socket, and a worker that
    is serving a connection stops accepting, so two connections at once go to two processes.
    Why: aiosmtpd needs ~0.4 ms of CPU a message here, five times what SmtpProvider needs to send
    one (~0.08 ms); with one sink process, the comparison measured the sink. Each worker runs
    its loop on uvloop, for the same reason.

    It offers PIPELINING in its EHLO reply, as Postfix and Exchange do by default (aiosmtpd
    does not advertise it, though it reads pipelined commands correctly): a client that uses
    it sends each envelope in one write. prefect-email (smtplib) never pipelines.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    reports = []
    children = []
    for _ in range(workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            code = 1
            try:
                _smtp_sink_worker(listener, write_end)
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        children.append(pid)
        reports.append(read_end)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY http://127.0.0.1:{port}", flush=True)
    stop.wait()
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    messages = 0
    for fd in reports:
        with os.fdopen(fd) as report:
            messages += int(report.read() or 0)
    for pid in children:
        os.waitpid(pid, 0)
    print(json.dumps({"messages": messages}), flush=True)


def _smtp_sink_worker(listener: socket.socket, report: int) -> None:
    """One sink process: accepts while idle, serves, writes its message count at SIGTERM."""
    import asyncio

    import uvloop
    from aiosmtpd.smtp import SMTP

    class Counter:
        messages = 0

        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Counter.messages += len(envelope.rcpt_tos)
            return "250 OK"

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Counter()
    active = 0
    accepting: list[asyncio.AbstractServer] = []

    async def listen() -> None:
        # A copy of the shared socket: closing a server closes the socket it was given.
        sock = socket.socket(fileno=os.dup(listener.fileno()))
        accepting.append(await loop.create_server(Session, sock=sock))

    class Session(SMTP):
        def __init__(self) -> None:
            super().__init__(handler, hostname="127.0.0.1")

        def connection_made(self, transport: Any) -> None:
            nonlocal active
            super().connection_made(transport)
            active += 1
            while accepting:  # busy: leave new connections to an idle worker
                accepting.pop().close()

        def connection_lost(self, exc: Exception | None) -> None:
            nonlocal active
            super().connection_lost(exc)
            active -= 1
            if active == 0 and not accepting:
                loop.create_task(listen())

    loop.run_until_complete(listen())
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()
    os.write(report, str(Counter.messages).encode())
    os.close(report)


def _prefect_email(n: int, port: int, config: Path) -> None:
    """Time prefect-email's email_send_message: called bare (`.fn`) and as a task run per message."""
    import asyncio

    from prefect import flow
    from prefect_email import EmailServerCredentials, email_send_message

    from tasks.config import load_municipality
    from tasks.models import Language

    credentials = EmailServerCredentials(
        smtp_server="127.0.0.1", smtp_port=port, smtp_type="INSECURE", password=""
    )
    message = messages_for(config, "newsletter")[Language.DA]
    settings = load_municipality(config).channels.newsletter
    assert settings is not None

    def kwargs(i: int) -> dict[str, Any]:
        return dict(
            subject=message.subject,
            msg=message.html,
            msg_plain=message.text,
            email_server_credentials=credentials,
            email_from=str(settings.from_email),
            email_to=f"laaner{i}@example.com",
        )

    async def bare() -> float:
        t0 = time.perf_counter()
        for i in range(n):
            await email_send_message.fn(**kwargs(i))
        return time.perf_counter() - t0

    @flow(name="bench-prefect-email")
    async def as_tasks() -> float:
        await email_send_message(**kwargs(-1))  # first task run: client and server warm-up
        t0 = time.perf_counter()
        for i in range(n):
            await email_send_message(**kwargs(i))
        return time.perf_counter() - t0

    fn_seconds = asyncio.run(bare())
    task_seconds = asyncio.run(as_tasks())
    print(json.dumps({"fn": fn_seconds, "task": task_seconds, "n": n}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["smtp-sink"]:
        _smtp_sink()
    elif sys.argv[1:2] == ["prefect-email"]:
        _prefect_email(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit("usage: python -m bench.common smtp-sink | prefect-email N PORT CONFIG")
