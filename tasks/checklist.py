"""The project leader's checklist for a card: its steps expanded per municipality, with persisted state.

A card's method steps are taken as they are, with two expansions: a `plan` step first (the card's
goal is to lay a communication plan), and the step `inform` ("inform via the channels you
normally use") split into one sub-step per enabled channel, and per branch for posters. A channel
switched off in the config (`enabled: false`, `reason:`) keeps one sub-step, skipped with that
reason, so it never vanishes from the list. A parent step has no state of its own: it is done
when every sub-step is done or skipped.

State lives in the table `checklist_steps` (SQLite beside the delivery ledger, or PostgreSQL at
`FBSFLOW_DATABASE_URL`), one row per municipality x card x step, so it survives between the
weeks of a campaign and between the flow, the CLI and Prefect's pause forms.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from tasks.channels import all_channels
from tasks.channels.base import INFORM_STEP
from tasks.errors import ConfigError
from tasks.models import MunicipalityConfig, StepKind, TaskCard
from tasks.operator_text import language, say, when, word
from tasks.settings import settings

DB_FILE_NAME = "fbsflow.db"

PLAN_STEP = "plan"
COMPLETE_STEP = "mark-complete"
# Who or what changed a step: the flow itself, the command line, a Prefect pause form, or a flow
# parameter such as `approve=True`.
HOW = ("flow", "cli", "prefect-form", "parameter")
# Who and how for a channel switched off in the config: its step is skipped by the config itself.
OFF_BY = OFF_HOW = "config"


class StepState(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    SKIPPED = "skipped"  # only with a note saying why


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """One line of the checklist as the card and the municipality's config define it."""

    id: str
    text: str  # Danish, shown to the project leader
    kind: StepKind
    channel: str | None = None
    parent: str | None = None
    off_reason: str | None = None  # the channel is switched off in the config, for this reason


@dataclass(frozen=True, slots=True)
class ChecklistStep:
    """A step definition merged with its stored state."""

    id: str
    text: str
    kind: StepKind
    channel: str | None
    parent: str | None
    state: StepState = StepState.OPEN
    by: str | None = None
    at: str | None = None  # UTC, ISO 8601
    how: str | None = None
    note: str | None = None
    evidence: Mapping[str, Any] | None = None


# --- Definitions -------------------------------------------------------------------------------


def _inform_steps(config: MunicipalityConfig) -> list[StepDefinition]:
    """One sub-step or more per enabled channel, as each channel declares them (tasks/channels/),
    and one skipped sub-step per channel switched off in the config, with its reason."""
    enabled = set(config.channels.enabled())
    switched_off = {c: r for c, r in config.channels.not_used().items() if r is not None}
    steps = []
    for spec in sorted(all_channels(), key=lambda s: s.step_order):
        if spec.channel in enabled:
            steps += [
                StepDefinition(step.id, step.text, step.kind, spec.channel.value, INFORM_STEP)
                for step in spec.checklist_steps(config)
            ]
        elif spec.channel in switched_off:
            kind = StepKind.MANUAL if spec.delivers is None else StepKind.AUTOMATED
            steps.append(
                StepDefinition(
                    f"{INFORM_STEP}.{spec.channel.value}",
                    f"{spec.labels['da']} (slået fra)",
                    kind,
                    spec.channel.value,
                    INFORM_STEP,
                    off_reason=switched_off[spec.channel],
                )
            )
    return steps


def checklist_definitions(card: TaskCard, config: MunicipalityConfig) -> list[StepDefinition]:
    """The checklist of `card` for this municipality, in working order (parents before children)."""
    steps: list[StepDefinition] = []
    if all(s.id != PLAN_STEP for s in card.method_steps):
        steps.append(StepDefinition(PLAN_STEP, "Læg en kommunikationsplan", StepKind.AUTOMATED))
    for method_step in card.method_steps:
        steps.append(StepDefinition(method_step.id, method_step.text, method_step.kind))
        if method_step.id == INFORM_STEP:
            steps.extend(_inform_steps(config))
    return steps


# --- Persistence -------------------------------------------------------------------------------

