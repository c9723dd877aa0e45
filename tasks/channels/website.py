"""The news article on the library website: markdown and HTML per language, published by a person."""

from __future__ import annotations

from tasks.channels.base import ChannelSpec, GalleryView, Labels, Step, View
from tasks.content import Point
from tasks.models import Channel, MunicipalityConfig, PageSettings, StepKind
from tasks.render import ChannelContent, web_page

NAME = "article"


class Website(ChannelSpec):
    channel = Channel.WEBSITE
    settings = PageSettings
    # The news: what changes, how to pay, old debts and who to ask. The other questions are the
    # FAQ's; without a FAQ page the article answers them all, so nothing is left unsaid.
    points = tuple(Point)
    news_points = (Point.WHAT_CHANGES, Point.HOW_TO_PAY, Point.OLD_DEBTS, Point.WHO_TO_ASK)
    audience = Labels(
        da="Alle, der besøger bibliotekets hjemmeside", en="Everyone visiting the library website"
    )
    labels = Labels(da="Artikel på hjemmesiden", en="Website article")
    gallery = GalleryView(View.PAGE, NAME)
    # DPL CMS has no API for news articles: a person publishes the ready-made article.
    delivers = None
    step_order = 10

    def points_for(self, config: MunicipalityConfig) -> list[Point]:
        points = super().points_for(config)
        if config.channels.faq is not None and config.channels.faq.enabled:
            return [p for p in points if p in self.news_points]
        return points

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        return web_page(config, self, NAME)

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        return [self.step(StepKind.MANUAL, "Publicér nyheden på bibliotekets hjemmeside")]
