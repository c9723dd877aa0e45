"""The website article, and free text from the config: refused when it is markup, escaped when it is quotes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.channels import spec
from tasks.config import load_municipality
from tasks.errors import ConfigError
from tasks.models import Channel, Language
from tasks.textmetrics import html_to_text

from .helpers import variant, write_variant


def test_markup_in_free_text_is_refused(tmp_path: Path) -> None:
    path = write_variant(tmp_path, {"library.name": "Eksempel <b>Bibliotekerne</b>"})
    with pytest.raises(ConfigError) as caught:
        load_municipality(path)
    assert "library.name" in str(caught.value)
    assert "plain text" in str(caught.value)


def test_quotes_in_a_name_are_html_escaped(tmp_path: Path) -> None:
    name = 'Kim\'s "Læsehus"'
    # The article names the collection office ("... så kontakt <name>"); the newsletter signs
    # with the library's name.
    names = ("library.name", "municipality.name", "contacts.library.name", "contacts.billing.name")
    config = variant(tmp_path, dict.fromkeys(names, name))
    article = spec(Channel.WEBSITE).render(config).files["article.da.html"]
    assert "Kim&#39;s &#34;Læsehus&#34;" in article
    assert name not in article
    assert name in html_to_text(article)  # a browser shows the name as written
    # The CSS inliner re-serialises the e-mail: quotes in text need no escaping there, but the
    # name must still be text, not markup, and read as written.
    news = spec(Channel.NEWSLETTER).render(config).messages[Language.DA]
    assert f"<p>Venlig hilsen {name}</p>" in (news.html or "")
    assert name in html_to_text(news.html or "")
    assert name in news.text  # the text part is not HTML: no entities there
