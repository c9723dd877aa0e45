"""Pause forms for the project leader: approve sending to citizens, confirm manual steps are done.

Each form is a Prefect `RunInput`: the flow run pauses with `pause_flow_run(wait_for_input=...)`,
Prefect's UI shows the form (field titles and descriptions in Danish, the markdown description
above it), and the run continues with the answer once someone presses Resume. A pause that
nobody answers within its timeout fails the approval with Prefect's `FlowPauseTimeout`: nothing
was approved, so nothing is sent.

A missing name is not refused by the form's schema: Prefect would answer with jsonschema's
English "'approved_by' is a required property". The name is optional in the schema instead,
and an answer without one is asked again, with a Danish line saying what is missing above the
form; nothing is decided or recorded until a name is given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from copy import copy
from typing import Any, ClassVar, Literal, TypeVar

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import ConfigDict, Field, create_model

from tasks.models import Approval, ApprovalHow, Confirmation
from tasks.settings import settings

R = TypeVar("R", bound=RunInput)

MISSING_NAME = (
    "**Navnet mangler.** Skriv dit navn i feltet *Dit navn* og tryk *Resume* igen. "
    "Intet er sendt eller registreret endnu."
)


class ApprovalInput(RunInput):
    """The project leader's decision on sending the campaign to citizens."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Literal["approve", "reject"] = Field(
        title="Beslutning",
        description=(
            "approve (godkend): nyhedsbrev og sms sendes til låntagerne, og plakaterne mailes "
            "til filialerne, præcis som i gennemsynet. reject (afvis): intet sendes; kørslen "
            "ender som Afvist, og kortet forbliver åbent."
        ),
    )
    approved_by: str = Field(
        default="",
        max_length=200,
        title="Dit navn (skal udfyldes)",
        description="Dit navn, som det skal stå i tjeklisten og i afslutningsrapporten.",
    )
    comment: str = Field(
        default="",
        max_length=2000,
        title="Kommentar",
        description="Valgfri: hvorfor, eller hvad der skal rettes før godkendelse. "
        "Skriv ingen oplysninger om låntagere her.",
    )


class ConfirmationInput(RunInput):
    """Confirmation that one manual step (e.g. posters are up) has been done."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", str_strip_whitespace=True)

    done: bool = Field(
        title="Udført", description="Sæt flueben, når trinnet er udført; ellers lad det stå tomt."
    )
    by: str = Field(
        default="",
        max_length=200,
        title="Dit navn (skal udfyldes)",
        description="Dit navn, som det skal stå i tjeklisten.",
    )
    note: str = Field(
        default="",
        max_length=2000,
        title="Note",
        description="Valgfri: hvad der blev gjort, eller hvorfor ikke (fx hvilken filial der "
        "mangler plakater).",
    )


class StepsInput(RunInput):
    """Base of the one confirmation form: a checkbox per open manual step is added per run."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", str_strip_whitespace=True)

    confirmed_by: str = Field(
        default="",
        max_length=200,
        title="Dit navn (skal udfyldes)",
        description="Dit navn, som det skal stå ved hvert afkrydset trin i tjeklisten.",
    )
    note: str = Field(
        default="",
        max_length=2000,
        title="Note",
        description="Valgfri: hvad der blev gjort (fx hvor plakaterne hænger). Noten gemmes ved "
        "hvert afkrydset trin. Skriv ingen oplysninger om låntagere her.",
    )


_NOT_A_NAME = re.compile(r"[^a-z0-9]+")


def step_field(step_id: str) -> str:
    """The form field of a step: its id as a Python name ("inform.poster.soeby-bibliotek" ->
    "inform_poster_soeby_bibliotek"); what a test or a script resuming the form fills in."""
    return _NOT_A_NAME.sub("_", step_id.lower()).strip("_") or "trin"


def steps_form(steps: Sequence[tuple[str, str]]) -> tuple[type[StepsInput], dict[str, str]]:
    """The confirmation form for `steps` ((id, Danish text) pairs): one checkbox per step, titled
    by its text, then the name and the note; and the map from field to step id."""
    fields: dict[str, Any] = {}
    by_field: dict[str, str] = {}
    for step_id, text in steps:
        name = step_field(step_id)
        while name in by_field or name in StepsInput.model_fields:  # two ids alike as names
            name += "_"
        by_field[name] = step_id
        fields[name] = (
            bool,
            Field(
                default=False,
                title=text,
                description=f"Trin {step_id}: sæt flueben, når det er gjort.",
            ),
        )
    model = create_model("BekraeftTrin", __base__=StepsInput, **fields)
    return model, by_field


