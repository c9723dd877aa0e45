"""The borrower export: import it, check every row, and pick who each channel may reach."""

from tasks.audience.borrowers import (
    FIELDS,
    KEPT,
    Audience,
    Borrower,
    ImportIssue,
    ImportReport,
)
from tasks.audience.importing import PendingImport, import_audience, read_suppression, start_import
from tasks.audience.validation import normalise_email, normalise_mobile

__all__ = [
    "FIELDS",
    "KEPT",
    "Audience",
    "Borrower",
    "ImportIssue",
    "ImportReport",
    "PendingImport",
    "import_audience",
    "normalise_email",
    "normalise_mobile",
    "read_suppression",
    "start_import",
]
