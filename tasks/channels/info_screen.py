"""The info screens in the branches: a 1920x1080 slide per language with a QR code to the payment page."""

from __future__ import annotations

from tasks.channels.base import ChannelSpec, GalleryView, Labels, Step, View
from tasks.content import Point
from tasks.models import Channel, InfoScreenSettings, Language, MunicipalityConfig, StepKind
from tasks.render import ChannelContent, payment_url, picture

NAME = "slide"
SIZE = (1920, 1080)  # full HD, 16:9: what branch info screens show


class InfoScreen(ChannelSpec):
    channel = Channel.INFO_SCREEN
    settings = InfoScreenSettings
    # Read in passing, like the poster: what changes, how to pay, old debts.
    points = (Point.WHAT_CHANGES, Point.HOW_TO_PAY, Point.OLD_DEBTS)
    audience = Labels(
        da="Besøgende, der går forbi infoskærmene på bibliotekerne",
        en="Visitors who pass the info screens in the branches",
    )
    labels = Labels(da="Infoskærm", en="Info screen")
    gallery = GalleryView(View.IMAGE, NAME)
    # Screen systems differ and have no common API: a person puts the slide on the screens.
    delivers = None
    step_order = 55

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        out = ChannelContent(self.channel)
        for lang in config.languages:
            slide = picture(config, self, lang, NAME, SIZE, qr_url=payment_url(config))
            out.files[f"{NAME}.{lang.value}.png"] = slide.png
            out.claims[lang] = slide.claims
            # The words on the slide, for checking them and as its text alternative.
            out.files[f"{NAME}.{lang.value}.txt"] = "\n".join(slide.lines) + "\n"
            out.metrics[lang] = {"lix": slide.lix, "size": "x".join(map(str, SIZE))}
            if lang is Language.DA:
                out.key_message = slide.lines[0]
        return out

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        return [self.step(StepKind.MANUAL, "Vis billedet på infoskærmene i filialerne")]
