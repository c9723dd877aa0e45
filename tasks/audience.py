"""Import borrowers from a CSV export and pick who may get the newsletter and who the SMS.

Row-level problems (a bad address, a duplicate, a ragged row) never raise: they go to an
ImportReport that names rows, fields and reasons, never the values. Only file-level problems
raise ConfigError. The parser is built for exports of a million rows: the per-row work is a
handful of dictionary look-ups and one regex.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import marshal
import os
import re
import signal
import tempfile
import threading
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, compress, count, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import IO

import phonenumbers

from tasks.errors import ConfigError
from tasks.gcpause import gc_paused
from tasks.models import Language

FIELDS = ("email", "mobile", "sms_consent", "newsletter_consent", "language", "name", "borrower_id")
# What the import keeps of a row. Names and borrower numbers are recognised (a mapped or known
# column is not a surprise) but not kept: nothing sends by them, and data not held cannot leak
# (on a million rows it is also ~130 MB less).
KEPT = FIELDS[:5]

# Header names seen in Danish and English exports, compared after _header_key().
_ALIASES: dict[str, str] = {
    **dict.fromkeys(("email", "mail", "emailadresse", "emailaddress", "epost"), "email"),
    **dict.fromkeys(
        (
            "mobil",
            "mobilnummer",
            "mobilnr",
            "telefon",
            "telefonnummer",
            "tlf",
            "tlfnr",
            "phone",
            "mobile",
            "mobilephone",
            "mobilenumber",
            "phonenumber",
        ),
        "mobile",
    ),
    **dict.fromkeys(("smsordning", "sms", "smstilmeldt", "smsconsent"), "sms_consent"),
    **dict.fromkeys(("nyhedsbrev", "newsletter", "newsletterconsent"), "newsletter_consent"),
    **dict.fromkeys(("sprog", "language"), "language"),
    **dict.fromkeys(("navn", "name", "fuldenavn", "fullname"), "name"),
    **dict.fromkeys(
        ("lånernummer", "laanernummer", "borrowerid", "lånerid", "laanerid", "lånernr"),
        "borrower_id",
    ),
}
_HEADER_NOISE = str.maketrans("", "", " \t-_.\ufeff\xa0")


def _header_key(name: str) -> str:
    return name.translate(_HEADER_NOISE).casefold()


# WHATWG "valid e-mail address" (what <input type=email> accepts), lower-case only because
# addresses are lower-cased first. One deviation: the domain needs a dot, since a dotless
# domain ("anna@localhost") can never reach a borrower through SendGrid. A label is written
# as 1-63 of [a-z0-9-] not starting or ending with "-": WHATWG's
# [a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])? without its backtracking, which costs a third more.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_EMAIL = re.compile(rf"[a-z0-9.!#$%&'*+/=?^_`{{|}}~-]++@{_LABEL}(?:\.{_LABEL})+")
_email_ok = _EMAIL.fullmatch

# Separators people type inside phone numbers.
_PHONE_NOISE = str.maketrans("", "", " -.()/\t\xa0")
# A 10-digit number starting 45 can only be +45 written without the plus.
_DK_NATIONAL = re.compile(r"(?:\+45|0045|45)?([0-9]{8})")
_MOBILE_TYPES = frozenset(
    (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
)

_CONSENT: dict[str, bool] = {
    **dict.fromkeys(("ja", "yes", "1", "x", "true", "sand"), True),
    **dict.fromkeys(("nej", "no", "0", "", "false", "falsk"), False),
}
# The spellings exports actually use, so the common case skips strip() and lower().
_CONSENT_FAST: dict[str, bool] = {
    **_CONSENT,
    **{k.capitalize(): v for k, v in _CONSENT.items()},
    **{k.upper(): v for k, v in _CONSENT.items()},
}
_LANGUAGE: dict[str, Language] = {
    **dict.fromkeys(("da", "dk", "dansk", "danish", "da-dk", "da_dk", ""), Language.DA),
    **dict.fromkeys(("en", "engelsk", "english", "en-gb", "en_gb", "en-us", "en_us"), Language.EN),
}
_LANGUAGE_FAST: dict[str, Language] = {
    **_LANGUAGE,
    **{k.capitalize(): v for k, v in _LANGUAGE.items()},
    **{k.upper(): v for k, v in _LANGUAGE.items()},
}

# Outcome code -> (field, reason). Reasons are fixed text: a value never goes into them.
_REASONS: dict[str, tuple[str, str]] = {
    "invalid_email": ("email", "not a valid e-mail address"),
    "invalid_mobile": ("mobile", "not a valid mobile number"),
    "duplicate_email": ("email", "same e-mail address as row {first}"),
    "duplicate_mobile": ("mobile", "same mobile number as row {first}"),
    "suppressed_email": ("email", "on the suppression list"),
    "suppressed_mobile": ("mobile", "on the suppression list"),
    "invalid_sms_consent": (
        "sms_consent",
        "not a yes/no value (Ja/Nej, yes/no, 1/0, x/blank, true/false); read as no",
    ),
    "invalid_newsletter_consent": (
        "newsletter_consent",
        "not a yes/no value (Ja/Nej, yes/no, 1/0, x/blank, true/false); read as no",
    ),
    "unknown_language": ("language", "language not offered; Danish is used"),
    "no_contact": ("email/mobile", "neither e-mail address nor mobile number given"),
    "too_few_fields": (
        "row",
        "{found} fields, the header has {expected}; missing ones read as blank",
    ),
    "too_many_fields": (
        "row",
        "{found} fields, the header has {expected}; row not used (fix: quote values that "
        "contain the delimiter)",
    ),
    "missing_column": ("{column}", "no such column; every row reads as no consent"),
    "missing_address_column": ("{column}", "no such column; nobody can be reached this way"),
}


@dataclass(frozen=True, slots=True, repr=False)
class Borrower:
    """One row of the export. All but `row` is personal data, so the repr shows only `row`."""

    row: int  # line number in the CSV file (the header is line 1)
    email: str | None  # trimmed, lower-cased and syntax-valid, or None
    mobile: str | None  # E.164, e.g. "+4512345678", or None
    sms_consent: bool
    newsletter_consent: bool
    language: Language

    def __repr__(self) -> str:
        return f"Borrower(row={self.row})"


@dataclass(slots=True, repr=False)
class _BorrowerBuilder:
    """Same layout as Borrower without the frozen __init__, which costs ~1.5 µs a row.

    A million-row import builds one of these and re-labels it as a Borrower (see _parse).
    """

    row: int
    email: str | None
    mobile: str | None
    sms_consent: bool
    newsletter_consent: bool
    language: Language


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """A problem in one row; `reason` is fixed text and never contains the value."""

    row: int
    field: str
    reason: str


@dataclass
class ImportReport:
    """What the import found, without personal data: safe for logs, artifacts and files."""

    source: str
    encoding: str
    delimiter: str
    rows: int  # data rows read, blank lines included
    counts: dict[str, int]  # outcome -> number of rows; "valid" rows had no issue
    issues: list[ImportIssue]

    def __repr__(self) -> str:
        return (
            f"ImportReport(source={self.source!r}, encoding={self.encoding!r}, "
            f"delimiter={self.delimiter!r}, rows={self.rows}, counts={self.counts!r}, "
            f"issues={len(self.issues)})"
        )

    def table(self) -> list[dict[str, object]]:
        """Rows for a Prefect table artifact: row, field and reason of each issue."""
        return [{"row": i.row, "field": i.field, "reason": i.reason} for i in self.issues]

    def write(self, folder: Path) -> Path:
        """Write import-report.csv (issues) and import-counts.csv; return the first.

        `;` and a byte-order mark, because a project leader opens these in a Danish Excel.
        """
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "import-report.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, delimiter=";")
            writer.writerow(["row", "field", "reason"])
            writer.writerows((i.row, i.field, i.reason) for i in self.issues)
        with (folder / "import-counts.csv").open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, delimiter=";")
            writer.writerow(["outcome", "count"])
            writer.writerow(["rows", self.rows])
            writer.writerows(sorted(self.counts.items()))
        return path


@dataclass(repr=False)
class Audience:
    """Every parsed row, the import report, and the recipients per channel."""

    borrowers: list[Borrower]
    report: ImportReport
    suppressed: frozenset[str] = frozenset()  # normalised addresses and E.164 numbers
    # Addresses and numbers found in more than one row; None: work it out when needed.
    duplicated: frozenset[str] | None = None
    _selected: dict[str, tuple[list[Borrower], dict[str, int]]] = field(
        default_factory=dict, init=False
    )

    def __repr__(self) -> str:
        return f"Audience(source={self.report.source!r}, borrowers={len(self.borrowers)})"

    def recipients(self, channel: str) -> list[Borrower]:
        """The borrowers `channel` reaches: its consent given, its address valid, one per address,
        not suppressed (the channel's `delivers` names the consent column and the address)."""
        return list(self._select(channel)[0])

    def newsletter_recipients(self) -> list[Borrower]:
        """Borrowers with newsletter consent and a valid e-mail, one per address, not suppressed."""
        return self.recipients("newsletter")

    def sms_recipients(self) -> list[Borrower]:
        """Borrowers in the SMS scheme with a valid mobile, one per number, not suppressed."""
        return self.recipients("sms")

    def exclusions(self, channel: str) -> dict[str, int]:
        """Who was left out of a channel that reaches borrowers ("newsletter", "sms") and why, as counts.

        Keys: no_consent, no_valid_address, suppressed, duplicate (checked in that order).
        """
        return dict(self._select(channel)[1])

    def _select(self, channel: str) -> tuple[list[Borrower], dict[str, int]]:
        # Imported here, not at the top: the channels' renderers are slow to import, and this
        # module is imported first thing to start reading the borrower file (tasks/prefetch.py).
        from tasks.channels import borrower_channels, spec

        channel = str(channel)
        names = tuple(c.value for c in borrower_channels())
        if channel not in names:
            raise ValueError(f"unknown channel {channel!r}; use one of {names}")
        cached = self._selected.get(channel)
        if cached is not None:
            return cached
        delivery = spec(channel).delivers
        assert delivery is not None and delivery.consent and delivery.address
        consent, address = delivery.consent, delivery.address
        has_consent, address_of = attrgetter(consent), attrgetter(address)
        consenting = [b for b in self.borrowers if has_consent(b)]
        reachable = [b for b in consenting if address_of(b) is not None]
        duplicated = self._duplicated()
        suppressed = self.suppressed
        # Only addresses on the list or known to repeat need a closer look; a small set.
        special = duplicated | suppressed
        seen: set[str] = set()
        on_list = duplicate = 0

        def admit(addr: str) -> bool:
            nonlocal on_list, duplicate
            if addr in suppressed:
                on_list += 1
                return False
            if addr in seen:
                duplicate += 1
                return False
            seen.add(addr)
            return True

        chosen = [b for b in reachable if address_of(b) not in special or admit(address_of(b))]
        left_out = {
            "no_consent": len(self.borrowers) - len(consenting),
            "no_valid_address": len(consenting) - len(reachable),
            "suppressed": on_list,
            "duplicate": duplicate,
        }
        self._selected[channel] = (chosen, left_out)
        return chosen, left_out

    def _duplicated(self) -> frozenset[str]:
        if self.duplicated is None:
            counts = Counter(b.email for b in self.borrowers if b.email is not None)
            counts.update(b.mobile for b in self.borrowers if b.mobile is not None)
            self.duplicated = frozenset(a for a, n in counts.items() if n > 1)
        return self.duplicated


# --- reading the file ------------------------------------------------------------------------


def _read_text(path: Path, what: str) -> tuple[str, str]:
    """Return (text, encoding name) of a file exported as UTF-8 (BOM or not), UTF-16 or cp1252."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found (fix: check the path in the config)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {what} (fix: name the CSV file)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if data.startswith(codecs.BOM_UTF8):
        candidates = ("utf-8-sig",)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export.
        candidates = ("utf-16",)
    else:
        # A cp1252 file is almost never valid UTF-8 once it has an æ, ø or å in it.
        candidates = ("utf-8", "cp1252")
    for encoding in candidates:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            error = exc
    line = data.count(b"\n", 0, error.start) + 1
    raise ConfigError(
        f"{path}: line {line}: the {what} is neither UTF-8 nor Windows-1252 text "
        f"(fix: export it again as 'CSV UTF-8' or save it as UTF-8)"
    )


def _count_outside_quotes(line: str, char: str) -> int:
    if '"' not in line:
        return line.count(char)
    return sum(part.count(char) for part in line.split('"')[::2])


def _first_line(text: str) -> str:
    """The first line with something on it: the header."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if line := text[start:end].strip():
            return line
        start = end + 1
    return ""


def _delimiter(header: str) -> str:
    """The delimiter that splits the header line most often; `;` on a tie (Danish Excel)."""
    counts = {d: _count_outside_quotes(header, d) for d in (";", "\t", ",")}
    best = max(counts, key=lambda d: counts[d])  # max keeps the first of equal counts
    return best if counts[best] else ";"


_CHUNK = 1 << 20  # characters split at a time: big enough to be fast, small enough to reuse memory


def _line_ends(text: str) -> tuple[str, str]:
    """The text with one kind of line end throughout, and that line end."""
    if "\r" not in text:
        return text, "\n"
    if text.count("\r") == text.count("\r\n") == text.count("\n"):
        return text, "\r\n"
    # Mixed or old Mac line ends, e.g. Excel's LF inside a quoted value (refused: see _Lines).
    return text.replace("\r\n", "\n").replace("\r", "\n"), "\n"


def _chunks(
    text: str, newline: str, start: int = 0, stop: int | None = None
) -> Iterator[list[str]]:
    """The lines of text[start:stop] without their line ends, as lists of ~_CHUNK characters.

    io.StringIO would first copy the text into a 4-bytes-a-character buffer and then hand
    out one line per Python call; on a million-row export that is most of the import time.
    """
    stop = len(text) if stop is None else stop
    end_of_text = stop - len(newline) if text.endswith(newline, start, stop) else stop
    while start <= end_of_text:
        end = text.find(newline, start + _CHUNK, end_of_text)
        if end < 0:
            end = end_of_text
        yield text[start:end].split(newline)
        start = end + len(newline)


class _Lines:
    """One stream of lines for the fast str.split path, with csv.reader for a line with a quote.

    A record is one line. A quoted value that is not closed on its line is an error, not the
    start of a value spanning lines: borrower exports have no line breaks inside values (the
    fields read are an address, a number, yes/no and a language), so such a quote is a stray
    one, and reading on would swallow the rows after it into one value, silently (a stray
    quote in row 2 once turned 1,001 rows into 1). Allowing a value N lines would not help:
    a later stray quote closes it, and the rows between are lost unseen.
    """

    def __init__(
        self,
        path: Path,
        text: str,
        newline: str,
        delimiter: str,
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        self.path, self.delimiter = path, delimiter
        self.stream = chain.from_iterable(_chunks(text, newline, start, stop))
        # The reader reads from a _Feed, not from this object: a reader reading from its owner
        # would be a reference cycle, kept (with all it holds) until the cycle collector ran,
        # which `fbsflow run` holds off.
        self._feed = _Feed()
        self._csv = csv.reader(self._feed, delimiter=delimiter, strict=False)

    def quoted(self, line: str, line_no: int) -> list[str]:
        """The record on `line`, which has a quote; ConfigError if a quoted value stays open.

        Costs a quoted row two attribute writes and a read more than csv.reader's own work;
        a row without a quote never comes here.
        """
        feed = self._feed
        feed.head, feed.open = line, False
        try:
            record = next(self._csv)
        except csv.Error as exc:
            raise ConfigError(
                f'{self.path}: row {line_no}: {exc} (fix: look for an opening quote " that is '
                f"never closed, or a quote inside a value that is not doubled)"
            ) from None
        if feed.open:
            raise ConfigError(
                f"{self.path}: row {line_no}: a quoted value is not closed in this row, so it "
                f"would swallow the rows after it; nothing was imported (fix: close the quote "
                f"in row {line_no} or remove it; a value cannot hold a line break either)"
            )
        return record


class _Feed:
    """csv.reader's input: one line, then an end that says whether the reader wanted more."""

    __slots__ = ("head", "open")

    def __init__(self) -> None:
        self.head: str | None = None
        self.open = False  # the reader asked for another line: a quoted value is still open

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        head = self.head
        if head is None:
            # csv.reader asks for a next line only from inside a quoted value.
            self.open = True
            raise StopIteration
        self.head = None
        return head + "\n"


# --- values ----------------------------------------------------------------------------------


def normalise_email(value: str) -> str | None:
    """Trimmed, lower-cased address if it is syntactically valid, else None."""
    email = value.strip().lower()
    return email if _email_ok(email) else None


_dk_prefix_valid: dict[str, bool] = {}


def _dk_valid(national: str) -> bool:
    """Validity of an 8-digit Danish number, looked up once per first three digits.

    The Danish numbering plan decides validity by the leading digits only (every DK
    pattern in libphonenumber is a prefix followed by any six digits; a test checks it).
    """
    prefix = national[:3]
    valid = _dk_prefix_valid.get(prefix)
    if valid is None:
        # With "+45" in front, a leading 00 cannot be read as an international prefix.
        number = phonenumbers.parse("+45" + national)
        valid = phonenumbers.is_valid_number(number) and (
            phonenumbers.number_type(number) in _MOBILE_TYPES
        )
        _dk_prefix_valid[prefix] = valid
    return valid


def normalise_mobile(value: str) -> str | None:
    """E.164 form of a number given as 8 Danish digits, +45..., 0045... or +CC..., else None."""
    if len(value) == 8 and value.isdigit() and value.isascii():
        return "+45" + value if _dk_valid(value) else None
    compact = value.translate(_PHONE_NOISE)
    if not compact:
        return None
    match = _DK_NATIONAL.fullmatch(compact)
    if match is not None:
        national = match.group(1)
        return "+45" + national if _dk_valid(national) else None
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not compact.startswith("+") or not compact[1:].isdigit() or not compact.isascii():
        return None
    try:
        number = phonenumbers.parse(compact, "DK")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _normalise_any(value: str) -> str | None:
    """A suppression entry: an address (anything with @) or a number."""
    value = value.strip()
    if "@" in value:
        return value.lower() or None
    return normalise_mobile(value)


def read_suppression(path: Path) -> frozenset[str]:
    """Addresses and numbers never to contact: one per line, or the first column of a CSV.

    Read as the borrower file is (see _Lines): a stray quote must not swallow the entries
    after it, or the people they name would be contacted.
    """
    text, _ = _read_text(path, "suppression list")
    text, newline = _line_ends(text)
    lines = _Lines(path, text, newline, _delimiter(_first_line(text)))
    entries: set[str] = set()
    for row, line in enumerate(lines.stream, 1):
        record = lines.quoted(line, row) if '"' in line else line.split(lines.delimiter, 1)
        if (value := _normalise_any(record[0])) is not None:
            entries.add(value)
    return frozenset(entries)


# --- the header ------------------------------------------------------------------------------


def _map_header(header: list[str], columns: Mapping[str, str] | None, path: Path) -> dict[str, int]:
    """Our field name -> column index. The config's `columns` wins over the built-in names."""
    override: dict[str, str] = {}
    for name, target in (columns or {}).items():
        if target not in FIELDS:
            raise ConfigError(
                f"{path}: audience.columns maps a column to '{target}', which is not a field "
                f"(fix: use one of {', '.join(FIELDS)})"
            )
        override[_header_key(name)] = target
    keys = [_header_key(h) for h in header]
    missing = [name for name in (columns or {}) if _header_key(name) not in keys]
    if missing:
        raise ConfigError(
            f"{path}: audience.columns names column(s) {missing} that the header line does not "
            f"have (fix: copy the header names from the first line of the file)"
        )
    index: dict[str, int] = {}
    claimed = set(override.values())
    for i, key in enumerate(keys):
        target = override.get(key)
        if target is None:
            target = _ALIASES.get(key)
            if target is None or target in claimed:
                continue
        index.setdefault(target, i)
    return index


# --- the import ------------------------------------------------------------------------------


def import_audience(
    path: Path, *, columns: Mapping[str, str] | None = None, suppression: Path | None = None
) -> Audience:
    """Read a borrower export; every row becomes a Borrower, every problem a report line."""
    return start_import(path, columns=columns, suppression=suppression, split=False).result()


def start_import(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    suppression: Path | None = None,
    split: bool = True,
) -> PendingImport:
    """Read the files now and, with `split`, start parsing the file's tail in a forked child.

    `result()` parses the rest in this process and joins the two. Why: the import is pure
    Python, one core's work (~3 s on a million rows), while the machine has two. `fbsflow run`
    starts the child before it imports Prefect, so the tail is parsed while Prefect loads. The
    split only happens where it is safe and pays: a file of at least _SPLIT_MIN characters, a
    platform with fork, and no other thread in this process (a forked child gets only the
    calling thread, and locks other threads hold would stay held in it). Either way the
    Audience is exactly what a single pass gives (tests compare them).
    """
    path = Path(path)
    suppressed = read_suppression(Path(suppression)) if suppression is not None else frozenset()
    text, encoding = _read_text(path, "borrower file")
    # Not `text.strip()`: that copies the whole text (~0.2 s on a million rows) to test it.
    if not text or text.isspace():
        raise ConfigError(f"{path}: the borrower file is empty (fix: export the borrowers again)")
    text, newline = _line_ends(text)
    delimiter = _delimiter(_first_line(text))
    pending = PendingImport(path, text, newline, encoding, delimiter, columns, suppressed)
    if split and len(text) >= _SPLIT_MIN and hasattr(os, "fork") and threading.active_count() == 1:
        pending._fork_tail()
    return pending


# Below this many characters (~100k rows) a second process costs more than it saves.
_SPLIT_MIN = 8 << 20
# The child's share of the file. It starts about a second before this process gets to its own
# part (the Prefect import, ~0.8 s), and then spends ~0.15 s packing its part (measured).
_TAIL_SHARE = 0.62


class PendingImport:
    """An import under way: the file is read; `result()` returns the Audience."""

    def __init__(
        self,
        path: Path,
        text: str,
        newline: str,
        encoding: str,
        delimiter: str,
        columns: Mapping[str, str] | None,
        suppressed: frozenset[str],
    ) -> None:
        self.path, self.text, self.newline = path, text, newline
        self.encoding, self.delimiter = encoding, delimiter
        self.columns, self.suppressed = columns, suppressed
        self.processes = 1  # how many processes parsed the file, once result() has returned
        self._split: int | None = None  # where the child's part starts
        # The child's pid, the read end of its "done" pipe, and the file it writes its part to.
        self._child: tuple[int, int, IO[bytes]] | None = None

    @property
    def split(self) -> bool:
        """Whether a child is parsing the tail of the file."""
        return self._child is not None

    def result(self) -> Audience:
        """Parse what is left here and return the whole import (once)."""
        # Borrowers hold only strings, ints and enums, so parsing makes no reference cycles.
        with gc_paused():
            try:
                if self._child is not None:
                    audience = self._joined()
                    if audience is not None:
                        self.processes = 2
                        return audience
                lines = self._lines()
                header = _read_header(lines, self.path, self.columns)
                return self._audience(_parse_rows(lines, header, self.suppressed))
            finally:
                self.close()
                self.text = ""  # 2 bytes or more a character of the file: not kept for the run

    def close(self) -> None:
        """Stop the child, if any (after result() there is none)."""
        if self._child is None:
            return
        pid, done, handover = self._child
        self._child = None
        os.close(done)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid, handover)

    def _lines(self, start: int = 0, stop: int | None = None) -> _Lines:
        return _Lines(self.path, self.text, self.newline, self.delimiter, start, stop)

    def _audience(self, part: _Part) -> Audience:
        if part.pending:
            _name_first_rows(part.issues, part.pending, part.borrowers, part.duplicated)
        # One fixed order, so the counts read the same however the file was parsed.
        counts = {code: part.counts[code] for code in _REASONS if code in part.counts}
        counts["valid"] = part.valid
        if part.blank:
            counts["blank_line"] = part.blank
        report = ImportReport(
            str(self.path), self.encoding, self.delimiter, part.rows, counts, part.issues
        )
        return Audience(part.borrowers, report, self.suppressed, frozenset(part.duplicated))

    def _fork_tail(self) -> None:
        point = self._split_point()
        if point is None:
            return
        split, header = point
        # A file, not a pipe: the child writes its part as soon as it is done, while this
        # process is still parsing, instead of waiting for it to read (measured: 0.5 s).
        handover = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _reap)
        # The pipe says "done": waiting for the child's exit instead would wait for the kernel
        # to tear down its memory (~0.2 s at a million rows).
        done, done_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process to be had (limits, memory): parse in one process
            os.close(done)
            os.close(done_write)
            handover.close()
            return
        if pid == 0:  # the child: parse the tail, hand it over, and leave without cleanup
            status = 1
            try:
                os.close(done)
                handover.write(self._tail(split, header))
                handover.flush()
                os.write(done_write, b"1")
                status = 0
            finally:
                os._exit(status)  # no atexit handlers or buffered output of the parent's
        os.close(done_write)
        self._split, self._child = split, (pid, done, handover)

    def _split_point(self) -> tuple[int, _Header] | None:
        """Where the child's part starts (a line start), and the header its rows are read
        with (its `line_no`: the lines before the split); None: no split."""
        try:
            header = _read_header(self._lines(), self.path, self.columns)
        except ConfigError:
            return None  # result() reports it, as a single pass would
        text, newline = self.text, self.newline
        split = text.find(newline, int(len(text) * (1 - _TAIL_SHARE)))
        if split < 0:
            return None
        split += len(newline)
        # The tail's first line number: the lines before it, counted as _chunks splits them.
        before = text.count(newline, 0, split)
        if split >= len(text) or before <= header.line_no:
            return None  # a last line or a header that long: nothing to share
        return split, _Header(header.index, header.ncols, before)

    def _tail(self, split: int, header: _Header) -> bytes:
        """The rows from `split` on (`header` as `_split_point` gives it), parsed and packed
        for the trip to the parent."""
        with gc_paused():
            part = _parse_rows(self._lines(split), header, self.suppressed)
            # marshal, not pickle: plain lists of strings are all it carries, and version 2
            # writes and reads them in half the time (no memo of objects).
            return marshal.dumps(_pack(part), 2)

    def _head(self, split: int) -> _Part:
        """The header and the rows before `split` (a record never spans lines: see _Lines)."""
        lines = self._lines(0, split)
        return _parse_rows(lines, _read_header(lines, self.path, self.columns), self.suppressed)

    def _join(self, head: _Part, tail: bytes) -> Audience:
        packed = marshal.loads(tail)
        return self._audience(_merge(head, _unpack(packed), packed[1], packed[2]))

    def _joined(self) -> Audience | None:
        """Head parsed here plus the child's tail; None if the child failed (a single pass
        then says why: a ConfigError in the tail, such as an unclosed quote, costs that pass)."""
        assert self._child is not None and self._split is not None
        head = self._head(self._split)  # a ConfigError here: result() stops the child
        pid, done, handover = self._child
        # Still ours until it has answered: interrupted while waiting, close() stops it.
        finished = os.read(done, 1) == b"1"  # b"" once the child has gone without a word
        self._child = None
        os.close(done)
        tail = None
        if finished:
            handover.seek(0)
            tail = handover.read()
        _reap(pid, handover)
        return None if tail is None else self._join(head, tail)


