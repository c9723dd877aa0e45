"""Citizen texts for every combination of a municipality's payment choices, every channel and language.

Each text must say what is true for the municipality and nothing that is not: a table of phrases
ties each choice to the words that state it, per language and per channel that carries the point.
"""

from __future__ import annotations

import itertools
import re
from datetime import date
from functools import cache
from typing import Any

import pytest

from tasks.channels import all_channels, spec
from tasks.channels.poster import poster_html
from tasks.config import load_municipality
from tasks.content import Point, applies
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.textmetrics import html_to_text, is_gsm7, lix

from .conftest import EXAMPLE_CONFIG

PORTAL = "Mit betalingsoverblik"

# (choice is on) -> phrase that must appear, per language, on channels carrying the point.
# A phrase must be absent when its choice is off.
PHRASES: list[tuple[str, Point, dict[Language, str]]] = [
    (
        "digital_post",
        Point.HOW_TO_PAY,
        {
            Language.DA: "faktura, du får i Digital Post",
            Language.EN: "invoice you get in Digital Post",
        },
    ),
    ("paper_invoice", Point.HOW_TO_PAY, {Language.DA: "girokort", Language.EN: "giro slip"}),
    (
        "bank_transfer",
        Point.HOW_TO_PAY,
        {Language.DA: "overførsel fra din bank", Language.EN: "bank transfer"},
    ),
    (
        "betalingsservice",
        Point.HOW_TO_PAY,
        {Language.DA: "Betalingsservice", Language.EN: "Betalingsservice"},
    ),
    (
        "borgerservice",
        Point.HOW_TO_PAY,
        {Language.DA: "Borgerservice", Language.EN: "Borgerservice"},
    ),
    ("portal", Point.HOW_TO_PAY, {Language.DA: PORTAL, Language.EN: PORTAL}),
    ("mitid", Point.LOGIN, {Language.DA: "med MitID", Language.EN: "with MitID"}),
    ("no_login", Point.LOGIN, {Language.DA: "ikke logge ind", Language.EN: "not need to log in"}),
    (
        "old_payable",
        Point.OLD_DEBTS,
        {Language.DA: "stadig betale på biblioteket", Language.EN: "still pay them at the library"},
    ),
    (
        "old_not_payable",
        Point.OLD_DEBTS,
        {
            Language.DA: "kan ikke betale dem på biblioteket",
            Language.EN: "cannot pay them at the library",
        },
    ),
    (
        "pages_old_only",
        Point.WHERE_TO_SEE,
        {Language.DA: "kun gamle gebyrer", Language.EN: "only see old fees"},
    ),
    (
        "pages_all",
        Point.WHERE_TO_SEE,
        {
            Language.DA: "også se alle dine gebyrer under Mine sider",
            Language.EN: "also see all your fees under My pages",
        },
    ),
]


def combinations() -> list[dict[str, Any]]:
    combos = []
    for portal, dp, paper, bank, bs, borger, old, pages in itertools.product(
        (None, "mitid", "no_login"), *([(True, False)] * 6), ("all", "old_only")
    ):
        if not (portal or dp or paper or bank or bs or borger):
            continue  # no way to pay: the config refuses it (tested in test_config)
        combos.append(
            dict(
                portal=portal,
                digital_post=dp,
                paper_invoice=paper,
                bank_transfer=bank,
                betalingsservice=bs,
                borgerservice=borger,
                old_payable=old,
                pages=pages,
            )
        )
    return combos


COMBOS = combinations()


@cache
def _base() -> dict[str, Any]:
    return load_municipality(EXAMPLE_CONFIG).model_dump(mode="json")


def make_config(combo: dict[str, Any]) -> MunicipalityConfig:
    data = _base()
    data = {**data, "payment": dict(data["payment"])}
    pay = data["payment"]
    pay["self_service"] = (
        None
        if combo["portal"] is None
        else {
            "name": PORTAL,
            "url": "https://www.eksempel.dk/betalingsoverblik",
            "requires_mitid": combo["portal"] == "mitid",
        }
    )
    pay["invoices"] = {"digital_post": combo["digital_post"], "payment_days": 30}
    for key in ("paper_invoice", "bank_transfer", "betalingsservice", "borgerservice"):
        pay[key] = combo[key]
    pay["old_debts"] = (
        {"payable_at_library": True, "until": "2027-03-31"}
        if combo["old_payable"]
        else {"payable_at_library": False}
    )
    pay["library_pages_show"] = combo["pages"]
    return MunicipalityConfig.model_validate(data)