_metadata = MetaData()
checklist_steps = Table(
    "checklist_steps",
    _metadata,
    Column("municipality", String(100), primary_key=True),
    Column("card_id", String(100), primary_key=True),
    Column("step_id", String(200), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("by", String(200), quote=True),
    Column("at", String(40), quote=True),  # UTC ISO 8601: sorts and reads the same everywhere
    Column("how", String(20)),
    Column("note", Text),
    Column("evidence", Text),  # JSON: links to artifacts and files, delivery counts
)
_c = checklist_steps.c


class Checklist:
    """Checklist state for every municipality and card, in one database."""

    def __init__(self, url: str) -> None:
        self._engine = _make_engine(url)
        try:
            _metadata.create_all(self._engine, checkfirst=True)
        except SQLAlchemyError:
            # Two processes opening a fresh database at once: the loser's CREATE fails.
            with self._engine.connect() as conn:
                if not self._engine.dialect.has_table(conn, checklist_steps.name):
                    raise

    @classmethod
    def open(cls, data_dir: Path) -> Checklist:
        """The checklist at `FBSFLOW_DATABASE_URL`, else in `data_dir/fbsflow.db` (created if missing)."""
        configured = settings().database_url
        if configured is not None:
            return cls(configured.get_secret_value())
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{data_dir / DB_FILE_NAME}")

    def __repr__(self) -> str:  # the URL may carry a password
        return f"Checklist(dialect={self._engine.dialect.name!r})"

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Checklist:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def steps(self, card: TaskCard, config: MunicipalityConfig) -> list[ChecklistStep]:
        """Every step of the card for this municipality with its current state; parents rolled up."""
        definitions = checklist_definitions(card, config)
        query = select(checklist_steps).where(
            _c.municipality == config.municipality.slug, _c.card_id == card.id
        )
        with self._engine.connect() as conn:
            rows = {row.step_id: row for row in conn.execute(query)}
        merged = [_merge(d, rows.get(d.id)) for d in definitions]
        lang = language(config)
        return [_roll_up(s, merged, lang) for s in merged]

    def set_state(
        self,
        config: MunicipalityConfig,
        card: TaskCard,
        step_id: str,
        state: StepState | str,
        *,
        by: str,
        how: str,
        note: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> ChecklistStep:
        """Record a step's new state; raises ConfigError naming the fix when the change is not valid."""
        definitions = checklist_definitions(card, config)
        by_id = {d.id: d for d in definitions}
        if step_id not in by_id:
            raise ConfigError(
                f"card '{card.id}' for {config.municipality.slug} has no step '{step_id}' "
                "(fix: use one of the step ids listed)",
                list(by_id),
            )
        try:
            state = StepState(state)
        except ValueError:
            raise ConfigError(
                f"'{state}' is not a step state (fix: use one of {[s.value for s in StepState]})"
            ) from None
        if how not in HOW:
            raise ConfigError(f"how='{how}' is not known (fix: use one of {list(HOW)})")
        by = (by or "").strip()
        if not by:
            raise ConfigError(f"step '{step_id}': say who changed it (fix: give `by`, a name)")
        note = (note or "").strip() or None
        if state is StepState.SKIPPED and note is None:
            raise ConfigError(
                f"step '{step_id}' cannot be skipped without a reason (fix: add a note saying why)"
            )
        if (off := by_id[step_id].off_reason) is not None:
            raise ConfigError(
                f"step '{step_id}' belongs to a channel switched off in the config ({off}) "
                f"(fix: set enabled: true under channels.{by_id[step_id].channel} to use it)"
            )
        children = [d.id for d in definitions if d.parent == step_id]
        if children:
            raise ConfigError(
                f"step '{step_id}' follows its sub-steps and is done when they are "
                "(fix: set these instead)",
                children,
            )
        if step_id == COMPLETE_STEP and state is StepState.DONE:
            complete, still_open = self.complete(card, config)
            if not complete:
                raise ConfigError(
                    f"card '{card.id}' cannot be marked complete for "
                    f"{config.municipality.slug}: these steps are still open "
                    "(fix: finish them, or skip them with a reason)",
                    still_open,
                )
        try:
            evidence_json = json.dumps(dict(evidence), ensure_ascii=False) if evidence else None
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"step '{step_id}': evidence must be JSON (links, counts): {exc}"
            ) from None

        values = {
            "municipality": config.municipality.slug,
            "card_id": card.id,
            "step_id": step_id,
            "state": state.value,
            "by": by,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "how": how,
            "note": note,
            "evidence": evidence_json,
        }
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(checklist_steps).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[_c.municipality, _c.card_id, _c.step_id],
            set_={
                k: statement.excluded[k] for k in ("state", "by", "at", "how", "note", "evidence")
            },
        )
        with self._engine.begin() as conn:
            conn.execute(statement)
        return next(s for s in self.steps(card, config) if s.id == step_id)

    def complete(self, card: TaskCard, config: MunicipalityConfig) -> tuple[bool, list[str]]:
        """(True, []) when no step is open (`open_steps`); else (False, the ids of those open)."""
        still_open = open_steps(self.steps(card, config))
        return (not still_open, still_open)

    def stored(self, config: MunicipalityConfig, card: TaskCard) -> int:
        """How many steps of this card for this municipality have a stored state."""
        query = select(func.count()).where(
            _c.municipality == config.municipality.slug, _c.card_id == card.id
        )
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def reset(self, config: MunicipalityConfig, card: TaskCard) -> int:
        """Forget every stored state of this card for this municipality; returns rows removed."""
        statement = delete(checklist_steps).where(
            _c.municipality == config.municipality.slug, _c.card_id == card.id
        )
        with self._engine.begin() as conn:
            return conn.execute(statement).rowcount


