"""fbsflow against a real Prefect server: serve, schedule, approve or reject in a pause, deploy via prefect.yaml.

Starts `prefect server start` (SQLite in a temporary PREFECT_HOME) and `fbsflow serve` as
subprocesses, as a project leader would, and talks to them only through Prefect's API. Every
subprocess gets a dead proxy for anything that is not 127.0.0.1, so nothing leaves the machine.
The tests of this module share one server and run in file order: the work-pool test stops
`fbsflow serve` and replaces its deployments with those of prefect.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from flows.deployments import card_deployment, channel_deployment, confirm_deployment
from tasks.models import Channel
from tests.conftest import EXAMPLE_AUDIENCE, EXAMPLE_CONFIG, ROOT
from tests.support.axe import chromium_path, screenshot
from tests.support.e2e import clean_env

T = TypeVar("T")

PREFECT_YAML = ROOT / "prefect.yaml"
SCREENSHOT = ROOT / "docs" / "screenshots" / "flow-run.png"
SLUG = "eksempel-kommune"
CARD = f"communicate-externally/{card_deployment(SLUG)}"
POOL = "fbsflow"
# Resolved by the worker when a run starts, so the template itself is what the server stores.
PULL_STEPS = [
    {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $FBSFLOW_PROJECT_DIR }}"}}
]
EXAMPLE_CONFIG_PATH = "config/municipalities/eksempel-kommune.yaml"
COPENHAGEN = ZoneInfo("Europe/Copenhagen")
ARTIFACTS = {
    f"{SLUG}-{k}"
    for k in ("plan", "previews", "review", "checklist", "delivery", "sms", "import-report")
}


def channel_name(channel: str) -> str:
    """A channel's deployment as the client looks it up, e.g. inform-channel/sms-eksempel-kommune."""
    return f"inform-channel/{channel_deployment(SLUG, Channel(channel))}"


def _bin(name: str) -> str | None:
    """A console script of this virtualenv (beside the running python), else one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() else shutil.which(name)


PREFECT = _bin("prefect")


# --- Subprocesses ------------------------------------------------------------------------------


@dataclass
class Proc:
    """A background subprocess in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} log ---\n" + self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        # The group: `fbsflow serve` and the worker run each flow run in a child process.
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def start(name: str, args: list[str], *, env: dict[str, str], cwd: Path, logs: Path) -> Proc:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name, popen, log)


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float,
    proc: Proc | None = None,
    interval: float = 0.3,
) -> T:
    """Poll `check` until it returns something other than None; fail with the process log."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if proc is not None and proc.popen.poll() is not None:
            pytest.fail(
                f"{proc.name} exited ({proc.popen.returncode}) before {what}\n{proc.tail()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f} s waiting for {what}\n"
                + (proc.tail() if proc else "")
            )
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Fixtures: one server, one served municipality -----------------------------------------------


@dataclass
class Server:
    url: str  # the UI, e.g. http://127.0.0.1:4321
    api: str
    home: Path  # PREFECT_HOME of server and clients, and the subprocesses' logs
    procs: list[Proc] = field(default_factory=list)

    @contextmanager
    def client(self) -> Iterator[Any]:
        """A sync Prefect client for this server (not whatever PREFECT_API_URL says)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.api}),
            get_client(sync_client=True) as client,
        ):
            yield client

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(PREFECT_API_URL=self.api, PREFECT_HOME=str(self.home / "client"), **extra)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if PREFECT is None:
        pytest.skip("the `prefect` CLI is not installed (pip install -e '.[dev]')")
    tmp = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv = Server(url=url, api=f"{url}/api", home=tmp)
    env = clean_env(
        PREFECT_HOME=str(tmp / "server"),
        # The UI asks this URL for data; left unset it says port 4200, whatever --port says.
        PREFECT_UI_API_URL=srv.api,
        # Services these tests do not use (cron schedules, late runs, worker health): off, so
        # the server leaves the two cores to the runs. Triggers stay on: the notice deployment.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        PREFECT_SERVER_SERVICES_FOREMAN_ENABLED="false",
    )
    proc = start(
        "prefect-server",
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
        env=env,
        cwd=tmp,
        logs=tmp,
    )
    srv.procs.append(proc)
    try:

        def healthy() -> bool | None:
            try:
                return httpx.get(f"{srv.api}/health", timeout=2).json() is True or None
            except (httpx.HTTPError, ValueError):
                return None

        wait_for("the server's /api/health", healthy, timeout=90, proc=proc)
        yield srv
    finally:
        for p in reversed(srv.procs):
            p.stop()


