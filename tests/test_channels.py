"""Acceptance tests of each channel's rendered output, read back as a citizen, a printer or a CMS sees it.

Configs are the example municipality with a few fields changed, written to YAML and loaded through
`load_municipality`, so every variant also passes the same validation a project leader's file does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.config import load_municipality
from tasks.content import Point, points_for
from tasks.errors import ConfigError
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.render import (
    ChannelContent,
    render_faq,
    render_newsletter,
    render_poster,
    render_self_service,
    render_sms,
    render_website,
)
from tasks.textmetrics import html_to_text, is_gsm7, lix, sms_info

from .conftest import EXAMPLE_CONFIG

_PDF_TOOLS = {"pdftoppm": "poppler-utils", "pdftotext": "poppler-utils",
              "pdfinfo": "poppler-utils", "zbarimg": "zbar-tools"}  # fmt: skip
_MISSING = sorted({pkg for tool, pkg in _PDF_TOOLS.items() if shutil.which(tool) is None})
needs_pdf_tools = pytest.mark.skipif(
    bool(_MISSING), reason=f"reading PDFs back needs: apt-get install -y {' '.join(_MISSING)}"
)

DROP = object()  # a change that removes the key

# --- Config variants -------------------------------------------------------------------------


@cache
def _raw() -> str:
    return EXAMPLE_CONFIG.read_text(encoding="utf-8")


def raw_example() -> dict[str, Any]:
    """The example config as the project leader wrote it (fresh copy)."""
    return yaml.safe_load(_raw())


def write_variant(folder: Path, changes: dict[str, Any], name: str = "variant") -> Path:
    """The example config with dotted keys set (or removed with DROP), written as YAML."""
    data = raw_example()
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def variant(folder: Path, changes: dict[str, Any], name: str = "variant") -> MunicipalityConfig:
    return load_municipality(write_variant(folder, changes, name))


@cache
def example() -> MunicipalityConfig:
    return load_municipality(EXAMPLE_CONFIG)


# --- Reading HTML back -----------------------------------------------------------------------

_BLOCKS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "p", "li"})


class _Blocks(HTMLParser):
    """Text of every heading, paragraph and list item, with each link written as 'label (url)'.

    Also records the tags and attributes of every element, and the text of <style> elements.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._tag: str | None = None
        self._text: list[str] = []
        self._href: str | None = None
        self._label: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "style":
            self._in_style = True
        elif tag in _BLOCKS:
            self._tag, self._text = tag, []
        elif tag == "a":
            self._href, self._label = dict(attrs).get("href"), []

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        elif tag == "a" and self._href is not None:
            label = "".join(self._label)
            self._text.append(self._href if label == self._href else f"{label} ({self._href})")
            self._href = None
        elif tag == self._tag:
            self.blocks.append((tag, " ".join("".join(self._text).split())))
            self._tag = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        elif self._href is not None:
            self._label.append(data)
        elif self._tag is not None:
            self._text.append(data)


def parse(html: str) -> _Blocks:
    parser = _Blocks()
    parser.feed(html)
    parser.close()
    return parser


def squash(text: str) -> str:
    return " ".join(text.split())


# --- Newsletter ------------------------------------------------------------------------------


@cache
def newsletter() -> ChannelContent:
    return render_newsletter(example())


DATES = {Language.DA: "14. december 2026", Language.EN: "14 December 2026"}


@pytest.mark.parametrize("lang", list(Language))
def test_newsletter_has_a_subject_with_the_date(lang: Language) -> None:
    out = newsletter()
    subject = out.messages[lang].subject
    assert subject and DATES[lang] in subject
    assert "\n" not in subject
    assert out.files[f"{lang.value}/subject.txt"] == subject + "\n"
    assert f"<title>{subject}</title>" in out.messages[lang].html


