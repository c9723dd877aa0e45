"""Real municipalities' choices, each from its published page: every channel, both languages.

Each config in this folder is rendered through every channel (tasks.channels.render_channel, as
the flow's render step does, without Prefect);
its facts must appear in the full texts, its `everywhere` facts in every channel, and no channel
may state what the page does not (expectations.py).
"""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

import pytest

from tasks.channels import render_channel, spec
from tasks.config import load_municipality
from tasks.models import Channel, Language
from tasks.render import ChannelContent

from ..test_cli import fbsflow
from .expectations import COMMON_MUST_NOT, EXPECTATIONS

HERE = Path(__file__).parent
CONFIGS = sorted(p.stem for p in HERE.glob("*.yaml"))
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@cache
def _contents(name: str) -> dict[Channel, ChannelContent]:
    config = load_municipality(HERE / f"{name}.yaml")
    return {channel: render_channel(channel, config) for channel in config.channels.enabled()}


def _language_of(filename: str) -> Language | None:
    """The language of a channel's file by its name; None for a file that holds both."""
    parts = re.split(r"[./]", filename)
    for language in Language:
        if language.value in parts:
            return language
    return None


def _plain(text: str) -> str:
    """Text as a reader sees it: tags out, entities decoded, white space as single spaces."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text)))


@cache
def _texts(name: str, channel: Channel, language: Language) -> str:
    """Every text one channel renders in one language (files and messages), as plain text."""
    content = _contents(name)[channel]
    parts = [
        value
        for filename, value in content.files.items()
        if isinstance(value, str) and _language_of(filename) in (language, None)
    ]
    if (message := content.messages.get(language)) is not None:
        parts += [message.subject or "", message.text, message.html or ""]
    return _plain("\n".join(parts))


def test_every_config_has_its_expectations_and_ten_or_more_exist() -> None:
    assert sorted(EXPECTATIONS) == CONFIGS
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("name", CONFIGS)
def test_check_accepts_the_config(name: str) -> None:
    done = fbsflow("check", str(HERE / f"{name}.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")


@pytest.mark.slow
@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("name", CONFIGS)
def test_the_full_texts_state_the_pages_facts(name: str, language: Language) -> None:
    full = " ".join(_texts(name, c, language) for c in (Channel.WEBSITE, Channel.FAQ))
    missing = [p for p in EXPECTATIONS[name].must[language.value] if p not in full]
    assert not missing, f"{name} ({language.value}) does not say {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("name", CONFIGS)
def test_no_channel_says_what_the_page_does_not(name: str, language: Language) -> None:
    forbidden = EXPECTATIONS[name].must_not[language.value] + COMMON_MUST_NOT[language.value]
    found = {
        channel.value: hits
        for channel in _contents(name)
        if (hits := [p for p in forbidden if p.lower() in _texts(name, channel, language).lower()])
    }
    assert not found, f"{name} ({language.value}) says what its page does not: {found}"


@pytest.mark.slow
@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("name", [n for n in CONFIGS if EXPECTATIONS[n].everywhere])
def test_every_channel_states_the_facts_it_must_all_carry(name: str, language: Language) -> None:
    phrases = EXPECTATIONS[name].everywhere[language.value]
    missing = {
        channel.value: lacking
        for channel in _contents(name)
        if (lacking := [p for p in phrases if p not in _texts(name, channel, language)])
    }
    assert not missing, f"{name} ({language.value}): channels without {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_the_branch_mail_greets_its_branches_and_is_signed_by_a_person_or_the_library(
    name: str,
) -> None:
    config = load_municipality(HERE / f"{name}.yaml")
    mail = spec(Channel.POSTER).branch_messages(config, _contents(name)[Channel.POSTER])
    text = mail[Language.DA].text
    reached = [b.name for b in config.library.branches if b.contact_email]
    greeting = text.splitlines()[0]
    assert greeting.startswith("Kære ") and all(b in greeting for b in reached), greeting
    assert not [b.name for b in config.library.branches if b.name not in reached and b.name in text]
    signature = text.split("Venlig hilsen\n", 1)[1].splitlines()
    leader = config.project_leader
    assert signature[0] == (leader.name if leader else config.library.name)
    assert "Filialledere" not in text  # the poster channel's `responsible` in every config
    assert [a.filename for a in mail[Language.DA].attachments] == [
        f"plakat-{language.value}.pdf" for language in config.languages
    ]


@pytest.mark.parametrize(
    ("language", "adjacent"),
    [
        (Language.DA, "MobilePay. Send til 447369."),
        (Language.EN, "MobilePay. Send to 447369."),
    ],
)
def test_a_payment_methods_restriction_follows_the_method(
    language: Language, adjacent: str
) -> None:
    # Faxe lists MobilePay last, after the giro slip and the netbank: its restriction ("send to
    # 447369 with your borrower number") is about MobilePay and must read so.
    assert adjacent in _texts("faxe", Channel.WEBSITE, language)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_quality_gates_hold_for_every_real_municipality(name: str) -> None:
    """Easy to read (LIX <= 35) for the SMS, the poster and the article; the SMS in GSM-7, in at
    most two parts and without amounts: for each real municipality's facts, not only the
    example's."""
    from tasks.channels.poster import poster_html
    from tasks.textmetrics import html_to_text, is_gsm7, lix

    config = load_municipality(HERE / f"{name}.yaml")
    contents = _contents(name)
    for lang in config.languages:
        if Channel.SMS in contents:
            sms = contents[Channel.SMS]
            text = sms.messages[lang].text
            assert is_gsm7(text) and sms.metrics[lang]["parts"] <= 2, (lang, text)
            assert not re.search(r"\d+ ?kr\.|DKK", text), (lang, text)
            assert lix(text) <= 35, (lang, text)
        if Channel.POSTER in contents:
            poster, _, _ = poster_html(config, lang)
            assert lix(html_to_text(poster)) <= 35, lang
        if Channel.WEBSITE in contents:
            assert contents[Channel.WEBSITE].metrics[lang]["lix"] <= 35, lang
