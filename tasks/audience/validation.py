"""Validating a borrower export's rows: each becomes a Borrower, each problem an ImportIssue."""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import compress, count
from operator import attrgetter, itemgetter

import phonenumbers

from tasks.audience.borrowers import KEPT, Borrower, BorrowerBuilder, ImportIssue
from tasks.audience.reading import Header, Lines
from tasks.models import Language

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
REASONS: dict[str, tuple[str, str]] = {
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


def normalise_any(value: str) -> str | None:
    """A suppression entry: an address (anything with @) or a number."""
    value = value.strip()
    if "@" in value:
        return value.lower() or None
    return normalise_mobile(value)


@dataclass(slots=True)
class Part:
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


def parse_rows(lines: Lines, header: Header, suppressed: frozenset[str]) -> Part:
    """Parse the rows after `header.line_no` to the end of `lines`."""
    stream, quoted = lines.stream, lines.quoted
    delimiter = lines.delimiter
    index, ncols, line_no = header.index, header.ncols, header.line_no
    counts: dict[str, int] = {}
    issues: list[ImportIssue] = []
    for note_line, column, code in header.notes:
        field_name, reason = REASONS[code]
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
    build, relabel = BorrowerBuilder, object.__setattr__
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

    return Part(
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
        field_name, reason = REASONS[code]
        address = details.pop("address", None)
        if address is not None:  # a duplicate: its reason is finished by name_first_rows
            pending.append((len(issues), str(address)))
        issues.append(ImportIssue(row, field_name, reason.format(first="?", **details)))
        counts[code] = counts.get(code, 0) + 1


def name_first_rows(
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
        reason = REASONS[code][1].format(first=first[address])
        issues[index] = ImportIssue(issue.row, issue.field, reason)


def _unused(row: int) -> Borrower:
    """A row whose fields cannot be trusted: kept for the count, with nothing to contact."""
    return Borrower(row, None, None, False, False, Language.DA)
