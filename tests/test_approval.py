"""Approval and confirmation forms: validation, the schema Prefect's UI renders, a real pause/resume."""

from __future__ import annotations

import json
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
    MISSING_NAME,
    ApprovalInput,
    ConfirmationInput,
    approval_description,
    form_with,
    request_approval,
    request_confirmation,
    request_confirmations,
    step_field,
    steps_form,
)
from tasks.models import Approval, ApprovalHow, Confirmation

PREVIEWS = (
    "- [Nyhedsbrev (da)](https://prefect.eksempel.test/artifacts/newsletter-da)\n"
    "- [Sms (da)](https://prefect.eksempel.test/artifacts/sms-da)"
)


def ui_schema(model: type[Any]) -> dict[str, Any]:
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
        {"decision": "approve", "approved_by": "Å" * 201},
        {"approved_by": "Åse"},
        {"decision": "approve", "approved_by": "Åse", "send_now": True},
    ],
)
def test_approval_input_refuses_bad_answers(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ApprovalInput(**data)


def test_approval_schema_has_danish_titles_and_no_english_required_error() -> None:
    schema = ui_schema(ApprovalInput)
    props = schema["properties"]
    assert set(props) == {"decision", "comment", "approved_by"}
    assert props["decision"]["enum"] == ["approve", "reject"]
    # Only the decision is required by the schema: a missing name is asked for again in Danish
    # (MISSING_NAME), never answered with jsonschema's "'approved_by' is a required property".
    assert schema["required"] == ["decision"]
    assert props["comment"]["default"] == "" and props["approved_by"]["default"] == ""
    titles = {name: props[name]["title"] for name in props}
    assert titles == {
        "decision": "Beslutning",
        "approved_by": "Dit navn (skal udfyldes)",
        "comment": "Kommentar",
    }
    for name in props:
        assert len(props[name]["description"]) > 20, name
    assert "intet sendes" in props["decision"]["description"]
    # A blank name reads as no name: the form strips it and asks again.
    assert ApprovalInput(decision="approve", approved_by="   ").approved_by == ""


def test_confirmation_input_and_schema() -> None:
    answer = ConfirmationInput(done=True, by=" Filialleder ")
    assert (answer.done, answer.by, answer.note) == (True, "Filialleder", "")
    assert ConfirmationInput(done=True).by == ""  # asked again, see request_confirmation
    with pytest.raises(ValidationError):
        ConfirmationInput(done="måske", by="Filialleder")
    props = ui_schema(ConfirmationInput)["properties"]
    assert set(props) == {"done", "by", "note"} and props["done"]["type"] == "boolean"
    assert all(props[n]["description"] and props[n]["title"] for n in props)


STEPS = [
    ("inform.poster.hovedbiblioteket", "Hæng plakater op på Hovedbiblioteket"),
    ("inform.poster.soeby-bibliotek", "Hæng plakater op på Søby Bibliotek"),
    ("inform.website", "Publicér nyheden på bibliotekets hjemmeside"),
]


def test_one_confirmation_form_has_a_checkbox_per_step_titled_by_its_text() -> None:
    form, by_field = steps_form(STEPS)
    schema = ui_schema(form)
    props = schema["properties"]
    assert by_field == {
        "inform_poster_hovedbiblioteket": "inform.poster.hovedbiblioteket",
        "inform_poster_soeby_bibliotek": "inform.poster.soeby-bibliotek",
        "inform_website": "inform.website",
    }
    for field, step_id in by_field.items():
        assert props[field]["type"] == "boolean" and props[field]["default"] is False
        assert props[field]["title"] == dict(STEPS)[step_id]
    assert props["confirmed_by"]["title"] == "Dit navn (skal udfyldes)"
    assert props["note"]["title"] == "Note"
    assert not schema.get("required")  # nothing ticked is a valid answer: nothing is recorded
    answer = form(inform_website=True, confirmed_by=" Åse ", note="Publiceret kl. 9")
    assert (answer.inform_website, answer.confirmed_by, answer.note) == (
        True,
        "Åse",
        "Publiceret kl. 9",
    )
    with pytest.raises(ValidationError):
        form(inform_facebook=True, confirmed_by="Åse")


def test_step_ids_that_read_alike_as_names_get_fields_of_their_own() -> None:
    assert step_field("inform.poster.soeby-bibliotek") == "inform_poster_soeby_bibliotek"
    _, by_field = steps_form([("a.b", "Et"), ("a-b", "To")])
    assert sorted(by_field.values()) == ["a-b", "a.b"] and len(by_field) == 2


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


def test_approval_description_carries_the_previews_and_the_counts() -> None:
    text = approval_description(PREVIEWS + "\n\n", ["Sms: 348 låntagere"])
    assert PREVIEWS in text and text.startswith("## Godkend udsendelse til borgerne")
    assert "- Sms: 348 låntagere" in text


# --- A real pause on Prefect's test server -------------------------------------------------------


def _wait_for_form(client: Any, flow_run_id: UUID, after: str | None = None) -> tuple[str, str]:
    """Wait until the run is paused with its form saved (a form other than `after`, the one
    answered last); returns (its keyset's description key, the description)."""
    deadline = time.monotonic() + 60
    while True:
        state = client.read_flow_run(flow_run_id).state
        keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
        if keyset and keyset["description"] != after:
            try:
                # Saved last, after the schema: once it is there, the form is complete.
                saved = client.read_flow_run_input(flow_run_id, keyset["description"])
                return keyset["description"], json.loads(saved)
            except Exception:
                pass  # paused, but the form is not saved yet
        assert time.monotonic() < deadline, "flow run never paused"
        time.sleep(0.1)


def _run_paused(
    body: Any, *answers: dict[str, Any], fallback: dict[str, Any] | None = None
) -> tuple[Any, list[str], list[Any]]:
    """Run flow `body` in a thread; each time it pauses with a form, resume it with the next of
    `answers` through the Prefect client. Returns (the flow's result, each form's description,
    each resume's answer). An answer the server refuses is followed by `fallback`."""
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
    descriptions, resumed = [], []
    last = None
    with get_client(sync_client=True) as client:
        for run_input in answers:
            last, description = _wait_for_form(client, flow_run_id, last)
            descriptions.append(description)
            answer = client.resume_flow_run(flow_run_id, run_input=run_input)
            resumed.append(answer)
            if answer.status.value != "ACCEPT":
                # The run stays paused: answer properly so the thread can finish.
                client.resume_flow_run(flow_run_id, run_input=fallback or {})
    thread.join(timeout=60)
    assert not thread.is_alive()
    return results[0], descriptions, resumed


REJECT = {"decision": "reject", "approved_by": "Test"}


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_approve_continues_the_flow() -> None:
    def body() -> dict[str, Any]:
        decision = request_approval(previews=PREVIEWS, timeout_seconds=120, poll_interval=1)
        return {"decision": decision, "after": "sent"}

    result, [description], [answer] = _run_paused(
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
def test_an_approval_without_a_name_is_asked_again_in_danish_and_decides_nothing() -> None:
    def body() -> Approval:
        return request_approval(
            previews=PREVIEWS, counts=["Sms: 348 låntagere"], timeout_seconds=120, poll_interval=1
        )

    decision, descriptions, answers = _run_paused(
        body,
        {"decision": "approve"},
        {"decision": "approve", "approved_by": "  "},
        {"decision": "approve", "approved_by": "Åse Sørensen"},
    )
    assert [a.status.value for a in answers] == ["ACCEPT"] * 3
    first, second, third = descriptions
    assert MISSING_NAME not in first and "- Sms: 348 låntagere" in first
    assert second.startswith(MISSING_NAME) and third.startswith(MISSING_NAME)
    assert PREVIEWS in third
    assert decision.approved is True and decision.by == "Åse Sørensen"


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_reject_returns_not_approved_and_bad_input_is_refused() -> None:
    def body() -> Approval:
        return request_approval(previews=PREVIEWS, timeout_seconds=120, poll_interval=1)

    decision, _, [answer] = _run_paused(body, {"decision": "reject", "approved_by": "Åse"})
    assert answer.status.value == "ACCEPT"
    assert decision.approved is False and decision.by == "Åse" and decision.rejected

    # The server checks the answer against the saved schema: "maybe" is refused there.
    decision, _, [answer] = _run_paused(
        body, {"decision": "maybe", "approved_by": "Åse"}, fallback=REJECT
    )
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

    record, [description], [answer] = _run_paused(
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


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_one_form_confirms_the_ticked_steps_with_the_name_and_note_as_typed() -> None:
    def body() -> list[Confirmation]:
        return request_confirmations(STEPS, intro="Eksempel", timeout_seconds=120, poll_interval=1)

    ticked = {"inform_poster_hovedbiblioteket": True, "inform_website": True}
    confirmations, [first, second], answers = _run_paused(
        body,
        ticked,  # no name: asked again, nothing recorded
        {**ticked, "confirmed_by": "Åse Sørensen", "note": "Plakat ved udlånet"},
    )
    assert [a.status.value for a in answers] == ["ACCEPT", "ACCEPT"]
    assert "Eksempel" in first and second.startswith(MISSING_NAME)
    assert [(c.step, c.done, c.by, c.note, c.how) for c in confirmations] == [
        (
            "inform.poster.hovedbiblioteket",
            True,
            "Åse Sørensen",
            "Plakat ved udlånet",
            "prefect-form",
        ),
        ("inform.website", True, "Åse Sørensen", "Plakat ved udlånet", "prefect-form"),
    ]
