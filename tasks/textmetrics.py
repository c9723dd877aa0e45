"""Text metrics for citizen-facing content: SMS encoding and length (GSM 03.38) and LIX readability.

SMS: a message that is not pure GSM-7 is sent as UCS-2 and costs more than twice as many parts,
so content is transliterated with `to_gsm7` before it is sent, and anything that cannot be
transliterated is refused (`NotGsm7Error`) instead of slipping into UCS-2 unnoticed.

LIX (läsbarhetsindex, Björnsson 1968) is the readability measure used for Danish text:
``words / sentences + 100 * long_words / words``. The counting rules are in `lix_info`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser

# --- GSM 03.38 ------------------------------------------------------------------------------

# The default alphabet in code-point order 0x00-0x7F; 0x1B (ESC, the switch to the extension
# table) is left out because it is never a character of its own.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Each of these is sent as ESC + character, so it costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7 = GSM7_BASIC | GSM7_EXTENSION

# Typographic characters that word processors and CMS editors put into text; each has a plain
# GSM-7 stand-in that a reader will not miss. Letters with accents are handled by decomposition.
_TRANSLITERATIONS: dict[str, str] = {
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),  # hyphens, dashes, minus
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4`", "'"),  # single quotes, primes
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),  # double quotes, «»
    **dict.fromkeys("\u2039\u203a", "'"),  # single guillemets
    **dict.fromkeys("\u00a0\u2002\u2003\u2007\u2009\u200a\u202f\u205f\u3000\t", " "),  # spaces
    **dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff", ""),  # invisible: soft hyphen, ZW*
    "\u2026": "...",
    "\u2022": "-",  # bullet
    "\u00b7": "-",  # middle dot
    "\u00d7": "x",
    "\u2028": "\n",
    "\u2029": "\n",
    "\u0142": "l",  # ł and friends have no decomposition
    "\u0141": "L",
    "\u0111": "d",
    "\u0110": "D",
    "\u0131": "i",
}


class NotGsm7Error(ValueError):
    """Text holds characters that have no GSM-7 form; `characters` lists them once each.

    Naming the characters is safe: they come from message content, never from personal data.
    """

    def __init__(self, characters: list[str]) -> None:
        self.characters = characters
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in characters)
        super().__init__(
            f"cannot be sent as a GSM-7 SMS; no GSM-7 form for: {shown}. "
            "Rewrite the text without these characters."
        )


def is_gsm7(text: str) -> bool:
    """True if every character of `text` is in the GSM 03.38 basic or extension table."""
    return all(c in GSM7 for c in text)


def _transliterate_char(char: str) -> str | None:
    if char in GSM7:
        return char
    if char in _TRANSLITERATIONS:
        return _TRANSLITERATIONS[char]
    # NFKD splits "ô" into "o" + combining circumflex; dropping the marks leaves a GSM letter.
    # Compatibility forms ("ﬁ" -> "fi") come along for free.
    plain = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if plain and all(c in GSM7 for c in plain):
        return plain
    return None


def to_gsm7(text: str) -> str:
    """Return `text` with every non-GSM-7 character replaced by a GSM-7 stand-in.

    Characters already in GSM-7 (including æøåÆØÅ, é, ä, ö, ü) are kept as they are. Raises
    `NotGsm7Error` naming every character that has no stand-in (emoji, Cyrillic, ...).
    """
    out: list[str] = []
    missing: list[str] = []
    for char in text:
        replacement = _transliterate_char(char)
        if replacement is None:
            if char not in missing:
                missing.append(char)
        else:
            out.append(replacement)
    if missing:
        raise NotGsm7Error(missing)
    return "".join(out)


@dataclass(frozen=True)
class SmsInfo:
    """How a text is sent as SMS: its encoding, its length in that encoding, and its part count.

    `septets_or_chars` is septets for GSM-7 (extension characters count 2) and UTF-16 code units
    for UCS-2 (a character outside the BMP, such as most emoji, counts 2).
    """

    encoding: str  # "GSM-7" or "UCS-2"
    septets_or_chars: int
    parts: int


# (single-part capacity, per-part capacity when concatenated: the user data header takes the rest)
_CAPACITY = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def _count_parts(units: list[int], single: int, per_part: int) -> int:
    """Parts needed when no unit (ESC pair, surrogate pair) may be split across two parts."""
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


def sms_info(text: str) -> SmsInfo:
    """Encoding, length and number of parts of `text` sent as it is (no transliteration).

    GSM-7: 160 septets fit one SMS, 153 per part when split. UCS-2: 70 and 67. An empty text
    is one (empty) part.
    """
    if is_gsm7(text):
        encoding = "GSM-7"
        units = [2 if c in GSM7_EXTENSION else 1 for c in text]
    else:
        encoding = "UCS-2"
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
    single, per_part = _CAPACITY[encoding]
    return SmsInfo(encoding, sum(units), _count_parts(units, single, per_part))


# The sender an SMS shows, as operators pass it on: "up to 11 alphanumeric characters, or 15
# digits" (GatewayAPI's words; its own examples use spaces). æøå are not alphanumeric there.
_SMS_SENDER = re.compile(r"^(?:[A-Za-z0-9 ]{1,11}|[0-9]{1,15})$")


def sms_sender_problem(sender: str) -> str | None:
    """Why `sender` cannot be an SMS sender (None: it can)."""
    if _SMS_SENDER.match(sender):
        return None
    return (
        "SMS sender must be at most 11 letters/digits (A-Z, 0-9, space, no æøå) "
        "or at most 15 digits"
    )


# --- LIX -------------------------------------------------------------------------------------

# A word is a run of letters (any script, so æøå and é count), hyphenated runs being one word.
_WORD_RE = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
# Web and e-mail addresses are one word each, not the pieces between their dots and slashes.
_ADDRESS_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)\S+$|^[^@\s]+@[^@\s]+\.[^@\s]+$", re.I)
_SENTENCE_END = ".!?:"
# Closing characters that may follow the end mark: `betal nu.")` still ends the sentence.
_CLOSERS = "\"')]}»”’"
# Danish abbreviations whose final "." is not a full stop. Lower-case, without the final dot.
ABBREVIATIONS = frozenset(
    {
        "kr", "fx", "f.eks", "bl.a", "dvs", "ca", "nr", "kl", "jf", "evt", "inkl", "ekskl",
        "mht", "pga", "tlf", "mv", "m.v", "m.m", "o.l", "ang", "vedr", "iflg", "ifm", "stk",
        "pkt", "att", "jan", "feb", "aug", "sep", "sept", "okt", "nov", "dec", "e.l", "st",
    }
)  # fmt: skip


@dataclass(frozen=True)
class LixInfo:
    """The counts behind a LIX score, for reports that show why a text scores as it does."""

    words: int
    sentences: int
    long_words: int
    score: float


def _logical_lines(text: str) -> list[str]:
    """Join a line to the one before it when it starts with a lower-case letter.

    Such a line is the wrapped continuation of a sentence (typical of PDF text); any other line
    break ends a heading, a list item or a paragraph, and so ends a sentence. Blank lines always
    end one. A line broken right after "/" or "-" (a long address, a hyphenated word) is glued
    back without a space.
    """
    lines: list[str] = []
    joinable = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            joinable = False
            continue
        if joinable and line[0].islower():
            # A line broken after "/" or "-" splits one address or word: glue it back.
            glue = "" if lines[-1].endswith(("/", "-")) else " "
            lines[-1] = f"{lines[-1]}{glue}{line}"
        else:
            lines.append(line)
        joinable = True
    return lines


def _ends_sentence(token: str, next_token: str | None) -> bool:
    core = token.rstrip(_CLOSERS)
    if not core or core[-1] not in _SENTENCE_END:
        return False
    if core[-1] == "." and core[-2:] != "..":
        # A full stop is followed by a capital, a digit or nothing: this keeps Danish ordinals
        # ("30. november") and abbreviations before lower case ("ca. 3 dage") inside the sentence.
        if next_token is not None and next_token[0].islower():
            return False
        return core[:-1].lower().lstrip("(\"'«“") not in ABBREVIATIONS
    return True


def _word_lengths(token: str) -> list[int]:
    """Letter counts of the words in a whitespace-separated token (hyphens are not letters)."""
    bare = token.strip(_CLOSERS + ".,;:!?(\"'«“")
    if _ADDRESS_RE.match(bare):
        # A link is tapped or copied, not read as a word: it counts as a word, never as a long
        # one (in a 20-word SMS, one address alone would add five points of LIX).
        return [min(sum(c.isalpha() for c in bare), 6)]
    if bare.lower() in ABBREVIATIONS:
        return [sum(c.isalpha() for c in bare)]
    return [len(w.replace("-", "")) for w in _WORD_RE.findall(token)]


def lix_info(text: str) -> LixInfo:
    """Count words, sentences and long words of `text` and compute its LIX score.

    Rules, kept simple on purpose:
    - A word is a run of letters; hyphenated words ("e-mail", "MitID-login") are one word;
      tokens of digits only ("250", "24-72") are no words; a web or e-mail address and a known
      abbreviation ("f.eks.") are one word each, and an address is never a long word.
    - A long word has more than 6 letters.
    - A sentence ends at "!", "?" or ":" followed by white space or the end of the line, and
      at a "." followed by white space and then a word not starting with a lower-case letter
      (or by the end of the line), except a "." closing a known abbreviation (`ABBREVIATIONS`:
      "kr.", "f.eks.", "bl.a." ...). So "30. november" and "ca. 3 dage" stay one sentence,
      and so does "250 kr. Du kan ..." (a known miscount). A "." inside a number or address
      ("1.000", "mit.dk") is never an end: no space follows.
    - A line break also ends a sentence (headings, list items, paragraphs without final
      punctuation), unless the next line starts with a lower-case letter: then it is a wrapped
      line and the sentence goes on.
    - Only stretches that hold at least one word count as sentences.

    Raises ValueError for a text with no words: its LIX is undefined.
    """
    words = sentences = long_words = 0
    for line in _logical_lines(text):
        words_in_sentence = 0
        tokens = line.split()
        for token, next_token in zip(tokens, [*tokens[1:], None], strict=True):
            lengths = _word_lengths(token)
            words += len(lengths)
            long_words += sum(n > 6 for n in lengths)
            words_in_sentence += len(lengths)
            if words_in_sentence and _ends_sentence(token, next_token):
                sentences += 1
                words_in_sentence = 0
        if words_in_sentence:
            sentences += 1
    if words == 0:
        raise ValueError("LIX is undefined for a text without words")
    score = words / sentences + 100 * long_words / words
    return LixInfo(words, sentences, long_words, score)


def lix(text: str) -> float:
    """LIX readability score of `text` (see `lix_info` for how words and sentences are counted)."""
    return lix_info(text).score


# The Danish bands (Jakobsen): under 25 very easy (children's books), 25-34 easy (popular
# fiction, weeklies), 35-44 medium (newspapers), 45-54 hard (non-fiction), 55+ very hard.
_LIX_BANDS = ((25, "very easy"), (35, "easy"), (45, "medium"), (55, "hard"))


def lix_band(score: float) -> str:
    """The Danish LIX band of `score`: very easy, easy, medium, hard or very hard."""
    if math.isnan(score):
        raise ValueError("LIX score is NaN")
    for upper, label in _LIX_BANDS:
        if score < upper:
            return label
    return "very hard"


# --- HTML to text ------------------------------------------------------------------------------

_SKIPPED = frozenset({"head", "script", "style", "template", "noscript", "svg", "math"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
     "track", "wbr"}
)  # fmt: skip
_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt",
     "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
     "header", "hr", "legend", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
     "table", "td", "th", "tr", "ul", "body", "html"}
)  # fmt: skip


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_depth:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        hidden = any(name == "hidden" for name, _ in attrs) or (
            ("aria-hidden", "true") in attrs and tag not in _VOID
        )
        if (tag in _SKIPPED or hidden) and tag not in _VOID:
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag == "br":
            self.chunks.append("\n")
        elif tag in _BLOCKS:
            self.chunks.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/> and <div/>: a self-closed tag opens nothing, so it must not start a skip.
        if not self._skip_depth and tag == "br":
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip_depth:
            if tag == self._skip_tag:
                self._skip_depth -= 1
            return
        if tag in _BLOCKS:
            self.chunks.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            # Source line breaks inside a paragraph are just spaces to a reader.
            self.chunks.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The visible text of an HTML document, one block (paragraph, heading, list item) per line.

    Skips head, script, style, template, noscript, inline SVG and elements marked `hidden` or
    `aria-hidden="true"`. Block elements are separated by a blank line, `<br>` by a line break,
    so `lix` treats each block as ending a sentence.
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.chunks).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
