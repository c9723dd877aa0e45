"""The newsletter to borrowers who signed up for it: subject, HTML and text part per language."""

from __future__ import annotations

import css_inline

from tasks import markup
from tasks.channels.base import (
    ChannelSpec,
    Delivery,
    GalleryView,
    Labels,
    Medium,
    Reach,
    Step,
    View,
)
from tasks.content import Point
from tasks.models import Channel, Language, MunicipalityConfig, NewsletterSettings, StepKind
from tasks.providers.base import Message
from tasks.render import ChannelContent, lix_of_html, render_template, squash


class Newsletter(ChannelSpec):
    channel = Channel.NEWSLETTER
    settings = NewsletterSettings
    # The essentials; children, lost items and not paying are on the website and in the FAQ.
    points = (
        Point.WHAT_CHANGES,
        Point.HOW_TO_PAY,
        Point.WHERE_TO_SEE,
        Point.OLD_DEBTS,
        Point.FEES,
        Point.NO_MITID,
        Point.WHO_TO_ASK,
    )
    audience = Labels(da="Lånere, der får nyhedsbrevet", en="Borrowers who receive the newsletter")
    labels = Labels(da="Nyhedsbrev", en="Newsletter")
    gallery = GalleryView(View.EMAIL)
    delivers = Delivery(Medium.EMAIL, Reach.BORROWERS, "email", "newsletter_consent")
    step_order = 30

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        out = ChannelContent(self.channel)
        # Media queries stay for responsive mail.
        inliner = css_inline.CSSInliner(keep_style_tags=True)
        for lang in config.languages:
            ctx = self.context(config, lang)
            base = f"newsletter/{lang.value}/newsletter"
            subject = squash(render_template(f"{base}.subject.j2", ctx))
            md = render_template(f"{base}.md.j2", ctx)
            html = inliner.inline(
                render_template(
                    "_layouts/email.html.j2",
                    {**ctx, "title": subject, "body": markup.to_html(md)},
                )
            )
            text = markup.to_text(md)
            out.record_claims(lang, ctx)
            out.messages[lang] = Message(self.channel, lang, text=text, subject=subject, html=html)
            out.files[f"{lang.value}/subject.txt"] = subject + "\n"
            out.files[f"{lang.value}/body.html"] = html
            out.files[f"{lang.value}/body.txt"] = text
            out.metrics[lang] = {"lix": lix_of_html(html)}
            if lang is Language.DA:
                out.key_message = subject
        return out

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        return [self.step(StepKind.AUTOMATED, "Send nyhedsbrev til lånerne")]
