"""Reading a borrower export: its encoding, line ends, delimiter, lines and header."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from tasks.audience.borrowers import FIELDS
from tasks.errors import ConfigError

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


def read_text(path: Path, what: str) -> tuple[str, str]:
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


def first_line(text: str) -> str:
    """The first line with something on it: the header."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if line := text[start:end].strip():
            return line
        start = end + 1
    return ""


def delimiter_of(header: str) -> str:
    """The delimiter that splits the header line most often; `;` on a tie (Danish Excel)."""
    counts = {d: _count_outside_quotes(header, d) for d in (";", "\t", ",")}
    best = max(counts, key=lambda d: counts[d])  # max keeps the first of equal counts
    return best if counts[best] else ";"


_CHUNK = 1 << 20  # characters split at a time: big enough to be fast, small enough to reuse memory


def line_ends(text: str) -> tuple[str, str]:
    """The text with one kind of line end throughout, and that line end."""
    if "\r" not in text:
        return text, "\n"
    if text.count("\r") == text.count("\r\n") == text.count("\n"):
        return text, "\r\n"
    # Mixed or old Mac line ends, e.g. Excel's LF inside a quoted value (refused: see Lines).
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


class Lines:
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
        # The reader reads from a Feed, not from this object: a reader reading from its owner
        # would be a reference cycle, kept (with all it holds) until the cycle collector ran,
        # which `fbsflow run` holds off.
        self._feed = Feed()
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


class Feed:
    """csv.reader's input: one line, then an end that says whether the reader wanted more."""

    __slots__ = ("head", "open")

    def __init__(self) -> None:
        self.head: str | None = None
        self.open = False  # the reader asked for another line: a quoted value is still open

    def __iter__(self) -> Feed:
        return self

    def __next__(self) -> str:
        head = self.head
        if head is None:
            # csv.reader asks for a next line only from inside a quoted value.
            self.open = True
            raise StopIteration
        self.head = None
        return head + "\n"


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


@dataclass(frozen=True, slots=True)
class Header:
    index: dict[str, int]  # field -> column
    ncols: int
    line_no: int  # the header's last line: rows start after it
    notes: tuple[tuple[int, str, str], ...] = ()  # (line, field, code) for missing columns


def read_header(lines: Lines, path: Path, columns: Mapping[str, str] | None) -> Header:
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
        (header_line, column, code) for column, code in COLUMN_NOTES if column not in index
    )
    return Header(index, len(header), line_no, notes)


COLUMN_NOTES = (
    ("email", "missing_address_column"),
    ("mobile", "missing_address_column"),
    ("sms_consent", "missing_column"),
    ("newsletter_consent", "missing_column"),
)
