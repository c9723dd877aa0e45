"""Render every channel's citizen texts from templates/<channel>/<lang>/<name>.<part>.j2 and the content table."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import css_inline
import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from tasks import markup
from tasks.config import TEMPLATES_DIR
from tasks.content import facts, points_for
from tasks.errors import ConfigError
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.providers.base import Attachment, Message


@dataclass
class ChannelContent:
    """One channel's rendered output: files for the output folder, messages to deliver, metrics."""

    channel: Channel
    files: dict[str, str | bytes] = field(default_factory=dict)  # relative path -> content
    messages: dict[Language, Message] = field(default_factory=dict)
    # language -> figures the plan shows (LIX, SMS parts, characters)
    metrics: dict[Language, dict[str, Any]] = field(default_factory=dict)
    key_message: str = ""


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
    return env


def _context(config: MunicipalityConfig, language: Language, channel: Channel) -> dict[str, Any]:
    channels = config.channels
    website_url = channels.website.page_url if channels.website else None
    faq_url = channels.faq.page_url if channels.faq else None
    return {
        "c": config,
        "pay": config.payment,
        "portal": config.payment.self_service,
        "f": facts(config, language),
        "lang": language.value,
        "points": [p.value for p in points_for(channel, config)],
        "faq_url": str(faq_url) if faq_url else None,
        "more_url": str(website_url or faq_url or config.library.website),
    }


def render_template(name: str, context: dict[str, Any]) -> str:
    env = environment()
    template = env.get_template(name)
    lang = context["lang"]
    # Every channel template may use the points macros of its language as `pt`.
    pt = env.get_template(f"_points/{lang}.md.j2").make_module(context)
    return template.render(context, pt=pt).strip() + "\n"


def _squash(text: str) -> str:
    """One line, single spaces: SMS and short texts are built from sentence fragments."""
    return " ".join(text.split())


def _page(config: MunicipalityConfig, channel: Channel, name: str) -> ChannelContent:
    out = ChannelContent(channel)
    for lang in config.languages:
        ctx = _context(config, lang, channel)
        md = render_template(f"{channel.value}/{lang.value}/{name}.md.j2", ctx)
        title = markup.first_heading(md)
        html = render_template(
            "_layouts/page.html.j2", {**ctx, "title": title, "body": markup.to_html(md)}
        )
        out.files[f"{name}.{lang.value}.md"] = md
        out.files[f"{name}.{lang.value}.html"] = html
        out.metrics[lang] = {"lix": _lix_of_html(html)}
        if lang is Language.DA:
            out.key_message = title
    return out


def _lix_of_html(html: str) -> float:
    from tasks.textmetrics import html_to_text, lix

    return round(lix(html_to_text(html)), 1)


def render_website(config: MunicipalityConfig) -> ChannelContent:
    return _page(config, Channel.WEBSITE, "article")


def render_faq(config: MunicipalityConfig) -> ChannelContent:
    return _page(config, Channel.FAQ, "faq")


def render_newsletter(config: MunicipalityConfig) -> ChannelContent:
    out = ChannelContent(Channel.NEWSLETTER)
    inliner = css_inline.CSSInliner(keep_style_tags=True)  # media queries stay for responsive mail
    for lang in config.languages:
        ctx = _context(config, lang, Channel.NEWSLETTER)
        base = f"newsletter/{lang.value}/newsletter"
        subject = _squash(render_template(f"{base}.subject.j2", ctx))
        md = render_template(f"{base}.md.j2", ctx)
        html = inliner.inline(
            render_template(
                "_layouts/email.html.j2",
                {**ctx, "title": subject, "body": markup.to_html(md)},
            )
        )
        text = markup.to_text(md)
        out.messages[lang] = Message(
            Channel.NEWSLETTER, lang, text=text, subject=subject, html=html
        )
        out.files[f"{lang.value}/subject.txt"] = subject + "\n"
        out.files[f"{lang.value}/body.html"] = html
        out.files[f"{lang.value}/body.txt"] = text
        out.metrics[lang] = {"lix": _lix_of_html(html)}
        if lang is Language.DA:
            out.key_message = subject
    return out


def render_sms(config: MunicipalityConfig) -> ChannelContent:
    from tasks.textmetrics import NotGsm7Error, lix, sms_info, to_gsm7

    settings = config.channels.sms
    assert settings is not None
    out = ChannelContent(Channel.SMS)
    for lang in config.languages:
        raw = _squash(
            render_template(f"sms/{lang.value}/sms.txt.j2", _context(config, lang, Channel.SMS))
        )
        try:
            text = to_gsm7(raw)
        except NotGsm7Error as exc:
            raise ConfigError(
                f"SMS text ({lang.value}) has characters SMS cannot carry: {exc} "
                "(fix: remove them from the names and texts in the municipality config)"
            ) from None
        info = sms_info(text)
        if info.parts > settings.max_parts:
            raise ConfigError(
                f"SMS text ({lang.value}) needs {info.parts} parts ({info.septets_or_chars} characters); "
                f"channels.sms.max_parts is {settings.max_parts} "
                "(fix: shorten the library or municipality name, or raise max_parts)"
            )
        out.messages[lang] = Message(Channel.SMS, lang, text=text)
        out.files[f"sms.{lang.value}.txt"] = text + "\n"
        out.metrics[lang] = {
            "lix": round(lix(text), 1),
            "characters": info.septets_or_chars,
            "encoding": info.encoding,
            "parts": info.parts,
        }
        if lang is Language.DA:
            out.key_message = text
    return out


