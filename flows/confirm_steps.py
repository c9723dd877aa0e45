"""Confirm the card's manual steps in one form, whenever they happen: no card run, no new approval.

The flow behind the confirm-steps deployment: it shows one pause form with a checkbox per open
manual step (posters up in a branch, the article published ...), the confirmer's name and a
note; records the ticked steps as typed; and brings the card's completion record up to date.
`fbsflow done CONFIG STEP... --by NAME --note TEXT` does the same from a terminal.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from flows.run_states import (
    AWAITING_CONFIRMATIONS,
    COMPLETE,
    confirm_run_name,
    final_state,
    input_error,
    publish_status,
    settle_card_run,
)
from tasks.errors import ConfigError
from tasks.steps import ask_for_confirmations, data_dir, load_config, open_steps_of
from tasks.steps import refresh_completion as refresh


@flow(
    name="confirm-steps",
    description="Bekræft kortets manuelle trin (fx plakater hængt op) i én formular; "
    "opdaterer tjeklisten og afslutningsrapporten uden en ny kørsel af kortet.",
    flow_run_name=confirm_run_name,
)
def confirm_steps(config_path: str, output_root: str = "outbox") -> State[Any]:
    """Ask once for the open manual steps, record the answers, re-evaluate completion."""
    try:
        config, card = load_config(config_path)
        data = data_dir(config_path)
        intro = f"**{card.title}** for {config.municipality.name}."
        recorded = ask_for_confirmations(config, card, data, intro=intro)
        record = refresh(config, card, output_root, data)
        still_open = open_steps_of(config, card, data)
    except ConfigError as exc:
        get_run_logger().error("Fejl i opsætningen: %s", exc)
        return input_error(exc)
    done = ", ".join(s.id for s in recorded) or "ingen"
    get_run_logger().info("Bekræftet: %s; stadig åbne: %d", done, len(still_open))
    if record is not None:
        publish_status(record)
        if recorded:
            settle_card_run(record, recorded[0].by or "")
        return final_state(record)
    # The card has not run into this output root yet: the checklist alone says what is open.
    if still_open:
        return Completed(
            name=AWAITING_CONFIRMATIONS,
            message=f"Bekræftet: {done}. Stadig åbne: {', '.join(still_open)}",
            data={"confirmed": [s.id for s in recorded], "open": still_open},
        )
    return Completed(name=COMPLETE, message=f"Bekræftet: {done}. Ingen åbne trin.", data={})
