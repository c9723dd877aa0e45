"""Config and card loading: the seed card in correct Danish, and errors that name file, line, field and fix."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from tasks.config import MAX_DEPTH, load_card, load_municipality
from tasks.errors import ConfigError
from tasks.models import Channel

from .conftest import EXAMPLE_CONFIG


def test_seed_card_has_every_field_in_correct_danish() -> None:
    card = load_card("forbered-og-kommuniker-eksternt")
    assert card.title == "Forbered og kommunikér eksternt"
    assert card.sts_infrastructure is True
    assert [s.id for s in card.method_steps] == ["inform", "mark-complete"]
    assert card.method_steps[1].text == "Markér opgaven som fuldført."
    text = " ".join([card.goal, card.description, card.example, card.result])
    for word in ("Målet", "I får", "ændringer", "gæld", "løsning", "Københavns", "mellemværender"):
        assert word in text
    # The scan's broken letters must not survive the transcription.
    for broken in ("Mal ", "| far", "&ndringer", "lgsning", "Kgbenhavns", "geeld"):
        assert broken not in text
    assert len(card.links) == 3 and card.recommended_executor == "Projektleder"


def test_another_card_file_loads_the_same_way(tmp_path: Path) -> None:
    data = yaml.safe_load(
        (
            EXAMPLE_CONFIG.parent.parent / "cards" / "forbered-og-kommuniker-eksternt.yaml"
        ).read_text()
    )
    data.update(
        id="another-card",
        title="Et andet kort",
        method_steps=[{"id": "do-it", "text": "Gør det.", "kind": "manual"}],
    )
    path = tmp_path / "another-card.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    card = load_card(path)
    assert card.id == "another-card" and card.method_steps[0].kind == "manual"


def test_example_config_is_valid() -> None:
    config = load_municipality(EXAMPLE_CONFIG)
    assert config.municipality.slug == "eksempel-kommune"
    assert config.channels.enabled() == list(Channel)


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("go_live: 2026-12-14", "go_live: 14-12-2026", ["go_live", "YYYY-MM-DD", ":30:"]),
        ("  website:\n", "  webside:\n", ["channels.webside", "known: website"]),
        ("sender: EksBibl", "sender: EksempelBiblioteket", ["channels.sms.sender", "11"]),
        (
            "url: https://www.eksempel.dk/betalingsoverblik",
            "url: http://www.eksempel.dk/betalingsoverblik",
            ["decisions.new_debts.portal.url", "https"],
        ),
        (
            "payment_days: 30",
            "payment_days: 0",
            ["decisions.new_debts.payment_days", "greater than or equal to 1"],
        ),
        (
            "name: Eksempel Kommune\n",
            "name: Eksempel <b>Kommune</b>\n",
            ["municipality.name", "markup"],
        ),
        ("    until: 2027-03-31\n", "", ["decisions.old_debts", "until"]),
        # A header field with a line break would add headers of its own (Bcc) to every e-mail.
        (
            "from_name: Eksempel Bibliotekerne",
            'from_name: "Eksempel Bibliotekerne\\r\\nBcc: alle@example.test"',
            ["channels.newsletter.from_name", "carriage return", "one line", "remove line breaks"],
        ),
        (
            "from_name: Eksempel Bibliotekerne",
            'from_name: "Eksempel\\aBibliotekerne"',
            ["channels.newsletter.from_name", "U+0007", "control characters"],
        ),
        (
            "from_email: nyhedsbrev@bibliotek.eksempel.dk",
            'from_email: "nyhedsbrev@bibliotek.eksempel.dk\\nBcc: alle@example.test"',
            ["channels.newsletter.from_email", "line feed"],
        ),
        (
            "contact_email: soeby@bibliotek.eksempel.dk",
            'contact_email: "soeby@bibliotek.eksempel.dk\\r\\nBcc: alle@example.test"',
            ["library.branches.1.contact_email", "line feed"],
        ),
    ],
)
def test_bad_field_names_file_field_and_fix(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_municipality(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("municipality:\n  name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+"):
        load_municipality(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_municipality("/nonexistent/kommune.yaml")


# --- YAML a config never needs: refused as it is read, fast, with file, line, key and fix --------


def alias_bomb(levels: int) -> str:
    """`languages` as an alias of a list of lists of ... (10 ** levels "lol"s if expanded)."""
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]" for i in range(1, levels)]
    example = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert "languages: [da, en]" in example
    return (
        "\n".join(lines)
        + "\n"
        + example.replace("languages: [da, en]", f"languages: *x{levels - 1}")
    )


def test_an_alias_bomb_is_refused_in_well_under_a_second_with_little_memory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9), encoding="utf-8")  # took 88 s and 1.4 GB before
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as raised:
            load_municipality(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(raised.value) == (
        f"{path}:1: x0: YAML anchor &x0 is not allowed "
        "(fix: write the value out in full where it is used)"
    )
    assert elapsed < 1.0 and peak < 5 << 20, (elapsed, peak)


def test_an_alias_is_refused_where_it_is_used(tmp_path: Path) -> None:
    path = _broken(tmp_path, "go_live: 2026-12-14", "go_live: *day")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: go_live: YAML alias \*day "):
        load_municipality(path)


def test_a_duplicate_key_is_refused_instead_of_the_last_winning(tmp_path: Path) -> None:
    path = _broken(tmp_path, "go_live: 2026-12-14\n", "go_live: 2026-12-14\ngo_live: 2027-01-04\n")
    line = path.read_text(encoding="utf-8").splitlines().index("go_live: 2027-01-04") + 1
    with pytest.raises(ConfigError) as raised:
        load_municipality(path)
    assert str(raised.value) == (
        f"{path}:{line}: go_live: 'go_live' is given twice (first on line {line - 1}) "
        "(fix: keep one of the two and delete the other)"
    )


def test_a_duplicate_key_deeper_down_names_its_whole_field(tmp_path: Path) -> None:
    path = _broken(tmp_path, "    sender: EksBibl\n", "    sender: EksBibl\n    sender: Bibl\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: channels\.sms\.sender: 'sender' "):
        load_municipality(path)


@pytest.mark.parametrize(
    "nesting",
    [
        "go_live: " + "[" * 100_000 + "]" * 100_000,  # gave RecursionError
        "go_live: " + "{a: " * 100_000 + "1" + "}" * 100_000,
        "go_live:\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 2_000)) + "  " * 2_000 + "x",
    ],
    ids=["flow list", "flow mapping", "block mapping"],
)
def test_deep_nesting_is_refused_with_a_message_not_a_traceback(
    tmp_path: Path, nesting: str
) -> None:
    path = _broken(tmp_path, "go_live: 2026-12-14", nesting)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as raised:
        load_municipality(path)
    # Refused as it is read, not after parsing 100,000 levels: well under 10 s even on a busy
    # machine (it takes milliseconds; the limit only catches a parser that walks it all).
    assert time.perf_counter() - started < 10.0
    message = str(raised.value)
    assert re.fullmatch(
        rf"{re.escape(str(path))}:\d+: go_live\.\S+: nested more than {MAX_DEPTH} levels deep "
        r"\(fix: .*\)",
        message,
    ), message


def test_the_nesting_a_config_needs_is_allowed(tmp_path: Path) -> None:
    path = _broken(
        tmp_path, "languages: [da, en]", "languages: [da, en]\nx: " + "[" * 30 + "]" * 30
    )
    # Read, then refused by the model as an unknown field: the depth itself was fine.
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: x: Extra inputs"):
        load_municipality(path)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("go_live: 2026-12-14", "go_live: 2026-02-30", "go_live"),
        ("until: 2027-03-31", "until: 2027-02-29", "decisions.old_debts.until"),
        ("go_live: 2026-12-14", "go_live: 2026-13-01", "go_live"),
    ],
)
def test_an_impossible_date_names_file_line_field_and_fix(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    path = _broken(tmp_path, old, new)
    line = [s.strip() for s in path.read_text(encoding="utf-8").splitlines()].index(new) + 1
    with pytest.raises(ConfigError) as raised:
        load_municipality(path)
    [problem] = raised.value.problems
    assert problem.startswith(f"{path}:{line}: {field}: Input should be a valid date")
    assert problem.endswith(
        "(fix: write a date that exists, as YYYY-MM-DD (February has 28 days, 29 in a leap year))"
    )