@pytest.mark.parametrize("lang", list(Language))
def test_newsletter_html_has_css_inlined_and_keeps_the_media_query(lang: Language) -> None:
    html = newsletter().messages[lang].html
    page = parse(html)
    styled = {tag for tag, attrs in page.elements if attrs.get("style")}
    # Mail clients that drop <style> (Gmail apps, Outlook) still get fonts, sizes and colours.
    assert {"body", "div", "h1", "h2", "a"} <= styled
    for tag, attrs in page.elements:
        if tag in ("h1", "h2", "a"):
            assert attrs.get("style"), f"<{tag}> without inline style"
    h1_style = next(attrs["style"] for tag, attrs in page.elements if tag == "h1")
    assert "font-size: 24px" in (h1_style or "")
    assert re.search(r"@media[^{]*max-width:\s*620px", "".join(page.styles))


@pytest.mark.parametrize("lang", list(Language))
def test_newsletter_text_part_carries_every_block_of_the_html(lang: Language) -> None:
    message = newsletter().messages[lang]
    text = squash(message.text)
    blocks = parse(message.html).blocks
    assert len(blocks) > 10
    position = 0
    for tag, block in blocks:
        assert block, f"empty <{tag}>"
        found = text.find(block, position)
        assert found >= 0, f"<{tag}> not in the text part (or out of order): {block!r}"
        position = found + len(block)
    hrefs = {attrs["href"] for tag, attrs in parse(message.html).elements if tag == "a"}
    assert hrefs and all(href in message.text for href in hrefs)
    assert "<" not in message.text and "](" not in message.text


def test_newsletter_danish_letters_are_intact() -> None:
    message = newsletter().messages[Language.DA]
    for part in (message.subject or "", message.html or "", message.text):
        assert "å" in part
        # Mojibake (UTF-8 read as Latin-1), replacement characters and needless entities.
        assert not re.search(r"Ã[¦¸¥†˜…]|\ufffd|&(aelig|oslash|aring|AElig|Oslash|Aring);", part)
    assert "ændrer" in message.html and "ændrer" in message.text
    assert "låner" in message.text and "spørgsmål" in message.html
    assert '<meta charset="utf-8">' in (message.html or "")
    assert newsletter().files["da/body.html"] == message.html


# --- Poster ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configs")


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
    assert pdf_qr_codes(pdf) == [raw_example()["payment"]["self_service"]["url"]]


@needs_pdf_tools
def test_poster_qr_without_a_portal_leads_to_the_website_article(variants: Path) -> None:
    from tasks.pdf import pdf_qr_codes, pdf_text

    config = variant(variants, _one_language({"payment.self_service": DROP}), "no-portal")
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
    from tasks.render import poster_html

    config = example().model_copy(
        update={"channels": example().channels.model_copy(
            update={"poster": example().channels.poster.model_copy(update={"paper": paper})})}
    )  # fmt: skip
    html, _ = poster_html(config, Language.DA)
    css = "".join(parse(html).styles)
    root = _css_size_pt(css, "html", 0)
    # Read from a few metres away: headline ≥ 30 pt, the text ≥ 18 pt (larger still on A3).
    assert _css_size_pt(css, "h1", root) >= 30
    assert _css_size_pt(css, ".lead", root) >= 18
    assert _css_size_pt(css, "ul", root) >= 18
    assert f"size: {paper}" in css


# --- SMS -------------------------------------------------------------------------------------

_PHONE = re.compile(r"(?:\+45)?(?:\s?\d{2}){4}\b")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.\w+")


@pytest.mark.parametrize("lang", list(Language))
def test_sms_is_short_gsm7_and_free_of_amounts_and_personal_data(lang: Language) -> None:
    out = render_sms(example())
    text = out.messages[lang].text
    info = sms_info(text)
    assert is_gsm7(text) and info.encoding == "GSM-7"
    assert info.septets_or_chars <= 306 and info.parts <= 2
    assert out.metrics[lang]["parts"] == info.parts
    assert out.metrics[lang]["characters"] == info.septets_or_chars
    assert "kr." not in text and "DKK" not in text and not re.search(r"\d+\s*kr\b", text)
    # One text for every recipient: no names, e-mail addresses or phone numbers in it at all.
    assert not _EMAIL.search(text) and not _PHONE.search(text)
    contacts = example().contacts
    for contact in (contacts.library, contacts.billing):
        assert contact.phone not in text and str(contact.email) not in text
    assert "Læs mere" in text or lang is Language.EN  # æøå kept: GSM-7 carries them
    assert out.files[f"sms.{lang.value}.txt"] == text + "\n"


