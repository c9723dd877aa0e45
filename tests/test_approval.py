"""Approval and confirmation forms: validation, the schema Prefect's UI renders, a real pause/resume."""

from __future__ import annotations

import queue
import threading
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from prefect._internal.pydantic.v2_schema import create_v2_schema
from pydantic import ValidationError

from tasks.approval import (
    ApprovalInput,
    ConfirmationInput,
    approval_description,
    form_with,
    request_approval,
    request_confirmation,
)
from tasks.models import Approval, ApprovalHow, Confirmation

PREVIEWS = (
    "- [Nyhedsbrev (da)](https://prefect.eksempel.test/artifacts/newsletter-da)\n"
    "- [Sms (da)](https://prefect.eksempel.test/artifacts/sms-da)"
)


def ui_schema(model: type[ApprovalInput] | type[ConfirmationInput]) -> dict[str, Any]:
    """The JSON schema Prefect stores for the resume form (what RunInput.save writes)."""
    return create_v2_schema(model.__name__, model_base=model)


# --- Models ------------------------------------------------------------------------------------


def test_approval_input_accepts_a_decision_and_strips_names() -> None:
    answer = ApprovalInput(decision="approve", approved_by="  Åse Sørensen ")
    assert (answer.decision, answer.approved_by, answer.comment) == ("approve", "Åse Sørensen", "")


@pytest.mark.parametrize(
    "data",
    [
        {"decision": "maybe", "approved_by": "Åse"},
        {"decision": "Approve", "approved_by": "Åse"},
        {"decision": "approve", "approved_by": "   "},
        {"decision": "approve"},
        {"approved_by": "Åse"},
        {"decision": "approve", "approved_by": "Åse", "send_now": True},
    ],
)
def test_approval_input_refuses_bad_answers(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ApprovalInput(**data)


def test_approval_schema_has_fields_with_descriptions() -> None:
    schema = ui_schema(ApprovalInput)
    props = schema["properties"]
    assert set(props) == {"decision", "comment", "approved_by"}
    assert props["decision"]["enum"] == ["approve", "reject"]
    assert set(schema["required"]) == {"decision", "approved_by"}
    assert props["comment"]["default"] == ""
    for name in props:
        assert len(props[name]["description"]) > 20, name
    assert "send nothing" in props["decision"]["description"]


def test_confirmation_input_and_schema() -> None:
    answer = ConfirmationInput(done=True, by=" Filialleder ")
    assert (answer.done, answer.by, answer.note) == (True, "Filialleder", "")
    with pytest.raises(ValidationError):
        ConfirmationInput(done=True, by="")
    with pytest.raises(ValidationError):
        ConfirmationInput(done="måske", by="Filialleder")
    props = ui_schema(ConfirmationInput)["properties"]
    assert set(props) == {"done", "by", "note"} and props["done"]["type"] == "boolean"
    assert all(props[n]["description"] for n in props)


def test_form_prefills_without_losing_help_text() -> None:
    form = form_with(ApprovalInput, "## Godkend", decision="reject")
    props = ui_schema(form)["properties"]
    assert props["decision"]["default"] == "reject"
    assert props["decision"]["description"] == ApprovalInput.model_fields["decision"].description
    assert props["decision"]["enum"] == ["approve", "reject"]
    assert form._description == "## Godkend"
    assert form(approved_by="Åse").decision == "reject"
    # The original model is left as it was: decision stays required.
    assert ApprovalInput.model_fields["decision"].is_required()


def test_approval_description_carries_the_previews() -> None:
    text = approval_description(PREVIEWS + "\n\n")
    assert PREVIEWS in text and text.startswith("## Approve sending to citizens")


# --- A real pause on Prefect's test server -------------------------------------------------------


def _run_paused(body: Any, run_input: dict[str, Any]) -> tuple[Any, Any]:
    """Run flow `body` in a thread, wait until it is paused with its form saved, resume it with
    `run_input` through the Prefect client; returns (the flow's result, the resume answer)."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.context import get_run_context

    ids: queue.Queue[UUID] = queue.Queue()
    results: list[Any] = []

    @flow(name="approval-test")
    def paused_flow() -> Any:
        ids.put(get_run_context().flow_run.id)
        return body()

    thread = threading.Thread(target=lambda: results.append(paused_flow()), daemon=True)
    thread.start()
    flow_run_id = ids.get(timeout=60)
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 30
        while True:
            state = client.read_flow_run(flow_run_id).state
            keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
            if keyset:
                try:
                    # Saved last, after the schema: once it is there, the form is complete.
                    description = client.read_flow_run_input(flow_run_id, keyset["description"])
                    break
                except Exception:
                    pass  # paused, but the form is not saved yet
            assert time.monotonic() < deadline, "flow run never paused"
            time.sleep(0.1)
        answer = client.resume_flow_run(flow_run_id, run_input=run_input)
        if answer.status.value != "ACCEPT":
            # The run stays paused: answer properly so the thread can finish.
            client.resume_flow_run(
                flow_run_id, run_input={"decision": "reject", "approved_by": "Test"}
            )
    thread.join(timeout=60)
    assert not thread.is_alive()
    return (results[0], description), answer


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_approve_continues_the_flow() -> None:
    def body() -> dict[str, Any]:
        decision = request_approval(previews=PREVIEWS, timeout_seconds=120, poll_interval=1)
        return {"decision": decision, "after": "sent"}

    (result, description), answer = _run_paused(
        body, {"decision": "approve", "approved_by": "Åse Sørensen", "comment": "Fint"}
    )
    assert answer.status.value == "ACCEPT"
    assert result["after"] == "sent"
    decision = result["decision"]
    assert decision.approved is True and decision.decision == "approve"
    assert (decision.by, decision.comment, decision.how) == (
        "Åse Sørensen",
        "Fint",
        ApprovalHow.PREFECT_FORM,
    )
    assert decision.at.utcoffset() == timedelta(0)
    assert decision.record()["at"].endswith("+00:00")
    assert "https://prefect.eksempel.test/artifacts/newsletter-da" in description


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_reject_returns_not_approved_and_bad_input_is_refused() -> None:
    def body() -> Approval:
        return request_approval(previews=PREVIEWS, timeout_seconds=120, poll_interval=1)

    (decision, _), answer = _run_paused(body, {"decision": "reject", "approved_by": "Åse"})
    assert answer.status.value == "ACCEPT"
    assert decision.approved is False and decision.by == "Åse" and decision.rejected

    # The server checks the answer against the saved schema: "maybe" is refused there.
    (decision, _), answer = _run_paused(body, {"decision": "maybe", "approved_by": "Åse"})
    assert answer.status.value == "REJECT"
    assert decision.approved is False  # answered by the helper's fallback reject


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_confirmation_of_a_manual_step() -> None:
    def body() -> Confirmation:
        return request_confirmation(
            "inform.poster.soeby-bibliotek",
            "Hæng plakater op på Søby Bibliotek",
            timeout_seconds=120,
            poll_interval=1,
        )

    (record, description), answer = _run_paused(
        body, {"done": True, "by": "Filialleder", "note": "2 plakater ved indgangen"}
    )
    assert answer.status.value == "ACCEPT"
    assert record.step == "inform.poster.soeby-bibliotek"
    assert (record.done, record.by, record.note) == (
        True,
        "Filialleder",
        "2 plakater ved indgangen",
    )
    assert "Hæng plakater op på Søby Bibliotek" in description
