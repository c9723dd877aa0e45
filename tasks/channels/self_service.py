"""The library website's self-service pages: DPL CMS config-sync YAML and DDB CMS variables, set by a person."""

from __future__ import annotations

import json
import shlex
from typing import Any

import yaml

from tasks.channels.base import ChannelSpec, GalleryView, Labels, Step, View
from tasks.content import Point
from tasks.decisions import OldDebtPlace, Payable
from tasks.models import Channel, Language, MunicipalityConfig, SelfServiceSettings, StepKind
from tasks.render import ChannelContent, render_template, squash

_CMS_NAMES = {"dpl": "DPL CMS", "ddb": "DDB CMS", "both": "DPL CMS/DDB CMS"}


class SelfService(ChannelSpec):
    channel = Channel.SELF_SERVICE
    settings = SelfServiceSettings
    points = (
        Point.WHERE_TO_SEE,
        Point.OLD_DEBTS,
        Point.HOW_TO_PAY,
        Point.REGISTRATION_TIME,
        Point.WHO_TO_ASK,
    )
    audience = Labels(
        da="Lånere på selvbetjeningssiderne (DDB/DPL CMS)",
        en="Borrowers on the self-service pages (DDB/DPL CMS)",
    )
    labels = Labels(
        da="Selvbetjeningssider (DPL CMS / DDB CMS)", en="Self-service pages (DPL CMS / DDB CMS)"
    )
    gallery = GalleryView(View.FILES)
    delivers = None
    step_order = 60

    def context(self, config: MunicipalityConfig, language: Language) -> dict[str, Any]:
        """The shared context, said on the library's own fee page: the website is "her"."""
        return {**super().context(config, language), "here": True}

    def render(self, config: MunicipalityConfig) -> ChannelContent:
        """DPL CMS config-sync YAML (Danish, with an English config translation) and DDB CMS variables."""
        settings = config.channels.self_service
        assert settings is not None
        portal = config.decisions.new_debts.portal
        out = ChannelContent(self.channel)
        texts: dict[Language, dict[str, str]] = {}
        for lang in config.languages:
            ctx = self.context(config, lang)
            texts[lang] = {
                "body": squash(
                    render_template(f"self_service/{lang.value}/fee_list_body.md.j2", ctx)
                ),
                "button": squash(
                    render_template(f"self_service/{lang.value}/button_label.txt.j2", ctx)
                ),
                "more_url": ctx["faq_url"] or ctx["more_url"],
            }
            out.record_claims(lang, ctx)
        da = texts[Language.DA]
        pay_url = str(portal.url) if portal else da["more_url"]
        if settings.cms in ("dpl", "both"):
            out.files.update(_dpl_files(da, texts, pay_url))
        if settings.cms in ("ddb", "both"):
            ddb: dict[str, Any] = {
                "ding_debt_show_introtext": 1,
                "ding_debt_introtext": da["body"],
                # "internal" is payment on the library site itself: only for old debts, while allowed.
                "ding_debt_enable_internal": int(_old_debts_paid_on_site(config)),
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

    def checklist_steps(self, config: MunicipalityConfig) -> list[Step]:
        settings = config.channels.self_service
        cms = _CMS_NAMES[settings.cms] if settings is not None else _CMS_NAMES["both"]
        return [self.step(StepKind.MANUAL, f"Opdatér selvbetjeningssiderne i {cms}")]


def _old_debts_paid_on_site(config: MunicipalityConfig) -> bool:
    """Whether old debts can still be paid on the library website's self-service."""
    old = config.decisions.old_debts
    return (
        old.payable in (Payable.UNTIL, Payable.OPEN_ENDED)
        and OldDebtPlace.LIBRARY_WEBSITE in old.where
    )


def _dpl_files(
    da: dict[str, str], texts: dict[Language, dict[str, str]], pay_url: str
) -> dict[str, str]:
    dpl = {
        "fees_and_replacement_costs_url": da["more_url"],
        "payment_site_url": pay_url,
        "payment_site_button_label": da["button"],
        "fee_list_body_text": da["body"],
        "blocked_patron_e_link_url": pay_url,
    }
    files = {"dpl/dpl_fees.settings.yml": yaml.safe_dump(dpl, allow_unicode=True, sort_keys=False)}
    for lang, t in texts.items():
        if lang is not Language.DA:
            # Drupal's config translation: sync/language/<lang>/<name>.yml holds the translated keys.
            translated = {
                "payment_site_button_label": t["button"],
                "fee_list_body_text": t["body"],
            }
            files[f"dpl/language/{lang.value}/dpl_fees.settings.yml"] = yaml.safe_dump(
                translated, allow_unicode=True, sort_keys=False
            )
    return files
