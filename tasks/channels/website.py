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
    points = tuple(Point)
    audience = Labels(
        da="Alle, der besøger bibliotekets hjemmeside", en="Everyone visiting the library website"
    )
    labels = Labels(da="Artikel på hjemmesiden", en="Website article")
    gallery = GalleryView(View.PAGE, NAME)
    # DPL CMS has no API for news articles: a person publishes the ready-made article.
    delivers = None
    step_order = 10

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        return web_page(config, self, NAME)

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        return [self.step(StepKind.MANUAL, "Publicér nyheden på bibliotekets hjemmeside")]