def _reap(pid: int, handover: IO[bytes]) -> None:
    """Collect the child's exit status and drop its file, in the background.

    Not waited for: the kernel takes ~0.2 s to tear down the child's memory and ~0.1 s to
    free the file's pages.
    """

    def reap() -> None:
        handover.close()
        with contextlib.suppress(ChildProcessError):  # SIGCHLD ignored: nothing to collect
            os.waitpid(pid, 0)

    threading.Thread(target=reap, name="fbsflow-reap", daemon=True).start()


@dataclass(frozen=True, slots=True)
class _Header:
    index: dict[str, int]  # field -> column
    ncols: int
    line_no: int  # the header's last line: rows start after it
    notes: tuple[tuple[int, str, str], ...] = ()  # (line, field, code) for missing columns


def _read_header(lines: _Lines, path: Path, columns: Mapping[str, str] | None) -> _Header:
    stream, quoted = lines.stream, lines.quoted
    header: list[str] = []
    header_line = line_no = 0
    for line in stream:
        line_no += 1
        header = quoted(line, line_no) if '"' in line else line.split(lines.delimiter)
        header_line = line_no
        if any(h.strip() for h in header):
            break
    index = _map_header(header, columns, path)
    if "email" not in index and "mobile" not in index:
        looks_like_data = any("@" in h for h in header)
        raise ConfigError(
            f"{path}: no e-mail or mobile column among the {len(header)} column(s) of the "
            f"header line"
            + (" (the first line looks like data, not a header)" if looks_like_data else "")
            + " (fix: name a column E-mail or Mobil, or map it under audience.columns "
            "in the municipality config)"
        )
    notes = tuple(
        (header_line, column, code) for column, code in _COLUMN_NOTES if column not in index
    )
    return _Header(index, len(header), line_no, notes)


