"""The FBSFLOW_SPEED_<NAME> switches: on unless turned off, one by one or all at once."""

from __future__ import annotations

import pytest

from tasks.errors import ConfigError
from tasks.speed.switches import enabled, switches


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*switches(), "ALL"]:
        monkeypatch.delenv(f"FBSFLOW_SPEED_{name}", raising=False)


@pytest.mark.parametrize(
    ("value", "on"),
    [(None, True), ("", True), ("1", True), ("yes", True), ("0", False), (" Off ", False)],
)
def test_a_switch_is_on_unless_it_says_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool
) -> None:
    if value is not None:
        monkeypatch.setenv("FBSFLOW_SPEED_GC", value)
    assert enabled("GC") is on
    assert enabled("PREFETCH")  # the others are not touched


def test_all_off_turns_every_trick_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_SPEED_ALL", "0")
    assert not any(enabled(name) for name in switches())


def test_a_typo_is_a_config_error_and_an_unknown_trick_a_bug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FBSFLOW_SPEED_GC", "nope")
    with pytest.raises(ConfigError, match="FBSFLOW_SPEED_GC='nope' is not true/false"):
        enabled("GC")
    with pytest.raises(KeyError, match="no speed switch 'TURBO'"):
        enabled("TURBO")


def test_every_trick_has_its_switch() -> None:
    assert set(switches()) >= {"FORK_IMPORT", "PREFETCH", "GC", "KEEPALIVE", "LEDGER_SQL"}