@dataclass
class Served:
    server: Server
    config: Path
    config_data: dict[str, Any]
    go_live: date
    workdir: Path  # cwd of `fbsflow serve`: the outbox is written here
    proc: Proc

    @property
    def outbox(self) -> Path:
        return self.workdir / "outbox" / SLUG

    def completion(self) -> dict[str, Any]:
        return json.loads((self.outbox / "completion.json").read_text(encoding="utf-8"))

    def channels(self) -> list[str]:
        chans = self.config_data["channels"]
        return [name for name, s in chans.items() if s is not None and s.get("enabled", True)]


def write_config(folder: Path, go_live: date) -> tuple[Path, dict[str, Any]]:
    """The example municipality, going live on `go_live`, with its audience by absolute path."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["go_live"] = go_live.isoformat()
    data["audience"]["file"] = str(EXAMPLE_AUDIENCE.resolve())
    path = folder / f"{SLUG}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path, data


@pytest.fixture(scope="module")
def served(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`fbsflow serve CONFIG` running, with every deployment and scheduled run registered."""
    workdir = tmp_path_factory.mktemp("served")
    go_live = date.today() + timedelta(days=30)
    config, data = write_config(workdir, go_live)
    fbsflow = _bin("fbsflow")
    command = [fbsflow] if fbsflow else [sys.executable, "-m", "flows.cli"]
    env = server.env(
        FBSFLOW_DATA_DIR=str(workdir / "data"),
        FBSFLOW_APPROVAL_TIMEOUT="300",
        FBSFLOW_TRIGGERED_BY="integration-test",
        # The notice deployment writes its e-mails as .eml files (no provider is configured)
        # with a link to the run; the approval form links to the review artifact.
        FBSFLOW_NOTIFY_EMAIL="projektleder@example.org",
        PREFECT_UI_URL=server.url,
        # The runner looks for new runs every 10 s by default; 2 s keeps the test short.
        PREFECT_RUNNER_POLL_FREQUENCY="2",
    )
    proc = start(
        "fbsflow-serve", [*command, "serve", str(config)], env=env, cwd=workdir, logs=server.home
    )
    server.procs.append(proc)
    result = Served(server, config, data, go_live, workdir, proc)
    expected = 1 + len(result.channels())
    with server.client() as client:

        def registered() -> bool | None:
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

            deployments = client.read_deployments()
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[SLUG]))
            )
            scheduled = [r for r in runs if r.state and r.state.is_scheduled()]
            # The serve log says "being served" once serve() runs, after scheduling.
            serving = "being served" in proc.log.read_text(errors="replace")
            done = len(deployments) >= expected and len(scheduled) >= len(result.channels())
            return True if done and serving else None

        wait_for("fbsflow serve to register its deployments", registered, timeout=90, proc=proc)
    yield result
    proc.stop()


# --- Runs: trigger, pause, resume ---------------------------------------------------------------


def trigger_card(client: Any) -> UUID:
    deployment = client.read_deployment_by_name(CARD)
    return client.create_flow_run_from_deployment(deployment.id).id


def wait_for_pause(client: Any, run_id: UUID, proc: Proc) -> dict[str, Any]:
    """Wait until the run is paused with its form saved; returns the form's JSON schema."""

    def form() -> dict[str, Any] | None:
        state = client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            pytest.fail(
                f"run ended as {state.name} instead of pausing: {state.message}\n{proc.tail()}"
            )
        keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
        if not keyset:
            return None
        try:
            # The description is saved after the schema: once it is there, the form is complete.
            client.read_flow_run_input(run_id, keyset["description"])
            return json.loads(client.read_flow_run_input(run_id, keyset["schema"]))
        except Exception:
            return None

    return wait_for("the card run to pause for approval", form, timeout=90, proc=proc)


def wait_for_end(client: Any, run_id: UUID, proc: Proc, *, timeout: float = 60) -> Any:
    def ended() -> Any:
        state = client.read_flow_run(run_id).state
        return state if state is not None and state.is_final() else None

    return wait_for("the run to finish", ended, timeout=timeout, proc=proc)


