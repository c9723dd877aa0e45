"""The citizens' FAQ: every content point as a question and its answer, a page a person publishes."""

from __future__ import annotations

from tasks.channels.base import ChannelSpec, GalleryView, Labels, Step, View
from tasks.content import Point
from tasks.models import Channel, MunicipalityConfig, PageSettings, StepKind
from tasks.render import ChannelContent, web_page

NAME = "faq"


class Faq(ChannelSpec):
    channel = Channel.FAQ
    settings = PageSettings
    points = tuple(Point)
    audience = Labels(
        da="Alle, der besøger bibliotekets hjemmeside", en="Everyone visiting the library website"
    )
    labels = Labels(da="Spørgsmål og svar", en="FAQ")
    gallery = GalleryView(View.PAGE, NAME)
    delivers = None
    step_order = 20

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        return web_page(config, self, NAME)

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        return [self.step(StepKind.MANUAL, "Publicér spørgsmål og svar på hjemmesiden")]
