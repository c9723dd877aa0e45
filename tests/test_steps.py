"""The card's steps as plain functions: what is open, a channel's status, the approval, the record."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, update

from tasks import steps
from tasks.checklist import Checklist, StepState, checklist_steps, open_steps
from tasks.config import load_card, load_municipality
from tasks.ledger import DeliveryState
from tasks.models import (
    Approval,
    ApprovalHow,
    Channel,
    ChannelStatus,
    MunicipalityConfig,
    TaskCard,
)
from tasks.settings import reload
from tasks.steps import ChannelOutcome, mark_complete, obtain_approval

from .conftest import EXAMPLE_CONFIG

LEAF = "inform.sms"


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """mark_complete outside a flow run: its table artifacts land here, its log line in logging."""
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(steps, "create_table_artifact", lambda **kw: made.append(kw))
    monkeypatch.setattr(steps, "get_run_logger", lambda: logging.getLogger(__name__))
    return made


class _Out:
    """The one thing mark_complete asks of the output folder."""

    def __init__(self) -> None:
        self.json: dict[str, Any] = {}

    def write_json(self, relative: str, data: Any) -> Path:
        self.json[relative] = data
        return Path(relative)


@pytest.fixture
def card_and_config() -> tuple[TaskCard, MunicipalityConfig]:
    config = load_municipality(EXAMPLE_CONFIG)
    return load_card(config.card), config


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fbsflow.db'}"


@pytest.fixture
def checklist(url: str) -> Iterator[Checklist]:
    with Checklist(url) as opened:
        yield opened


def _all_done_but_one(
    checklist: Checklist,
    card: TaskCard,
    config: MunicipalityConfig,
    state: str,
    note: str | None,
    url: str,
) -> list[Any]:
    """Every leaf step done, but LEAF in `state` (a skip without a note written as by hand)."""
    for step_id in open_steps(checklist.steps(card, config)):
        if step_id != LEAF:
            checklist.set_state(config, card, step_id, StepState.DONE, by="PL", how="cli")
    if state == "skipped" and note is None:
        # fbsflow refuses such a skip; one whose note was removed in the database is how it comes.
        checklist.set_state(config, card, LEAF, state, by="PL", how="cli", note="removed below")
        engine = create_engine(url)
        with engine.begin() as conn:
            by_leaf = checklist_steps.c.step_id == LEAF
            conn.execute(update(checklist_steps).where(by_leaf).values(note=None))
        engine.dispose()
    elif state != "open":
        checklist.set_state(config, card, LEAF, state, by="PL", how="cli", note=note)
    return checklist.steps(card, config)


def _complete(
    card: TaskCard,
    config: MunicipalityConfig,
    checklist: list[Any],
    outcomes: list[ChannelOutcome] | None = None,
    approval: Approval | None = None,
) -> tuple[dict[str, Any], _Out]:
    out = _Out()
    record = mark_complete.fn(
        config,
        card,
        SimpleNamespace(campaign="eksempel-kommune-test"),
        outcomes or [],
        out,
        started_at=datetime.now(UTC),
        triggered="Projektleder",
        approval=approval or Approval.by_parameter("Projektleder"),
        flow_run_id=None,
        checklist=checklist,
    )
    return record, out


# --- One definition of an open step ----------------------------------------------------------------


def test_mark_complete_counts_a_skip_without_its_reason_as_open(
    tables: list[dict[str, Any]],
    checklist: Checklist,
    url: str,
    card_and_config: tuple[TaskCard, MunicipalityConfig],
) -> None:
    card, config = card_and_config
    listed = _all_done_but_one(checklist, card, config, "skipped", None, url)
    assert next(s for s in listed if s.id == LEAF).state is StepState.SKIPPED
    record, _ = _complete(card, config, listed)
    # Nobody can tell why the step was left: the card is not complete.
    assert record["status"] == "incomplete"
    assert record["awaiting_confirmation"] == [LEAF]


@pytest.mark.parametrize(
    ("state", "note", "is_open"),
    [
        ("open", None, True),
        ("in_progress", None, True),
        ("done", None, False),
        ("skipped", "Kommunen har ingen sms-ordning", False),
        ("skipped", None, True),
    ],
)
def test_the_checklist_and_mark_complete_agree_on_what_is_open(
    tables: list[dict[str, Any]],
    checklist: Checklist,
    url: str,
    card_and_config: tuple[TaskCard, MunicipalityConfig],
    state: str,
    note: str | None,
    is_open: bool,
) -> None:
    card, config = card_and_config
    listed = _all_done_but_one(checklist, card, config, state, note, url)
    record, _ = _complete(card, config, listed)
    complete, still_open = checklist.complete(card, config)
    assert record["awaiting_confirmation"] == still_open == ([LEAF] if is_open else [])
    assert (record["status"] == "complete") is complete is (not is_open)


# --- A channel's status --------------------------------------------------------------------------


def test_a_channel_status_is_one_of_the_closed_set_wherever_it_is_set() -> None:
    outcome = ChannelOutcome(Channel.WEBSITE, "done")
    assert outcome.status is ChannelStatus.DONE and outcome.status == "done"
    outcome.status = "unconfirmed"  # as the flow sets it on a published outcome
    assert outcome.status is ChannelStatus.UNCONFIRMED
    assert type(outcome.as_dict()["status"]) is str
    with pytest.raises(ValueError, match="skipped"):
        outcome.status = "skipped"
    with pytest.raises(ValueError, match="sent"):
        ChannelOutcome(Channel.SMS, "sent")


def test_the_delivery_table_counts_in_the_ledgers_states(
    tables: list[dict[str, Any]],
    checklist: Checklist,
    card_and_config: tuple[TaskCard, MunicipalityConfig],
) -> None:
    card, config = card_and_config
    counts = {"pending": 0, "sending": 0, "sent": 640, "failed": 5, "unknown": 0}
    outcome = ChannelOutcome(Channel.NEWSLETTER, "done", "sendgrid", counts=counts)
    record, _ = _complete(card, config, checklist.steps(card, config), [outcome])
    [row] = next(t for t in tables if t["key"].endswith("delivery"))["table"]
    # The table is read by the project leader: Danish column names and words.
    assert list(row) == [
        "kanal", "status", "udbyder", "venter", "sendes", "sendt", "fejlet", "ukendt"
    ]  # fmt: skip
    assert row == {
        "kanal": "Nyhedsbrev", "status": "udført", "udbyder": "sendgrid",
        "venter": 0, "sendes": 0, "sendt": 640, "fejlet": 5, "ukendt": 0,
    }  # fmt: skip
    assert len(DeliveryState) == 5  # one column per ledger state
    # The record keeps the ledger's own English names.
    assert record["channels"]["newsletter"]["counts"] == counts


# --- The approval decision ---------------------------------------------------------------------------


def test_an_approval_keeps_the_completion_records_shape(
    tables: list[dict[str, Any]],
    checklist: Checklist,
    card_and_config: tuple[TaskCard, MunicipalityConfig],
) -> None:
    at = datetime(2026, 11, 23, 9, 15, 7, tzinfo=UTC)
    by_form = Approval(approved=False, by="Åse", comment="", how="prefect-form", at=at)
    assert list(Approval.by_parameter("PL").record()) == ["approved", "by", "how", "at"]
    assert list(Approval.not_given().record()) == ["approved", "by", "how", "at"]
    assert by_form.record() == {
        "approved": False,
        "by": "Åse",
        "comment": "",
        "how": "prefect-form",
        "at": "2026-11-23T09:15:07+00:00",
        "decision": "reject",
    }
    card, config = card_and_config
    record, out = _complete(card, config, checklist.steps(card, config), approval=by_form)
    assert record["approval"] == out.json["completion.json"]["approval"] == by_form.record()


def test_an_approval_is_coherent() -> None:
    with pytest.raises(ValidationError, match="approves nothing"):
        Approval(approved=True, by=None, how=ApprovalHow.NOT_GIVEN)
    with pytest.raises(ValidationError, match="names who"):
        Approval(approved=True, by="", how=ApprovalHow.PARAMETER)
    with pytest.raises(ValidationError):
        Approval(approved=True, by="PL", how="by e-mail")
    rejected = Approval(approved=False, by="Åse", how=ApprovalHow.PREFECT_FORM)
    assert rejected.rejected and not Approval.not_given().rejected
    # Read by key as well, for the flow until it reads attributes.
    assert (rejected["approved"], rejected.get("decision")) == (False, "reject")
    assert Approval.not_given().get("decision") is None


def test_obtain_approval_up_front_or_not_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_TRIGGERED_BY", "Projektleder (demo)")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    reload()
    out: Any = _Out()
    given = obtain_approval(True, True, out)
    assert (given.approved, given.by, given.how) == (True, "Projektleder (demo)", "parameter")
    # No server to show a form on: nobody is asked, nothing is approved.
    not_given = obtain_approval(False, True, out)
    assert (not_given.approved, not_given.by, not_given.how) == (False, None, "not given")