@dataclass(slots=True)
class _Part:
    """What parsing some of the rows found; `_merge` joins a head and a tail."""

    borrowers: list[Borrower]
    issues: list[ImportIssue]
    pending: list[tuple[int, str]]  # (index in issues, address): duplicates awaiting a first row
    counts: dict[str, int]  # issue code -> rows
    duplicated: set[str]
    seen_email: set[str]
    seen_mobile: set[str]
    rows: int
    blank: int
    valid: int


def _parse_rows(lines: _Lines, header: _Header, suppressed: frozenset[str]) -> _Part:
    """Parse the rows after `header.line_no` to the end of `lines`."""
    stream, quoted = lines.stream, lines.quoted
    delimiter = lines.delimiter
    index, ncols, line_no = header.index, header.ncols, header.line_no
    counts: dict[str, int] = {}
    issues: list[ImportIssue] = []
    for note_line, column, code in header.notes:
        field_name, reason = _REASONS[code]
        issues.append(ImportIssue(note_line, field_name.format(column=column), reason))
        counts[code] = counts.get(code, 0) + 1

    # A missing column reads from index -1: a "" appended to each record.
    pad = any(f not in index for f in KEPT)
    get = itemgetter(*(index.get(f, -1) for f in KEPT))
    borrowers: list[Borrower] = []
    append = borrowers.append
    # Sets, not address -> first row dicts: on a million rows a dict costs a second more
    # (twice the memory touched per insert). First rows of duplicates are looked up after.
    seen_email: set[str] = set()
    seen_mobile: set[str] = set()
    new_email, new_mobile = seen_email.add, seen_mobile.add
    duplicated: set[str] = set()
    pending: list[tuple[int, str]] = []  # (index in issues, address) awaiting the first row
    email_ok, mobile_of, dk_prefix_valid = _email_ok, normalise_mobile, _dk_prefix_valid
    consent_fast, language_fast = _CONSENT_FAST, _LANGUAGE_FAST
    build, relabel = _BorrowerBuilder, object.__setattr__
    da = Language.DA
    rows = blank = valid = 0

    # The hot loop: everything here runs a million times, so it is written for speed.
    for row, line in enumerate(stream, line_no + 1):
        rec = quoted(line, row) if '"' in line else line.split(delimiter)
        rows += 1
        n = len(rec)
        bad: list[tuple[str, dict[str, object]]] | None = None
        if n != ncols:
            if n <= 1 and not (rec and rec[0].strip()):
                blank += 1
                continue
            if n < ncols:
                rec.extend([""] * (ncols - n))
                bad = [("too_few_fields", {"found": n, "expected": ncols})]
            elif any(v.strip() for v in rec[ncols:]):
                bad = [("too_many_fields", {"found": n, "expected": ncols})]
                _add(issues, counts, row, bad, pending)
                append(_unused(row))
                continue
        if pad:
            rec.append("")
        email_raw, mobile_raw, sms_raw, news_raw, lang_raw = get(rec)

        email = None
        if email_raw:
            # Most addresses are already trimmed and lower-case: one regex call decides.
            if email_ok(email_raw) is not None:
                email = email_raw
            else:
                email = email_raw.strip().lower()
                if not email:
                    email = None
                elif email_ok(email) is None:
                    email = None
                    bad = _note(bad, "invalid_email")
            if email is not None:
                if email in seen_email:
                    duplicated.add(email)
                    bad = _note(bad, "duplicate_email", address=email)
                else:
                    new_email(email)
                if suppressed and email in suppressed:
                    bad = _note(bad, "suppressed_email")

        mobile = None
        if mobile_raw:
            if len(mobile_raw) == 8 and mobile_raw.isdigit() and mobile_raw.isascii():
                ok = dk_prefix_valid.get(mobile_raw[:3])
                if ok is None:
                    ok = _dk_valid(mobile_raw)
                if ok:
                    mobile = "+45" + mobile_raw
            else:
                mobile = mobile_of(mobile_raw)
            if mobile is None:
                if mobile_raw.strip():
                    bad = _note(bad, "invalid_mobile")
            else:
                if mobile in seen_mobile:
                    duplicated.add(mobile)
                    bad = _note(bad, "duplicate_mobile", address=mobile)
                else:
                    new_mobile(mobile)
                if suppressed and mobile in suppressed:
                    bad = _note(bad, "suppressed_mobile")

        sms = consent_fast.get(sms_raw)
        if sms is None:
            sms = _CONSENT.get(sms_raw.strip().lower())
            if sms is None:
                sms = False
                bad = _note(bad, "invalid_sms_consent")
        news = consent_fast.get(news_raw)
        if news is None:
            news = _CONSENT.get(news_raw.strip().lower())
            if news is None:
                news = False
                bad = _note(bad, "invalid_newsletter_consent")
        language = language_fast.get(lang_raw)
        if language is None:
            language = _LANGUAGE.get(lang_raw.strip().lower())
            if language is None:
                language = da
                bad = _note(bad, "unknown_language")

        if email is None and mobile is None and not (email_raw.strip() or mobile_raw.strip()):
            if not any(v.strip() for v in rec):
                blank += 1  # a line of bare delimiters, as spreadsheets export empty rows
                continue
            bad = _note(bad, "no_contact")

        borrower = build(row, email, mobile, sms, news, language)
        relabel(borrower, "__class__", Borrower)
        append(borrower)  # type: ignore[arg-type]
        if bad is None:
            valid += 1
        else:
            _add(issues, counts, row, bad, pending)

    return _Part(
        borrowers,
        issues,
        pending,
        counts,
        duplicated,
        seen_email,
        seen_mobile,
        rows,
        blank,
        valid,
    )


