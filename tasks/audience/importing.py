"""Importing a borrower export: read, parse and validate it, and report what was found."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.audience.borrowers import Audience, ImportReport
from tasks.audience.reading import (
    Header,
    Lines,
    delimiter_of,
    first_line,
    line_ends,
    read_header,
    read_text,
)
from tasks.audience.validation import REASONS, Part, name_first_rows, normalise_any, parse_rows
from tasks.errors import ConfigError
from tasks.speed import fork_import
from tasks.speed.gcpause import gc_paused


def read_suppression(path: Path) -> frozenset[str]:
    """Addresses and numbers never to contact: one per line, or the first column of a CSV.

    Read as the borrower file is (see Lines): a stray quote must not swallow the entries
    after it, or the people they name would be contacted.
    """
    text, _ = read_text(path, "suppression list")
    text, newline = line_ends(text)
    lines = Lines(path, text, newline, delimiter_of(first_line(text)))
    entries: set[str] = set()
    for row, line in enumerate(lines.stream, 1):
        record = lines.quoted(line, row) if '"' in line else line.split(lines.delimiter, 1)
        if (value := normalise_any(record[0])) is not None:
            entries.add(value)
    return frozenset(entries)


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
    """Read the files now and, with `split`, let a forked child start parsing the file's tail
    where that is safe and pays (`tasks.speed.fork_import`).

    `result()` parses the rest in this process and joins the two. Either way the Audience is
    exactly what a single pass gives (tests compare them).
    """
    path = Path(path)
    suppressed = read_suppression(Path(suppression)) if suppression is not None else frozenset()
    text, encoding = read_text(path, "borrower file")
    # Not `text.strip()`: that copies the whole text (~0.2 s on a million rows) to test it.
    if not text or text.isspace():
        raise ConfigError(f"{path}: the borrower file is empty (fix: export the borrowers again)")
    text, newline = line_ends(text)
    delimiter = delimiter_of(first_line(text))
    pending = PendingImport(path, text, newline, encoding, delimiter, columns, suppressed)
    if split:
        pending.tail = fork_import.fork_tail(pending)
    return pending


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
        # A forked child parsing the file's tail, if one was started and has not answered.
        self.tail: fork_import.ForkedTail | None = None

    @property
    def split(self) -> bool:
        """Whether a child is parsing the tail of the file."""
        return self.tail is not None

    def result(self) -> Audience:
        """Parse what is left here and return the whole import (once)."""
        # Borrowers hold only strings, ints and enums, so parsing makes no reference cycles.
        with gc_paused():
            try:
                if self.tail is not None:
                    part = self.tail.joined(self)  # None: the child failed, one pass says why
                    self.tail = None
                    if part is not None:
                        self.processes = 2
                        return self._audience(part)
                return self._audience(self.parse())
            finally:
                self.close()
                self.text = ""  # 2 bytes or more a character of the file: not kept for the run

    def close(self) -> None:
        """Stop the child, if any (after result() there is none)."""
        if self.tail is not None:
            self.tail.stop()
            self.tail = None

    def lines(self, start: int = 0, stop: int | None = None) -> Lines:
        """The lines of the text from `start` (a line start) to `stop`."""
        return Lines(self.path, self.text, self.newline, self.delimiter, start, stop)

    def header(self) -> Header:
        """The header (ConfigError if it names no e-mail or mobile column, or a mapping fails)."""
        return read_header(self.lines(), self.path, self.columns)

    def parse(self, start: int = 0, stop: int | None = None, header: Header | None = None) -> Part:
        """The rows from `start` to `stop`; without `header`, read the header first (the
        rows then start after it)."""
        lines = self.lines(start, stop)
        if header is None:
            header = read_header(lines, self.path, self.columns)
        return parse_rows(lines, header, self.suppressed)

    def _audience(self, part: Part) -> Audience:
        if part.pending:
            name_first_rows(part.issues, part.pending, part.borrowers, part.duplicated)
        # One fixed order, so the counts read the same however the file was parsed.
        counts = {code: part.counts[code] for code in REASONS if code in part.counts}
        counts["valid"] = part.valid
        if part.blank:
            counts["blank_line"] = part.blank
        report = ImportReport(
            str(self.path), self.encoding, self.delimiter, part.rows, counts, part.issues
        )
        return Audience(part.borrowers, report, self.suppressed, frozenset(part.duplicated))
