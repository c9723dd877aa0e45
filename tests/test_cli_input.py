"""`fbsflow` refuses broken input with exit code 2 and one message, before anything is sent: a
borrower export with a stray quote, and YAML that a config never needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import cli
from tests.audience.test_audience import export_with_stray_quote
from tests.support.e2e import clean_env
from tests.test_config import alias_bomb

from .conftest import EXAMPLE_CONFIG, ROOT

_EXAMPLE = EXAMPLE_CONFIG.read_text(encoding="utf-8")
_GO_LIVE = "go_live: 2026-12-14\n"
assert _GO_LIVE in _EXAMPLE

# What each config does wrong, its text, and what the message must name: line, key, fix.
_BROKEN = {
    "alias bomb": (alias_bomb(9), ":1: x0: YAML anchor &x0 is not allowed", "write the value out"),
    "duplicate key": (
        _EXAMPLE.replace(_GO_LIVE, _GO_LIVE + "go_live: 2027-01-04\n"),
        f":{_EXAMPLE[: _EXAMPLE.index(_GO_LIVE)].count(chr(10)) + 2}: go_live: 'go_live' is "
        "given twice",
        "keep one of the two",
    ),
    "deep nesting": (
        _EXAMPLE.replace(_GO_LIVE, "go_live: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        f":{_EXAMPLE[: _EXAMPLE.index(_GO_LIVE)].count(chr(10)) + 1}: go_live.0.0.0.0.0.…: "
        "nested more than 32 levels deep",
        "a config nests a few levels at most",
    ),
    "impossible date": (
        _EXAMPLE.replace(_GO_LIVE, "go_live: 2026-02-30\n"),
        f":{_EXAMPLE[: _EXAMPLE.index(_GO_LIVE)].count(chr(10)) + 1}: go_live: Input should be "
        "a valid date",
        "write a date that exists",
    ),
}


def fbsflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, as a program of its own."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("case", list(_BROKEN))
def test_check_refuses_yaml_a_config_never_needs_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, names, fix = _BROKEN[case]
    path = tmp_path / "kommune.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli.main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: {path}")
    assert f"{path}{names}" in err and f"(fix: {fix}" in err
    assert "Traceback" not in err and len(err) < 1000


def test_check_as_a_program_prints_no_traceback_for_deep_nesting(tmp_path: Path) -> None:
    """As the user runs it: this one was a RecursionError's traceback."""
    path = tmp_path / "kommune.yaml"
    path.write_text(_BROKEN["deep nesting"][0], encoding="utf-8")
    done = fbsflow("check", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "nested more than 32 levels" in done.stderr
    assert "Traceback" not in done.stderr


def test_plan_stops_at_a_stray_quote_naming_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audience = export_with_stray_quote(tmp_path, 1001, bad_row=2)
    assert cli.main(["plan", str(EXAMPLE_CONFIG), "--audience", str(audience)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {audience}: row 2: a quoted value is not closed in this row")
    assert "close the quote in row 2 or remove it" in err


@pytest.mark.slow
def test_run_stops_at_a_stray_quote_in_row_2_and_sends_nobody(tmp_path: Path) -> None:
    """The fixed point, as a user runs it: never 0 recipients and exit 0 when 1,000 rows follow
    a stray quote in row 2."""
    audience = export_with_stray_quote(tmp_path, 1001, bad_row=2)
    out = tmp_path / "outbox"
    env = clean_env(FBSFLOW_DATA_DIR=str(tmp_path / "data"), PREFECT_HOME=str(tmp_path / "home"))
    args = ["run", str(EXAMPLE_CONFIG), "--audience", str(audience), "--approve"]
    done = fbsflow(*args, "--output", str(out), env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: {audience}: row 2: a quoted value is not closed"), error
    assert "close the quote in row 2 or remove it" in error
    assert not any(out.rglob("completion.json")), "nothing may be recorded as done"
    assert "sent" not in done.stdout
    ledger = fbsflow("ledger", str(EXAMPLE_CONFIG), env=env)
    assert ledger.returncode == 0, ledger.stderr
    counts = [line.split()[1:] for line in ledger.stdout.splitlines()[1:]]
    assert counts and all(n == "0" for line in counts for n in line[1::2]), ledger.stdout
