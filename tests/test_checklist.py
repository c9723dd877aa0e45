"""Checklist: steps derived from the card and the config, state persisted on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from tasks.checklist import (
    COMPLETE_STEP,
    Checklist,
    StepState,
    checklist_definitions,
    render_table,
    table_rows,
)
from tasks.config import CARDS_DIR, load_card, load_municipality
from tasks.errors import ConfigError
from tasks.models import MunicipalityConfig, StepKind, TaskCard

from .conftest import EXAMPLE_CONFIG

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LEAVES = [
    "plan",
    "inform.website",
    "inform.faq",
    "inform.newsletter",
    "inform.social_post",
    "inform.sms",
    "inform.poster.hovedbiblioteket",
    "inform.poster.soeby-bibliotek",
    "inform.info_screen",
    "inform.self_service",
]


def _config_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))


def _config(**changes: Any) -> MunicipalityConfig:
    """The example config with a unique slug (tests share a PostgreSQL database) and changes."""
    data = _config_data()
    data["municipality"]["slug"] = f"test-{uuid.uuid4().hex[:12]}"
    data.update(changes)
    return MunicipalityConfig.model_validate(data)


def _card(**changes: Any) -> TaskCard:
    data = yaml.safe_load((CARDS_DIR / "forbered-og-kommuniker-eksternt.yaml").read_text())
    data.update(changes)
    return TaskCard.model_validate(data)


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432/test not reachable ({type(exc).__name__})"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Checklist]]:
    """Opens a fresh Checklist instance on one database each call (to test persistence)."""
    if request.param == "postgresql":
        reason = _postgres_reachable()
        if reason:
            pytest.skip(reason)
        url = POSTGRES_URL
    else:
        url = f"sqlite:///{tmp_path / 'fbsflow.db'}"
    opened: list[Checklist] = []

    def open_checklist() -> Checklist:
        opened.append(Checklist(url))
        return opened[-1]

    yield open_checklist
    for checklist in opened:
        checklist.close()


@pytest.fixture
def checklist(opener: Callable[[], Checklist]) -> Iterator[Checklist]:
    yield opener()


@pytest.fixture
def config(checklist: Checklist) -> Iterator[MunicipalityConfig]:
    config = _config()
    yield config
    # Clean up the shared PostgreSQL database: every card this test may have touched.
    for card in (load_card("forbered-og-kommuniker-eksternt"), _other_card()):
        checklist.reset(config, card)


@pytest.fixture
def card() -> TaskCard:
    return load_card("forbered-og-kommuniker-eksternt")


def _other_card() -> TaskCard:
    return _card(
        id="kontakt-debitor",
        title="Aftal overdragelsen med debitorkontoret",
        method_steps=[
            {"id": "kontakt", "text": "Kontakt debitorkontoret i kommunen.", "kind": "manual"},
            {"id": "aftal-frister", "text": "Aftal frister for de første fordringer."},
            {"id": "mark-complete", "text": "Markér opgaven som fuldført."},
        ],
    )


def _done(checklist: Checklist, config: MunicipalityConfig, card: TaskCard, *ids: str) -> None:
    for step_id in ids:
        checklist.set_state(config, card, step_id, StepState.DONE, by="Projektleder", how="cli")


# --- Definitions -------------------------------------------------------------------------------


def test_definitions_expand_inform_per_enabled_channel_and_branch(card: TaskCard) -> None:
    steps = checklist_definitions(card, load_municipality(EXAMPLE_CONFIG))
    assert [s.id for s in steps] == [
        "plan",
        "inform",
        *LEAVES[1:],
        "mark-complete",
    ]
    by_id = {s.id: s for s in steps}
    assert by_id["plan"].text == "Læg en kommunikationsplan"
    assert by_id["inform"].text == card.method_steps[0].text  # the card's own Danish text
    assert by_id["mark-complete"].text == "Markér opgaven som fuldført."
    assert by_id["inform.website"].text == "Publicér nyheden på bibliotekets hjemmeside"
    assert by_id["inform.faq"].text == "Publicér spørgsmål og svar på hjemmesiden"
    assert by_id["inform.newsletter"].text == "Send nyhedsbrev til lånerne"
    assert by_id["inform.sms"].text == "Send sms til lånere i sms-ordningen"
    assert by_id["inform.poster.soeby-bibliotek"].text == "Hæng plakater op på Søby Bibliotek"
    assert by_id["inform.info_screen"].text == "Vis billedet på infoskærmene i filialerne"
    assert by_id["inform.social_post"].text == "Publicér opslaget på Facebook og Instagram"
    # The example config says cms: both.
    assert by_id["inform.self_service"].text == "Opdatér selvbetjeningssiderne i DPL CMS/DDB CMS"
    manual = {s.id for s in steps if s.kind is StepKind.MANUAL}
    assert manual == {
        "inform.website",
        "inform.faq",
        "inform.poster.hovedbiblioteket",
        "inform.poster.soeby-bibliotek",
        "inform.self_service",
        "inform.info_screen",
        "inform.social_post",
    }
    assert {s.parent for s in steps if s.id.startswith("inform.")} == {"inform"}
    assert by_id["inform.poster.hovedbiblioteket"].channel == "poster"
    assert by_id["plan"].parent is None and by_id["inform"].channel is None


def test_definitions_leave_out_absent_channels_and_keep_switched_off_ones() -> None:
    data = _config_data()
    data["channels"]["sms"].update(enabled=False, reason="Ingen sms-ordning")
    del data["channels"]["poster"]
    data["channels"]["self_service"]["cms"] = "dpl"
    config = MunicipalityConfig.model_validate(data)
    definitions = checklist_definitions(_card(), config)
    assert [s.id for s in definitions] == [
        "plan",
        "inform",
        "inform.website",
        "inform.faq",
        "inform.newsletter",
        "inform.social_post",
        "inform.sms",  # switched off: one step, with the config's reason
        "inform.info_screen",
        "inform.self_service",
        "mark-complete",
    ]
    sms = next(d for d in definitions if d.id == "inform.sms")
    assert sms.off_reason == "Ingen sms-ordning" and sms.text == "SMS (slået fra)"
    text = definitions[-2].text
    assert text == "Opdatér selvbetjeningssiderne i DPL CMS"


def test_another_card_keeps_its_own_steps(checklist: Checklist, config: MunicipalityConfig) -> None:
    other = _other_card()
    steps = checklist_definitions(other, config)
    # No `inform` step, so no channel sub-steps; the plan step comes first as for every card.
    assert [s.id for s in steps] == ["plan", "kontakt", "aftal-frister", "mark-complete"]
    assert (
        steps[1].kind is StepKind.MANUAL and steps[1].text == "Kontakt debitorkontoret i kommunen."
    )

    _done(checklist, config, other, "plan", "kontakt")
    assert checklist.complete(other, config) == (False, ["aftal-frister"])
    # State is kept per card: the main card's plan step is untouched.
    main = {
        s.id: s.state for s in checklist.steps(load_card("forbered-og-kommuniker-eksternt"), config)
    }
    assert main["plan"] is StepState.OPEN


def test_a_card_with_its_own_plan_step_keeps_it() -> None:
    card = _card(
        method_steps=[
            {
                "id": "plan",
                "text": "Lav en plan sammen med kommunikationsafdelingen.",
                "kind": "manual",
            },
            {"id": "mark-complete", "text": "Markér opgaven som fuldført."},
        ]
    )
    steps = checklist_definitions(card, _config())
    assert [(s.id, s.kind) for s in steps] == [
        ("plan", StepKind.MANUAL),
        ("mark-complete", StepKind.AUTOMATED),
    ]


# --- State -------------------------------------------------------------------------------------


def test_state_persists_across_instances(
    opener: Callable[[], Checklist], config: MunicipalityConfig, card: TaskCard
) -> None:
    first = opener()
    evidence = {
        "artifact": "eksempel-kommune-plan",
        "counts": {"sent": 1200, "failed": 3},
        "file": "outbox/eksempel-kommune/website/nyhed.html",
        "note": "Søby: 2 plakater",
    }
    first.set_state(
        config,
        card,
        "inform.newsletter",
        StepState.DONE,
        by="Projektleder",
        how="flow",
        evidence=evidence,
    )
    first.set_state(
        config,
        card,
        "inform.poster.soeby-bibliotek",
        "in_progress",
        by="Filialleder Åse",
        how="prefect-form",
        note="Plakater er printet",
    )
    first.close()

    steps = {s.id: s for s in opener().steps(card, config)}
    newsletter = steps["inform.newsletter"]
    assert newsletter.state is StepState.DONE
    assert (newsletter.by, newsletter.how) == ("Projektleder", "flow")
    assert newsletter.evidence == evidence
    assert newsletter.at is not None and newsletter.at.endswith("+00:00")
    poster = steps["inform.poster.soeby-bibliotek"]
    assert (poster.state, poster.by, poster.note) == (
        StepState.IN_PROGRESS,
        "Filialleder Åse",
        "Plakater er printet",
    )
    assert steps["inform.sms"].state is StepState.OPEN and steps["inform.sms"].by is None


def test_a_later_change_replaces_the_earlier_one(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    checklist.set_state(config, card, "inform.sms", "in_progress", by="A", how="flow")
    step = checklist.set_state(config, card, "inform.sms", "done", by="B", how="cli", note="ok")
    assert (step.state, step.by, step.how, step.note) == (StepState.DONE, "B", "cli", "ok")
    assert [s.state for s in checklist.steps(card, config) if s.id == "inform.sms"] == [
        StepState.DONE
    ]


def test_unknown_step_names_the_valid_ids(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    with pytest.raises(ConfigError) as caught:
        checklist.set_state(config, card, "inform.fax", "done", by="Projektleder", how="cli")
    assert "inform.fax" in str(caught.value)
    assert caught.value.problems == ["plan", "inform", *LEAVES[1:], "mark-complete"]


@pytest.mark.parametrize("note", [None, "", "   "])
def test_skip_needs_a_reason(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard, note: str | None
) -> None:
    with pytest.raises(ConfigError, match="reason"):
        checklist.set_state(
            config, card, "inform.sms", StepState.SKIPPED, by="PL", how="cli", note=note
        )
    assert {s.id: s.state for s in checklist.steps(card, config)}["inform.sms"] is StepState.OPEN


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"state": "finished"}, "not a step state"),
        ({"how": "email"}, "how='email'"),
        ({"by": "  "}, "who changed it"),
        ({"evidence": {"when": object()}}, "evidence must be JSON"),
    ],
)
def test_invalid_changes_are_config_errors(
    checklist: Checklist,
    config: MunicipalityConfig,
    card: TaskCard,
    kwargs: dict[str, Any],
    match: str,
) -> None:
    args: dict[str, Any] = {"state": "done", "by": "PL", "how": "cli", **kwargs}
    state = args.pop("state")
    with pytest.raises(ConfigError, match=match):
        checklist.set_state(config, card, "plan", state, **args)


def test_completeness_rules(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    assert checklist.complete(card, config) == (False, LEAVES)
    with pytest.raises(ConfigError, match="still open") as caught:
        checklist.set_state(config, card, COMPLETE_STEP, "done", by="PL", how="cli")
    assert caught.value.problems == LEAVES

    _done(checklist, config, card, *[i for i in LEAVES if i != "inform.sms"])
    checklist.set_state(config, card, "inform.sms", "in_progress", by="PL", how="flow")
    assert checklist.complete(card, config) == (False, ["inform.sms"])

    checklist.set_state(
        config,
        card,
        "inform.sms",
        "skipped",
        by="PL",
        how="cli",
        note="Kommunen har ingen sms-ordning",
    )
    # Complete although `mark-complete` itself is still open.
    assert checklist.complete(card, config) == (True, [])
    step = checklist.set_state(config, card, COMPLETE_STEP, "done", by="PL", how="flow")
    assert step.state is StepState.DONE


def test_parent_rolls_up_from_its_children(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    def inform() -> Any:
        return next(s for s in checklist.steps(card, config) if s.id == "inform")

    assert inform().state is StepState.OPEN
    checklist.set_state(config, card, "inform.website", "done", by="Webredaktør", how="cli")
    assert inform().state is StepState.IN_PROGRESS
    assert inform().note == "1 af 9 undertrin udført eller sprunget over"  # Danish by default
    _done(checklist, config, card, *[i for i in LEAVES[1:] if i != "inform.faq"])
    checklist.set_state(
        config,
        card,
        "inform.faq",
        "skipped",
        by="PL",
        how="cli",
        note="Spørgsmål og svar står i nyheden",
    )
    rolled = inform()
    assert rolled.state is StepState.DONE and rolled.at is not None
    # A parent follows its children and cannot be set directly.
    with pytest.raises(ConfigError, match="sub-steps") as caught:
        checklist.set_state(config, card, "inform", "done", by="PL", how="cli")
    assert "inform.sms" in caught.value.problems


def test_state_of_steps_no_longer_defined_is_ignored(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    checklist.set_state(config, card, "inform.sms", "in_progress", by="PL", how="flow")
    data = config.model_dump(mode="json")
    del data["channels"]["sms"]
    without_sms = MunicipalityConfig.model_validate(data)
    ids = [s.id for s in checklist.steps(card, without_sms)]
    assert "inform.sms" not in ids and ids[-1] == "mark-complete"


def test_a_switched_off_channel_stays_in_the_checklist_skipped_with_its_reason(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    # Recorded before the channel was switched off: the config's decision wins.
    checklist.set_state(config, card, "inform.sms", "in_progress", by="PL", how="flow")
    data = config.model_dump(mode="json")
    data["channels"]["sms"].update(enabled=False, reason="Kommunen har ingen sms-ordning")
    without_sms = MunicipalityConfig.model_validate(data)
    sms = next(s for s in checklist.steps(card, without_sms) if s.id == "inform.sms")
    assert (sms.state, sms.note, sms.parent) == (
        StepState.SKIPPED,
        "Kommunen har ingen sms-ordning",
        "inform",
    )
    assert "inform.sms" not in checklist.complete(card, without_sms)[1]
    table = render_table(checklist.steps(card, without_sms), "da")
    [line] = [line for line in table.splitlines() if line.startswith("  inform.sms ")]
    assert "sprunget over" in line and "Kommunen har ingen sms-ordning" in line
    assert "konfigurationen" in line
    # A person cannot confirm a step of a channel the config switched off.
    with pytest.raises(ConfigError, match="switched off in the config"):
        checklist.set_state(without_sms, card, "inform.sms", "done", by="PL", how="cli")


def test_reset_forgets_this_card_only(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    other = _other_card()
    _done(checklist, config, card, "plan")
    _done(checklist, config, other, "kontakt")
    assert checklist.reset(config, card) == 1
    assert all(s.state is StepState.OPEN for s in checklist.steps(card, config))
    assert {s.id: s.state for s in checklist.steps(other, config)}["kontakt"] is StepState.DONE


def test_open_uses_the_database_url_or_a_file_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, card: TaskCard
) -> None:
    monkeypatch.delenv("FBSFLOW_DATABASE_URL", raising=False)
    config = _config()
    with Checklist.open(tmp_path / "data") as checklist:
        _done(checklist, config, card, "plan")
    assert (tmp_path / "data" / "fbsflow.db").is_file()

    monkeypatch.setenv("FBSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Checklist.open(tmp_path / "data") as checklist:
        assert {s.id: s.state for s in checklist.steps(card, config)}["plan"] is StepState.OPEN
        assert "elsewhere" not in repr(checklist)
    assert (tmp_path / "elsewhere.db").is_file()


# --- Showing it --------------------------------------------------------------------------------


def test_render_table_and_rows(
    checklist: Checklist, config: MunicipalityConfig, card: TaskCard
) -> None:
    checklist.set_state(
        config,
        card,
        "inform.sms",
        "skipped",
        by="Projektleder",
        how="cli",
        note="Ingen sms-ordning; spørg leder@bibliotek.test eller 12 34 56 78",
    )
    _done(checklist, config, card, "plan")
    steps = checklist.steps(card, config)

    table = render_table(steps)  # Danish by default
    lines = table.splitlines()
    assert lines[0].split() == ["TRIN", "STATUS", "TYPE", "AF", "HVORNÅR", "TEKST"]
    assert len(lines) == 1 + len(steps)
    plan_line = next(line for line in lines if line.startswith("plan "))
    assert "udført" in plan_line and "Projektleder" in plan_line and " kl. " in plan_line
    assert "UTC" not in table
    assert "Hæng plakater op på Søby Bibliotek" in table
    assert any(line.startswith("  inform.sms ") and "sprunget over" in line for line in lines)
    english = render_table(steps, "en").splitlines()
    assert english[0].split() == ["STEP", "STATE", "KIND", "BY", "WHEN", "TEXT"]
    assert any(line.startswith("  inform.sms ") and "skipped" in line for line in english)

    rows = table_rows(steps)
    assert [r["trin"] for r in rows] == [s.id for s in steps]
    sms = next(r for r in rows if r["trin"] == "inform.sms")
    assert (sms["status"], sms["af"], sms["type"]) == (
        "sprunget over",
        "Projektleder",
        "automatisk",
    )
    assert "leder@bibliotek.test" not in sms["note"] and "12 34 56 78" not in sms["note"]
    assert sms["note"].startswith("Ingen sms-ordning")
    assert set(rows[0]) == {
        "trin", "status", "type", "kanal", "af", "tidspunkt", "hvordan", "note", "tekst"
    }  # fmt: skip
    assert set(table_rows(steps, "en")[0]) == {
        "step", "state", "kind", "channel", "by", "at", "how", "note", "text"
    }  # fmt: skip
