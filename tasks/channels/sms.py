"""The SMS to borrowers in the library's SMS scheme, and only to them: GSM-7, within max_parts."""

from __future__ import annotations

from typing import Any

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
from tasks.errors import ConfigError
from tasks.models import Channel, Language, MunicipalityConfig, SmsSettings, StepKind
from tasks.providers.base import Message
from tasks.render import ChannelContent, render_template, squash

NAME = "sms"
_LIX_LIMIT = 35  # easy to read (tests/test_content.py holds every SMS to it)


class Sms(ChannelSpec):
    channel = Channel.SMS
    settings = SmsSettings
    # HOW_TO_PAY in the SMS names the portal and leaves the login to the page it links to; old debts
    # (with their cut-off date) because a borrower may owe both kinds.
    points = (Point.WHAT_CHANGES, Point.HOW_TO_PAY, Point.OLD_DEBTS)
    audience = Labels(
        da="Lånere i bibliotekets SMS-ordning", en="Borrowers in the library's SMS scheme"
    )
    labels = Labels(da="SMS", en="SMS")
    gallery = GalleryView(View.TEXT_MESSAGE, NAME)
    delivers = Delivery(Medium.SMS, Reach.BORROWERS, "mobile", "sms_consent")
    step_order = 40

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        from tasks.textmetrics import lix, sms_info

        settings = config.channels.sms
        assert settings is not None
        out = ChannelContent(self.channel)
        for lang in config.languages:
            ctx, text = self._fitting(config, lang)
            out.record_claims(lang, ctx)
            info = sms_info(text)
            if info.parts > settings.max_parts:
                raise ConfigError(
                    f"SMS text ({lang.value}) needs {info.parts} parts ({info.septets_or_chars} characters); "
                    f"channels.sms.max_parts is {settings.max_parts} "
                    "(fix: shorten decisions.extra.sentences.sms, the portal's or the library's "
                    "name or address, or raise max_parts)"
                )
            out.messages[lang] = Message(self.channel, lang, text=text)
            out.files[f"{NAME}.{lang.value}.txt"] = text + "\n"
            out.metrics[lang] = {
                "lix": round(lix(text), 1),
                "characters": info.septets_or_chars,
                "encoding": info.encoding,
                "parts": info.parts,
            }
            if lang is Language.DA:
                out.key_message = text
        return out

    def _fitting(
        self, config: MunicipalityConfig, language: Language
    ) -> tuple[dict[str, Any], str]:
        """The SMS in its fullest wording that costs the fewest parts, easy reading preferred:
        the longer sentence about the change ("... og ikke til os") only where it is free."""
        from tasks.textmetrics import NotGsm7Error, lix, sms_info, to_gsm7

        candidates = []
        for tight in (False, True):
            ctx = {**self.context(config, language), "tight": tight}
            raw = squash(render_template(f"sms/{language.value}/sms.txt.j2", ctx))
            try:
                text = to_gsm7(raw)
            except NotGsm7Error as exc:
                raise ConfigError(
                    f"SMS text ({language.value}) has characters SMS cannot carry: {exc} "
                    "(fix: remove them from the names and texts in the municipality config)"
                ) from None
            candidates.append((sms_info(text).parts, lix(text) > _LIX_LIMIT, tight, ctx, text))
        # Fewest parts, then easy to read, then the fuller wording (tight False sorts first).
        _, _, _, ctx, text = min(candidates, key=lambda c: c[:3])
        return ctx, text

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        return [self.step(StepKind.AUTOMATED, "Send sms til lånere i sms-ordningen")]
