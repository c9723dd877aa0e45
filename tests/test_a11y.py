"""WCAG 2.1 AA by axe-core in Chromium: web article, FAQ, newsletter and the preview gallery.

Danish public-sector web content must meet WCAG 2.1 AA (webtilgængelighedsloven). The pages are
checked for the example municipality and for decision combinations that change which sections,
lists and links a page has. axe cannot judge everything (plain language, sensible headings),
but every rule it has for A and AA must pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tasks.channels import render_channel
from tasks.config import load_municipality
from tasks.gallery import build_gallery
from tasks.models import Channel, Language, MunicipalityConfig
from tests.support.axe import Browser, axe_path, chromium_path, format_violations

from .channels.helpers import DROP, variant
from .conftest import EXAMPLE_CONFIG

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_path() is None, reason="needs Chromium: apt-get install chromium"),
    pytest.mark.skipif(axe_path() is None, reason="needs axe-core: run `npm ci` in the repo root"),
]

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

# Combinations that change the pages' structure most: which points apply (login, no MitID),
# how many ways to pay (list length), links to a portal and to an FAQ, one or two languages.
CASES: dict[str, dict[str, Any]] = {
    "example": {},
    "paper-only": {
        "decisions.new_debts.portal": DROP,
        "decisions.new_debts.invoice": {"digital_post": False},
        "decisions.payment_methods": [{"method": "giro_slip"}],
        "decisions.old_debts": {"payable": "no"},
        "decisions.routing.account_page_shows": "all",
        "decisions.new_debts.reminder_fee_kr": DROP,
    },
    "portal-without-login": {
        "decisions.new_debts.portal.login": "none",
        "decisions.without_mitid": DROP,
        "decisions.payment_methods": [{"method": "card"}],
    },
    "danish-only-without-faq": {
        "languages": ["da"],
        "channels.faq": DROP,
        "decisions.new_debts.portal": DROP,
        "decisions.without_mitid.paper_invoice": False,
        "decisions.routing.account_page_shows": "all",
    },
    "no-decisions": {"decisions": DROP},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as shared:
        yield shared


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MunicipalityConfig]:
    folder = tmp_path_factory.mktemp("a11y-configs")
    return {
        name: load_municipality(EXAMPLE_CONFIG) if not changes else variant(folder, changes, name)
        for name, changes in CASES.items()
    }


def _pages(config: MunicipalityConfig, *, every_language: bool) -> dict[str, str]:
    """The web pages and e-mails of one config to check: name -> HTML.

    The FAQ is checked in every language; the article and the newsletter in Danish only unless
    `every_language`: the English templates mirror the Danish ones block for block, so a second
    language adds little but a second of browser time per page.
    """
    website = render_channel(Channel.WEBSITE, config)
    newsletter = render_channel(Channel.NEWSLETTER, config)
    faq = render_channel(Channel.FAQ, config) if config.channels.faq is not None else None
    pages: dict[str, str] = {}
    for lang in config.languages:
        if faq is not None:
            pages[f"faq.{lang.value}.html"] = faq.files[f"faq.{lang.value}.html"]
        if every_language or lang is Language.DA:
            pages[f"article.{lang.value}.html"] = website.files[f"article.{lang.value}.html"]
            html = newsletter.messages[lang].html
            assert html is not None
            pages[f"newsletter.{lang.value}.html"] = html
    return pages


def _check(browser: Browser, path: Path) -> None:
    violations = browser.axe(path, tags=WCAG_21_AA)
    assert violations == [], f"{path.name}:\n{format_violations(violations)}"


@pytest.mark.parametrize("case", list(CASES))
def test_pages_and_newsletter_pass_axe(
    case: str, configs: dict[str, MunicipalityConfig], browser: Browser, tmp_path: Path
) -> None:
    config = configs[case]
    pages = _pages(config, every_language=case == "example")
    assert any(name.startswith("newsletter.") for name in pages)
    for name, html in pages.items():
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        _check(browser, path)


@cache
def _example_contents() -> dict[Channel, Any]:
    config = load_municipality(EXAMPLE_CONFIG)
    return {channel: render_channel(channel, config) for channel in config.channels.enabled()}


def test_gallery_passes_axe(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "gallery.html"
    path.write_text(build_gallery(_example_contents(), title="Eksempel Kommune"), encoding="utf-8")
    _check(browser, path)
