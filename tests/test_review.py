"""The review before approval: every message as it goes out, per channel and language, and the counts."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tasks.audience import import_audience
from tasks.channels import render_channel
from tasks.config import load_municipality
from tasks.models import Channel, Language
from tasks.review import Reach, claims_review, review_lines, review_markdown
from tasks.steps import reach_of

from .conftest import EXAMPLE_AUDIENCE, EXAMPLE_CONFIG


@pytest.fixture(scope="module")
def rendered() -> tuple[object, dict[Channel, object], dict[Channel, Reach]]:
    config = load_municipality(EXAMPLE_CONFIG)
    contents = {c: render_channel(c, config) for c in config.channels.enabled()}
    audience = import_audience(EXAMPLE_AUDIENCE, columns=config.audience.columns)
    return config, contents, reach_of(config, contents, audience)


def test_counts_per_channel_are_the_audiences_and_the_branches(rendered: tuple) -> None:
    config, _contents, reach = rendered
    assert reach[Channel.NEWSLETTER].recipients == 645
    assert reach[Channel.SMS].recipients == 348
    assert reach[Channel.SMS].excluded > 0
    branches = [b for b in config.library.branches if b.contact_email]
    assert reach[Channel.POSTER].recipients == len(branches) and branches
    assert Channel.WEBSITE not in reach  # published by a person: nobody is sent anything


def test_the_artifact_holds_every_message_in_full_per_language(rendered: tuple) -> None:
    config, contents, reach = rendered
    pictures: list[bytes] = []

    def preview(pdf: bytes) -> bytes:
        pictures.append(pdf)
        return b"\x89PNG fake"

    markdown = review_markdown(config, contents, reach, poster_preview=preview)
    assert "- SMS: 348 låntagere" in markdown and "- Nyhedsbrev: 645 låntagere" in markdown
    for lang in config.languages:
        sms = contents[Channel.SMS].messages[lang].text
        assert f"> {sms.rstrip()}" in markdown, lang
        newsletter = contents[Channel.NEWSLETTER].messages[lang]
        assert f"**Emne:** {newsletter.subject}" in markdown
        article = contents[Channel.WEBSITE].files[f"article.{lang.value}.md"]
        # Quoted line by line, every line whole: what the reader sees is what goes out.
        for text in (newsletter.text, str(article)):
            quoted = "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())
            assert quoted.rstrip() in markdown, lang
    # The poster as a picture, one per language, from its own PDF.
    assert len(pictures) == len(config.languages)
    assert markdown.count("](data:image/png;base64,") == len(config.languages)
    assert "Plakat, dansk" in markdown and "Plakat, engelsk" in markdown
    # No borrower's address or number: counts only.
    assert "@example.com" not in markdown and "+45" not in markdown
    # The claims review: each sentence with the decision fields it rests on, per language.
    assert claims_review() is not None
    assert "# Gennemgang af udsagn (dansk)" in markdown
    assert "decisions.new\\_debts.payment\\_days" in markdown


def test_the_terminal_review_has_the_sms_whole_the_subjects_and_the_counts(
    rendered: tuple,
) -> None:
    config, contents, reach = rendered
    lines = review_lines(contents, reach, list(config.languages))
    text = "\n".join(lines)
    assert lines[0].startswith("Nyhedsbrev: 645 låntagere")
    for row in contents[Channel.SMS].messages[Language.DA].text.splitlines():
        assert f"  da | {row}" in lines
    subject = contents[Channel.NEWSLETTER].messages[Language.EN].subject
    assert f"  en emne: {subject}" in lines
    assert "Plakat: " in text and "filialer" in text


def test_the_review_is_printed_by_run_without_approve(tmp_path: Path) -> None:
    from flows.cli import _print_review

    config = load_municipality(EXAMPLE_CONFIG)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        _print_review(config, EXAMPLE_AUDIENCE)
    out = printed.getvalue()
    assert out.startswith("Gennemsyn: dette sendes, når udsendelsen godkendes")
    assert "SMS: 348 låntagere" in out
