"""The card's work as Prefect tasks: plan, publish or deliver per channel, and the completion record.

Each task wraps plain functions from the other modules, so the work is testable without Prefect
(`.fn()`), while Prefect adds retries, visibility and artifacts. Tasks that take large inputs use
NO_CACHE: hashing a million recipients for a cache key would cost more than the work.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.approval import request_approval, request_confirmations
from tasks.audience import Audience, import_audience
from tasks.channels import borrower_channels, render_channel, spec
from tasks.checklist import (
    COMPLETE_STEP,
    PLAN_STEP,
    Checklist,
    ChecklistStep,
    StepState,
    checklist_definitions,
    open_steps,
    table_rows,
)
from tasks.checklist import DB_FILE_NAME as CHECKLIST_FILE
from tasks.config import load_card, load_municipality
from tasks.errors import ConfigError
from tasks.gallery import build_gallery, gallery_markdown
from tasks.ledger import DB_FILE_NAME as LEDGER_FILE
from tasks.ledger import KEY_FILE_NAME, DeliveryState
from tasks.models import (
    Approval,
    Channel,
    ChannelStatus,
    MunicipalityConfig,
    StepKind,
    TaskCard,
)
from tasks.output import OutputFolder
from tasks.plan import Plan, PlannedChannel, campaign_id, channel_day
from tasks.render import ChannelContent
from tasks.review import Reach, reach_line, review_markdown
from tasks.settings import prefect_server, settings, variable
from tasks.speed.prefetch import audience_source, take_prefetched

# Channels that reach named borrowers through a provider; the rest produce files for publishing.
DELIVERED = borrower_channels()


@dataclass
class ChannelOutcome:
    """What happened on one channel, for the completion record (counts only, no personal data)."""

    channel: Channel
    status: ChannelStatus
    provider: str = "files"
    files: list[str] = field(default_factory=list)
    # Recipients per ledger state (DeliveryState: pending, sending, sent, failed, unknown);
    # empty for a channel without recipients.
    counts: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    excluded: dict[str, int] = field(default_factory=dict)  # left out and why (counts only)

    def __setattr__(self, name: str, value: Any) -> None:
        # Every status set, here or by a caller later, is one of the closed set: a word outside
        # it fails where it is written, not where a reader no longer recognises it.
        if name == "status":
            value = ChannelStatus(value)
        super().__setattr__(name, value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "provider": self.provider,
            "files": self.files,
            "counts": self.counts,
            "excluded": self.excluded,
            "detail": self.detail,
        }


def _artifact_key(config: MunicipalityConfig, what: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return f"{config.municipality.slug}-{what}".replace("_", "-")


@task(name="load-config", cache_policy=NO_CACHE)
def load_config(config_path: str) -> tuple[MunicipalityConfig, TaskCard]:
    config = load_municipality(config_path)
    return config, load_card(config.card)


@task(name="import-audience", cache_policy=NO_CACHE)
def import_borrowers(
    config: MunicipalityConfig, config_path: str, audience_path: str | None, out: OutputFolder
) -> Audience | None:
    """Read the borrower export; the report (rows, fields, reasons: no personal data) goes to the output."""
    source = audience_source(config, config_path, audience_path)
    if source is None:
        return None
    taken = take_prefetched(config, *source)
    if taken is None:
        audience = import_audience(
            source[0], columns=config.audience.columns, suppression=source[1]
        )
    else:
        audience, processes = taken
        how = " by two processes" if processes == 2 else ""
        get_run_logger().info(f"Borrower file read{how} while Prefect was starting; not read again")
    audience.report.write(out.staging)
    counts = audience.report.counts
    create_table_artifact(
        key=_artifact_key(config, "import-report"),
        table=[{"outcome": k, "rows": v} for k, v in sorted(counts.items())]
        + [
            {"outcome": f"row {i['row']}: {i['field']}", "rows": i["reason"]}
            for i in audience.report.table()[:200]
        ],
        description="Borrower import: counts per outcome and the first 200 problems (row, field, reason).",
    )
    return audience


@task(name="render-content", cache_policy=NO_CACHE, retries=0)
def render_content(config: MunicipalityConfig) -> dict[Channel, ChannelContent]:
    return {channel: render_channel(channel, config) for channel in config.channels.enabled()}


def recipient_count(
    audience: Audience | None, channel: Channel
) -> tuple[int | None, dict[str, int]]:
    if audience is None or channel not in DELIVERED:
        return None, {}
    return len(audience.recipients(channel.value)), audience.exclusions(channel.value)


def build_plan(
    config: MunicipalityConfig,
    card: TaskCard,
    contents: dict[Channel, ChannelContent],
    audience: Audience | None,
) -> Plan:
    """Who hears what, when, through which channel, and who is responsible."""
    planned = []
    for channel, content in contents.items():
        recipients, excluded = recipient_count(audience, channel)
        planned.append(
            PlannedChannel(
                channel=channel,
                day=channel_day(config, channel),
                responsible=config.channels.settings(channel).responsible,
                audience=spec(channel).audience_label(config),
                key_message=content.key_message,
                recipients=recipients,
                excluded=excluded,
                metrics={lang.value: m for lang, m in content.metrics.items()},
            )
        )
    return Plan(card=card, config=config, campaign=campaign_id(config), channels=planned)


@task(name="plan", cache_policy=NO_CACHE)
def make_plan(
    config: MunicipalityConfig,
    card: TaskCard,
    contents: dict[Channel, ChannelContent],
    audience: Audience | None,
    out: OutputFolder,
) -> Plan:
    """The card's first step: the plan, as plan.md and as Prefect artifacts."""
    plan = build_plan(config, card, contents, audience)
    markdown = plan.to_markdown()
    out.write("plan.md", markdown)
    create_markdown_artifact(
        key=_artifact_key(config, "plan"), markdown=markdown, description="Communication plan"
    )
    sms = [
        {
            "language": lang,
            "characters": m.get("characters"),
            "parts": m.get("parts"),
            "lix": m.get("lix"),
            "billed_parts": p.billed_parts if lang == "da" else None,
        }
        for p in plan.channels
        if spec(p.channel).billed_per_part
        for lang, m in p.metrics.items()
    ]
    if sms:
        create_table_artifact(
            key=_artifact_key(config, "sms"), table=sms, description="SMS: parts and LIX"
        )
    return plan


