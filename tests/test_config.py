"""Config and card loading: the seed card in correct Danish, and errors that name file, line, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.config import load_card, load_municipality
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
            ["payment.self_service.url", "https"],
        ),
        (
            "payment_days: 30",
            "payment_days: 0",
            ["payment.invoices.payment_days", "greater than or equal to 1"],
        ),
        (
            "name: Eksempel Kommune\n",
            "name: Eksempel <b>Kommune</b>\n",
            ["municipality.name", "markup"],
        ),
        ("    until: 2027-03-31\n", "", ["payment.old_debts", "until"]),
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
