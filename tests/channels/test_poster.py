"""The posters, read back as a printer and a phone see them: paper, one page, QR code, large plain text."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.channels import spec
from tasks.channels.poster import branch_slug, poster_html
from tasks.config import load_municipality
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.render import ChannelContent
from tasks.textmetrics import lix

from .helpers import DROP, example, needs_pdf_tools, parse, raw_example, variant, write_variant

render_poster = spec(Channel.POSTER).render


@cache
def example_posters() -> ChannelContent:
    return render_poster(example())


def _one_language(changes: dict[str, Any]) -> dict[str, Any]:
    # Danish only: a poster render costs about a second per language.
    return {"languages": ["da"], **changes}


@needs_pdf_tools
def test_poster_is_a4_by_default_and_one_page(variants: Path) -> None:
    from tasks.pdf import pdf_info

    path = write_variant(variants, _one_language({"channels.poster.paper": DROP}), "a4")
    assert "paper" not in yaml.safe_load(path.read_text(encoding="utf-8"))["channels"]["poster"]
    out = render_poster(load_municipality(path))
    info = pdf_info(out.files["poster.da.pdf"])
    assert info.pages == 1
    assert (round(info.width_pt), round(info.height_pt)) == (595, 842)
    assert out.metrics[Language.DA]["paper"] == "A4"


@needs_pdf_tools
def test_poster_on_a3(variants: Path) -> None:
    from tasks.pdf import pdf_info

    out = render_poster(variant(variants, _one_language({"channels.poster.paper": "A3"}), "a3"))
    info = pdf_info(out.files["poster.da.pdf"])
    assert info.pages == 1
    assert (round(info.width_pt), round(info.height_pt)) == (842, 1191)


@needs_pdf_tools
@pytest.mark.parametrize("lang", list(Language))
def test_poster_qr_leads_to_the_payment_self_service(lang: Language) -> None:
    from tasks.pdf import pdf_qr_codes

    pdf = example_posters().files[f"poster.{lang.value}.pdf"]
    assert pdf_qr_codes(pdf) == [raw_example()["decisions"]["new_debts"]["portal"]["url"]]


@needs_pdf_tools
def test_poster_qr_without_a_portal_leads_to_the_website_article(variants: Path) -> None:
    from tasks.pdf import pdf_qr_codes, pdf_text

    config = variant(variants, _one_language({"decisions.new_debts.portal": DROP}), "no-portal")
    pdf = render_poster(config).files["poster.da.pdf"]
    page_url = raw_example()["channels"]["website"]["page_url"]
    assert pdf_qr_codes(pdf) == [page_url]
    text = pdf_text(pdf)
    assert "Scan koden og læs mere" in text and "betalingsoverblik" not in text


@needs_pdf_tools
@pytest.mark.parametrize("lang", list(Language))
def test_poster_text_is_easy_to_read(lang: Language) -> None:
    from tasks.pdf import pdf_text

    text = pdf_text(example_posters().files[f"poster.{lang.value}.pdf"])
    assert "Nyt om gebyrer" in text if lang is Language.DA else "News about library fees" in text
    assert lix(text) <= 35, text


def _css_size_pt(css: str, selector: str, root_pt: float) -> float:
    match = re.search(
        rf"(?:^|\n)\s*{re.escape(selector)}\s*{{[^}}]*font-size:\s*([\d.]+)(pt|rem)", css
    )
    assert match, f"no font-size for {selector}"
    value, unit = float(match[1]), match[2]
    return value * root_pt if unit == "rem" else value


@pytest.mark.parametrize("paper", ["A4", "A3"])
def test_poster_type_is_large(paper: str) -> None:
    config = example().model_copy(
        update={"channels": example().channels.model_copy(
            update={"poster": example().channels.poster.model_copy(update={"paper": paper})})}
    )  # fmt: skip
    html, _, _ = poster_html(config, Language.DA)
    css = "".join(parse(html).styles)
    root = _css_size_pt(css, "html", 0)
    # Read from a few metres away: headline ≥ 30 pt, the text ≥ 18 pt (larger still on A3).
    assert _css_size_pt(css, "h1", root) >= 30
    assert _css_size_pt(css, ".lead", root) >= 18
    assert _css_size_pt(css, "ul", root) >= 18
    assert f"size: {paper}" in css


# --- Checklist steps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Søby Bibliotek", "soeby-bibliotek"),
        ("Æblerød Filial", "aebleroed-filial"),
        ("Ågade Bibliotek", "aagade-bibliotek"),
        ("Hovedbiblioteket", "hovedbiblioteket"),
        ("Café-biblioteket, Nørrebro (2. sal)", "cafe-biblioteket-noerrebro-2-sal"),
    ],
)
def test_branch_slug_is_ascii(name: str, slug: str) -> None:
    assert branch_slug(name) == slug


def test_branches_whose_names_slug_alike_get_distinct_ids() -> None:
    data = raw_example()
    data["library"]["branches"] = [{"name": "Søby Bibliotek"}, {"name": "Søby bibliotek"}]
    config = MunicipalityConfig.model_validate(data)
    posters = [s.id for s in spec(Channel.POSTER).checklist_steps(config)]
    assert posters == ["inform.poster.soeby-bibliotek", "inform.poster.soeby-bibliotek-2"]
