"""The `fbsflow` command as a user runs it: clear errors, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLE_CONFIG


def fbsflow(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_check_accepts_the_example() -> None:
    result = fbsflow("check", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stderr
    assert "Eksempel Kommune" in result.stdout


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("go_live: 2026-12-14", "go_live: 14/12/2026", "go_live"),
        ("  sms:\n", "  sms_besked:\n", "channels.sms_besked"),
        ("payment_days: 30", "payment_days: tredive", "decisions.new_debts.payment_days"),
    ],
)
def test_check_names_file_and_field_without_traceback(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    path = tmp_path / "kommune.yaml"
    path.write_text(
        EXAMPLE_CONFIG.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8"
    )
    result = fbsflow("check", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and field in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_run_with_a_missing_audience_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = fbsflow(
        "run",
        str(EXAMPLE_CONFIG),
        "--audience",
        str(tmp_path / "nope.csv"),
        "--approve",
        "--output",
        str(tmp_path / "outbox"),
    )
    assert result.returncode == 2
    assert "nope.csv" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outbox").exists()


def test_malformed_yaml_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "kommune.yaml"
    path.write_text("municipality: {name: [\n", encoding="utf-8")
    result = fbsflow("plan", str(path))
    assert result.returncode == 2 and "kommune.yaml" in result.stderr
    assert "Traceback" not in result.stderr
