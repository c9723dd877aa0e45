"""`fbsflow receipts import`, `receipts not-reached`, `suppressions` and the checklist's line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from flows.cli import main as fbsflow
from tasks.audience import import_audience
from tasks.config import load_municipality
from tasks.ledger import Ledger
from tasks.plan import campaign_id
from tasks.steps import data_dir
from tests.conftest import EXAMPLE_AUDIENCE
from tests.test_ledger_flow import municipality  # noqa: F401

from .support import events, send


def test_imported_bounces_give_a_private_not_reached_list_and_the_checklist_line(
    municipality: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FBSFLOW_LEDGER_KEY", "a-ledger-key-for-the-command-tests-01")
    config = load_municipality(municipality)
    campaign = campaign_id(config)
    audience = import_audience(EXAMPLE_AUDIENCE)
    emails = [b.email for b in audience.recipients("newsletter")]
    with Ledger.open(data_dir(municipality)) as ledger:
        send(ledger, "newsletter", emails, campaign=campaign)
    # A download without fbsflow's custom args: matched by keying each address.
    file = tmp_path / "events.json"
    bounced = emails[:3]
    file.write_text(
        "\n".join(json.dumps(e) for e in events(bounced, None, "bounce", campaign=campaign))
    )
    assert fbsflow(["receipts", "import", str(municipality), str(file)]) == 0
    said = capsys.readouterr().out
    assert "3 hændelser" in said and "3 nye på spærrelisten" in said
    assert "@" not in said
    # Imported again: nothing new.
    assert fbsflow(["receipts", "import", str(municipality), str(file)]) == 0
    assert "3 set før" in capsys.readouterr().out

    target = tmp_path / "ikke-naaet.csv"
    audience_arg = ["--audience", str(EXAMPLE_AUDIENCE), "--output", str(target)]
    assert fbsflow(["receipts", "not-reached", str(municipality), *audience_arg]) == 0
    said = capsys.readouterr().out
    assert "3 ikke nåede" in said and "@" not in said
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "kanal;udfald;række;adresse"
    assert sorted(line.split(";")[3] for line in lines[1:]) == sorted(bounced)

    fbsflow(["checklist", str(municipality)])
    assert "ikke nået: 3" in capsys.readouterr().out

    assert fbsflow(["suppressions", str(municipality), "--lift", bounced[0].upper()]) == 0
    said = capsys.readouterr().out
    assert "taget af spærrelisten" in said and "bounced        2" in said


def test_a_file_that_is_not_events_is_refused_with_its_line(
    municipality: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FBSFLOW_LEDGER_KEY", "a-ledger-key-for-the-command-tests-01")
    file = tmp_path / "events.json"
    file.write_text('{"event": "bounce"}\n{not json\n')
    assert fbsflow(["receipts", "import", str(municipality), str(file)]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and "line" in err and "Traceback" not in err
