"""The FAQ: every content point that applies, asked as the question citizens ask, in both forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.channels import spec
from tasks.content import Point
from tasks.models import Channel, Language, MunicipalityConfig

from .helpers import DROP, example, parse, variant

FAQ = spec(Channel.FAQ)

# The question each point answers, per language: the FAQ's h2 headings.
QUESTIONS: dict[Point, dict[Language, str]] = {
    Point.WHAT_CHANGES: {Language.DA: "Hvad ændrer sig?", Language.EN: "What is changing?"},
    Point.HOW_TO_PAY: {Language.DA: "Hvordan betaler jeg?", Language.EN: "How do I pay?"},
    Point.LOGIN: {Language.DA: "Skal jeg logge ind?", Language.EN: "Do I need to log in?"},
    Point.WHERE_TO_SEE: {Language.DA: "Hvor kan jeg se, hvad jeg skylder?",
                         Language.EN: "Where can I see what I owe?"},
    Point.OLD_DEBTS: {Language.DA: "Hvad med gamle gebyrer?", Language.EN: "What about old fees?"},
    Point.REGISTRATION_TIME: {Language.DA: "Jeg har betalt. Hvorfor står gebyret der stadig?",
                              Language.EN: "I have paid. Why is the fee still there?"},
    Point.FEES_UNCHANGED: {Language.DA: "Bliver gebyrerne dyrere?",
                           Language.EN: "Are the fees going up?"},
    Point.NO_MITID: {Language.DA: "Jeg har ikke MitID eller Digital Post. Hvad gør jeg?",
                     Language.EN: "I do not have MitID or Digital Post. What do I do?"},
    Point.CHILDREN: {Language.DA: "Mit barn har et gebyr. Hvad sker der?",
                     Language.EN: "My child has a fee. What happens?"},
    Point.WHO_TO_ASK: {Language.DA: "Hvem kan jeg spørge?", Language.EN: "Who can I ask?"},
}  # fmt: skip


def _no_portal_no_digital_post(folder: Path) -> MunicipalityConfig:
    return variant(folder, {"payment.self_service": DROP, "payment.invoices.digital_post": False},
                   "paper-only")  # fmt: skip


@pytest.mark.parametrize("case", ["example", "paper-only"])
def test_faq_asks_every_applicable_point_as_a_question(case: str, variants: Path) -> None:
    config = example() if case == "example" else _no_portal_no_digital_post(variants)
    points = FAQ.points_for(config)
    if case == "example":
        assert points == list(Point)
    else:
        assert Point.LOGIN not in points and Point.NO_MITID not in points
    out = FAQ.render(config)
    for lang in config.languages:
        expected = [QUESTIONS[p][lang] for p in points]
        assert all(q.endswith("?") for q in expected)
        html_h2 = [text for tag, text in parse(out.files[f"faq.{lang.value}.html"]).blocks
                   if tag == "h2"]  # fmt: skip
        md_h2 = [line[3:].strip() for line in out.files[f"faq.{lang.value}.md"].splitlines()
                 if line.startswith("## ")]  # fmt: skip
        assert html_h2 == expected
        assert md_h2 == expected