def artifact_keys(client: Any, run_id: UUID) -> set[str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    arts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {a.key for a in arts if a.key}


@pytest.fixture(scope="module")
def approved_run(served: Served) -> tuple[UUID, dict[str, Any]]:
    """A card run, paused for approval and approved by "Test Leder": (run id, form schema)."""
    with served.server.client() as client:
        run_id = trigger_card(client)
        schema = wait_for_pause(client, run_id, served.proc)
        answer = client.resume_flow_run(
            run_id, run_input={"decision": "approve", "approved_by": "Test Leder", "comment": "ok"}
        )
        assert answer.status.value == "ACCEPT", answer
        state = wait_for_end(client, run_id, served.proc)
        assert state.is_completed(), f"{state.name}: {state.message}\n{served.proc.tail()}"
    return run_id, schema


# --- The Prefect UI in Chromium (Playwright) ----------------------------------------------------

SCREENSHOTS = ROOT / "docs" / "screenshots"
LEADER = "Test Leder (UI)"


def shot_path(name: str, tmp: Path) -> Path:
    """Where a screenshot goes: docs/screenshots/ on request, so a test run leaves the tree clean."""
    return (SCREENSHOTS if os.environ.get("FBSFLOW_UPDATE_SCREENSHOT") else tmp) / name


@contextmanager
def ui_page() -> Iterator[Any]:
    """A Chromium page (Debian's Chromium: nothing downloaded) that reaches only 127.0.0.1, in
    Danish time as the project leader sees the UI."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            # Anything not on this machine goes to a dead proxy and fails at once.
            proxy={"server": "http://127.0.0.1:9", "bypass": "127.0.0.1,localhost"},
        )
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 900},
                locale="da-DK",
                timezone_id="Europe/Copenhagen",
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def form_field(scope: Any, title: str) -> Any:
    """One field of a Prefect schema form, found by the title the form shows for it."""
    # `has=` looks inside each property, so the label's locator starts from the page.
    page = getattr(scope, "page", scope)
    label = page.locator(".schema-form-property__label").filter(
        has_text=re.compile(rf"^\s*{re.escape(title)}(\s*\(Optional\))?\s*$")
    )
    return scope.locator(".schema-form-property").filter(has=label).first


def choose(page: Any, scope: Any, title: str, option: str, choices: int = 1) -> None:
    """Pick `option` in the form's drop-down list titled `title`."""
    button = form_field(scope, title).locator("button.p-select-button__control")

    def pick(text: str, *, other: bool = False) -> None:
        # The list opens from the keyboard; a mouse click on the button opens and closes it.
        button.press("ArrowDown")
        exact = page.locator(".p-select-option__text", has_text=re.compile(rf"^{re.escape(text)}$"))
        options = page.get_by_role("option")
        (options.filter(has_not=exact) if other else options.filter(has=exact)).first.click()

    if button.inner_text().strip() == option and choices > 1:
        # Shown as the pause form's start value, but not yet its answer (Submit does nothing):
        # pick another option, then this one.
        pick(option, other=True)
    pick(option)


def start_custom_run(
    page: Any, base: str, config: str, target: Callable[[str], Path], client: Any
) -> UUID:
    """Deployments page -> the card -> Run -> Custom run -> choose the municipality -> Submit."""
    page.goto(f"{base}/deployments")
    page.get_by_role("link", name=card_deployment(SLUG)).first.wait_for()
    page.screenshot(path=target("ui-deployments.png"))
    page.get_by_role("link", name=card_deployment(SLUG)).first.click()
    page.wait_for_url(re.compile(r"/deployments/deployment/[0-9a-f-]+$"))
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.wait_for_url(re.compile(r"/run(\?.*)?$"))
    form_field(page, "Kommune").wait_for()
    choose(page, page, "Kommune", config)
    page.screenshot(path=target("ui-run-form.png"), full_page=True)
    deployment = client.read_deployment_by_name(CARD)
    before = {r.id for r in card_runs(client, deployment.id)}
    page.get_by_role("button", name="Submit").click()
    # The UI goes back to the deployment, with a toast that soon fades: the API says which run.
    page.wait_for_url(re.compile(r"/deployments/deployment/[0-9a-f-]+(\?.*)?$"))
    (run_id,) = wait_for(
        "the run the form started",
        lambda: ({r.id for r in card_runs(client, deployment.id)} - before) or None,
        timeout=30,
    )
    page.goto(f"{base}/runs/flow-run/{run_id}")
    return run_id


def card_runs(client: Any, deployment_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def title_of(schema: dict[str, Any], key: str) -> str:
    return schema["properties"][key].get("title") or key


# --- Tests ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_serve_registers_deployments_and_schedules_each_channel(served: Served) -> None:
    channels = served.channels()
    with served.server.client() as client:
        card = client.read_deployment_by_name(CARD)
        assert card.parameters["config_path"] == str(served.config)
        by_id = {}
        for channel in channels:
            deployment = client.read_deployment_by_name(channel_name(channel))
            assert deployment.parameters["channel"] == channel
            by_id[deployment.id] = channel
        runs = client.read_flow_runs()
    scheduled = [(by_id[r.deployment_id], r) for r in runs if r.deployment_id in by_id]
    # Exactly one run per channel: serve schedules each once, keyed by channel and date.
    assert sorted(c for c, _ in scheduled) == sorted(channels)
    for channel, run in scheduled:
        offset = served.config_data["channels"][channel]["offset_days"]
        expected = datetime.combine(
            served.go_live + timedelta(days=offset), clock(9, 0), tzinfo=COPENHAGEN
        )
        assert run.state is not None and run.state.is_scheduled(), (channel, run.state)
        assert run.expected_start_time == expected, (channel, run.expected_start_time)
        assert run.expected_start_time.astimezone(COPENHAGEN).hour == 9
        assert run.parameters == {"config_path": str(served.config), "channel": channel}


@pytest.mark.integration
def test_rescheduling_after_go_live_moves_leaves_one_run_per_channel(served: Served) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from flows.deployments import schedule_channel_runs

    # The leader edits the served file (the deployments offer only the configs they know);
    # it goes back afterwards, for the tests after this one.
    original = served.config.read_bytes()
    write_config(served.workdir, served.go_live + timedelta(days=7))
    try:
        with served.server.client() as client:  # also points schedule_channel_runs at the server
            runs = schedule_channel_runs(str(served.config))
            assert all(r.flow_run_id for r in runs)
            scheduled = [
                r
                for r in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[SLUG]))
                )
                if r.state is not None and r.state.is_scheduled()
            ]
    finally:
        served.config.write_bytes(original)
    per_channel = sorted(r.parameters["channel"] for r in scheduled)
    assert per_channel == sorted(served.channels()), per_channel
    moved = {r.parameters["channel"]: r.expected_start_time for r in scheduled}
    for channel, at in moved.items():
        offset = served.config_data["channels"][channel]["offset_days"]
        day = served.go_live + timedelta(days=7 + offset)
        assert at == datetime.combine(day, clock(9, 0), tzinfo=COPENHAGEN), (channel, at)


