"""Pause forms for the project leader: approve sending to citizens, confirm a manual step is done.

Each form is a Prefect `RunInput`: the flow run pauses with `pause_flow_run(wait_for_input=...)`,
Prefect's UI shows the form (field descriptions as help text, the markdown description above
it), and the run continues with the validated answer once someone presses Resume. A pause that
nobody answers within its timeout fails the run with Prefect's `FlowPauseTimeout`: nothing was
approved, so nothing is sent.
"""

from __future__ import annotations

from copy import copy
from typing import Any, ClassVar, Literal, TypeVar

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import ConfigDict, Field

from tasks.models import Approval, ApprovalHow, Confirmation
from tasks.settings import settings

R = TypeVar("R", bound=RunInput)


class ApprovalInput(RunInput):
    """The project leader's decision on sending the campaign to citizens."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Literal["approve", "reject"] = Field(
        description=(
            "approve: send the newsletter and SMS to borrowers as previewed. "
            "reject: send nothing; the run finishes with the card still open."
        ),
    )
    approved_by: str = Field(
        min_length=1,
        # Also checked by the server when the form is submitted: a blank name is refused there.
        pattern=r"\S",
        max_length=200,
        description="Your name, as it should appear in the checklist and the completion record.",
    )
    comment: str = Field(
        default="",
        max_length=2000,
        description="Optional: why, or what must change before approval. No borrower data here.",
    )


class ConfirmationInput(RunInput):
    """Confirmation that a manual step (e.g. posters are up) has been done."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", str_strip_whitespace=True)

    done: bool = Field(description="Tick when the step is done; leave unticked if it is not.")
    by: str = Field(
        min_length=1,
        pattern=r"\S",
        max_length=200,
        description="Your name, as it should appear in the checklist.",
    )
    note: str = Field(
        default="",
        max_length=2000,
        description="Optional: what was done, or why not (e.g. which branch is missing posters).",
    )


def form_with(model: type[R], description: str, **defaults: Any) -> type[R]:
    """`model` as a pause form: `description` above it, `defaults` filled in.

    Prefect's `with_initial_data` rebuilds a prefilled field from its value alone, which drops
    the field's description (the help text in the form); passing a copy of the field keeps it.
    """
    fields = {}
    for name, value in defaults.items():
        field = copy(model.model_fields[name])
        field.default = value
        fields[name] = field
    return model.with_initial_data(description=description, **fields)


def approval_description(previews: str) -> str:
    """The markdown shown above the approval form."""
    return (
        "## Approve sending to citizens\n\n"
        "Check the previews below. **approve** sends the newsletter and SMS to the borrowers "
        "in the plan; **reject** sends nothing.\n\n"
        f"{previews.strip()}\n"
    )


def _poll_seconds(poll_interval: int | None) -> int:
    # Prefect checks for a resume every poll interval; short enough that a leader's click is felt.
    return settings().approval_poll_seconds if poll_interval is None else poll_interval


def request_approval(
    *, previews: str, timeout_seconds: int, poll_interval: int | None = None
) -> Approval:
    """Pause the running flow until the leader approves or rejects; returns the decision.
    Must be called inside a flow run."""
    # The form opens on "reject": pressing Resume without choosing never sends anything.
    form = form_with(ApprovalInput, approval_description(previews), decision="reject")
    answer = pause_flow_run(
        wait_for_input=form, timeout=timeout_seconds, poll_interval=_poll_seconds(poll_interval)
    )
    return Approval(
        approved=answer.decision == "approve",
        by=answer.approved_by,
        comment=answer.comment,
        how=ApprovalHow.PREFECT_FORM,
    )


def request_confirmation(
    step_id: str, text: str, *, timeout_seconds: int, poll_interval: int | None = None
) -> Confirmation:
    """Pause the running flow until someone answers for the manual step `step_id`; returns the
    answer. Must be called inside a flow run."""
    description = (
        f"## Confirm a manual step\n\n**{text}** (`{step_id}`)\n\n"
        "Tick *done* once it is done, or leave it unticked and say why in the note.\n"
    )
    form = form_with(ConfirmationInput, description, done=False)
    answer = pause_flow_run(
        wait_for_input=form, timeout=timeout_seconds, poll_interval=_poll_seconds(poll_interval)
    )
    return Confirmation(step=step_id, done=answer.done, by=answer.by, note=answer.note)