def test_sms_longer_than_max_parts_is_a_config_error(variants: Path) -> None:
    config = variant(variants, {"channels.sms.max_parts": 1}, "one-part")
    with pytest.raises(ConfigError, match=r"channels\.sms\.max_parts") as caught:
        render_sms(config)
    assert "parts" in str(caught.value) and "fix:" in str(caught.value)


# --- Self-service ----------------------------------------------------------------------------

DPL_KEYS = {"fees_and_replacement_costs_url", "payment_site_url", "payment_site_button_label",
            "fee_list_body_text", "blocked_patron_e_link_url"}  # fmt: skip
DDB_KEYS = {"ding_debt_show_introtext", "ding_debt_introtext", "ding_debt_enable_internal",
            "ding_debt_enable_external", "ding_debt_enable_external_button",
            "ding_debt_external_button_text", "ding_debt_external_button_url",
            "ding_debt_external_show_extra_information", "ding_debt_external_extra_information"}  # fmt: skip


def test_dpl_config_holds_exactly_the_real_keys_with_the_config_urls() -> None:
    out = render_self_service(example())
    raw = raw_example()
    dpl = yaml.safe_load(out.files["dpl/dpl_fees.settings.yml"])
    assert set(dpl) == DPL_KEYS
    assert all(isinstance(v, str) and v for v in dpl.values())
    portal_url = raw["payment"]["self_service"]["url"]
    assert dpl["payment_site_url"] == portal_url
    assert dpl["blocked_patron_e_link_url"] == portal_url
    assert dpl["fees_and_replacement_costs_url"] == raw["channels"]["faq"]["page_url"]
    assert raw["payment"]["self_service"]["name"] in dpl["payment_site_button_label"]
    assert "MitID" in dpl["fee_list_body_text"] and "gebyr" in dpl["fee_list_body_text"]

    english = yaml.safe_load(out.files["dpl/language/en/dpl_fees.settings.yml"])
    assert english and set(english) <= DPL_KEYS
    assert english["payment_site_button_label"].startswith("Go to")
    assert "fee" in english["fee_list_body_text"]


def test_dpl_without_english_has_no_translation_file(variants: Path) -> None:
    out = render_self_service(variant(variants, {"languages": ["da"]}, "da-only"))
    assert not any(name.startswith("dpl/language/") for name in out.files)


def test_ddb_variables_are_the_real_ding_debt_ones() -> None:
    out = render_self_service(example())
    ddb = json.loads(out.files["ddb/ding_debt.json"])
    assert set(ddb) == DDB_KEYS
    assert ddb["ding_debt_external_button_url"] == raw_example()["payment"]["self_service"]["url"]
    flags = [k for k in DDB_KEYS if k.startswith(("ding_debt_enable", "ding_debt_show"))
             or k.endswith("show_extra_information")]  # fmt: skip
    assert all(ddb[k] in (0, 1) for k in flags)
    # Old debts are payable at the library until March in the example: internal payment stays on.
    assert ddb["ding_debt_enable_internal"] == 1