@task(name="publish-files", cache_policy=NO_CACHE)
def publish_files(content: ChannelContent, out: OutputFolder) -> ChannelOutcome:
    """Channels without recipients (website, FAQ, poster, self-service): ready-to-publish files."""
    written = []
    for relative, data in content.files.items():
        out.write(f"{content.channel.value}/{relative}", data)
        written.append(f"{content.channel.value}/{relative}")
    return ChannelOutcome(content.channel, ChannelStatus.DONE, files=sorted(written))


def triggered_by() -> str:
    """Who started the run, for the completion record: the OS user, unless the caller says."""
    if name := settings().triggered_by:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return "unknown"


STATE_DIR_NAME = ".fbsflow"


def data_dir(config_path: str | Path) -> Path:
    """Where the ledger, its key and the checklist live (absolute): env FBSFLOW_DATA_DIR, else
    `.fbsflow/` beside the municipality's config file.

    Never relative to the working directory: the ledger's key lives here (also with
    FBSFLOW_DATABASE_URL, unless FBSFLOW_LEDGER_KEY is set), and a run from another directory
    once made a new key there and sent the whole campaign again. Resolve it once per run.
    """
    if configured := settings().data_dir:
        return configured.expanduser().resolve()
    anchored = Path(config_path).resolve().parent / STATE_DIR_NAME
    _refuse_a_state_left_behind(anchored)
    return anchored


def _refuse_a_state_left_behind(anchored: Path) -> None:
    """ConfigError while `.fbsflow/` of the working directory (where fbsflow kept its ledger
    before it lived beside the config) holds a ledger and `anchored` holds none: a new, empty
    ledger there would send to everyone again."""
    names = (LEDGER_FILE, KEY_FILE_NAME, CHECKLIST_FILE)
    try:
        earlier = Path.cwd() / STATE_DIR_NAME
    except OSError:  # the working directory was removed: nothing can be left there
        return
    if earlier.resolve() == anchored or any((anchored / n).exists() for n in names):
        return
    if any((earlier / n).exists() for n in names):
        raise ConfigError(
            f"{earlier} holds the ledger and checklist of an earlier fbsflow, which kept them in "
            f"the directory it ran from; they now live beside the config, in {anchored}. Fix: "
            f"move them there (mv {earlier} {anchored}), or set {variable('data_dir')}={earlier}"
        )


