"""Citizen texts say what the municipality decided and nothing else, in every channel and language.

The fixed points of issue 17: old debts from before a cut-off years before go-live, payable on the
library website with no end date; no payment deadline; children invoiced from 15. Every sentence
is a recorded claim or a fixed card-level sentence, and the quality gates (LIX, GSM-7, SMS parts)
hold for each config.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tasks.channels import all_channels, spec
from tasks.channels.poster import poster_html
from tasks.claims import claims_review
from tasks.content import CARD_FIELDS, FIXED, Point, format_day, format_kr, is_set, resolve
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.textmetrics import html_to_text, is_gsm7, lix

from .channels.helpers import DROP, channel_texts, example, raw_example, uncovered, variant

PORTAL = {"name": "Mit Betalingsoverblik", "url": "https://www.faxe.dk/betalingsoverblik"}
CUT_OFF = date(2023, 1, 1)  # four years before the example's go-live, 14 December 2026

# The fixed point: old debts from before a cut-off years before go-live, payable with no end
# date on the library website and never at the counter; no deadline; the child invoiced from 15.
FIXED_POINT: dict[str, Any] = {
    "old_debts": {
        "before": CUT_OFF.isoformat(),
        "payable": "open_ended",
        "where": ["library_website"],
    },
    "new_debts": {"portal": PORTAL, "invoice": {"digital_post": True}},
    "payment_methods": [{"method": "card"}, {"method": "mobilepay"}],
    "children": {"adult_invoiced_under_age": 15},
    "routing": {"account_page": "Min side", "account_page_shows": "old_only"},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("content")


@pytest.fixture(scope="module")
def fixed_point(folder: Path) -> MunicipalityConfig:
    return variant(folder, {"decisions": FIXED_POINT}, "fixed-point")


@pytest.fixture(scope="module")
def bare(folder: Path) -> MunicipalityConfig:
    """Every optional decision unset."""
    return variant(folder, {"decisions": DROP}, "bare")


def _texts(config: MunicipalityConfig) -> dict[tuple[str, str], tuple[str, list[Any]]]:
    texts = channel_texts(config)
    # Every enabled channel in every language is read.
    assert {c for c, _ in texts} == {c.value for c in config.channels.enabled()}
    assert {lang for _, lang in texts} == {lang.value for lang in config.languages}
    return texts


# --- The fixed points ---------------------------------------------------------------------------


def test_old_debts_on_the_website_without_end_date(fixed_point: MunicipalityConfig) -> None:
    for (channel, lang), (text, _) in _texts(fixed_point).items():
        where = f"{channel}/{lang}"
        # Every channel names the cut-off date, and no other date than it and go-live.
        assert format_day(CUT_OFF, Language(lang)) in text, where
        allowed = {format_day(d, Language(lang)) for d in (CUT_OFF, fixed_point.go_live)}
        assert set(_dates(text, Language(lang))) <= allowed, where
        # No end date: nothing "until", no "frem til", no "til og med".
        for phrase in ("til og med", "frem til", "until", "up to and including"):
            assert phrase not in text, (where, phrase)
        # Never paid at the library (the counter) or "hos os"; the portal never shows "all".
        for phrase in ("på biblioteket", "at the library", "hos os", "Ikke til os"):
            assert phrase not in text, (where, phrase)
        for phrase in ("alle dine gebyrer", "all your fees"):
            assert phrase not in text, (where, phrase)


def test_no_deadline_set_no_channel_mentions_one(fixed_point: MunicipalityConfig) -> None:
    assert fixed_point.decisions.new_debts.payment_days is None
    for (channel, lang), (text, _) in _texts(fixed_point).items():
        for word in (
            "frist",
            "dage til at betale",
            "deadline",
            "days to pay",
            "30 dage",
            "30 days",
        ):
            assert word not in text.lower(), (channel, lang, word)


def test_a_deadline_set_is_said_where_invoices_are_explained(folder: Path) -> None:
    config = variant(folder, {"decisions.new_debts.payment_days": 14}, "deadline")
    for channel in (Channel.WEBSITE, Channel.FAQ, Channel.NEWSLETTER):
        for lang in (Language.DA, Language.EN):
            text, _ = channel_texts(config)[(channel.value, lang.value)]
            assert ("Du har 14 dage til at betale." if lang is Language.DA
                    else "You have 14 days to pay.") in text  # fmt: skip


def test_children_from_15_no_channel_says_under_18(fixed_point: MunicipalityConfig) -> None:
    texts = _texts(fixed_point)
    for (channel, lang), (text, _) in texts.items():
        assert "18" not in text, (channel, lang)
    assert "Fra 15 år får barnet selv regningen." in texts[("faq", "da")][0]
    assert "From the age of 15, children get the bill themselves." in texts[("faq", "en")][0]


def test_children_under_18_by_default_reading(folder: Path) -> None:
    text, _ = channel_texts(example())[("faq", "da")]
    assert "Er dit barn under 18 år, får du som forælder eller værge regningen." in text
    assert "selv regningen" not in text


def test_an_unset_login_names_no_login(folder: Path) -> None:
    # The portal without `login`: no default may put "MitID" in a citizen's text.
    config = variant(folder, {"decisions.new_debts.portal": PORTAL}, "no-login")
    assert config.decisions.new_debts.portal.login is None
    for (channel, lang), (text, _) in channel_texts(config).items():
        for word in ("MitID", "NemID", "log ind", "logger ind", "log in"):
            assert word not in text, (channel, lang, word)


def test_paper_invoice_is_for_those_exempt_from_digital_post() -> None:
    texts = channel_texts(example())
    assert (
        "Er du fritaget for Digital Post, får du fakturaen som brev med et girokort."
        in texts[("faq", "da")][0]
    )
    for (channel, lang), (text, _) in texts.items():
        # Lacking MitID alone does not bring a paper invoice: no text says so.
        assert "ikke MitID" not in text and "not have MitID" not in text, (channel, lang)


@pytest.mark.parametrize("moved", [True, False])
def test_old_debts_not_payable_say_where_they_go_or_only_not_to_the_library(
    folder: Path, moved: bool
) -> None:
    portal = {**PORTAL, "shows_old_debts": moved}
    changes = {"decisions.old_debts": {"payable": "no"}, "decisions.new_debts.portal": portal}
    config = variant(folder, changes, f"old-no-{moved}")
    day = format_day(config.go_live, Language.DA)
    for (channel, lang), (text, _) in channel_texts(config).items():
        # Nothing before says "not to the library", so nothing may say "heller"/"either".
        assert "heller" not in text and "either" not in text, (channel, lang)
    faq = channel_texts(config)[("faq", "da")][0]
    assert "Du kan ikke længere betale gebyrer til biblioteket." in faq
    if moved:
        assert f"Gebyrer fra før {day} betaler du også i Mit Betalingsoverblik." in faq
    else:
        assert f"Det gælder også gebyrer fra før {day}." in faq


def test_the_fee_page_says_here_and_names_the_cut_off_once() -> None:
    texts = channel_texts(example())
    page = " ".join(texts[("self_service", "da")][0].split())
    # The reader is on the library's fee page: "her", never a link to that same site.
    assert "Dem kan du betale til og med 31. marts 2027 på biblioteket eller her." in page
    assert "https://bibliotek.eksempel.dk" not in page
    assert page.count("14. december 2026") == 1
    english = " ".join(texts[("self_service", "en")][0].split())
    assert "https://bibliotek.eksempel.dk" not in english
    assert english.count("14 December 2026") == 1


def test_the_deadline_comes_before_the_places_it_covers() -> None:
    faq = channel_texts(example())[("faq", "da")][0]
    assert (
        "Dem kan du betale til og med 31. marts 2027 på biblioteket eller under Mine sider på "
        "https://bibliotek.eksempel.dk." in " ".join(faq.split())
    )


def test_no_answer_repeats_the_one_before_and_the_lead_is_news() -> None:
    texts = channel_texts(example())
    faq = texts[("faq", "da")][0]
    assert faq.count("Nye gebyrer ser og betaler du i") == 1
    assert "Et nyt gebyr kan du se i Mit betalingsoverblik dagen efter." in faq
    for channel in ("website", "newsletter"):
        text = texts[(channel, "da")][0]
        # The title says there is a new way to pay; the text goes on with what the way is.
        assert "på en ny måde" not in text, channel
        assert "Fra 14. december 2026 skal du betale nye gebyrer til kommunen" in text, channel


def test_the_fee_question_is_one_the_config_answers(folder: Path) -> None:
    rates = {"rates": [{"what": {"da": "Voksne", "en": "Adults"}, "amount_kr": 20}]}
    changes = {"decisions.fees": rates, "decisions.new_debts.reminder_fee_kr": DROP}
    faq = channel_texts(variant(folder, changes, "rates-only"))[("faq", "da")][0]
    # Nothing says whether the fees go up: the heading does not ask it.
    assert "Bliver gebyrerne dyrere?" not in faq and "Hvad koster gebyrerne?" in faq
    assert "Bliver gebyrerne dyrere?" in channel_texts(example())[("faq", "da")][0]


# --- Every sentence rests on a claim -------------------------------------------------------------


@pytest.mark.parametrize("case", ["example", "fixed_point", "bare"])
def test_every_sentence_is_a_recorded_claim(case: str, request: pytest.FixtureRequest) -> None:
    config = example() if case == "example" else request.getfixturevalue(case)
    for (channel, lang), (text, claims) in _texts(config).items():
        assert uncovered(text, claims) == "", (channel, lang)
        for claim in claims:
            if claim.fixed is not None:
                assert claim.fixed in FIXED and not claim.fields
            else:
                assert claim.fields, claim
                assert all(is_set(resolve(config, f)) for f in claim.fields), claim


def test_with_every_decision_unset_only_fixed_sentences_remain(bare: MunicipalityConfig) -> None:
    seen_fixed = set()
    for (channel, lang), (_, claims) in _texts(bare).items():
        for claim in claims:
            # The contact details the config must hold (contacts.*) are the one exception.
            assert claim.fixed is not None or all(
                f.startswith("contacts.") for f in claim.fields
            ), (channel, lang, claim)
            seen_fixed.add(claim.fixed)
    # The card's own sentences are what is left: the change, who to ask.
    assert {"moves", "covers", "staff_no_payment", "ask_library", "ask_billing"} <= seen_fixed
    assert all(field in CARD_FIELDS for field in ("go_live", "contacts.billing.name"))


def test_claims_name_their_fields_and_values() -> None:
    content = spec(Channel.FAQ).render(example())
    claims = {c.text: c for c in content.claims[Language.DA]}
    deadline = claims["Du har 30 dage til at betale."]
    assert deadline.fields == ("decisions.new_debts.payment_days",) and deadline.values == ("30",)
    reminder = next(c for c in claims.values() if "rykker" in c.text)
    assert reminder.fields == ("decisions.new_debts.reminder_fee_kr",)
    assert reminder.values == ("250",)
    review = claims_review({Channel.FAQ: content}, Language.DA)
    assert "| Du har 30 dage til at betale. | decisions.new\\_debts.payment\\_days | 30 |" in (
        review
    )
    assert "fast tekst (opgavekortet)" in review
    assert review.startswith("# Gennemgang af udsagn (dansk)")


def test_the_article_is_news_and_the_faq_answers_the_rest() -> None:
    """With a FAQ page, the article says what changes, how to pay, old debts and whom to ask, and
    links to the FAQ; without one, the article answers every question itself."""
    config = example()
    texts = channel_texts(config)
    article, faq = texts[("website", "da")][0], texts[("faq", "da")][0]
    assert article != faq
    assert "Mit barn har et gebyr" in faq and "Mit barn har et gebyr" not in article
    assert "Læs spørgsmål og svar om betaling af gebyrer" in article
    faq_off = config.channels.faq.model_copy(update={"enabled": False})
    channels = config.channels.model_copy(update={"faq": faq_off})
    alone = channel_texts(config.model_copy(update={"channels": channels}))[("website", "da")][0]
    assert "Mit barn har et gebyr" in alone
    assert "Læs spørgsmål og svar" not in alone


# --- Danish a communications officer signs --------------------------------------------------------


def test_danish_wording() -> None:
    texts = channel_texts(example())
    article = texts[("website", "da")][0]
    assert article.startswith("Ny måde at betale gebyrer på fra 14. december 2026")
    assert "gebyrer for sen aflevering" in article
    assert "Nye gebyrer ser og betaler du i Mit betalingsoverblik." in article
    assert "Du kan betale fakturaen i din netbank." in article
    short = " ".join(texts[("self_service", "da")][0].split())
    assert (
        "Har du spørgsmål til et gebyr, så spørg biblioteket. Har du spørgsmål om betaling, så "
        "kontakt Opkrævningen i Eksempel Kommune." in short
    )
    assert "View and pay your new fees in Mit betalingsoverblik." in texts[("website", "en")][0]
    for (channel, lang), (text, _) in texts.items():
        assert "Ikke til os" not in text and "Not to us" not in text, (channel, lang)
        # A reminder fee is a new cost, never hidden under "the fees are the same".
        if "rykker" in text:
            assert "ny udgift" in text, channel


def test_reminder_fee_is_a_new_cost_in_both_languages() -> None:
    texts = channel_texts(example())
    assert (
        "Men der er en ny udgift: Betaler du for sent, får du et rykkergebyr på 250 kr."
        in (texts[("faq", "da")][0])
    )
    assert (
        "But there is a new cost: if you pay late, you get a reminder fee of DKK 250."
        in (texts[("faq", "en")][0])
    )


# --- Quality gates for each config ---------------------------------------------------------------


@pytest.mark.parametrize("case", ["example", "fixed_point", "bare"])
def test_sms_poster_and_article_are_easy_to_read(case: str, request: pytest.FixtureRequest) -> None:
    config = example() if case == "example" else request.getfixturevalue(case)
    sms = spec(Channel.SMS).render(config)
    website = spec(Channel.WEBSITE).render(config)
    for lang in config.languages:
        text = sms.messages[lang].text
        assert is_gsm7(text) and sms.metrics[lang]["parts"] <= 2, (lang, text)
        assert not re.search(r"\d+ ?kr\.|DKK", text), "no amounts in SMS"
        assert lix(text) <= 35, (lang, text)
        poster, _, _ = poster_html(config, lang)
        assert lix(html_to_text(poster)) <= 35
        post = spec(Channel.SOCIAL_POST).text(config, lang)
        assert lix(post) <= 35 and len(post) <= 500
        assert website.metrics[lang]["lix"] <= 35


def test_sms_is_one_part_where_the_facts_allow(folder: Path) -> None:
    # A portal and nothing about old debts: the change, where to pay and where to read more.
    config = variant(folder, {"decisions": {"new_debts": {"portal": PORTAL}}}, "one-part")
    sms = spec(Channel.SMS).render(config)
    for lang in config.languages:
        assert sms.metrics[lang]["parts"] == 1, sms.messages[lang].text
        assert sms.metrics[lang]["characters"] <= 160


def test_an_extra_sentence_appears_in_its_channel_only(folder: Path) -> None:
    extra = {"da": "Spørg os, hvis du er i tvivl.", "en": "Ask us if you are in doubt."}
    decisions = {**FIXED_POINT, "extra": {"sentences": {"sms": extra}}}
    config = variant(folder, {"decisions": decisions}, "extra-sms")
    for (channel, lang), (text, _) in channel_texts(config).items():
        assert (extra[lang] in text) == (channel == "sms"), (channel, lang)


def test_every_channel_declares_points_and_the_faq_asks_them_all() -> None:
    assert {s.channel for s in all_channels()} == set(Channel)
    assert set(spec(Channel.FAQ).points) == set(Point)
    assert all(f"q.{p.value}" in FIXED for p in Point)
    # Every channel carries the old debts, so every channel names a cut-off date when set.
    assert all(Point.OLD_DEBTS in s.points for s in all_channels())


def test_dates_and_amounts_in_danish_form() -> None:
    assert format_day(date(2026, 11, 30), Language.DA) == "30. november 2026"
    assert format_kr(250, Language.DA) == "250 kr."
    assert format_kr(1250, Language.DA) == "1.250 kr."
    assert format_day(date(2026, 11, 30), Language.EN) == "30 November 2026"
    assert raw_example()["decisions"]["new_debts"]["reminder_fee_kr"] == 250


_MONTHS = {
    Language.DA: "januar|februar|marts|april|maj|juni|juli|august|september|oktober|november|december",
    Language.EN: "January|February|March|April|May|June|July|August|September|October|November|December",
}


def _dates(text: str, lang: Language) -> list[str]:
    """Every date in `text` as Babel writes it in `lang`."""
    pattern = r"\d{1,2}\. (?:%s) \d{4}" if lang is Language.DA else r"\d{1,2} (?:%s) \d{4}"
    return re.findall(pattern % _MONTHS[lang], text)
