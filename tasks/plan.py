"""The communication plan: audiences x channels x dates x responsible x key message, as data and markdown.

The plan speaks the operator language (tasks/operator_text.py: Danish unless configured), lists
every channel that is not used with its reason, and draws a timeline (channels by date, go-live
marked) as an SVG, rendered to PNG for plan.md, the plan artifact and the gallery.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import escape

from tasks.channels import spec
from tasks.models import Channel, MunicipalityConfig, TaskCard
from tasks.operator_text import day, language, number, say, short_day

TIMELINE_FILE = "plan-timeline.png"

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
# Channel runs start at 9 in the morning, Danish time: citizens read news in the day, not at night.
# Here, not in flows/deployments.py, so that `fbsflow check` can warn about it without Prefect.
SEND_TIME = time(9, 0)


@dataclass
class PlannedChannel:
    channel: Channel
    day: date
    responsible: str
    audience: str
    key_message: str
    recipients: int | None = None  # for channels sent to named borrowers
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> count (no personal data)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # language -> figures

    @property
    def billed_parts(self) -> int | None:
        """SMS are billed per part: parts of the Danish text x recipients (an upper bound)."""
        if not spec(self.channel).billed_per_part or self.recipients is None:
            return None
        parts = max((m.get("parts", 1) for m in self.metrics.values()), default=1)
        return parts * self.recipients


def not_used_reason(reason: str | None, lang: str) -> str:
    """Why a channel is not used, as the plan, checklist and CLI word it."""
    if reason is None:
        return say("channel.absent", lang)
    return say("channel.off", lang, reason=reason)


@dataclass
class Plan:
    card: TaskCard
    config: MunicipalityConfig
    campaign: str
    channels: list[PlannedChannel]

    def ordered(self) -> list[PlannedChannel]:
        """The planned channels by date, then in the card's channel order."""
        return sorted(self.channels, key=lambda p: (p.day, list(Channel).index(p.channel)))

    def not_used(self) -> dict[Channel, str | None]:
        """Channels the plan does not use: switched off -> reason, left out -> None."""
        return self.config.channels.not_used()

    def to_markdown(self, lang: str | None = None, *, timeline: str | None = None) -> str:
        """plan.md; `timeline` is the image's address (a file name, or a data: URI), if drawn."""
        lang = lang or language(self.config)
        c = self.config
        lines = [
            f"# {say('plan.title', lang, title=self.card.title)}",
            "",
            "- " + say("plan.municipality", lang, name=c.municipality.name, library=c.library.name),
            "- " + say("plan.go_live", lang, day=day(c.go_live, lang, weekday=True)),
            "- " + say("plan.campaign", lang, campaign=self.campaign),
            "- " + say("plan.languages", lang, languages=", ".join(x.value for x in c.languages)),
            "",
            say("plan.goal", lang, goal=self.card.goal),
            "",
            say("plan.columns", lang),
            "| --- | --- | --- | ---: | --- | --- |",
        ]
        for p in self.ordered():
            recipients = number(p.recipients, lang)
            key = p.key_message.replace("|", "/").replace("\n", " ")
            lines.append(
                f"| {short_day(p.day, lang)} | {spec(p.channel).labels[lang]} | {p.audience} "
                f"| {recipients} | {p.responsible} | {key} |"
            )
        if unused := self.not_used():
            lines += ["", f"## {say('plan.not_used', lang)}", ""]
            for channel, reason in unused.items():
                label = spec(channel).labels[lang]
                lines.append(f"- {label} (`{channel.value}`): {not_used_reason(reason, lang)}")
        if timeline:
            lines += [
                "",
                f"## {say('plan.timeline', lang)}",
                "",
                f"![{say('plan.timeline_alt', lang)}]({timeline})",
            ]
        lines += [
            "",
            f"## {say('plan.metrics', lang)}",
            "",
            say("plan.metrics_columns", lang),
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for p in self.channels:
            for text_lang, m in p.metrics.items():
                billed = p.billed_parts if text_lang == "da" else None
                figures = (m.get("lix"), m.get("characters"), m.get("parts"), billed)
                lines.append(
                    f"| {spec(p.channel).labels[lang]} | {text_lang} | "
                    + " | ".join(number(f, lang) for f in figures)
                    + " |"
                )
        excluded = [p for p in self.channels if p.excluded]
        if excluded:
            lines += ["", f"## {say('plan.excluded', lang)}", ""]
            for p in excluded:
                reasons = ", ".join(
                    f"{k}: {number(v, lang)}" for k, v in sorted(p.excluded.items())
                )
                lines.append(f"- {spec(p.channel).labels[lang]}: {reasons}")
        lines += ["", say("plan.lix_bands", lang), ""]
        return "\n".join(lines)

    # --- The timeline --------------------------------------------------------------------------

    def timeline_svg(self, lang: str | None = None) -> tuple[str, int, int]:
        """(SVG, width, height): one row per planned channel, a dot on its date, go-live marked."""
        lang = lang or language(self.config)
        rows = self.ordered()
        go_live = self.config.go_live
        days = [p.day for p in rows] + [go_live]
        first, last = min(days) - timedelta(days=2), max(days) + timedelta(days=2)
        span = max((last - first).days, 1)
        labels = [spec(p.channel).labels[lang] for p in rows]
        # Room for the longest channel name (DejaVu Sans at 17 px: under 10 px a character),
        # and on the right for the last date's label.
        width, top, row_h = 1200, 70, 44
        label_w = min(max(40 + 10 * max(map(len, labels), default=0), 200), 560)
        height = top + row_h * len(rows) + 60
        right = width - 130

        def x(d: date) -> float:
            return label_w + (right - label_w) * (d - first).days / span

        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, sans-serif" font-size="17">',
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="20" y="34" font-size="22" font-weight="bold" fill="#1a1a1a">'
            f"{escape(say('plan.timeline', lang))}: {escape(self.config.municipality.name)}</text>",
        ]
        # Week ticks on Mondays, so the distance between dates reads at a glance.
        tick = first + timedelta(days=(7 - first.weekday()) % 7)
        while tick <= last:
            parts.append(
                f'<line x1="{x(tick):.1f}" y1="{top - 10}" x2="{x(tick):.1f}" '
                f'y2="{height - 45}" stroke="#d0d0d0" stroke-width="1"/>'
                f'<text x="{x(tick):.1f}" y="{height - 22}" text-anchor="middle" font-size="14" '
                f'fill="#444">{escape(short_day(tick, lang)[:5] if lang == "da" else tick.strftime("%m-%d"))}</text>'
            )
            tick += timedelta(days=7)
        for i, (p, label) in enumerate(zip(rows, labels, strict=True)):
            y = top + row_h * i + row_h / 2
            parts.append(
                f'<text x="20" y="{y + 6:.1f}" fill="#1a1a1a">{escape(label)}</text>'
                f'<line x1="{label_w}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eeeeee"/>'
                f'<circle cx="{x(p.day):.1f}" cy="{y:.1f}" r="9" fill="#0b4f8a"/>'
                f'<text x="{x(p.day) + 14:.1f}" y="{y + 6:.1f}" font-size="14" fill="#1a1a1a">'
                f"{escape(short_day(p.day, lang))}</text>"
            )
        gx = x(go_live)
        # Its label ends at the line when the line is far right, so it is never cut off.
        anchor = "end" if gx > width - 160 else "middle"
        parts.append(
            f'<line x1="{gx:.1f}" y1="{top - 20}" x2="{gx:.1f}" y2="{height - 45}" '
            f'stroke="#b00020" stroke-width="3"/>'
            f'<text x="{gx + (6 if anchor == "end" else 0):.1f}" y="{top - 26}" '
            f'text-anchor="{anchor}" font-weight="bold" fill="#b00020">'
            f"{escape(say('plan.go_live_mark', lang))} {escape(short_day(go_live, lang))}</text>"
        )
        parts.append("</svg>")
        return "".join(parts), width, height

    def timeline_png(self, lang: str | None = None) -> bytes:
        """The timeline as a PNG (WeasyPrint and poppler, tasks/pdf.py); raises MissingToolError
        when poppler-utils is not installed. Costs a run 0.7-0.9 s (the example's 8 channels,
        measured on the shared 2-core machine), ~50 kB."""
        from tasks.pdf import render_png

        svg, width, height = self.timeline_svg(lang)
        html = (
            f"<!doctype html><html lang='{lang or language(self.config)}'><head><style>"
            f"@page {{ size: {width}px {height}px; margin: 0 }} body {{ margin: 0 }}"
            f"</style></head><body>{svg}</body></html>"
        )
        png, _pdf = render_png(html, width, height)
        return png


def png_data_uri(png: bytes) -> str:
    """A PNG as a data: URI, for markdown that must carry its image with it (an artifact)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def channel_day(config: MunicipalityConfig, channel: Channel) -> date:
    """The planned date of a channel: go-live plus the channel's offset."""
    return config.go_live + timedelta(days=config.channels.settings(channel).offset_days)


def campaign_id(config: MunicipalityConfig) -> str:
    """Stable across reruns, so the ledger recognises who already got the message."""
    return f"{config.municipality.slug}:{config.card}:{config.go_live.isoformat()}"
