"""The communication plan: audiences x channels x dates x responsible x key message, as data and markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tasks.channels import spec
from tasks.models import Channel, MunicipalityConfig, TaskCard

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


@dataclass
class Plan:
    card: TaskCard
    config: MunicipalityConfig
    campaign: str
    channels: list[PlannedChannel]

    def to_markdown(self) -> str:
        c = self.config
        lines = [
            f"# Communication plan: {self.card.title}",
            "",
            f"- Municipality: **{c.municipality.name}** ({c.library.name})",
            f"- Go-live of the debtor integration: **{c.go_live.isoformat()}**",
            f"- Campaign id: `{self.campaign}`",
            f"- Languages: {', '.join(lang.value for lang in c.languages)}",
            "",
            f"Goal: {self.card.goal}",
            "",
            "| Date | Channel | Audience | Recipients | Responsible | Key message |",
            "| --- | --- | --- | ---: | --- | --- |",
        ]
        for p in sorted(self.channels, key=lambda p: (p.day, list(Channel).index(p.channel))):
            recipients = "" if p.recipients is None else f"{p.recipients:,}"
            key = p.key_message.replace("|", "/").replace("\n", " ")
            lines.append(
                f"| {p.day.isoformat()} | {p.channel.value} | {p.audience} | {recipients} "
                f"| {p.responsible} | {key} |"
            )
        lines += [
            "",
            "## Readability and SMS cost",
            "",
            "| Channel | Language | LIX | Characters | SMS parts | Billed parts |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for p in self.channels:
            for lang, m in p.metrics.items():
                billed = p.billed_parts if lang == "da" else None
                lines.append(
                    f"| {p.channel.value} | {lang} | {m.get('lix', '')} | {m.get('characters', '')} "
                    f"| {m.get('parts', '')} | {'' if billed is None else f'{billed:,}'} |"
                )
        excluded = [p for p in self.channels if p.excluded]
        if excluded:
            lines += ["", "## Left out (counts only)", ""]
            for p in excluded:
                reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(p.excluded.items()))
                lines.append(f"- {p.channel.value}: {reasons}")
        lines += ["", "LIX: under 25 very easy, 25-34 easy, 35-44 medium, 45+ hard.", ""]
        return "\n".join(lines)


def channel_day(config: MunicipalityConfig, channel: Channel) -> date:
    """The planned date of a channel: go-live plus the channel's offset."""
    return config.go_live + timedelta(days=config.channels.settings(channel).offset_days)


def campaign_id(config: MunicipalityConfig) -> str:
    """Stable across reruns, so the ledger recognises who already got the message."""
    return f"{config.municipality.slug}:{config.card}:{config.go_live.isoformat()}"