def _merge(head: _Part, tail: _Part, emails: list[str | None], mobiles: list[str | None]) -> _Part:
    """The head's rows followed by the tail's, as one pass over both would have found them.

    `emails` and `mobiles` are the tail borrowers' addresses, as the child sent them.
    """
    # An address seen in the head is a duplicate at its first row in the tail too: the tail's
    # parser could not know. (Its later rows there are marked already.)
    borrowers = tail.borrowers
    cross_email = head.seen_email.intersection(emails)
    cross_mobile = head.seen_mobile.intersection(mobiles)
    extra: dict[int, list[tuple[str, str]]] = {}  # tail row -> [(code, address)], e-mail first
    for code, cross, addresses in (
        ("duplicate_email", cross_email, emails),
        ("duplicate_mobile", cross_mobile, mobiles),
    ):
        # The positions of crossing addresses, found in C; the first one of each counts.
        left = set(cross)
        for at in compress(count(), map(cross.__contains__, addresses)):
            address = addresses[at]
            if address in left:
                left.discard(address)
                extra.setdefault(borrowers[at].row, []).append((code, address))  # type: ignore[arg-type]
                if not left:
                    break
    issues, pending, valid = tail.issues, tail.pending, tail.valid
    counts = dict(head.counts)
    for code, n in tail.counts.items():
        counts[code] = counts.get(code, 0) + n
    if extra:
        # Put each new issue where a single pass would have: after the row's field-count
        # issue (and, for a number, its e-mail issues), before the rest.
        rows_of = [i.row for i in issues]
        merged: list[ImportIssue] = []
        added: list[tuple[int, str]] = []  # (index in merged, address)
        inserted_before: list[int] = []  # old index each new issue went in front of
        taken = 0
        for row in sorted(extra):
            lo, hi = bisect_left(rows_of, row), bisect_right(rows_of, row)
            if lo == hi:
                valid -= 1  # the row had no issue until now
            for code, address in extra[row]:
                before = ("row",) if code == "duplicate_email" else ("row", "email")
                at = lo
                while at < hi and issues[at].field in before:
                    at += 1
                merged += issues[taken:at]
                taken = at
                field_name, reason = _REASONS[code]
                added.append((len(merged), address))
                inserted_before.append(at)
                merged.append(ImportIssue(row, field_name, reason.format(first="?")))
                counts[code] = counts.get(code, 0) + 1
        merged += issues[taken:]
        pending = [(i + bisect_right(inserted_before, i), a) for i, a in pending] + added
        issues = merged
    offset = len(head.issues)
    return _Part(
        head.borrowers + tail.borrowers,
        head.issues + issues,
        head.pending + [(i + offset, a) for i, a in pending],
        counts,
        head.duplicated | tail.duplicated | cross_email | cross_mobile,
        set(),  # no longer needed
        set(),
        head.rows + tail.rows,
        head.blank + tail.blank,
        head.valid + valid,
    )


