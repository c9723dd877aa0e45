"""Posters for the branches: a print PDF per language with a QR code, mailed to each branch to put up."""

from __future__ import annotations

import re
import unicodedata

from babel import Locale
from markupsafe import Markup

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
from tasks.config import TEMPLATES_DIR
from tasks.content import Claim, Point, facts
from tasks.models import Channel, Language, MunicipalityConfig, PosterSettings, StepKind
from tasks.providers.base import Attachment, Message
from tasks.render import ChannelContent, payment_url, render_template, short_points

NAME = "poster"
_POSTER_CHARS = 300  # at full size up to this many characters of text
_MIN_SCALE = 0.9
_TRANSLITERATE = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "ae", "Ø": "oe", "Å": "aa"})
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def branch_slug(name: str) -> str:
    """ASCII slug of a branch name for step ids: "Søby Bibliotek" -> "soeby-bibliotek"."""
    text = unicodedata.normalize("NFKD", name.translate(_TRANSLITERATE))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    return _NON_SLUG.sub("-", text).strip("-") or "filial"


def poster_html(
    config: MunicipalityConfig, language: Language
) -> tuple[str, list[str], list[Claim]]:
    """The poster as print HTML, its short lines (the key message first) and its claims."""
    from tasks.pdf import qr_svg

    settings = config.channels.poster
    paper = settings.paper if settings else "A4"
    ctx = Poster().context(config, language)
    short = short_points(ctx, Channel.POSTER)
    url = payment_url(config)
    # More facts, smaller type, down to a floor that is still read from a few metres away.
    characters = sum(len(line) for line in short)
    scale = max(_MIN_SCALE, min(1.0, (_POSTER_CHARS / characters) ** 0.5)) if characters else 1.0
    html = render_template(
        f"poster/{language.value}/poster.html.j2",
        {
            **ctx,
            "paper": paper,
            "lead": short[0],
            "lines": short[1:],
            "qr": Markup(qr_svg(url)),
            "qr_url": url,
            "scale": scale,
        },
    )
    return html, short, list(ctx["claims"].claims)


class Poster(ChannelSpec):
    channel = Channel.POSTER
    settings = PosterSettings
    # The short form of HOW_TO_PAY already names the login where the config sets one.
    points = (Point.WHAT_CHANGES, Point.HOW_TO_PAY, Point.OLD_DEBTS)
    audience = Labels(da="Besøgende på bibliotekerne", en="Visitors at the branches")
    labels = Labels(da="Plakat", en="Poster")
    gallery = GalleryView(View.PRINT, NAME)
    # The PDFs go by e-mail to each branch's contact, who prints them and confirms they are up.
    delivers = Delivery(Medium.EMAIL, Reach.BRANCHES)
    step_order = 50

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        from tasks.pdf import pdf_text, render_pdf
        from tasks.textmetrics import lix

        settings = config.channels.poster
        assert settings is not None
        out = ChannelContent(self.channel)
        for lang in config.languages:
            html, short, claims = poster_html(config, lang)
            out.claims[lang] = claims
            pdf = render_pdf(html, base_url=str(TEMPLATES_DIR))
            out.files[f"{NAME}.{lang.value}.html"] = html
            out.files[f"{NAME}.{lang.value}.pdf"] = pdf
            out.messages[lang] = Message(
                self.channel,
                lang,
                text="\n".join(short),
                subject=short[0],
                attachments=(Attachment(f"plakat-{lang.value}.pdf", pdf, "application/pdf"),),
            )
            out.metrics[lang] = {"lix": round(lix(pdf_text(pdf)), 1), "paper": settings.paper}
            if lang is Language.DA:
                out.key_message = short[0]
        return out

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        steps = []
        seen: dict[str, int] = {}
        for branch in config.library.branches:
            slug = branch_slug(branch.name)
            # Two branches whose names slug alike still need distinct step ids.
            seen[slug] = seen.get(slug, 0) + 1
            if seen[slug] > 1:
                slug = f"{slug}-{seen[slug]}"
            steps.append(self.step(StepKind.MANUAL, f"Hæng plakater op på {branch.name}", slug))
        return steps

    def audience_label(self, config: MunicipalityConfig, lang: str = "en") -> str:
        branches = len(config.library.branches)
        return f"{self.audience[lang]} ({branches} {'biblioteker' if lang == 'da' else 'branches'})"

    def branch_messages(
        self, config: MunicipalityConfig, content: ChannelContent
    ) -> dict[Language, Message]:
        """The e-mail to the branches with the poster PDFs attached, for printing (in Danish).

        It names exactly the attachments it carries, greets the branches it goes to (those with
        a contact e-mail) and is signed by the project leader, or by the library when the config
        names none. One e-mail goes to every branch (the delivery sends one message per
        language), so a library with several branches is greeted branch by branch in one line.
        """
        attachments = tuple(a for m in content.messages.values() for a in m.attachments)
        if not attachments:
            raise ValueError("the poster content holds no PDF to attach; render the posters first")
        posters = [
            f"{a.filename} ({language_name(lang)})"
            for lang, m in content.messages.items()
            for a in m.attachments
        ]
        steps = self.checklist_steps(config)
        # The branches the e-mail reaches, each with the checklist step it confirms.
        branches = [
            (branch.name, step.id)
            for branch, step in zip(config.library.branches, steps, strict=True)
            if branch.contact_email
        ]
        settings = config.channels.poster
        context = {
            "c": config,
            "f": facts(config, Language.DA),
            "paper": settings.paper if settings else "A4",
            "posters": posters,
            "branches": branches,
            "leader": config.project_leader,
        }
        text = render_template("poster/da/branch_mail.txt.j2", {**context, "lang": "da"})
        noun = "Plakat" if len(attachments) == 1 else "Plakater"
        mail = Message(
            self.channel,
            Language.DA,
            text=text,
            subject=f"{noun} om ny betaling af gebyrer til ophængning",
            attachments=attachments,
        )
        return {Language.DA: mail}


def language_name(language: Language) -> str:
    """The language's name in Danish, as the branch e-mail says it: "dansk", "engelsk"."""
    return Locale("da").languages[language.value]