def poster_url(config: MunicipalityConfig) -> str:
    """Where the poster's QR code leads: the payment self-service, else the website article."""
    portal = config.payment.self_service
    return str(portal.url) if portal else _context(config, Language.DA, Channel.POSTER)["more_url"]


def poster_html(config: MunicipalityConfig, language: Language) -> tuple[str, list[str]]:
    """The poster as print HTML, and its short lines (the key message first)."""
    from tasks.pdf import qr_svg

    settings = config.channels.poster
    paper = settings.paper if settings else "A4"
    ctx = _context(config, language, Channel.POSTER)
    pt = environment().get_template(f"_points/{language.value}.md.j2").make_module(ctx)
    short = [_squash(str(getattr(pt, p)("short"))) for p in ctx["points"]]
    url = poster_url(config)
    html = render_template(
        f"poster/{language.value}/poster.html.j2",
        {
            **ctx,
            "paper": paper,
            "lead": short[0],
            "lines": short[1:],
            "qr": Markup(qr_svg(url)),
            "qr_url": url,
        },
    )
    return html, short


def render_poster(config: MunicipalityConfig) -> ChannelContent:
    from tasks.pdf import pdf_text, render_pdf
    from tasks.textmetrics import lix

    settings = config.channels.poster
    assert settings is not None
    out = ChannelContent(Channel.POSTER)
    for lang in config.languages:
        html, short = poster_html(config, lang)
        pdf = render_pdf(html, base_url=str(TEMPLATES_DIR))
        out.files[f"poster.{lang.value}.html"] = html
        out.files[f"poster.{lang.value}.pdf"] = pdf
        out.messages[lang] = Message(
            Channel.POSTER,
            lang,
            text="\n".join(short),
            subject=short[0],
            attachments=(Attachment(f"plakat-{lang.value}.pdf", pdf, "application/pdf"),),
        )
        out.metrics[lang] = {"lix": round(lix(pdf_text(pdf)), 1), "paper": settings.paper}
        if lang is Language.DA:
            out.key_message = short[0]
    return out


def render_self_service(config: MunicipalityConfig) -> ChannelContent:
    """DPL CMS config-sync YAML (Danish, with an English config translation) and DDB CMS variables."""
    settings = config.channels.self_service
    assert settings is not None
    portal = config.payment.self_service
    out = ChannelContent(Channel.SELF_SERVICE)
    texts: dict[Language, dict[str, str]] = {}
    for lang in config.languages:
        ctx = _context(config, lang, Channel.SELF_SERVICE)
        texts[lang] = {
            "body": _squash(render_template(f"self_service/{lang.value}/fee_list_body.md.j2", ctx)),
            "button": _squash(
                render_template(f"self_service/{lang.value}/button_label.txt.j2", ctx)
            ),
            "more_url": ctx["faq_url"] or ctx["more_url"],
        }
    da = texts[Language.DA]
    pay_url = str(portal.url) if portal else da["more_url"]
    if settings.cms in ("dpl", "both"):
        dpl = {
            "fees_and_replacement_costs_url": da["more_url"],
            "payment_site_url": pay_url,
            "payment_site_button_label": da["button"],
            "fee_list_body_text": da["body"],
            "blocked_patron_e_link_url": pay_url,
        }
        out.files["dpl/dpl_fees.settings.yml"] = yaml.safe_dump(
            dpl, allow_unicode=True, sort_keys=False
        )
        for lang, t in texts.items():
            if lang is not Language.DA:
                # Drupal's config translation: sync/language/<lang>/<name>.yml holds the translated keys.
                translated = {
                    "payment_site_button_label": t["button"],
                    "fee_list_body_text": t["body"],
                }
                out.files[f"dpl/language/{lang.value}/dpl_fees.settings.yml"] = yaml.safe_dump(
                    translated, allow_unicode=True, sort_keys=False
                )
    if settings.cms in ("ddb", "both"):
        ddb: dict[str, Any] = {
            "ding_debt_show_introtext": 1,
            "ding_debt_introtext": da["body"],
            # "internal" is payment on the library site itself: only for old debts, while allowed.
            "ding_debt_enable_internal": int(config.payment.old_debts.payable_at_library),
            "ding_debt_enable_external": int(portal is not None),
            "ding_debt_enable_external_button": int(portal is not None),
            "ding_debt_external_button_text": da["button"],
            "ding_debt_external_button_url": pay_url,
            "ding_debt_external_show_extra_information": 1,
            "ding_debt_external_extra_information": da["body"],
        }
        out.files["ddb/ding_debt.json"] = json.dumps(ddb, ensure_ascii=False, indent=2) + "\n"
        lines = [
            "#!/bin/sh",
            "# Run in the DDB CMS site's folder: sets the ding_debt texts and links.",
            "set -e",
        ]
        lines += [f"drush -y vset --exact {k} {shlex.quote(str(v))}" for k, v in ddb.items()]
        out.files["ddb/ding_debt.drush.sh"] = "\n".join(lines) + "\n"
    out.key_message = da["body"]
    for lang, t in texts.items():
        out.metrics[lang] = {"characters": len(t["body"])}
    return out


RENDERERS = {
    Channel.WEBSITE: render_website,
    Channel.FAQ: render_faq,
    Channel.NEWSLETTER: render_newsletter,
    Channel.POSTER: render_poster,
    Channel.SMS: render_sms,
    Channel.SELF_SERVICE: render_self_service,
}


def render_channel(channel: Channel, config: MunicipalityConfig) -> ChannelContent:
    """Render one channel for every language the municipality uses."""
    return RENDERERS[channel](config)