@pytest.mark.integration
def test_card_run_pauses_for_approval_and_sends_once_approved(
    served: Served, approved_run: tuple[UUID, dict[str, Any]]
) -> None:
    run_id, schema = approved_run
    props = schema["properties"]
    assert set(props) == {"decision", "approved_by", "comment"}
    assert props["decision"]["enum"] == ["approve", "reject"]
    # The form opens on "reject": resuming without choosing never sends anything.
    assert props["decision"]["default"] == "reject"
    # The name is asked again in Danish when missing (tasks/approval.py), not required by the
    # schema, whose error would be jsonschema's English "'approved_by' is a required property";
    # the decision has its default ("reject"): nothing is required.
    assert not schema.get("required")
    assert schema["properties"]["approved_by"]["title"] == "Dit navn (skal udfyldes)"
    with served.server.client() as client:
        assert artifact_keys(client, run_id) >= ARTIFACTS
    record = served.completion()
    assert record["flow_run_id"] == str(run_id)
    approval = record["approval"]
    assert (approval["approved"], approval["by"], approval["comment"], approval["how"]) == (
        True,
        "Test Leder",
        "ok",
        "prefect-form",
    )
    for channel in ("newsletter", "sms"):
        outcome = record["channels"][channel]
        assert outcome["status"] == "done", outcome
        assert outcome["provider"] == "outbox"
        assert outcome["counts"]["sent"] > 0, outcome
        assert list((served.outbox / channel / "requests").glob("*.json")), channel


@pytest.mark.integration
def test_rejected_card_run_sends_nothing(served: Served, approved_run: object) -> None:
    # After the approved run, so its requests/ folders exist until this run replaces them.
    with served.server.client() as client:
        run_id = trigger_card(client)
        wait_for_pause(client, run_id, served.proc)
        answer = client.resume_flow_run(
            run_id, run_input={"decision": "reject", "approved_by": "Test Leder", "comment": "nej"}
        )
        assert answer.status.value == "ACCEPT", answer
        state = wait_for_end(client, run_id, served.proc)
        # Rejected is not "Completed": a Cancelled state named in Danish, with the reason.
        assert state.name == "Afvist" and state.is_cancelled(), (
            f"{state.name}\n{served.proc.tail()}"
        )
        assert "Afvist af Test Leder: nej" in (state.message or "")
    record = served.completion()
    assert record["flow_run_id"] == str(run_id)
    assert record["approval"]["approved"] is False and record["approval"]["decision"] == "reject"
    assert record["status"] == "incomplete"
    for channel in ("newsletter", "sms"):
        outcome = record["channels"][channel]
        assert outcome["status"] == "rejected", outcome
        assert not outcome["counts"].get("sent"), outcome
        assert not (served.outbox / channel / "requests").exists(), channel
        # The previews to publish are still written: only sending is held back.
        assert outcome["files"], outcome