# A borrower's two consents and language in one byte, for the trip from the child.
_LANGUAGES = tuple(Language)
_FLAGS = {
    (sms, news, language): sms | news << 1 | i << 2
    for i, language in enumerate(_LANGUAGES)
    for sms in (False, True)
    for news in (False, True)
}
_SMS_OF = [bool(flag & 1) for flag in range(4 * len(_LANGUAGES))]
_NEWS_OF = [bool(flag & 2) for flag in range(4 * len(_LANGUAGES))]
_LANGUAGE_OF = [_LANGUAGES[flag >> 2] for flag in range(4 * len(_LANGUAGES))]


def _pack(part: _Part) -> tuple[object, ...]:
    """A part as columns of plain values: a million dataclasses would take seconds to pickle."""
    borrowers, flags = part.borrowers, _FLAGS
    return (
        [b.row for b in borrowers],
        [b.email for b in borrowers],
        [b.mobile for b in borrowers],
        bytes([flags[b.sms_consent, b.newsletter_consent, b.language] for b in borrowers]),
        [(i.row, i.field, i.reason) for i in part.issues],
        part.pending,
        part.counts,
        part.duplicated,
        part.rows,
        part.blank,
        part.valid,
    )


def _unpack(packed: tuple[object, ...]) -> _Part:
    rows, emails, mobiles, flags, issues, pending, counts, duplicated, n, blank, valid = packed
    sms = map(_SMS_OF.__getitem__, flags)  # type: ignore[call-overload]
    news = map(_NEWS_OF.__getitem__, flags)  # type: ignore[call-overload]
    language = map(_LANGUAGE_OF.__getitem__, flags)  # type: ignore[call-overload]
    borrowers = list(map(_BorrowerBuilder, rows, emails, mobiles, sms, news, language))  # type: ignore[call-overload]
    # object.__setattr__ for each, in C: re-labelling as in _parse_rows.
    deque(map(object.__setattr__, borrowers, repeat("__class__"), repeat(Borrower)), maxlen=0)
    return _Part(
        borrowers,
        [ImportIssue(*i) for i in issues],  # type: ignore[attr-defined]
        pending,  # type: ignore[arg-type]
        counts,  # type: ignore[arg-type]
        duplicated,  # type: ignore[arg-type]
        set(),
        set(),
        n,  # type: ignore[arg-type]
        blank,  # type: ignore[arg-type]
        valid,  # type: ignore[arg-type]
    )


