"""The base of every config model: strict parsing and the plain-text, header and https types.

Its own module so that tasks/models.py and tasks/decisions.py can both build on it without a cycle;
tasks/models.py re-exports every name.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Free text from config ends up in HTML, SMS and PDF: markup in it is a mistake, not a feature.
# Markdown link and emphasis marks count too: citizen texts are written in a markdown subset.
_MARKUP = re.compile(r"<[^>]*>|&[a-zA-Z#0-9]+;|[\[\]*`]")


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _plain_text(value: str) -> str:
    if _MARKUP.search(value):
        raise ValueError(
            "must be plain text without markup (<...>, &...;, [ ], * or `); remove those characters"
        )
    return value


def _https(url: HttpUrl) -> HttpUrl:
    if url.scheme != "https":
        raise ValueError(
            "must start with https:// (citizens are sent to it); use the https address"
        )
    return url


# Characters that end a mail header line (or that clients may treat so): in a sender name,
# "Bibliotek\r\nBcc: ..." would add a header of its own.
_BREAKS = frozenset({"Cc", "Zl", "Zp"})
_CHARACTER_NAMES = {"\r": "a carriage return (\\r)", "\n": "a line feed (\\n)", "\t": "a tab"}


def character_name(char: str) -> str:
    """How a message names one character without quoting the text around it."""
    return _CHARACTER_NAMES.get(char) or f"the character U+{ord(char):04X}"


def header_problem(value: str) -> str | None:
    """Why `value` cannot go into a mail header (None: it can); names the character, not the text."""
    if value.isprintable():  # the usual case, in C; refuses more than _BREAKS, so look closer
        return None
    for position, char in enumerate(value, 1):
        if unicodedata.category(char) in _BREAKS:
            return f"holds {character_name(char)} at character {position}"
    return None


def _one_line(value: str) -> str:
    if problem := header_problem(value):
        raise ValueError(
            f"goes into a mail header, which must be one line, but {problem}; "
            "remove line breaks and control characters"
        )
    return value


PlainText = Annotated[str, Field(min_length=1), AfterValidator(_plain_text)]
HeaderText = Annotated[PlainText, AfterValidator(_one_line)]
HttpsUrl = Annotated[HttpUrl, AfterValidator(_https)]
