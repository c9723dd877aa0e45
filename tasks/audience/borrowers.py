"""Borrowers, the import's report, and who of them each channel reaches."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

from tasks.models import Language

FIELDS = ("email", "mobile", "sms_consent", "newsletter_consent", "language", "name", "borrower_id")
# What the import keeps of a row. Names and borrower numbers are recognised (a mapped or known
# column is not a surprise) but not kept: nothing sends by them, and data not held cannot leak
# (on a million rows it is also ~130 MB less).
KEPT = FIELDS[:5]


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
class BorrowerBuilder:
    """Same layout as Borrower without the frozen __init__, which costs ~1.5 µs a row.

    A million-row import builds one of these and re-labels it as a Borrower (see `validation.parse_rows`).
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
