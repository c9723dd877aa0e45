"""The social media post: a short text within Facebook's and Instagram's limits, and a 1080x1080 image."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from tasks.channels import spec
from tasks.channels.social_post import IMAGE, PLATFORM_LIMITS, SIZE, TEXT_LIMIT
from tasks.config import load_card
from tasks.errors import ConfigError
from tasks.models import Channel, Language, StepKind
from tasks.render import ChannelContent, Picture, picture
from tasks.steps import build_plan
from tasks.textmetrics import lix

from .helpers import example, needs_pdf_tools, raw_example, variant

SOCIAL_POST = spec(Channel.SOCIAL_POST)
DATES = {Language.DA: "14. december 2026", Language.EN: "14 December 2026"}
_PHONE = re.compile(r"(?:\+45)?(?:\s?\d{2}){4}\b")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.\w+")


@cache
def posts() -> ChannelContent:
    return SOCIAL_POST.render(example())


@cache
def image(lang: Language) -> Picture:
    return picture(example(), SOCIAL_POST, lang, IMAGE, SIZE)


@pytest.mark.parametrize("lang", list(Language))
def test_text_is_short_within_every_platform_limit_and_in_its_language(lang: Language) -> None:
    text = str(posts().files[f"post.{lang.value}.txt"])
    characters = len(text.rstrip("\n"))
    assert characters <= TEXT_LIMIT == 500 < min(PLATFORM_LIMITS.values()) == 2_200
    assert posts().metrics[lang]["characters"] == characters
    assert posts().metrics[lang]["limit"] == TEXT_LIMIT
    headline = "Nyt om gebyrer" if lang is Language.DA else "News about library fees"
    more = "Læs mere" if lang is Language.DA else "Read more"
    page = raw_example()["channels"]["website"]["page_url"]
    assert text.startswith(f"{headline}\n\n") and f"{more}: {page}" in text
    assert DATES[lang] in text and "Mit betalingsoverblik" in text
    assert lix(text) <= 35
    # One text for every reader: no amounts, addresses or phone numbers, and no hashtags
    # unless the config names some (the example names none).
    assert not _EMAIL.search(text) and not _PHONE.search(text) and "kr." not in text
    assert "#" not in text
    # Paragraphs apart by one blank line, each on one line, no stray spaces.
    assert "\n\n\n" not in text and all(
        p == " ".join(p.split()) for p in text.rstrip("\n").split("\n\n")
    )


def test_hashtags_only_as_configured_in_the_last_paragraph(variants: Path) -> None:
    tags = ["#bibliotek", "#gebyrer_på_biblioteket"]
    config = variant(variants, {"channels.social_post.hashtags": tags}, "hashtags")
    out = SOCIAL_POST.render(config)
    for lang in config.languages:
        text = str(out.files[f"post.{lang.value}.txt"])
        assert text.rstrip("\n").split("\n\n")[-1] == "#bibliotek #gebyrer_på_biblioteket"


def test_a_post_over_the_limit_is_a_config_error(variants: Path) -> None:
    tags = [f"#emne{i}_med_et_langt_navn" for i in range(25)]
    config = variant(variants, {"channels.social_post.hashtags": tags}, "many-hashtags")
    with pytest.raises(ConfigError, match=r"more than 500 .*channels\.social_post\.hashtags"):
        SOCIAL_POST.render(config)


@pytest.mark.parametrize("tag", ["bibliotek", "#to ord", "#", "#<b>"])
def test_a_hashtag_that_is_not_one_is_refused_with_the_field(variants: Path, tag: str) -> None:
    with pytest.raises(ConfigError, match=r"channels\.social_post\.hashtags.*e\.g\. #bibliotek"):
        variant(variants, {"channels.social_post.hashtags": [tag]}, "bad-hashtag")


@needs_pdf_tools
@pytest.mark.parametrize("lang", list(Language))
def test_image_is_1080_by_1080_with_the_key_message_in_its_language(lang: Language) -> None:
    from tasks.pdf import pdf_info, pdf_text, png_size

    png = posts().files[f"image.{lang.value}.png"]
    assert isinstance(png, bytes) and png_size(png) == (1080, 1080)
    assert image(lang).png == png
    assert pdf_info(image(lang).pdf).pages == 1
    text = pdf_text(image(lang).pdf)
    words = str(posts().files[f"image.{lang.value}.txt"]).splitlines()
    assert words == image(lang).lines and all(line in text for line in words)
    assert ("Nyt om gebyrer" if lang is Language.DA else "News about library fees") in text
    assert DATES[lang] in text


def test_the_platforms_named_in_the_config_name_the_step_and_the_audience(
    variants: Path,
) -> None:
    config = example()
    [step] = SOCIAL_POST.checklist_steps(config)
    assert (step.id, step.kind) == ("inform.social_post", StepKind.MANUAL)
    assert step.text == "Publicér opslaget på Facebook og Instagram"
    assert (
        SOCIAL_POST.audience_label(config) == "Followers of the library on Facebook and Instagram"
    )
    instagram = variant(variants, {"channels.social_post.platforms": ["instagram"]}, "instagram")
    assert SOCIAL_POST.checklist_steps(instagram)[0].text == "Publicér opslaget på Instagram"
    assert SOCIAL_POST.audience_label(instagram) == "Followers of the library on Instagram"


def test_plan_dates_it_from_go_live() -> None:
    config = example()
    content = ChannelContent(Channel.SOCIAL_POST, key_message="Nøglebudskab")
    card = load_card(config.card)
    [planned] = build_plan(config, card, {Channel.SOCIAL_POST: content}, None).channels
    assert planned.day.isoformat() == "2026-11-30"  # go-live 14 December, offset -14 days
    assert planned.responsible == "Webredaktør" and planned.recipients is None
    assert SOCIAL_POST.delivers is None
