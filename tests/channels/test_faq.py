"""The FAQ: the citizens' questions, each answered only where the decisions answer it, plus the
municipality's own entries; not a copy of the article."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.channels import spec
from tasks.content import FIXED, Point
from tasks.models import Channel, Language, MunicipalityConfig

from .helpers import DROP, example, parse, variant

FAQ = spec(Channel.FAQ)
WEBSITE = spec(Channel.WEBSITE)

# The questions of ../shared/domain.md ("Questions citizens actually ask"), as the FAQ asks them.
CITIZENS_ASK = {
    "How do I pay now?": Point.HOW_TO_PAY,
    "Where do I see what I owe?": Point.WHERE_TO_SEE,
    "What if I have no MitID / am exempt from Digital Post?": Point.NO_MITID,
    "My child has a debt: what happens?": Point.CHILDREN,
    "Why does it still say I owe money after I paid?": Point.REGISTRATION_TIME,
    "Can I still pay at the library?": Point.OLD_DEBTS,
    "Have the fees gone up?": Point.FEES,
    "Who do I contact?": Point.WHO_TO_ASK,
}


def _headings(config: MunicipalityConfig, lang: Language) -> tuple[list[str], list[str]]:
    out = FAQ.render(config)
    html_h2 = [t for tag, t in parse(out.files[f"faq.{lang.value}.html"]).blocks if tag == "h2"]
    md = str(out.files[f"faq.{lang.value}.md"])
    md_h2 = [line[3:].strip() for line in md.splitlines() if line.startswith("## ")]
    return html_h2, md_h2


def _bare(folder: Path) -> MunicipalityConfig:
    """No decisions at all: the FAQ can answer only what the card itself says."""
    return variant(folder, {"decisions": DROP}, "bare")


@pytest.mark.parametrize("lang", list(Language))
def test_the_example_answers_every_question_citizens_ask(lang: Language) -> None:
    html_h2, md_h2 = _headings(example(), lang)
    expected = [FIXED[f"q.{p.value}"][lang] for p in FAQ.points_for(example())]
    assert html_h2 == md_h2 == expected
    assert all(q.endswith("?") for q in expected)
    for point in CITIZENS_ASK.values():
        assert FIXED[f"q.{point.value}"][lang] in html_h2


@pytest.mark.parametrize("lang", list(Language))
def test_without_decisions_only_the_cards_questions_are_answered(
    lang: Language, variants: Path
) -> None:
    html_h2, _ = _headings(_bare(variants), lang)
    asked = [FIXED[f"q.{p.value}"][lang] for p in (Point.WHAT_CHANGES, Point.OLD_DEBTS,
                                                   Point.WHO_TO_ASK)]  # fmt: skip
    assert html_h2 == asked


def test_extra_entries_come_after_the_generated_ones_and_before_whom_to_ask(
    variants: Path,
) -> None:
    entry = {
        "question": {"da": "Kan jeg låne en pc?", "en": "Can I use a PC?"},
        "answer": {"da": "Ja, på alle filialer.", "en": "Yes, at every branch."},
    }
    config = variant(variants, {"decisions.extra.faq": [entry]}, "extra-faq")
    for lang in Language:
        html_h2, _ = _headings(config, lang)
        # Whom to ask closes the page, after the municipality's own questions.
        assert html_h2[-2] == entry["question"][lang.value]
        assert html_h2[-1] == FIXED["q.who_to_ask"][lang]
        out = FAQ.render(config)
        assert entry["answer"][lang.value] in str(out.files[f"faq.{lang.value}.md"])
        claim = next(c for c in out.claims[lang] if c.text == entry["answer"][lang.value])
        assert claim.fields == ("decisions.extra.faq.0.answer",)


@pytest.mark.parametrize("lang", list(Language))
def test_the_faq_is_not_a_copy_of_the_article(lang: Language) -> None:
    faq = str(FAQ.render(example()).files[f"faq.{lang.value}.md"])
    article = str(WEBSITE.render(example()).files[f"article.{lang.value}.md"])
    faq_body = faq.split("\n", 1)[1].strip()
    article_body = article.split("\n", 1)[1].strip()
    assert faq_body != article_body
    # The FAQ answers "where do I see it" with the portal itself; the article says it once.
    portal = "Mit betalingsoverblik"
    assert faq.count(f"[{portal}]") == 2 and article.count(f"[{portal}]") == 1