# The flow imports "is there a Prefect server?" from here under this name; the answer is
# tasks.settings.prefect_server (a URL, or None).
server_mode = prefect_server


@task(name="previews", cache_policy=NO_CACHE)
def write_previews(
    config: MunicipalityConfig, contents: dict[Channel, ChannelContent], out: OutputFolder
) -> Path:
    """One gallery page with every channel's output, and a markdown preview artifact."""
    title = f"{config.municipality.name}: previews before approval"
    path = out.write("gallery.html", build_gallery(contents, title=title))
    create_markdown_artifact(
        key=_artifact_key(config, "previews"),
        markdown=gallery_markdown(contents),
        description="Previews of every channel: key message, LIX, SMS text and parts",
    )
    return path


def reach_of(
    config: MunicipalityConfig, contents: dict[Channel, ChannelContent], audience: Audience | None
) -> dict[Channel, Reach]:
    """How many each sending channel reaches: borrowers per channel, or the branches (counts)."""
    reach: dict[Channel, Reach] = {}
    for channel in contents:
        if spec(channel).reaches_branches:
            with_email = [b for b in config.library.branches if b.contact_email]
            reach[channel] = Reach(len(with_email), who="filialer (e-mail med plakaterne)")
            continue
        recipients, excluded = recipient_count(audience, channel)
        if recipients is not None:
            reach[channel] = Reach(recipients, sum(excluded.values()))
    return reach


@task(name="review", cache_policy=NO_CACHE)
def publish_review(
    config: MunicipalityConfig,
    contents: dict[Channel, ChannelContent],
    audience: Audience | None,
) -> tuple[str, list[str]]:
    """The approval artifact: every message as it goes out, per channel and language, and the
    recipients per channel. Returns (a markdown link to it in Prefect's UI, or its key; the
    recipient lines)."""
    from prefect.settings import PREFECT_UI_URL

    reach = reach_of(config, contents, audience)
    key = _artifact_key(config, "review")
    artifact_id = create_markdown_artifact(
        key=key,
        markdown=review_markdown(config, contents, reach),
        description="Gennemsyn før godkendelse: alle beskeder, som de sendes, og antal modtagere",
    )
    counts = [line for c in Channel if c in contents and (line := reach_line(c, reach.get(c)))]
    ui = PREFECT_UI_URL.value()
    link = (
        f"[Læs alle beskeder i gennemsynet]({ui.rstrip('/')}/artifacts/artifact/{artifact_id})"
        if ui
        else f"Læs alle beskeder i artefaktet `{key}` under kørslens *Artifacts*."
    )
    return link, counts


def obtain_approval(
    approve: bool,
    sends: bool,
    out: OutputFolder,
    *,
    approved_by: str | None = None,
    review: tuple[str, list[str]] | None = None,
) -> Approval:
    """Approval before anything leaves: up front, by a pause form, or not at all.

    Against a Prefect server, `approve` alone does not skip the form: a run started from the UI
    with the switch on would send with nobody named. Up front it approves only with a name
    (`approved_by`; the CLI gives the user at the terminal who typed --approve).
    """
    name = (approved_by or "").strip()
    if approve and (name or not prefect_server()):
        return Approval.by_parameter(name or triggered_by())
    if sends and prefect_server():
        if approve:
            get_run_logger().warning(
                "approve er slået til uden et navn i approved_by: godkendelsesformularen vises"
            )
        link, counts = review or ("", [])
        previews = (
            f"{link}\n\n"
            f"Mens kørslen venter, ligger alle forhåndsvisninger i "
            f"`{out.staging.resolve()}/gallery.html`; bagefter i "
            f"`{out.final.resolve()}/gallery.html`.\n"
        )
        return request_approval(
            previews=previews, counts=counts, timeout_seconds=settings().approval_timeout
        )
    return Approval.not_given()


def open_manual_steps(
    config: MunicipalityConfig, card: TaskCard, data: Path
) -> list[ChecklistStep]:
    """The manual steps still open (e.g. posters up in a branch), in working order."""
    with Checklist.open(data) as checklist:
        steps = checklist.steps(card, config)
    still_open = set(open_steps(steps))
    return [s for s in steps if s.kind is StepKind.MANUAL and s.id in still_open]


