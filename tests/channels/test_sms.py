"""The SMS, read back as a phone and an invoice see it: GSM-7, parts, no amounts or personal data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.channels import spec
from tasks.errors import ConfigError
from tasks.models import Channel, Language
from tasks.textmetrics import is_gsm7, sms_info

from .helpers import example, variant

render_sms = spec(Channel.SMS).render

_PHONE = re.compile(r"(?:\+45)?(?:\s?\d{2}){4}\b")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.\w+")


@pytest.mark.parametrize("lang", list(Language))
def test_sms_is_short_gsm7_and_free_of_amounts_and_personal_data(lang: Language) -> None:
    out = render_sms(example())
    text = out.messages[lang].text
    info = sms_info(text)
    assert is_gsm7(text) and info.encoding == "GSM-7"
    assert info.septets_or_chars <= 306 and info.parts <= 2
    assert out.metrics[lang]["parts"] == info.parts
    assert out.metrics[lang]["characters"] == info.septets_or_chars
    assert "kr." not in text and "DKK" not in text and not re.search(r"\d+\s*kr\b", text)
    # One text for every recipient: no names, e-mail addresses or phone numbers in it at all.
    assert not _EMAIL.search(text) and not _PHONE.search(text)
    contacts = example().contacts
    for contact in (contacts.library, contacts.billing):
        assert contact.phone not in text and str(contact.email) not in text
    assert "Læs mere" in text or lang is Language.EN  # æøå kept: GSM-7 carries them
    assert out.files[f"sms.{lang.value}.txt"] == text + "\n"


def test_sms_longer_than_max_parts_is_a_config_error(variants: Path) -> None:
    config = variant(variants, {"channels.sms.max_parts": 1}, "one-part")
    with pytest.raises(ConfigError, match=r"channels\.sms\.max_parts") as caught:
        render_sms(config)
    assert "parts" in str(caught.value) and "fix:" in str(caught.value)
