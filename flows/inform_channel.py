"""One channel of the card on its planned date: the flow behind each channel's scheduled deployment."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from prefect.states import State

from flows.communicate_externally import communicate_externally
from flows.form import MUNICIPALITY, TEXT_OR_EMPTY, field
from flows.run_states import channel_run_name, copy_state
from tasks.flowruns import record_owner
from tasks.models import Channel


@flow(
    name="inform-channel",
    description="Informér borgerne gennem én kanal på kanalens planlagte dato.",
    flow_run_name=channel_run_name,
)
def inform_channel(
    config_path: Annotated[str, MUNICIPALITY] = field(
        ..., "Kommune", "Kommunens konfiguration: vælg din kommune på listen."
    ),
    channel: Channel = field(..., "Kanal", "Kanalen, der skal informere borgerne."),
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
        "Mappen, hvor kørslen lægger tekster, plakater og status (én undermappe pr. kommune).",
        advanced=True,
    ),
    approved_by: Annotated[str | None, TEXT_OR_EMPTY] = field(
        None,
        "godkendt af",
        "Kun sammen med 'godkend på forhånd': navnet på den, der har godkendt teksterne.",
        advanced=True,
        empty="",
    ),
) -> State[Any]:
    """Run the card for `channel` only; the other channels keep their last outcome. Ends in
    the card run's state (its Danish name and reasons); a direct call returns the record."""
    record_owner()  # so that a sweep can mark this run crashed if its process dies
    state = communicate_externally(
        config_path=config_path,
        audience=audience,
        approve=approve,
        approved_by=approved_by,
        output_root=output_root,
        channels=[channel],
        return_state=True,
    )
    return copy_state(state)
