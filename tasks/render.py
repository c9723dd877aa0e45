"""Rendering helpers every channel shares: templates/<channel>/<lang>/<name>.<part>.j2, the context, a web page.

Each channel's own renderer lives in its module under tasks/channels/; `tasks.channels.render_channel`
renders one channel for every language the municipality uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from tasks import markup
from tasks.config import TEMPLATES_DIR
from tasks.content import Claim, ClaimLog, Point, facts, method_name
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.providers.base import Message

if TYPE_CHECKING:
    from tasks.channels.base import ChannelSpec


@dataclass
class ChannelContent:
    """One channel's rendered output: files for the output folder, messages to deliver, metrics."""

    channel: Channel
    files: dict[str, str | bytes] = field(default_factory=dict)  # relative path -> content
    messages: dict[Language, Message] = field(default_factory=dict)
    # language -> figures the plan shows (LIX, SMS parts, characters)
    metrics: dict[Language, dict[str, Any]] = field(default_factory=dict)
    key_message: str = ""
    # language -> every citizen sentence the channel says, with the fields it rests on
    claims: dict[Language, list[Claim]] = field(default_factory=dict)

    def record_claims(self, language: Language, context: dict[str, Any]) -> None:
        """Keep the claims a rendering in `language` made with `context` (see `context`)."""
        self.claims[language] = list(context["claims"].claims)


@cache
def environment() -> Environment:
    # One environment for all templates: HTML templates autoescape, markdown and text do not
    # (their values are plain text by validation and get escaped when markdown becomes HTML).
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=False,
    )
    # "250 kr." already ends a sentence; a second full stop would read as a typo.
    env.filters["sentence"] = lambda text: text if str(text).endswith(".") else f"{text}."
    # A paragraph built from optional sentences: one space between those that are there.
    env.filters["squash"] = lambda text: " ".join(str(text).split())
    # A section's paragraphs as they are, without the double spaces an empty claim leaves.
    env.filters["tidy"] = lambda text: "\n".join(
        " ".join(line.split()) for line in str(text).strip().splitlines()
    )
    return env


def more_url(config: MunicipalityConfig) -> str:
    """Where a short text sends citizens to read more: the article, else the FAQ, else the site."""
    channels = config.channels
    website_url = channels.website.page_url if channels.website else None
    faq_url = channels.faq.page_url if channels.faq else None
    return str(website_url or faq_url or config.library.website)


def payment_url(config: MunicipalityConfig) -> str:
    """Where a QR code leads: the payment self-service, else the page to read more."""
    portal = config.decisions.new_debts.portal
    return str(portal.url) if portal else more_url(config)


# Field paths the point templates name often, short: P ~ ".name" is the portal's name.
_PATHS = {
    "P": "decisions.new_debts.portal",
    "I": "decisions.new_debts.invoice",
    "N": "decisions.new_debts",
    "O": "decisions.old_debts",
    "R": "decisions.routing",
}


def context(
    config: MunicipalityConfig, language: Language, points: Sequence[Point]
) -> dict[str, Any]:
    """What every channel template sees: the config, its facts in `language`, the points to say,
    and `claim`/`fixed`, which record each sentence in `claims` (a ClaimLog)."""
    faq = config.channels.faq
    # A FAQ switched off is not published: no text links to it.
    faq_url = faq.page_url if faq is not None and faq.enabled else None
    log = ClaimLog(config, language)
    decisions = config.decisions
    methods = decisions.payment_methods

    def methods_in(names: list[str]) -> list[Any]:
        return [m for m in methods if m.method.value in names]

    def mfield(method: Any, attribute: str = "method") -> str:
        return f"decisions.payment_methods.{methods.index(method)}.{attribute}"

    return {
        "c": config,
        "d": decisions,
        "nd": decisions.new_debts,
        "od": decisions.old_debts,
        "portal": decisions.new_debts.portal,
        "inv": decisions.new_debts.invoice,
        "f": facts(config, language),
        "lang": language.value,
        "points": [p.value for p in points],
        "faq_url": str(faq_url) if faq_url else None,
        "more_url": more_url(config),
        "tight": False,  # the SMS's shorter wording (tasks/channels/sms.py)
        # The text is shown on the library's own fee page (tasks/channels/self_service.py): that
        # page is "her", never a link to itself.
        "here": False,
        "claims": log,
        "claim": log.claim,
        "fixed": log.fixed,
        "methods_in": methods_in,
        "mfield": mfield,
        "mfields": lambda chosen: [mfield(m) for m in chosen],
        "names": lambda chosen: _join([method_name(m.method, language) for m in chosen], language),
        **_PATHS,
    }


