"""The notice deployment: e-mails the project leader when a card run waits for approval or has crashed.

An automation (a deployment trigger, set up by `fbsflow serve` and by prefect.yaml) starts this
flow when a run tagged `fbsflow` enters Paused or Suspended (waiting for the approval form) or
Crashed (its process died, so its own failure hook could not run). A run that fails in its own
process sends its failure notice itself (tasks/notify.py); that is why Failed is not a trigger
here: the leader gets one notice per failure, not two. Prefect's open-source server has no e-mail
action of its own (its only e-mail block posts to SendGrid's API), so the mail goes out the way
every fbsflow notice does: SendGrid or the municipality's SMTP relay, else a .eml file.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client

from flows.form import field
from tasks.notify import build_notice, deliver_notice
from tasks.settings import PrefectSettings, settings

RESOURCE_PREFIX = "prefect.flow-run."
WAITING = {"Paused", "Suspended"}


def _run_link(run_id: str) -> str:
    ui = (settings(PrefectSettings).prefect_ui_url or "").rstrip("/")
    return f"{ui}/runs/flow-run/{run_id}" if ui else ""


def waiting_notice(flow_run: Any) -> tuple[str, str]:
    """(subject, body) telling the leader a run waits for them; no personal data."""
    link = _run_link(str(flow_run.id))
    lines = [
        f"Kørslen '{flow_run.name}' venter på dig.",
        "",
        "Åbn kørslen, og klik 'Resume': formularen er enten godkendelsen af teksterne (læs dem i "
        "kørslens artefakter først; intet sendes til borgerne, før du har godkendt) eller "
        "bekræftelsen af manuelle trin.",
    ]
    lines += ["", f"Åbn kørslen: {link}"] if link else []
    subject = f"fbsflow: '{flow_run.name}' venter på dig"
    return subject, "\n".join(lines) + "\n"


@flow(
    name="fbsflow-besked",
    description="Sender projektlederen en e-mail, når en kørsel venter på godkendelse eller er gået ned.",
)
def notify_leader(
    flow_run_id: str = field(
        ..., "kørsel", "Id på den kørsel, beskeden handler om (sættes af automatiseringen)."
    ),
) -> str | None:
    """E-mail the project leader about one flow run's state; returns how the notice went out."""
    run_id = UUID(flow_run_id.removeprefix(RESOURCE_PREFIX))
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
        flow_name = client.read_flow(flow_run.flow_id).name
    state = flow_run.state
    state_name = state.name if state is not None else "?"
    if state_name in WAITING:
        subject, body = waiting_notice(flow_run)
    else:
        subject, body = build_notice(type("Flow", (), {"name": flow_name}), flow_run, state)
    sent = deliver_notice(flow_run, subject, body)
    get_run_logger().info("Notice about run %s (%s): %s", flow_run.name, state_name, sent)
    return sent
