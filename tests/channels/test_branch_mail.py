"""The e-mail that takes the posters to the branches: it names what it carries, greets the
branches it goes to and is signed by the project leader (or the library), never "Filialledere"."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from tasks.channels import spec
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.providers.base import Message
from tasks.render import ChannelContent

from .helpers import DROP, example, raw_example, variant

poster = spec(Channel.POSTER)


@cache
def _example_posters() -> ChannelContent:
    return poster.render(example())


def _mail(config: MunicipalityConfig) -> Message:
    content = _example_posters() if config is example() else poster.render(config)
    mails = poster.branch_messages(config, content)
    assert list(mails) == [Language.DA]
    return mails[Language.DA]


def test_the_mail_names_each_poster_it_carries_and_its_language() -> None:
    mail = _mail(example())
    names = [a.filename for a in mail.attachments]
    assert names == ["plakat-da.pdf", "plakat-en.pdf"]
    assert "Vedhæftet: plakat-da.pdf (dansk) og plakat-en.pdf (engelsk)." in mail.text
    assert all(a.content.startswith(b"%PDF") for a in mail.attachments)
    assert mail.subject == "Plakater om ny betaling af gebyrer til ophængning"


def test_a_danish_only_library_is_promised_no_english_poster(variants: Path) -> None:
    mail = _mail(variant(variants, {"languages": ["da"]}, "da-only"))
    assert [a.filename for a in mail.attachments] == ["plakat-da.pdf"]
    assert "Vedhæftet: plakat-da.pdf (dansk)." in mail.text
    assert "engelsk" not in mail.text and "plakaterne" not in mail.text
    assert "Print den i A4" in mail.text
    assert mail.subject is not None and mail.subject.startswith("Plakat om ")


def test_the_mail_greets_the_branches_it_goes_to_and_lists_their_steps() -> None:
    text = _mail(example()).text
    assert text.startswith("Kære Hovedbiblioteket og Søby Bibliotek\n")
    assert "- Hovedbiblioteket: inform.poster.hovedbiblioteket" in text
    assert "- Søby Bibliotek: inform.poster.soeby-bibliotek" in text


def test_a_branch_without_an_email_address_is_not_greeted(variants: Path) -> None:
    data = raw_example()
    branches = data["library"]["branches"]
    branches[0].pop("contact_email")
    config = variant(variants, {"languages": ["da"], "library.branches": branches}, "one-mail")
    text = _mail(config).text
    assert text.startswith("Kære Søby Bibliotek\n")
    assert "Hovedbiblioteket" not in text


def test_the_project_leader_signs_with_name_role_and_address() -> None:
    text = _mail(example()).text
    leader = raw_example()["project_leader"]
    signature = text.split("Venlig hilsen\n", 1)[1]
    assert signature.splitlines() == [
        leader["name"],
        f"{leader['role']}, Eksempel Bibliotekerne",
        leader["email"],
    ]


@pytest.mark.parametrize("responsible", ["Filialledere", "Projektleder"])
def test_without_a_project_leader_the_library_signs(variants: Path, responsible: str) -> None:
    changes = {
        "languages": ["da"],
        "project_leader": DROP,
        "channels.poster.responsible": responsible,
    }
    text = _mail(variant(variants, changes, f"no-leader-{responsible}")).text
    assert text.split("Venlig hilsen\n", 1)[1].strip() == "Eksempel Bibliotekerne"
    assert responsible not in text
