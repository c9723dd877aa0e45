"""The info-screen slide, read back as a screen and a phone see it: 1920x1080, QR code, Danish text."""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tasks.channels import spec
from tasks.channels.info_screen import NAME, SIZE
from tasks.config import load_card
from tasks.models import Channel, Language, MunicipalityConfig, StepKind
from tasks.render import ChannelContent, Picture, payment_url, picture
from tasks.steps import build_plan
from tasks.textmetrics import lix

from .helpers import DROP, example, needs_pdf_tools, raw_example, variant

INFO_SCREEN = spec(Channel.INFO_SCREEN)


@cache
def slides() -> ChannelContent:
    return INFO_SCREEN.render(example())


@cache
def slide(lang: Language) -> Picture:
    config = example()
    return picture(config, INFO_SCREEN, lang, NAME, SIZE, qr_url=payment_url(config))


@needs_pdf_tools
@pytest.mark.parametrize("lang", list(Language))
def test_slide_is_a_1920_by_1080_png(lang: Language) -> None:
    from tasks.pdf import pdf_info, png_size

    png = slides().files[f"slide.{lang.value}.png"]
    assert isinstance(png, bytes) and png_size(png) == (1920, 1080)
    # The same drawing as the channel's, and all on one page: nothing flowed off the slide.
    assert slide(lang).png == png
    assert pdf_info(slide(lang).pdf).pages == 1
    assert slides().metrics[lang]["size"] == "1920x1080"


@needs_pdf_tools
@pytest.mark.parametrize("lang", list(Language))
def test_slide_qr_leads_to_the_payment_self_service(lang: Language) -> None:
    from tasks.pdf import png_qr_codes

    png = slides().files[f"slide.{lang.value}.png"]
    assert isinstance(png, bytes)
    assert png_qr_codes(png) == [raw_example()["decisions"]["new_debts"]["portal"]["url"]]


@needs_pdf_tools
def test_slide_says_the_change_in_danish_first() -> None:
    from tasks.pdf import pdf_text

    text = pdf_text(slide(Language.DA).pdf)
    for words in (
        "Nyt om gebyrer",
        "Fra 14. december 2026 skal du betale nye gebyrer til kommunen og ikke til os.",
        "Se og betal dem i Mit betalingsoverblik. Log ind med MitID.",
        "Har du gebyrer fra før 14. december 2026? Dem kan du betale til og med 31. marts 2027 "
        "på biblioteket eller på https://bibliotek.eksempel.dk.",
        "Scan koden og betal",
        "https://www.eksempel.dk/betalingsoverblik",
        "Eksempel Bibliotekerne",
    ):
        assert words in text, words
    assert lix(text) <= 35
    english = pdf_text(slide(Language.EN).pdf)
    assert "News about library fees" in english and "Scan the code to pay" in english
    # The words on the slide, as a file: its text alternative, key message first.
    lines = str(slides().files["slide.da.txt"]).splitlines()
    assert lines == slide(Language.DA).lines and slides().key_message == lines[0]


@needs_pdf_tools
def test_without_a_portal_the_qr_leads_to_the_article_and_the_slide_says_so(
    variants: Path,
) -> None:
    from tasks.pdf import pdf_text, png_qr_codes

    config = variant(
        variants, {"decisions.new_debts.portal": DROP, "languages": ["da"]}, "no-portal"
    )
    out = INFO_SCREEN.render(config)
    assert set(out.files) == {"slide.da.png", "slide.da.txt"}
    png = out.files["slide.da.png"]
    assert isinstance(png, bytes)
    assert png_qr_codes(png) == [raw_example()["channels"]["website"]["page_url"]]
    text = pdf_text(
        picture(config, INFO_SCREEN, Language.DA, NAME, SIZE, qr_url=payment_url(config)).pdf
    )
    # æøå as written, and no word of a payment self-service the municipality does not have.
    assert "Scan koden og læs mere" in text and "Du får en faktura i Digital Post." in text
    assert "betalingsoverblik" not in text.lower()


def test_plan_checklist_and_gallery_read_its_declaration() -> None:
    config = example()
    content = ChannelContent(Channel.INFO_SCREEN, key_message="Nøglebudskab")
    [planned] = build_plan(
        config, load_card(config.card), {Channel.INFO_SCREEN: content}, None
    ).channels
    assert planned.day == date(2026, 11, 30)  # go-live 14 December, offset -14 days
    # In the operator language, Danish by default.
    assert planned.audience == "Besøgende, der går forbi infoskærmene på bibliotekerne"
    assert (planned.responsible, planned.recipients) == ("Filialledere", None)
    [step] = INFO_SCREEN.checklist_steps(config)
    assert (step.id, step.kind) == ("inform.info_screen", StepKind.MANUAL)
    assert INFO_SCREEN.delivers is None
    assert (INFO_SCREEN.labels["da"], INFO_SCREEN.labels["en"]) == ("Infoskærm", "Info screen")


def test_left_out_of_the_config_it_is_not_used(variants: Path) -> None:
    changes: dict[str, Any] = {"channels.info_screen": DROP}
    config: MunicipalityConfig = variant(variants, changes, "no-screens")
    assert Channel.INFO_SCREEN not in config.channels.enabled()
