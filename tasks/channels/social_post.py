"""A post on the library's Facebook and Instagram pages: a short text and a 1080x1080 image per language."""

from __future__ import annotations

from tasks.channels.base import ChannelSpec, GalleryView, Labels, Step, View
from tasks.content import Claim, Point
from tasks.errors import ConfigError
from tasks.models import Channel, Language, MunicipalityConfig, SocialPostSettings, StepKind
from tasks.render import ChannelContent, picture, render_template, squash

NAME = "post"
IMAGE = "image"
SIZE = (1080, 1080)  # square: shown whole in both feeds
# The platforms' own limits: an Instagram caption holds 2,200 characters, a Facebook post 63,206.
PLATFORM_LIMITS = {"instagram": 2_200, "facebook": 63_206}
# Far below both: a post read in a feed must be short; a longer one sends people to the article.
TEXT_LIMIT = 500
_PLATFORM_NAMES = {"facebook": "Facebook", "instagram": "Instagram"}


def _paragraphs(text: str) -> str:
    """Each paragraph on one line with single spaces; paragraphs apart by one blank line."""
    paragraphs = (squash(p) for p in text.split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p) + "\n"


def _platform_names(config: MunicipalityConfig) -> list[str]:
    settings = config.channels.social_post
    return [_PLATFORM_NAMES[p] for p in (settings.platforms if settings else _PLATFORM_NAMES)]


class SocialPost(ChannelSpec):
    channel = Channel.SOCIAL_POST
    settings = SocialPostSettings
    points = (Point.WHAT_CHANGES, Point.HOW_TO_PAY, Point.OLD_DEBTS)
    audience = Labels(
        da="Bibliotekets følgere på sociale medier", en="Followers of the library on social media"
    )
    labels = Labels(da="Opslag på sociale medier", en="Social media post")
    gallery = GalleryView(View.IMAGE, IMAGE)
    # Posted by a person in the platforms' own tools: no account or token of the library's here.
    delivers = None
    step_order = 35

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        from tasks.textmetrics import lix

        out = ChannelContent(self.channel)
        for lang in config.languages:
            text, claims = self.text_and_claims(config, lang)
            image = picture(config, self, lang, IMAGE, SIZE)
            out.claims[lang] = claims + [c for c in image.claims if c not in claims]
            out.files[f"{NAME}.{lang.value}.txt"] = text
            out.files[f"{IMAGE}.{lang.value}.png"] = image.png
            # The words on the image: paste them as its alt text when publishing.
            out.files[f"{IMAGE}.{lang.value}.txt"] = "\n".join(image.lines) + "\n"
            out.metrics[lang] = {
                "lix": round(lix(text), 1),
                "characters": len(text.rstrip("\n")),
                "limit": TEXT_LIMIT,
                "size": "x".join(map(str, SIZE)),
            }
            if lang is Language.DA:
                out.key_message = image.lines[0]
        return out

    def text(self, config: MunicipalityConfig, language: Language) -> str:
        """The post's text in `language`; ConfigError when it is longer than TEXT_LIMIT."""
        return self.text_and_claims(config, language)[0]

    def text_and_claims(
        self, config: MunicipalityConfig, language: Language
    ) -> tuple[str, list[Claim]]:
        """The post's text and the claims it makes; ConfigError when longer than TEXT_LIMIT."""
        settings = config.channels.social_post
        hashtags = list(settings.hashtags) if settings else []
        ctx = {**self.context(config, language), "hashtags": hashtags}
        text = _paragraphs(render_template(f"social_post/{language.value}/post.txt.j2", ctx))
        characters = len(text.rstrip("\n"))
        if characters > TEXT_LIMIT:
            raise ConfigError(
                f"the social media post ({language.value}) has {characters} characters, more "
                f"than {TEXT_LIMIT} (fix: use fewer channels.social_post.hashtags, or "
                "shorten the names in the municipality config)"
            )
        return text, list(ctx["claims"].claims)

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        platforms = " og ".join(_platform_names(config))
        return [self.step(StepKind.MANUAL, f"Publicér opslaget på {platforms}")]

    def audience_label(self, config: MunicipalityConfig, lang: str = "en") -> str:
        if lang == "da":
            return f"Bibliotekets følgere på {' og '.join(_platform_names(config))}"
        return f"Followers of the library on {' and '.join(_platform_names(config))}"