_COLUMN_NOTES = (
    ("email", "missing_address_column"),
    ("mobile", "missing_address_column"),
    ("sms_consent", "missing_column"),
    ("newsletter_consent", "missing_column"),
)


def _note(
    bad: list[tuple[str, dict[str, object]]] | None, code: str, **details: object
) -> list[tuple[str, dict[str, object]]]:
    if bad is None:
        bad = []
    bad.append((code, details))
    return bad


def _add(
    issues: list[ImportIssue],
    counts: dict[str, int],
    row: int,
    bad: list[tuple[str, dict[str, object]]],
    pending: list[tuple[int, str]],
) -> None:
    for code, details in bad:
        field_name, reason = _REASONS[code]
        address = details.pop("address", None)
        if address is not None:  # a duplicate: its reason is finished by _name_first_rows
            pending.append((len(issues), str(address)))
        issues.append(ImportIssue(row, field_name, reason.format(first="?", **details)))
        counts[code] = counts.get(code, 0) + 1


def _name_first_rows(
    issues: list[ImportIssue],
    pending: list[tuple[int, str]],
    borrowers: list[Borrower],
    duplicated: set[str],
) -> None:
    """Put the row number of each duplicate's first occurrence into its issue's reason."""
    first: dict[str, int] = {}
    for attr in ("email", "mobile"):
        # Only rows with a repeated address matter: found in C, looked at in Python.
        addresses = list(map(attrgetter(attr), borrowers))
        for at in compress(count(), map(duplicated.__contains__, addresses)):
            first.setdefault(addresses[at], borrowers[at].row)  # type: ignore[arg-type]
    for index, address in pending:
        issue = issues[index]
        code = "duplicate_email" if issue.field == "email" else "duplicate_mobile"
        reason = _REASONS[code][1].format(first=first[address])
        issues[index] = ImportIssue(issue.row, issue.field, reason)


def _unused(row: int) -> Borrower:
    """A row whose fields cannot be trusted: kept for the count, with nothing to contact."""
    return Borrower(row, None, None, False, False, Language.DA)