def ask_for_confirmations(
    config: MunicipalityConfig, card: TaskCard, data: Path, *, intro: str = ""
) -> list[ChecklistStep]:
    """One pause form with a checkbox per open manual step, a name and a note; records each
    ticked step as typed (by, note) and returns the steps recorded. `data` is the run's
    `data_dir`. A form nobody answers in time records nothing: confirmations can come later
    (the confirm-steps deployment, `fbsflow done`)."""
    from prefect.exceptions import FlowPauseTimeout

    steps = open_manual_steps(config, card, data)
    if not steps:
        return []
    try:
        answers = request_confirmations(
            [(s.id, s.text) for s in steps],
            intro=intro,
            timeout_seconds=settings().approval_timeout,
        )
    except FlowPauseTimeout:
        get_run_logger().warning("Ingen bekræftede trinnene i tide; de forbliver åbne")
        return []
    if not answers:
        return []
    by, note = answers[0].by, answers[0].note
    return record_confirmations(
        config, card, data, [a.step for a in answers], by=by, note=note, how="prefect-form"
    )


def record_confirmations(
    config: MunicipalityConfig,
    card: TaskCard,
    data: Path,
    step_ids: Sequence[str],
    *,
    by: str,
    note: str | None,
    how: str,
    skip: bool = False,
) -> list[ChecklistStep]:
    """Record `step_ids` done (or skipped) by `by` with `note`, as typed; marks the card
    complete when nothing else is open. Raises ConfigError for an unknown step or no name."""
    state = StepState.SKIPPED if skip else StepState.DONE
    known = {d.id for d in checklist_definitions(card, config)}
    if unknown := [s for s in step_ids if s not in known]:
        # Checked before any is recorded: a typo in the third id leaves the first two as they were.
        raise ConfigError(
            f"card '{card.id}' for {config.municipality.slug} has no step "
            f"{', '.join(repr(s) for s in unknown)} (fix: use the ids `fbsflow checklist` shows)"
        )
    with Checklist.open(data) as checklist:
        recorded = [
            checklist.set_state(config, card, step_id, state, by=by, how=how, note=note)
            for step_id in step_ids
        ]
        complete, _open = checklist.complete(card, config)
        if complete:
            checklist.set_state(config, card, COMPLETE_STEP, StepState.DONE, by=by.strip(), how=how)
    return recorded


def completion_reasons(channels: dict[str, dict[str, Any]], awaiting: Sequence[str]) -> list[str]:
    """Why a card is not complete: each channel not done, each step still open."""
    return [
        f"{name}: {c['status']}" + (f" ({c['detail']})" if c.get("detail") else "")
        for name, c in channels.items()
        if c["status"] != ChannelStatus.DONE.value
    ] + [f"trin {s} er ikke bekræftet: afventer bekræftelse" for s in awaiting]


def steps_record(checklist: Sequence[ChecklistStep]) -> dict[str, dict[str, Any]]:
    return {
        s.id: {"state": s.state.value, "by": s.by, "at": s.at, "how": s.how, "note": s.note}
        for s in checklist
    }


def refresh_completion(
    config: MunicipalityConfig, card: TaskCard, output_root: str | Path, data: Path
) -> dict[str, Any] | None:
    """Bring `completion.json` up to date with the checklist after confirmations, without a new
    card run: the steps as recorded, what is still open, complete or not. None when the card has
    not run yet for this output root (nothing to update; the checklist has the confirmations)."""
    path = Path(output_root) / config.municipality.slug / "completion.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    with Checklist.open(data) as checklist:
        steps = checklist.steps(card, config)
    awaiting = open_steps(steps)
    reasons = completion_reasons(record.get("channels", {}), awaiting)
    record.update(
        status="complete" if not reasons else "incomplete",
        reasons=reasons,
        awaiting_confirmation=awaiting,
        steps=steps_record(steps),
        updated_at=datetime.now(UTC).isoformat(),
    )
    # Written beside it and renamed: a reader never sees half a record.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return record


