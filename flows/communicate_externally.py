"""The card "Forbered og kommunikér eksternt" as a flow: plan, inform per channel, mark complete."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows.form import CHANNELS_OR_ALL, LIST_OR_EMPTY, MUNICIPALITY, TEXT_OR_EMPTY, field, given
from flows.run_states import card_run_name, final_state, input_error, publish_status
from tasks.card_slot import card_slot
from tasks.channels import spec
from tasks.delivery.channel import check_ledger_key, deliver_channel
from tasks.delivery.chunks import MAX_WORKERS
from tasks.delivery.status import previous_outcomes, unapproved
from tasks.errors import ConfigError
from tasks.flowruns import record_owner
from tasks.models import Channel
from tasks.notify import failure_notice
from tasks.output import OutputFolder
from tasks.speed.heartbeat import flow_heartbeats
from tasks.steps import (
    DELIVERED,
    ask_for_confirmations,
    check_inputs,
    data_dir,
    import_borrowers,
    load_config,
    make_plan,
    mark_complete,
    obtain_approval,
    publish_files,
    publish_review,
    record_checklist,
    render_content,
    server_mode,
    triggered_by,
    write_previews,
)
from tasks.translation import translated


@flow(
    name="communicate-externally",
    description="FBS card 'Forbered og kommunikér eksternt': plan, inform per channel, mark complete.",
    flow_run_name=card_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),
    on_failure=[failure_notice],
    on_crashed=[failure_notice],
)
def communicate_externally(
    config_path: Annotated[str, MUNICIPALITY] = field(
        ..., "Kommune", "Kommunens konfiguration: vælg din kommune på listen."
    ),
    audience: Annotated[str | None, TEXT_OR_EMPTY] = field(
        None,
        "Låneroplysninger (CSV)",
        "Udtrækket af lånere fra FBS. Tomt: den fil, kommunens konfiguration peger på.",
        empty="",
    ),
    approve: bool = field(
        False,
        "godkend på forhånd",
        "Kun til kommandolinjen. I Prefect godkender du teksterne i godkendelsesformularen, "
        "når kørslen venter på dig.",
        advanced=True,
    ),
    output_root: str = field(
        "outbox",
        "outputmappe",
        "Mappen, hvor kørslen lægger tekster, plakater og status (én undermappe pr. kommune). "
        "En relativ sti er i forhold til arbejdsmappen på den maskine, der kører flowet.",
        advanced=True,
    ),
    at_least_once: bool = field(
        False,
        "send igen ved ukendt levering",
        "Send igen til modtagere, hvor det er uvist, om udbyderen modtog beskeden. "
        "Nogle kan da få den to gange. Brug det kun efter at have tjekket udbyderens log.",
        advanced=True,
    ),
    channels: Annotated[list[Channel] | None, CHANNELS_OR_ALL] = field(
        None,
        "kun disse kanaler",
        "Tom: alle kanaler i kommunens konfiguration.",
        advanced=True,
        empty=[],
    ),
    confirm: Annotated[list[str] | None, LIST_OR_EMPTY] = field(
        None,
        "bekræftede trin",
        "Id'er på manuelle trin, der er udført (fx inform.poster.hovedbiblioteket).",
        advanced=True,
        empty=[],
    ),
    confirmed_by: Annotated[str | None, TEXT_OR_EMPTY] = field(
        None,
        "bekræftet af",
        "Navnet på den, der bekræfter trinene ovenfor.",
        advanced=True,
        empty="",
    ),
    wait_for_confirmations: bool = field(
        False,
        "vent på bekræftelser",
        "Kørslen venter i Prefect på, at de manuelle trin bekræftes.",
        advanced=True,
    ),
    approved_by: Annotated[str | None, TEXT_OR_EMPTY] = field(
        None,
        "godkendt af",
        "Kun sammen med 'godkend på forhånd': navnet på den, der har godkendt teksterne.",
        advanced=True,
        empty="",
    ),
    confirm_note: Annotated[str | None, TEXT_OR_EMPTY] = field(
        None,
        "note til bekræftelsen",
        "En note til de bekræftede trin (ingen oplysninger om lånere).",
        advanced=True,
        empty="",
    ),
) -> State[Any]:
    """Run the card for one municipality; a direct call returns the completion record.

    `channels` limits the run to some channels (a scheduled run on a channel's planned date);
    the other channels keep the output and outcome of their last run. `confirm` lists manual
    steps (e.g. `inform.poster.hovedbiblioteket`) a person says are done. Against a Prefect
    server `approve` sends without the form only with a name in `approved_by`.

    The run ends in a Danish-named state saying what it waits on (flows/run_states.py); a
    mistake in the input ends it Failed with the mistake's one line as the message.
    """
    # The run form sends "" and [] for fields left empty; the flow's "not given" is None.
    audience, channels, confirmed_by = given(audience), given(channels), given(confirmed_by)
    approved_by, confirm_note = given(approved_by), given(confirm_note)
    try:
        record = _card(
            config_path,
            audience,
            approve=approve,
            approved_by=approved_by,
            output_root=output_root,
            at_least_once=at_least_once,
            channels=channels,
            confirm=confirm,
            confirmed_by=confirmed_by,
            confirm_note=confirm_note,
            wait_for_confirmations=wait_for_confirmations,
        )
    except ConfigError as exc:
        # The user's mistake: its one line is what the UI shows for the run, not a traceback.
        get_run_logger().error("Fejl i opsætningen: %s", exc)
        return input_error(exc)
    publish_status(record)
    return final_state(record)


def _card(
    config_path: str,
    audience: str | None,
    *,
    approve: bool,
    approved_by: str | None,
    output_root: str,
    at_least_once: bool,
    channels: list[Channel] | None,
    confirm: list[str] | None,
    confirmed_by: str | None,
    confirm_note: str | None,
    wait_for_confirmations: bool,
) -> dict[str, Any]:
    started = datetime.now(UTC)
    run_id = str(get_run_context().flow_run.id)
    record_owner()  # so that a sweep can mark this run crashed if its process dies
    # A mistake in the config or the audience path is found here, in the flow, before any task:
    # a task that raised it would have Prefect log its traceback above the one-line message.
    check_inputs(config_path, audience)
    config, card = load_config(config_path)
    selected = [c for c in config.channels.enabled() if channels is None or c in channels]
    data = data_dir(config_path)
    # A database or disk fault ends the run as fbsflow's error, naming the file and the fix:
    # that is the message Prefect records for the run and the CLI prints.
    places = (data, Path(output_root))
    with (
        translated(places),
        card_slot(config.municipality.slug),  # one card run at a time per municipality
        flow_heartbeats(),
        OutputFolder(Path(output_root), config.municipality.slug) as out,
    ):
        check_ledger_key(selected, data)
        if channels is not None:
            out.keep_previous({c.value for c in selected} | {"plan.md", "completion.json"})
        # 1. Plan: import the audience, render every channel, write the plan and the previews.
        borrowers = import_borrowers(config, config_path, audience, out)
        contents = render_content(config)
        plan = make_plan(config, card, contents, quote(borrowers), out)
        write_previews(config, contents, out)

        # 2. Inform via each channel. Files for people to publish are always written;
        #    nothing leaves (to citizens, or the posters to the branches) without approval,
        #    and the approver first gets every message as it goes out, with the counts.
        sends = any(c in DELIVERED or spec(c).reaches_branches for c in selected)
        shown = {c: contents[c] for c in selected}
        review = publish_review(config, shown, quote(borrowers)) if sends else None
        approval = obtain_approval(approve, sends, out, approved_by=approved_by, review=review)
        outcomes = previous_outcomes(out, set(selected))
        for channel in selected:
            published = publish_files(contents[channel], out)
            if (channel in DELIVERED or spec(channel).reaches_branches) and not approval.approved:
                outcome = unapproved(channel, approval, published.files)
            elif spec(channel).reaches_branches:
                # Its delivery decides: not done while a branch e-mail is pending or sending.
                mail = spec(channel).branch_messages(config, contents[channel])
                outcome = deliver_channel(
                    channel,
                    quote(config),
                    mail,
                    None,
                    out,
                    data=data,
                    run_id=run_id,
                    files=published.files,
                )
            elif channel not in DELIVERED:
                outcome = published
            else:
                # quote(): Prefect would otherwise walk a million borrowers looking for futures.
                outcome = deliver_channel(
                    channel,
                    quote(config),
                    contents[channel].messages,
                    quote(borrowers),
                    out,
                    data=data,
                    run_id=run_id,
                    files=published.files,
                    at_least_once=at_least_once,
                )
            outcomes.append(outcome)
        outcomes.sort(key=lambda o: list(Channel).index(o.channel))

        # 3. Record the checklist, then mark the card complete (or say why not).
        # Confirmations in a form are recorded as typed (name, note) when answered; without
        # one the run ends waiting, and the confirm-steps deployment or `fbsflow done` records
        # them later, whenever they happen.
        if wait_for_confirmations and server_mode():
            ask_for_confirmations(config, card, data)
        checklist = record_checklist(
            config,
            card,
            outcomes,
            approval,
            list(confirm or []),
            confirmed_by or triggered_by(),
            data,
            note=confirm_note,
        )
        record = mark_complete(
            config,
            card,
            plan,
            outcomes,
            out,
            started_at=started,
            triggered=triggered_by(),
            approval=approval,
            flow_run_id=run_id,
            checklist=checklist,
            data=data,
        )
        out.commit()
    return record