def _join(items: list[str], language: Language) -> str:
    """ "a, b eller c": the ways to pay are alternatives."""
    from tasks.content import join

    return join(items, language, {Language.DA: "eller", Language.EN: "or"})


def point_text(config: MunicipalityConfig, language: Language, point: Point, style: str) -> str:
    """One point's text on its own (claims recorded in a throw-away log)."""
    ctx = context(config, language, [point])
    pt = environment().get_template(f"_points/{language.value}.md.j2").make_module(ctx)
    return str(getattr(pt, point.value)(style))


def render_template(name: str, context: dict[str, Any]) -> str:
    env = environment()
    template = env.get_template(name)
    lang = context["lang"]
    # Every channel template may use the points macros of its language as `pt`.
    pt = env.get_template(f"_points/{lang}.md.j2").make_module(context)
    return template.render(context, pt=pt).strip() + "\n"


def squash(text: str) -> str:
    """One line, single spaces: SMS and short texts are built from sentence fragments."""
    return " ".join(text.split())


def short_points(context: dict[str, Any], channel: Channel | None = None) -> list[str]:
    """Each of the context's points in its short form, one plain sentence or two each, and the
    channel's extra sentence last; points the decisions leave empty are left out."""
    pt = environment().get_template(f"_points/{context['lang']}.md.j2").make_module(context)
    lines = [squash(str(getattr(pt, p)("short"))) for p in context["points"]]
    if channel is not None:
        lines.append(squash(str(pt.extra(channel.value))))
    return [line for line in lines if line]


def web_page(config: MunicipalityConfig, spec: ChannelSpec, name: str) -> ChannelContent:
    """A page for a website: `<name>.<lang>.md` from its template and `<name>.<lang>.html` from it."""
    channel = spec.channel
    out = ChannelContent(channel)
    for lang in config.languages:
        ctx = spec.context(config, lang)
        md = render_template(f"{channel.value}/{lang.value}/{name}.md.j2", ctx)
        # Points the decisions leave empty leave their blank lines behind; the file is read as is.
        md = re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"
        title = markup.first_heading(md)
        html = render_template(
            "_layouts/page.html.j2", {**ctx, "title": title, "body": markup.to_html(md)}
        )
        out.files[f"{name}.{lang.value}.md"] = md
        out.files[f"{name}.{lang.value}.html"] = html
        out.record_claims(lang, ctx)
        out.metrics[lang] = {"lix": lix_of_html(html)}
        if lang is Language.DA:
            out.key_message = title
    return out


def lix_of_html(html: str) -> float:
    from tasks.textmetrics import html_to_text, lix

    return round(lix(html_to_text(html)), 1)


_PICTURE_CHARS = 200


@dataclass(frozen=True)
class Picture:
    """An image for a screen or a feed, and the words drawn on it."""

    png: bytes
    pdf: bytes  # the page it was drawn from, to read its text back
    lines: list[str]  # the key message first
    lix: float  # of the text as drawn
    claims: list[Claim]  # every sentence drawn, with its fields


def picture(
    config: MunicipalityConfig,
    spec: ChannelSpec,
    language: Language,
    name: str,
    size: tuple[int, int],
    *,
    qr_url: str | None = None,
) -> Picture:
    """templates/<channel>/<lang>/<name>.html.j2 with the channel's short points, as a PNG of
    exactly `size` pixels; with `qr_url`, a QR code to it beside the text."""
    from markupsafe import Markup

    from tasks.pdf import pdf_text, qr_svg, render_png
    from tasks.textmetrics import lix

    ctx = spec.context(config, language)
    lines = short_points(ctx, spec.channel)
    width, height = size
    # More facts, smaller type, so that every line stays on the picture: full size up to
    # _PICTURE_CHARS characters, then shrinking with the square root of the excess.
    characters = sum(len(line) for line in lines)
    scale = min(1.0, (_PICTURE_CHARS / characters) ** 0.5) if characters else 1.0
    html = render_template(
        f"{spec.channel.value}/{language.value}/{name}.html.j2",
        {
            **ctx,
            "width": width,
            "height": height,
            "lead": lines[0],
            "lines": lines[1:],
            "qr": Markup(qr_svg(qr_url)) if qr_url else None,
            "qr_url": qr_url,
            "scale": scale,
        },
    )
    png, pdf = render_png(html, width, height, base_url=str(TEMPLATES_DIR))
    return Picture(png, pdf, lines, round(lix(pdf_text(pdf)), 1), list(ctx["claims"].claims))
