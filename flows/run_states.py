"""How a run reads in the Prefect UI: a Danish state name with the reasons, and a readable run name.

A card run that is not complete does not end as a plain green "Completed": it ends in a state
named for what it waits on ("Afventer bekræftelser", "Afventer godkendelse"), or "Afvist" (a
Cancelled state: the leader said no, nothing was sent), with the reasons as the state's message.
The record is the state's data, so a caller of the flow still gets it back.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect.states import Cancelled, Completed, Failed, State

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
_MONTHS = (
    "jan.",
    "feb.",
    "mar.",
    "apr.",
    "maj",
    "jun.",
    "jul.",
    "aug.",
    "sep.",
    "okt.",
    "nov.",
    "dec.",
)

COMPLETE = "Fuldført"
REJECTED = "Afvist"
AWAITING_APPROVAL = "Afventer godkendelse"
AWAITING_CONFIRMATIONS = "Afventer bekræftelser"
NEEDS_ACTION = "Kræver handling"
INPUT_ERROR = "Fejl i opsætningen"
# A state message is one line in the UI's run list; the full reasons are in the artifact.
_MESSAGE_LIMIT = 900


def state_name(record: dict[str, Any]) -> str:
    """The Danish name of the state a card run with this completion record ends in."""
    if record["status"] == "complete":
        return COMPLETE
    statuses = {c["status"] for c in record["channels"].values()}
    if "rejected" in statuses:
        return REJECTED
    if statuses & {"failed", "unconfirmed", "in_progress"}:
        return NEEDS_ACTION
    if "awaiting_approval" in statuses:
        return AWAITING_APPROVAL
    return AWAITING_CONFIRMATIONS


def state_message(record: dict[str, Any]) -> str:
    """The reasons a card is not complete, in one message (shortened for the UI's run list)."""
    if record["status"] == "complete":
        return f"Kortet er fuldført for {record['municipality']}."
    approval = record.get("approval") or {}
    head = ""
    if approval.get("decision") == "reject":
        comment = f": {approval['comment']}" if approval.get("comment") else ""
        head = f"Afvist af {approval.get('by')}{comment}. Intet er sendt til borgerne eller filialerne. "
    reasons = "; ".join(record.get("reasons", []))
    text = head + (f"Åbent: {reasons}" if reasons else "")
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def final_state(record: dict[str, Any]) -> State[dict[str, Any]]:
    """The state a card run ends in, with `record` as its data (what a direct call returns)."""
    name = state_name(record)
    message = state_message(record)
    if name == REJECTED:
        return Cancelled(name=name, message=message, data=record)
    return Completed(name=name, message=message, data=record)


def publish_status(record: dict[str, Any]) -> None:
    """The run's outcome as an artifact: the state's name and every reason, unshortened."""
    from prefect.artifacts import create_markdown_artifact

    name = state_name(record)
    lines = [f"# {record['card_title']}: {name}\n", f"{record['municipality']}\n"]
    lines += [f"- {reason}" for reason in record.get("reasons", [])]
    if record.get("awaiting_confirmation"):
        lines.append(
            "\nBekræft de åbne trin i deploymentet *confirm-steps* (én formular) eller med "
            "`fbsflow done CONFIG TRIN... --by NAVN --note TEKST`."
        )
    create_markdown_artifact(
        key=f"{record['municipality_slug']}-status",
        markdown="\n".join(lines) + "\n",
        description=f"Kortets status: {name}",
    )


def settle_card_run(record: dict[str, Any], confirmed_by: str) -> bool:
    """Once later confirmations complete the card, its card run, which ended waiting for them,
    reads "Fuldført" too (forced: the run has ended). Best effort: True when it was set."""
    from prefect.client.orchestration import get_client
    from prefect.logging import get_logger

    run_id = record.get("flow_run_id")
    if record.get("status") != "complete" or not run_id:
        return False
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
            if state is None or state.name != AWAITING_CONFIRMATIONS:
                return False  # rejected, failed or already settled: not this function's to change
            client.set_flow_run_state(
                run_id,
                Completed(
                    name=COMPLETE, message=f"Fuldført: de sidste trin bekræftet af {confirmed_by}."
                ),
                force=True,
            )
    except Exception:  # the record is updated either way; the UI's state is a courtesy
        get_logger("fbsflow").warning("Kortkørslen %s kunne ikke sættes til Fuldført", run_id)
        return False
    return True


def input_error(exc: Exception) -> State[Any]:
    """The failed state of a run stopped by the user's mistake: its one line is the message.

    The exception is the state's data, so a direct call (the CLI) raises it as before.
    """
    return Failed(name=INPUT_ERROR, message=str(exc).splitlines()[0], data=exc)


def copy_state(state: State[Any]) -> State[Any]:
    """A subflow's final state as the parent's own (Prefect would fold a returned run state
    into a plain Completed or Failed, losing its name and message)."""
    return State(
        type=state.type,
        name=state.name,
        message=state.message,
        data=state.result(raise_on_failure=False),
    )


def record_of(state: State[Any]) -> dict[str, Any]:
    """The completion record a card run's final state carries; raises what stopped the run."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, dict):
        raise TypeError(f"the run ended as {state.name} without a completion record")
    return result


def danish_time(at: datetime) -> str:
    """ "6. dec. 2026 kl. 23.10", Copenhagen time."""
    local = at.astimezone(COPENHAGEN)
    return f"{local.day}. {_MONTHS[local.month - 1]} {local.year} kl. {local:%H.%M}"


def municipality_name(config_path: str) -> str:
    """The municipality's name for a run name; the file name when the config cannot be read
    (the run itself then fails with the reason)."""
    try:
        from tasks.config import load_municipality

        return load_municipality(config_path).municipality.name
    except Exception:  # a name must never stop a run; the run says what is wrong
        return Path(config_path).stem


def run_name(what: str) -> str:
    """ "Eksempel Kommune · sms · 6. dec. 2026 kl. 23.10" for the running flow run."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    config_path = str(parameters.get("config_path", ""))
    channels = parameters.get("channels") or (
        [parameters["channel"]] if parameters.get("channel") else None
    )
    if what == "card" and channels:
        what = ", ".join(str(getattr(c, "value", c)) for c in channels)
    elif what == "card":
        what = "hele kortet"
    started = flow_run.scheduled_start_time or datetime.now(COPENHAGEN)
    return f"{municipality_name(config_path)} · {what} · {danish_time(started)}"


def card_run_name() -> str:
    return run_name("card")


def channel_run_name() -> str:
    return run_name("card")


def confirm_run_name() -> str:
    return run_name("bekræft trin")