@task(name="checklist", cache_policy=NO_CACHE)
def record_checklist(
    config: MunicipalityConfig,
    card: TaskCard,
    outcomes: Sequence[ChannelOutcome],
    approval: Approval,
    confirmations: Sequence[str],
    confirmed_by: str,
    data: Path,
    note: str | None = None,
) -> list[ChecklistStep]:
    """Store what this run did: automated steps from outcomes, manual ones from confirmations.

    `data` is the run's `data_dir`.
    """
    with Checklist.open(data) as checklist:
        definitions = checklist_definitions(card, config)
        by_channel = {o.channel.value: o for o in outcomes}
        checklist.set_state(
            config,
            card,
            PLAN_STEP,
            StepState.DONE,
            by="fbsflow",
            how="flow",
            evidence={"artifact": _artifact_key(config, "plan")},
        )
        for d in definitions:
            if d.kind is not StepKind.AUTOMATED or d.channel not in by_channel:
                continue
            outcome = by_channel[d.channel]
            done = outcome.status is ChannelStatus.DONE
            state = StepState.DONE if done else StepState.IN_PROGRESS
            checklist.set_state(
                config,
                card,
                d.id,
                state,
                by=approval.by or "fbsflow",
                how="flow",
                note=outcome.detail or None,
                evidence={"counts": outcome.counts},
            )
        for step_id in confirmations:
            checklist.set_state(
                config, card, step_id, StepState.DONE, by=confirmed_by, how="parameter", note=note
            )
        complete, _open = checklist.complete(card, config)
        if complete:
            checklist.set_state(
                config, card, COMPLETE_STEP, StepState.DONE, by=confirmed_by, how="flow"
            )
        steps = checklist.steps(card, config)
    create_table_artifact(
        key=_artifact_key(config, "checklist"),
        table=table_rows(steps),
        description=f"Checklist: {card.title}",
    )
    return steps


@task(name="mark-complete", cache_policy=NO_CACHE)
def mark_complete(
    config: MunicipalityConfig,
    card: TaskCard,
    plan: Plan,
    outcomes: Sequence[ChannelOutcome],
    out: OutputFolder,
    *,
    started_at: datetime,
    triggered: str,
    approval: Approval,
    flow_run_id: str | None,
    checklist: Sequence[ChecklistStep],
) -> dict[str, Any]:
    """The card's last step: complete only when every channel is done and every step settled."""
    awaiting = open_steps(checklist)
    channels = {o.channel.value: o.as_dict() for o in outcomes}
    reasons = completion_reasons(channels, awaiting)
    record = {
        "card_id": card.id,
        "card_title": card.title,
        "municipality": config.municipality.name,
        "municipality_slug": config.municipality.slug,
        "campaign": plan.campaign,
        "status": "complete" if not reasons else "incomplete",
        "reasons": reasons,
        "awaiting_confirmation": awaiting,
        "steps": steps_record(checklist),
        "channels": channels,
        "approval": approval.record(),
        "triggered_by": triggered,
        "flow_run_id": flow_run_id,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
    }
    out.write_json("completion.json", record)
    rows = [
        {
            "channel": o.channel.value,
            "status": o.status.value,
            "provider": o.provider,
            **{state.value: o.counts.get(state, 0) for state in DeliveryState},
        }
        for o in outcomes
    ]
    create_table_artifact(
        key=_artifact_key(config, "delivery"),
        table=rows,
        description=f"Card '{card.title}': {record['status']} (counts only, no personal data)",
    )
    logger = get_run_logger()
    logger.info("Card %s for %s: %s", card.id, config.municipality.slug, record["status"])
    return record


def require_file(path: str | None, what: str) -> None:
    """Fail before any work starts when a named input file is missing."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{path}: {what} not found (fix: check the path)")


def open_steps_of(config: MunicipalityConfig, card: TaskCard, data: Path) -> list[str]:
    """The ids of the card's steps still open for this municipality (`open_steps`)."""
    with Checklist.open(data) as checklist:
        return open_steps(checklist.steps(card, config))


def check_inputs(config_path: str, audience_path: str | None) -> None:
    """Raise ConfigError, naming the file and the fix, for a config that does not load or a
    borrower file that is not there; what a run would find first, found before its tasks."""
    from tasks.speed.prefetch import audience_source

    config = load_municipality(config_path)
    load_card(config.card)
    source = audience_source(config, config_path, audience_path)
    if source is not None:
        require_file(str(source[0]), "audience file")