@pytest.mark.integration
@pytest.mark.skipif(
    chromium_path() is None, reason="Chromium is not installed (apt-get install -y chromium)"
)
def test_screenshot_of_the_approved_run_in_the_ui(
    served: Served, approved_run: tuple[UUID, dict[str, Any]], tmp_path: Path
) -> None:
    run_id = approved_run[0]
    # The UI reads its API address from here; the wrong one draws an empty page with an error.
    settings = httpx.get(f"{served.server.url}/ui-settings", timeout=10).json()
    assert settings["api_url"] == served.server.api
    # The SPA draws the run from the API after loading: 8 s is enough on a 2-core machine.
    url = f"{served.server.url}/runs/flow-run/{run_id}"
    # The README's picture is refreshed only on request, so a test run leaves the tree clean.
    target = SCREENSHOT if os.environ.get("FBSFLOW_UPDATE_SCREENSHOT") else tmp_path / "run.png"
    screenshot(url, target, width=1400, height=900, wait_ms=8000)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 20_000


def open_resume_form(page: Any, base: str, run_id: UUID) -> Any:
    """The run's page -> Resume: the pause form's dialog."""
    page.goto(f"{base}/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Resume", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.locator(".schema-form-property").first.wait_for()
    return dialog


def settle(page: Any) -> None:
    """Let the page finish loading its data (the UI dims a page until its logs have come)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(2000)


def fill(scope: Any, title: str, text: str) -> None:
    form_field(scope, title).locator("textarea, input[type=text]").first.fill(text)


def submit_form(dialog: Any) -> None:
    dialog.get_by_role("button", name="Submit", exact=True).click()
    try:
        dialog.wait_for(state="detached")
    except Exception:
        # The form refused the answer: its own message says why.
        pytest.fail(f"the form was not accepted:\n{dialog.inner_text()[:2000]}")


def expected_sms(config: Path) -> str:
    """The Danish SMS as the run renders it from the served config."""
    from tasks.channels import render_channel
    from tasks.config import load_municipality
    from tasks.models import Language

    content = render_channel(Channel.SMS, load_municipality(config))
    return content.messages[Language.DA].text


def notices_about(served: Served, run_id: UUID) -> list[str]:
    """The .eml notices (no provider: written to outbox/_notices) that link to `run_id`."""
    from email import message_from_bytes, policy

    found = []
    for path in sorted((served.workdir / "outbox" / "_notices").glob("*.eml")):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        body = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        if f"/runs/flow-run/{run_id}" in body:
            found.append(f"{mail['Subject']}\n{body}")
    return found


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    chromium_path() is None, reason="Chromium is not installed (apt-get install -y chromium)"
)
def test_project_leader_runs_the_card_in_the_ui(served: Served, tmp_path: Path) -> None:
    """In Chromium, as the project leader: start the card from the Danish run form choosing the
    municipality, read the SMS in the review the approval form links to, approve with a name,
    confirm two manual steps with a name and a note in one form, and read them back; a rejected
    run ends "Afvist" and sends nothing. The notice deployment e-mails each wait with a link."""
    from playwright.sync_api import expect

    from flows.run_states import REJECTED
    from tasks.card_slot import limit_name

    base = served.server.url

    def target(name: str) -> Path:
        return shot_path(name, tmp_path)

    with ui_page() as page, served.server.client() as client:
        # 1. The Deployments page and the card's run form, in Danish; the municipality from a list.
        run_id = start_custom_run(page, base, str(served.config), target, client)
        card = client.read_deployment_by_name(CARD)
        props = card.parameter_openapi_schema["properties"]
        assert props["config_path"]["title"] == "Kommune"
        assert str(served.config) in props["config_path"]["enum"]
        assert props["at_least_once"]["title"].startswith("Avanceret: ")
        assert "Dit navn" not in page.content()  # the run form, not the approval form
        run = client.read_flow_run(run_id)
        assert run.parameters["config_path"] == str(served.config)

        # 2. It waits for approval, holding the municipality's one card slot, and the leader
        #    gets an e-mail with the link to the run.
        schema = wait_for_pause(client, run_id, served.proc)
        (gcl,) = [
            limit
            for limit in client.read_global_concurrency_limits()
            if limit.name == limit_name(SLUG)
        ]
        assert (gcl.limit, gcl.active_slots) == (1, 1)
        notices = wait_for(
            "the notice e-mail about the paused run",
            lambda: notices_about(served, run_id) or None,
            timeout=90,
            proc=served.proc,
        )
        assert "venter på dig" in notices[0]

        # 3. The approval form links to the review: every message as it goes out.
        dialog = open_resume_form(page, base, run_id)
        page.screenshot(path=target("ui-approval-form.png"))
        link = dialog.get_by_role("link", name="Læs alle beskeder i gennemsynet")
        review_url = link.get_attribute("href")
        assert review_url and review_url.startswith(f"{base}/artifacts/artifact/")
        page.goto(review_url)
        sms = expected_sms(served.config)
        first_line = sms.splitlines()[0]
        shown = page.get_by_text(first_line[:40]).first
        shown.wait_for()
        shown.scroll_into_view_if_needed()  # the picture shows the SMS, not the article above it
        page.screenshot(path=target("ui-review-artifact.png"))

        # 4. Approve with a name.
        dialog = open_resume_form(page, base, run_id)
        choose(page, dialog, title_of(schema, "decision"), "approve", choices=2)
        fill(dialog, title_of(schema, "approved_by"), LEADER)
        fill(dialog, title_of(schema, "comment"), "Godkendt i testen")
        submit_form(dialog)
        state = wait_for_end(client, run_id, served.proc, timeout=120)
        assert state.name != "Completed", state
        record = served.completion()
        assert record["flow_run_id"] == str(run_id)
        assert (record["approval"]["by"], record["approval"]["approved"]) == (LEADER, True)
        assert record["channels"]["sms"]["counts"]["sent"] > 0
        page.goto(f"{base}/runs/flow-run/{run_id}")
        page.get_by_text(state.name, exact=True).first.wait_for()
        settle(page)
        page.screenshot(path=target("ui-run-after-approval.png"))

        # 5. Two manual steps confirmed in one form (the confirm-steps deployment).
        confirm = client.read_deployment_by_name(f"confirm-steps/{confirm_deployment(SLUG)}")
        confirm_run = client.create_flow_run_from_deployment(confirm.id).id
        steps_schema = wait_for_pause(client, confirm_run, served.proc)
        step_fields = [k for k in steps_schema["properties"] if k not in ("confirmed_by", "note")]
        assert len(step_fields) >= 2, steps_schema
        dialog = open_resume_form(page, base, confirm_run)
        ticked = step_fields[:2]
        for key in ticked:
            switch = form_field(dialog, title_of(steps_schema, key)).get_by_role("switch")
            switch.click()
            # The UI flips aria-checked after its own state update: wait for it (Playwright's
            # expect retries for 5 s) instead of reading it at once (failed once in CI).
            expect(switch).to_have_attribute("aria-checked", "true")
        fill(dialog, title_of(steps_schema, "confirmed_by"), "Bo Bibliotekar")
        fill(dialog, title_of(steps_schema, "note"), "Plakaterne hænger ved udlånet")
        page.screenshot(path=target("ui-confirm-steps.png"))
        submit_form(dialog)
        wait_for_end(client, confirm_run, served.proc, timeout=90)

    # 6. The checklist says who confirmed what, with the note, as typed.
    fbsflow = _bin("fbsflow")
    command = [fbsflow] if fbsflow else [sys.executable, "-m", "flows.cli"]
    shown = subprocess.run(
        [*command, "checklist", str(served.config)],
        env=served.server.env(FBSFLOW_DATA_DIR=str(served.workdir / "data")),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert "Bo Bibliotekar" in shown.stdout, shown.stdout + shown.stderr
    from tasks.checklist import Checklist
    from tasks.config import load_card, load_municipality

    config = load_municipality(served.config)
    with Checklist.open(served.workdir / "data") as checklist:
        recorded = {s.id: s for s in checklist.steps(load_card(config.card), config)}
    confirmed_ids = {s.id for s in recorded.values() if s.by == "Bo Bibliotekar"}
    assert len(confirmed_ids) == 2, recorded
    assert {recorded[i].note for i in confirmed_ids} == {"Plakaterne hænger ved udlånet"}
    steps = served.completion()["steps"]
    confirmed = [s for s in steps.values() if s["by"] == "Bo Bibliotekar"]
    assert len(confirmed) == 2, confirmed
    assert all(s["note"] == "Plakaterne hænger ved udlånet" for s in confirmed)

    # 7. A rejected run: Danish state, nothing sent.
    with ui_page() as page, served.server.client() as client:
        run_id = start_custom_run(page, base, str(served.config), target, client)
        schema = wait_for_pause(client, run_id, served.proc)
        dialog = open_resume_form(page, base, run_id)
        choose(page, dialog, title_of(schema, "decision"), "reject", choices=2)
        fill(dialog, title_of(schema, "approved_by"), LEADER)
        submit_form(dialog)
        state = wait_for_end(client, run_id, served.proc, timeout=120)
        assert state.name == REJECTED, (state.name, state.message)
        page.goto(f"{base}/runs/flow-run/{run_id}")
        page.get_by_text(REJECTED, exact=True).first.wait_for()
        settle(page)
        page.screenshot(path=target("ui-rejected-run.png"))
    record = served.completion()
    assert record["flow_run_id"] == str(run_id)
    for channel in ("newsletter", "sms", "poster"):
        outcome = record["channels"][channel]
        assert not outcome["counts"].get("sent"), outcome
        assert not (served.outbox / channel / "requests").exists(), channel


@pytest.mark.integration
def test_prefect_yaml_deploys_to_a_process_work_pool(served: Served, tmp_path: Path) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    server = served.server
    # Same deployment names as the served ones: the serving process must not pick up their runs.
    served.proc.stop()
    with server.client() as client:
        # What `prefect work-pool create fbsflow --type process` does, without a CLI start-up.
        client.create_work_pool(
            WorkPoolCreate(
                name=POOL,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
    # Started before the deploy, so that its start-up overlaps it.
    worker = start(
        "prefect-worker",
        [PREFECT, "worker", "start", "--pool", POOL],
        env=server.env(
            FBSFLOW_DATA_DIR=str(tmp_path / "data"),
            FBSFLOW_PROJECT_DIR=str(ROOT),
            PREFECT_WORKER_QUERY_SECONDS="2",
        ),
        cwd=tmp_path,
        logs=tmp_path,
    )
    server.procs.append(worker)
    # Deployed without FBSFLOW_PROJECT_DIR: `prefect deploy` would bake a value it sees into the
    # pull step, and the stored template is what lets the worker say where the project is.
    args = ["--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)]
    done = subprocess.run(
        [PREFECT, *args],
        cwd=ROOT,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"prefect deploy:\n{done.stdout}\n{done.stderr}"
    with server.client() as client:
        for name in [CARD] + [channel_name(c) for c in served.channels()]:
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name == POOL, name
            assert deployment.pull_steps == PULL_STEPS
            assert deployment.parameters["config_path"] == EXAMPLE_CONFIG_PATH

        # `fbsflow schedule` after the deploy: the runs `serve` made (no work queue: no worker
        # would ever see them) give way to runs on the pool's queue, with the deployment's own
        # relative config_path (the only one its form accepts).
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

        from flows.deployments import schedule_channel_runs

        planned = schedule_channel_runs(str(ROOT / EXAMPLE_CONFIG_PATH))
        future = sorted(r.channel.value for r in planned if r.flow_run_id)
        waiting = [
            r
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[SLUG]))
            )
            if r.state is not None and r.state.is_scheduled()
        ]
        assert sorted(r.parameters["channel"] for r in waiting) == future
        for run in waiting:
            assert (run.work_pool_name, run.work_queue_name) == (POOL, "default"), run.name
            assert run.parameters["config_path"] == EXAMPLE_CONFIG_PATH

        # One real run through the worker: the pull step must land in the project folder.
        out = tmp_path / "pool-outbox"
        deployment = client.read_deployment_by_name(channel_name("website"))
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"output_root": str(out)}
        )
        state = wait_for_end(client, run.id, worker, timeout=90)
        assert state.is_completed(), f"{state.name}: {state.message}\n{worker.tail()}"
    worker.stop()
    record = json.loads((out / SLUG / "completion.json").read_text(encoding="utf-8"))
    assert record["channels"]["website"]["status"] == "done"
    assert (out / SLUG / "website").is_dir()

    # Serving the same municipality now would take the workers' runs: `serve` refuses, naming
    # the deployment and the pool, before it registers anything.
    fbsflow = _bin("fbsflow")
    command = [fbsflow] if fbsflow else [sys.executable, "-m", "flows.cli"]
    refused = subprocess.run(
        [*command, "serve", str(served.config)],
        cwd=served.workdir,
        env=server.env(FBSFLOW_DATA_DIR=str(served.workdir / "data")),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"belongs to work pool '{POOL}'" in refused.stderr + refused.stdout
    with server.client() as client:
        assert client.read_deployment_by_name(CARD).work_pool_name == POOL


def test_cli_run_against_the_server_reads_a_large_export_in_two_processes(
    server: Server, tmp_path: Path
) -> None:
    """`fbsflow run` with PREFECT_API_URL set: a forked child parses most of a large export
    while Prefect loads (tasks.speed.fork_import); the SMS still reach everyone once."""
    from tasks.audience import import_audience
    from tasks.speed.fork_import import SPLIT_MIN
    from tasks.synthetic import write_borrowers

    borrowers = write_borrowers(tmp_path / "laanere.csv", 150_000)
    assert borrowers.stat().st_size >= SPLIT_MIN
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["channels"] = {"sms": config["channels"]["sms"]}
    config["audience"] = {}
    config_path = tmp_path / "sms-only.yaml"
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    fbsflow = _bin("fbsflow")
    command = [fbsflow] if fbsflow else [sys.executable, "-m", "flows.cli"]
    out = tmp_path / "outbox"
    args = [
        "run",
        str(config_path),
        "--audience",
        str(borrowers),
        "--approve",
        "--output",
        str(out),
    ]
    done = subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env=server.env(FBSFLOW_DATA_DIR=str(tmp_path / "data")),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Borrower file read by two processes while Prefect was starting" in done.stderr
    expected = sorted(b.mobile for b in import_audience(borrowers).sms_recipients())
    sent = sorted(
        str(m["msisdn"])
        for path in (out / SLUG / "sms" / "requests").glob("*.json")
        for request in [json.loads(path.read_text(encoding="utf-8"))]
        for m in request["recipients"]
    )
    assert len(sent) == len(expected) > 40_000  # about a third are in the SMS scheme
    assert sent == [e.lstrip("+") for e in expected]  # type: ignore[union-attr]


def test_prefect_yaml_has_the_card_every_channel_and_the_notice() -> None:
    """Cheap check of prefect.yaml's shape, without a server: the same names, Danish
    descriptions and notice trigger as `fbsflow serve` makes."""
    from flows.communicate_externally import communicate_externally
    from flows.confirm_steps import confirm_steps
    from flows.deployments import NOTICE_EVENTS, NOTICE_TAG, build_deployments
    from flows.inform_channel import inform_channel
    from flows.notify_leader import notify_leader

    data = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    assert data["build"] is None and data["push"] is None
    assert data["pull"] == PULL_STEPS
    flows = {
        "communicate_externally": communicate_externally,
        "inform_channel": inform_channel,
        "notify_leader": notify_leader,
        "confirm_steps": confirm_steps,
    }
    by_name = {}
    for d in data["deployments"]:
        path, func = d["entrypoint"].split(":")
        assert (ROOT / path).is_file() and func in flows, d["entrypoint"]
        assert d["work_pool"]["name"] == POOL
        if "config_path" in d.get("parameters", {}):
            assert (ROOT / d["parameters"]["config_path"]).is_file()
        by_name[(flows[func].name, d["name"])] = d
    # What `fbsflow serve` registers for the same config: the same flows and names.
    served = {(d.flow_name, d.name) for d in build_deployments(str(EXAMPLE_CONFIG))}
    assert set(by_name) == served
    card = by_name[("communicate-externally", card_deployment(SLUG))]
    assert card["parameters"] == {"config_path": EXAMPLE_CONFIG_PATH}
    assert "Forbered og kommunikér eksternt" in card["description"]
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))["channels"]
    for channel, settings in example.items():
        if settings is None:
            continue
        d = by_name[("inform-channel", channel_deployment(SLUG, Channel(channel)))]
        assert d["parameters"]["channel"] == channel
        assert "planlagte dato" in d["description"]
    (notice,) = [d for (f, _), d in by_name.items() if f == "fbsflow-besked"]
    assert notice["tags"] == [NOTICE_TAG]  # not the municipality's tag: its own crash is no trigger
    (trigger,) = notice["triggers"]
    assert set(trigger["expect"]) == NOTICE_EVENTS
    assert trigger["match_related"] == {"prefect.resource.id": f"prefect.tag.{SLUG}"}
    assert trigger["parameters"] == {"flow_run_id": "{{ event.resource.id }}"}