def form_with(model: type[R], description: str, **defaults: Any) -> type[R]:
    """`model` as a pause form: `description` above it, `defaults` filled in.

    Prefect's `with_initial_data` rebuilds a prefilled field from its value alone, which drops
    the field's title and description (the help text in the form); passing a copy keeps them.
    """
    fields = {}
    for name, value in defaults.items():
        field = copy(model.model_fields[name])
        field.default = value
        fields[name] = field
    return model.with_initial_data(description=description, **fields)


def approval_description(review: str, counts: Sequence[str] = ()) -> str:
    """The markdown shown above the approval form: what is sent to whom, and where to read it."""
    lines = "".join(f"- {line}\n" for line in counts)
    return (
        "## Godkend udsendelse til borgerne\n\n"
        "Læs beskederne, før du beslutter. **approve** (godkend) sender dem; **reject** (afvis) "
        "sender intet.\n\n"
        + (f"**Modtagere:**\n\n{lines}\n" if lines else "")
        + f"{review.strip()}\n"
    )


def _poll_seconds(poll_interval: int | None) -> int:
    # Prefect checks for a resume every poll interval; short enough that a leader's click is felt.
    return settings().approval_poll_seconds if poll_interval is None else poll_interval


def request_approval(
    *,
    previews: str,
    timeout_seconds: int,
    poll_interval: int | None = None,
    counts: Sequence[str] = (),
) -> Approval:
    """Pause the running flow until the leader approves or rejects with a name; returns the
    decision. Must be called inside a flow run."""
    description = approval_description(previews, counts)
    while True:
        # The form opens on "reject": pressing Resume without choosing never sends anything.
        form = form_with(ApprovalInput, description, decision="reject")
        answer = pause_flow_run(
            wait_for_input=form, timeout=timeout_seconds, poll_interval=_poll_seconds(poll_interval)
        )
        if answer.approved_by:
            break
        description = f"{MISSING_NAME}\n\n{approval_description(previews, counts)}"
    return Approval(
        approved=answer.decision == "approve",
        by=answer.approved_by,
        comment=answer.comment,
        how=ApprovalHow.PREFECT_FORM,
    )


def request_confirmation(
    step_id: str, text: str, *, timeout_seconds: int, poll_interval: int | None = None
) -> Confirmation:
    """Pause the running flow until someone answers for the manual step `step_id` with a name;
    returns the answer. Must be called inside a flow run."""
    base = (
        f"## Bekræft et manuelt trin\n\n**{text}** (`{step_id}`)\n\n"
        "Sæt flueben i *Udført*, når det er gjort, eller lad det stå tomt og skriv hvorfor i noten.\n"
    )
    description = base
    while True:
        form = form_with(ConfirmationInput, description, done=False)
        answer = pause_flow_run(
            wait_for_input=form, timeout=timeout_seconds, poll_interval=_poll_seconds(poll_interval)
        )
        if answer.by:
            break
        description = f"{MISSING_NAME}\n\n{base}"
    return Confirmation(step=step_id, done=answer.done, by=answer.by, note=answer.note)


def request_confirmations(
    steps: Sequence[tuple[str, str]],
    *,
    intro: str = "",
    timeout_seconds: int,
    poll_interval: int | None = None,
) -> list[Confirmation]:
    """One pause with a checkbox per step in `steps` ((id, Danish text)), a name and a note;
    returns a Confirmation per ticked step (none when nothing was ticked). Must be called
    inside a flow run."""
    form, by_field = steps_form(steps)
    base = (
        "## Bekræft manuelle trin\n\n"
        + (f"{intro.strip()}\n\n" if intro.strip() else "")
        + "Sæt flueben ved de trin, der er gjort, skriv dit navn og evt. en note, og tryk "
        "*Resume*. Trin uden flueben forbliver åbne og kan bekræftes senere.\n"
    )
    description = base
    while True:
        answer = pause_flow_run(
            wait_for_input=form_with(form, description),
            timeout=timeout_seconds,
            poll_interval=_poll_seconds(poll_interval),
        )
        ticked = [step_id for name, step_id in by_field.items() if getattr(answer, name)]
        if not ticked or answer.confirmed_by:
            break
        description = f"{MISSING_NAME}\n\n{base}"
    return [
        Confirmation(step=step_id, done=True, by=answer.confirmed_by, note=answer.note)
        for step_id in ticked
    ]