def _run_drush_script(script: str, work: Path) -> dict[str, str]:
    """Run the generated script with a stand-in `drush` that records its arguments."""
    (work / "bin").mkdir(parents=True)
    stub = work / "bin" / "drush"
    stub.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "with open(os.environ['DRUSH_LOG'], 'a', encoding='utf-8') as log:\n"
        "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)
    (work / "ding_debt.drush.sh").write_text(script, encoding="utf-8")
    log = work / "drush.log"
    env = {**os.environ, "PATH": f"{work / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "DRUSH_LOG": str(log), "HOME": "/nonexistent-home"}  # fmt: skip
    subprocess.run(["sh", "-n", str(work / "ding_debt.drush.sh")], check=True, timeout=10)
    subprocess.run(["sh", str(work / "ding_debt.drush.sh")], check=True, env=env, cwd=work,
                   timeout=30)  # fmt: skip
    values = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        args = json.loads(line)
        assert args[:3] == ["-y", "vset", "--exact"], args
        assert len(args) == 5, f"a value was split into several arguments: {args}"
        values[args[3]] = args[4]
    return values


def test_drush_script_sets_every_variable_exactly(tmp_path: Path) -> None:
    out = render_self_service(example())
    values = _run_drush_script(out.files["ddb/ding_debt.drush.sh"], tmp_path)
    ddb = json.loads(out.files["ddb/ding_debt.json"])
    assert values == {k: str(v) for k, v in ddb.items()}


def test_drush_script_quotes_texts_with_quotes_and_shell_characters(tmp_path: Path) -> None:
    tricky = 'Kim\'s "Betaling"; $HOME $(id) \\ ø'
    config = variant(tmp_path, {"payment.self_service.name": tricky,
                                "contacts.billing.name": "Opkrævningen's team"})  # fmt: skip
    out = render_self_service(config)
    values = _run_drush_script(out.files["ddb/ding_debt.drush.sh"], tmp_path / "run")
    assert values["ding_debt_external_button_text"] == f"Gå til {tricky}"
    assert "Opkrævningen's team" in values["ding_debt_introtext"]
    assert values == {k: str(v) for k, v in json.loads(out.files["ddb/ding_debt.json"]).items()}
    assert yaml.safe_load(out.files["dpl/dpl_fees.settings.yml"])["payment_site_button_label"] == (
        f"Gå til {tricky}"
    )


# --- FAQ -------------------------------------------------------------------------------------

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
    points = points_for(Channel.FAQ, config)
    if case == "example":
        assert points == list(Point)
    else:
        assert Point.LOGIN not in points and Point.NO_MITID not in points
    out = render_faq(config)
    for lang in config.languages:
        expected = [QUESTIONS[p][lang] for p in points]
        assert all(q.endswith("?") for q in expected)
        html_h2 = [text for tag, text in parse(out.files[f"faq.{lang.value}.html"]).blocks
                   if tag == "h2"]  # fmt: skip
        md_h2 = [line[3:].strip() for line in out.files[f"faq.{lang.value}.md"].splitlines()
                 if line.startswith("## ")]  # fmt: skip
        assert html_h2 == expected
        assert md_h2 == expected


# --- Escaping --------------------------------------------------------------------------------


def test_markup_in_free_text_is_refused(tmp_path: Path) -> None:
    path = write_variant(tmp_path, {"library.name": "Eksempel <b>Bibliotekerne</b>"})
    with pytest.raises(ConfigError) as caught:
        load_municipality(path)
    assert "library.name" in str(caught.value)
    assert "plain text" in str(caught.value)


def test_quotes_in_a_library_name_are_html_escaped(tmp_path: Path) -> None:
    name = 'Kim\'s "Læsehus"'
    config = variant(tmp_path, {"library.name": name, "contacts.library.name": name})
    article = render_website(config).files["article.da.html"]
    assert "Kim&#39;s &#34;Læsehus&#34;" in article
    assert name not in article
    assert name in html_to_text(article)  # a browser shows the name as written
    # The CSS inliner re-serialises the e-mail: quotes in text need no escaping there, but the
    # name must still be text, not markup, and read as written.
    news = render_newsletter(config).messages[Language.DA]
    assert f"<p>Venlig hilsen {name}</p>" in (news.html or "")
    assert name in html_to_text(news.html or "")
    assert name in news.text  # the text part is not HTML: no entities there