def truth(combo: dict[str, Any], key: str) -> bool:
    return {
        "portal": combo["portal"] is not None,
        "mitid": combo["portal"] == "mitid",
        "no_login": combo["portal"] == "no_login",
        "old_payable": combo["old_payable"],
        "old_not_payable": not combo["old_payable"],
        "pages_old_only": combo["pages"] == "old_only",
        "pages_all": combo["pages"] == "all",
    }.get(key, combo.get(key))


def full_texts(config: MunicipalityConfig) -> dict[Channel, dict[Language, str]]:
    """Every full-form channel's visible text per language."""
    texts: dict[Channel, dict[Language, str]] = {}
    for channel, name in ((Channel.WEBSITE, "article"), (Channel.FAQ, "faq")):
        out = spec(channel).render(config)
        texts[channel] = {
            lang: html_to_text(out.files[f"{name}.{lang.value}.html"]) for lang in config.languages
        }
    news = spec(Channel.NEWSLETTER).render(config)
    texts[Channel.NEWSLETTER] = {lang: m.text for lang, m in news.messages.items()}
    return texts


def test_there_are_many_combinations() -> None:
    # Minus the 4 with no way to pay at all (no portal, every option off, x old debts x pages).
    assert len(COMBOS) == 3 * 2**7 - 4


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_every_channel_says_what_is_true_and_nothing_else(combo: dict[str, Any]) -> None:
    config = make_config(combo)
    texts = full_texts(config)
    for channel, per_lang in texts.items():
        carried = set(spec(channel).points_for(config))
        for lang, text in per_lang.items():
            for key, point, phrase in PHRASES:
                present = phrase[lang] in text
                if point in carried and truth(combo, key):
                    assert present, f"{channel}/{lang}: '{phrase[lang]}' missing for {key}"
                if not truth(combo, key) and key not in ("portal",):
                    assert not present, (
                        f"{channel}/{lang}: '{phrase[lang]}' present but {key} is off"
                    )
            if combo["portal"] is None:
                assert PORTAL not in text
            # The reminder fee is an amount in Danish form, and only where it is stated.
            if Point.FEES_UNCHANGED in carried:
                assert ("250 kr." if lang is Language.DA else "DKK 250") in text
            assert (
                "14. december 2026" in text if lang is Language.DA else "14 December 2026" in text
            )


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_short_channels_are_plain_short_and_gsm7(combo: dict[str, Any]) -> None:
    config = make_config(combo)
    sms = spec(Channel.SMS).render(config)
    website = spec(Channel.WEBSITE).render(config)
    for lang in config.languages:
        text = sms.messages[lang].text
        assert is_gsm7(text) and len(text) <= 306
        assert sms.metrics[lang]["parts"] <= 2
        assert not re.search(r"\d+ ?kr\.|DKK", text), "no amounts in SMS"
        assert lix(text) <= 35, (lang, text)
        poster, _ = poster_html(config, lang)
        assert lix(html_to_text(poster)) <= 35
        post = spec(Channel.SOCIAL_POST).text(config, lang)  # its image shows the poster's lines
        assert lix(post) <= 35 and len(post) <= 500 and not re.search(r"\d+ ?kr\.|DKK", post)
        assert website.metrics[lang]["lix"] <= 35
    selfservice = spec(Channel.SELF_SERVICE).render(config)
    assert selfservice.files  # DPL and DDB files for every combination


def test_points_table_covers_every_point_and_channel() -> None:
    assert {s.channel for s in all_channels()} == set(Channel)
    assert all(s.points for s in all_channels())
    assert set(spec(Channel.FAQ).points) == set(Point)
    config = make_config(COMBOS[0])
    assert all(applies(p, config) for p in (Point.WHAT_CHANGES, Point.HOW_TO_PAY, Point.CHILDREN))


def test_dates_and_amounts_in_danish_form() -> None:
    from tasks.content import format_day, format_kr

    assert format_day(date(2026, 11, 30), Language.DA) == "30. november 2026"
    assert format_kr(250, Language.DA) == "250 kr."
    assert format_kr(1250, Language.DA) == "1.250 kr."
    assert format_day(date(2026, 11, 30), Language.EN) == "30 November 2026"