# --- Merging and roll-up -----------------------------------------------------------------------


def _merge(definition: StepDefinition, row: Any) -> ChecklistStep:
    base = {
        "id": definition.id,
        "text": definition.text,
        "kind": definition.kind,
        "channel": definition.channel,
        "parent": definition.parent,
    }
    if definition.off_reason is not None:
        # The config decides, whatever a run recorded before the channel was switched off.
        return ChecklistStep(
            **base, state=StepState.SKIPPED, by=OFF_BY, how=OFF_HOW, note=definition.off_reason
        )
    if row is None:
        return ChecklistStep(**base)
    return ChecklistStep(
        **base,
        state=StepState(row.state),
        by=row.by,
        at=row.at,
        how=row.how,
        note=row.note,
        evidence=json.loads(row.evidence) if row.evidence else None,
    )


def _settled(step: ChecklistStep) -> bool:
    """Done, or skipped with a note saying why. A skip without its reason (written into the
    database by hand, or by an older fbsflow) does not count: nobody can tell why it was left."""
    return step.state is StepState.DONE or (step.state is StepState.SKIPPED and bool(step.note))


def _roll_up(step: ChecklistStep, steps: Sequence[ChecklistStep], lang: str) -> ChecklistStep:
    """A parent's state follows its children: done when all are settled, started when any is."""
    children = [s for s in steps if s.parent == step.id]
    if not children:
        return step
    if all(_settled(c) for c in children):
        state = StepState.DONE
    elif any(c.state is not StepState.OPEN for c in children):
        state = StepState.IN_PROGRESS
    else:
        state = StepState.OPEN
    latest = max((c for c in children if c.at), key=lambda c: c.at or "", default=None)
    return ChecklistStep(
        id=step.id,
        text=step.text,
        kind=step.kind,
        channel=step.channel,
        parent=step.parent,
        state=state,
        at=latest.at if latest and state is not StepState.OPEN else None,
        note=say(
            "checklist.rollup", lang, settled=sum(map(_settled, children)), total=len(children)
        ),
    )


def open_steps(steps: Iterable[ChecklistStep]) -> list[str]:
    """The ids of the steps still open: fbsflow's one definition, for the checklist, the pause
    forms and the completion record alike.

    A step is open until it is done or skipped with a note saying why. `mark-complete` is not
    listed (it is what the others wait for), nor a parent step (it is open through its children).
    """
    steps = list(steps)
    parents = {s.parent for s in steps if s.parent}
    return [
        s.id for s in steps if s.id != COMPLETE_STEP and s.id not in parents and not _settled(s)
    ]


# --- Showing it ----------------------------------------------------------------------------------


def table_rows(steps: Sequence[ChecklistStep], lang: str | None = None) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact: state per step, who and when (Copenhagen time); column
    names and words in the operator language; no borrower data."""
    from tasks.notify import scrub_personal_data

    columns = say("checklist.artifact_columns", lang).split("|")
    return [
        dict(
            zip(
                columns,
                (
                    s.id,
                    word("state", s.state.value, lang),
                    word("kind", s.kind.value, lang),
                    s.channel or "",
                    s.by or "",
                    when(s.at, lang),
                    s.how or "",
                    # Notes are free text: an address or number typed into one must not reach
                    # the UI.
                    scrub_personal_data(s.note or ""),
                    s.text,
                ),
                strict=True,
            )
        )
        for s in steps
    ]


def render_table(steps: Sequence[ChecklistStep], lang: str | None = None) -> str:
    """A plain-text table for the terminal: id, state, kind, who, when (Copenhagen), step text;
    headings and words in the operator language (default: the current one)."""
    header = tuple(say("checklist.columns", lang).split("|"))
    rows = [
        (
            ("  " if s.parent else "") + s.id,
            word("state", s.state.value, lang),
            word("kind", s.kind.value, lang),
            (say("checklist.off_by", lang) if s.how == OFF_HOW else s.by) or "",
            when(s.at, lang),
            s.text + (f" ({s.note})" if s.note and s.state is StepState.SKIPPED else ""),
        )
        for s in steps
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in (header, *rows)
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _make_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    # The flow, the CLI and a pause form may write at once: wait for the lock instead of failing.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        with suppress(Exception):  # in-memory databases cannot use WAL
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA busy_timeout=30000")

    return engine
