"""Tests for the borrower import: dirty real-world exports, privacy of reports, and fuzzing."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.audience import (
    Audience,
    Borrower,
    ImportReport,
    import_audience,
    normalise_email,
    normalise_mobile,
)
from tasks.errors import ConfigError
from tasks.ledger import normalise_address
from tasks.models import Language
from tasks.synthetic import HEADER, main, write_borrowers

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "municipalities" / "eksempel-laanere.csv"
DA_HEADER = ";".join(HEADER)


def write(folder: Path, text: str, *, encoding: str = "utf-8", name: str = "laanere.csv") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def issues_of(audience: Audience) -> set[tuple[int, str, str]]:
    return {(i.row, i.field, i.reason) for i in audience.report.issues}


# --- encodings and delimiters ------------------------------------------------------------------


def test_example_file_is_a_danish_excel_export() -> None:
    audience = import_audience(EXAMPLE)
    report = audience.report
    assert (report.encoding, report.delimiter) == ("utf-8-sig", ";")
    assert len(audience.borrowers) == 1000
    assert report.counts["valid"] > 900
    # Its names carry æøå; decoded right, no row is split or shifted by them.
    assert "ø" in EXAMPLE.read_text(encoding="utf-8-sig")
    assert not {"too_many_fields", "too_few_fields"} & set(report.counts)
    assert 0 < len(audience.sms_recipients()) < len(audience.newsletter_recipients())


def test_windows_1252_with_danish_letters(tmp_path: Path) -> None:
    text = DA_HEADER + "\r\n1;Søren Bæk Åberg;soeren@example.com;21234567;Ja;Nej;da\r\n"
    audience = import_audience(write(tmp_path, text, encoding="cp1252"))
    assert audience.report.encoding == "cp1252"
    [borrower] = audience.borrowers
    assert (borrower.email, borrower.mobile) == ("soeren@example.com", "+4521234567")
    assert (borrower.sms_consent, borrower.newsletter_consent) == (True, False)


def test_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    path = write(tmp_path, "E-mail;Nyhedsbrev\nanna@example.com;ja\n", encoding="utf-8-sig")
    audience = import_audience(path)
    assert audience.report.encoding == "utf-8-sig"
    assert [b.email for b in audience.newsletter_recipients()] == ["anna@example.com"]


def test_utf16_excel_unicode_text(tmp_path: Path) -> None:
    path = write(tmp_path, "E-mail\tNyhedsbrev\r\nanna@example.com\tJa\r\n", encoding="utf-16")
    audience = import_audience(path)
    assert (audience.report.encoding, audience.report.delimiter) == ("utf-16", "\t")
    assert audience.borrowers[0].email == "anna@example.com"


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ('Navn,E-mail,Nyhedsbrev\n"Jensen, Anna",anna@example.com,1\n', ","),
        ("Navn\tE-mail\tNyhedsbrev\nJensen; Anna\tanna@example.com\tyes\n", "\t"),
        ('Navn,"Note;intern",E-mail,Nyhedsbrev\nAnna,a;b,anna@example.com,x\n', ","),
        ('Navn;E-mail;Nyhedsbrev\n"Jensen; Anna";anna@example.com;TRUE\n', ";"),
    ],
)
def test_delimiter_is_found_in_the_header_outside_quotes(
    tmp_path: Path, text: str, delimiter: str
) -> None:
    audience = import_audience(write(tmp_path, text))
    assert audience.report.delimiter == delimiter
    [borrower] = audience.borrowers
    assert borrower.email == "anna@example.com"
    assert borrower.newsletter_consent is True


def test_quotes_and_semicolons_inside_fields_keep_row_numbers(tmp_path: Path) -> None:
    text = (
        "Navn;E-mail;Mobil\r\n"
        '"Anna ""Lille"" Jensen; c/o";anna@example.com;21234567\r\n'
        'Bo "Bassen" Bækgaard;bo@example.com;\r\n'
        "Carl;carl@example.com;22345678\r\n"
    )
    audience = import_audience(write(tmp_path, text))
    anna, bo, carl = audience.borrowers
    # The quoted name's `;` and `""`, and Bo's bare quotes, shift no column.
    assert (anna.email, anna.mobile) == ("anna@example.com", "+4521234567")
    assert (bo.email, bo.mobile) == ("bo@example.com", None)
    assert audience.report.counts["valid"] == 3
    assert [b.row for b in audience.borrowers] == [2, 3, 4]
    assert carl.mobile == "+4522345678"


def test_leading_whitespace_lines_do_not_hide_the_delimiter(tmp_path: Path) -> None:
    audience = import_audience(write(tmp_path, "  \n\t\nNavn,E-mail\nAnna,anna@example.com\n"))
    assert audience.report.delimiter == ","
    assert audience.borrowers[0].row == 4


def test_a_quoted_value_longer_than_csv_allows_names_its_row(tmp_path: Path) -> None:
    value = '"' + "x" * 200_000 + '"'
    path = write(tmp_path, f"Navn;E-mail\nAnna;anna@example.com\n{value};b@example.com\n")
    with pytest.raises(ConfigError, match=r"laanere\.csv: row 3: .*field limit.*quote"):
        import_audience(path)


# --- a quote not closed in its row: the import stops, naming the row ----------------------------

# As Excel writes them; the names carry æøå, so each encoding is decoded for real.
_HEADERS = {
    ";": "Lånernummer;Navn;E-mail;Mobil;SMS-ordning;Nyhedsbrev;Sprog",
    ",": "Borrower ID,Name,Email,Mobile,SMS,Newsletter,Language",
    "\t": "Lånernummer\tNavn\tE-mail\tMobil\tSMS-ordning\tNyhedsbrev\tSprog",
}


def export_with_stray_quote(
    folder: Path,
    rows: int,
    bad_row: int | None,
    *,
    delimiter: str = ";",
    encoding: str = "utf-8",
    newline: str = "\r\n",
    end: str | None = None,
    name: str = "laanere.csv",
) -> Path:
    """A synthetic export of `rows` data rows (lines 2 to rows + 1, `end` after the last: a
    line end by default). Line `bad_row` opens a quote it never closes: in the name column
    of the first data row, in the e-mail column of a middle row, in the last column of the
    last row."""
    lines = [_HEADERS[delimiter]]
    for line_no in range(2, rows + 2):
        fields = [str(line_no), f"Søren Ærø {line_no}", f"laaner{line_no}@example.com"]
        fields += [f"2{line_no:07d}", "Ja", "Ja", "da"]
        if line_no == bad_row:
            column = 1 if line_no == 2 else 6 if line_no == rows + 1 else 2
            fields[column] = '"' + fields[column]
        lines.append(delimiter.join(fields))
    text = newline.join(lines) + (newline if end is None else end)
    return write(folder, text, encoding=encoding, name=name)


def test_a_stray_quote_in_row_2_stops_the_import_instead_of_swallowing_1000_rows(
    tmp_path: Path,
) -> None:
    path = export_with_stray_quote(tmp_path, 1001, bad_row=2)
    with pytest.raises(ConfigError) as raised:
        import_audience(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: row 2: a quoted value is not closed in this row")
    assert "(fix: close the quote in row 2 or remove it" in message
    # Nothing of the row: no name, address or number.
    assert "Søren" not in message and "@" not in message and "20000002" not in message
    # Without the stray quote all 1,001 are recipients: nothing else stopped the import.
    fixed = export_with_stray_quote(tmp_path, 1001, bad_row=None, name="fixed.csv")
    assert len(import_audience(fixed).newsletter_recipients()) == 1001


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
@pytest.mark.parametrize("delimiter", [";", ",", "\t"])
@pytest.mark.parametrize("where", ["first", "middle", "last", "last, no final line end"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_a_stray_quote_names_its_row_in_every_delimiter_and_encoding(
    tmp_path: Path, encoding: str, delimiter: str, where: str, newline: str
) -> None:
    rows = 30
    bad_row = {"first": 2, "middle": 17}.get(where, rows + 1)
    path = export_with_stray_quote(
        tmp_path,
        rows,
        bad_row,
        delimiter=delimiter,
        encoding=encoding,
        newline=newline,
        end="" if "no final" in where else None,
    )
    fix = f"close the quote in row {bad_row} or remove it"
    with pytest.raises(ConfigError, match=rf"^{re.escape(f'{path}: row {bad_row}: ')}.*{fix}"):
        import_audience(path)


def test_a_line_break_inside_a_quoted_value_is_refused_with_its_row(tmp_path: Path) -> None:
    # Borrower exports have none: one is far more likely a stray quote than a real value.
    text = 'Navn;E-mail\r\nAnna;anna@example.com\r\n"Bo\nBækgaard";bo@example.com\r\n'
    with pytest.raises(ConfigError, match=r": row 3: .*line break"):
        import_audience(write(tmp_path, text))


def test_a_stray_quote_in_the_header_names_row_1(tmp_path: Path) -> None:
    path = write(tmp_path, 'E-mail;"Nyhedsbrev\nanna@example.com;Ja\n')
    with pytest.raises(ConfigError, match=r": row 1: .*close the quote in row 1"):
        import_audience(path)


def test_a_stray_quote_in_the_suppression_list_hides_no_entry(tmp_path: Path) -> None:
    # Read leniently, the quote swallowed bo's line: bo was contacted.
    suppression = write(tmp_path, '"anna@example.com\nbo@example.com\n', name="spaer.txt")
    path = write(tmp_path, "E-mail;Nyhedsbrev\nbo@example.com;Ja\n")
    with pytest.raises(ConfigError, match=r"spaer\.txt: row 1: .*close the quote in row 1"):
        import_audience(path, suppression=suppression)


def test_the_quote_check_reads_nothing_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed path's bound, without timing: a row without a quote never reaches csv.reader,
    a quoted row hands it its own line, and only an open quote makes it ask for one more."""
    from tasks.audience import reading

    asked: list[bool] = []  # per call of the reader's input: was there a line to give?
    real = reading.Feed.__next__

    def counted(feed: reading.Feed) -> str:
        asked.append(feed.head is not None)
        return real(feed)

    monkeypatch.setattr(reading.Feed, "__next__", counted)
    lines = ["Navn;E-mail;Nyhedsbrev"]
    lines += [f"n{i};n{i}@example.com;Ja" for i in range(900)]
    lines += [f'"Jensen; n{i}";m{i}@example.com;Ja' for i in range(100)]
    audience = import_audience(write(tmp_path, "\n".join(lines) + "\n"))
    assert len(audience.newsletter_recipients()) == 1000
    assert asked == [True] * 100
    asked.clear()
    with pytest.raises(ConfigError, match="row 1002"):
        import_audience(write(tmp_path, "\n".join([*lines, '"open;x@example.com;Ja', *lines])))
    assert asked == [True] * 101 + [False]


def test_lone_cr_and_mixed_line_ends(tmp_path: Path) -> None:
    audience = import_audience(
        write(tmp_path, "E-mail\ra@example.com\r\nb@example.com\nc@example.com")
    )
    assert [b.email for b in audience.borrowers] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    assert [b.row for b in audience.borrowers] == [2, 3, 4]


# --- rows --------------------------------------------------------------------------------------


def test_blank_lines_and_rows_of_bare_delimiters_are_counted_not_parsed(tmp_path: Path) -> None:
    text = "\n\nE-mail;Mobil;Navn\n\nanna@example.com;;Anna\n   \n;;\n;;;\nbo@example.com;;Bo\n"
    audience = import_audience(write(tmp_path, text))
    assert [b.row for b in audience.borrowers] == [5, 9]
    assert audience.report.counts["blank_line"] == 4
    assert audience.report.counts["valid"] == 2


def test_ragged_rows(tmp_path: Path) -> None:
    text = (
        "E-mail;Mobil;Nyhedsbrev\n"
        "short@example.com\n"  # too few: missing fields read as blank
        "long@example.com;21234567;Ja;surprise\n"  # too many: not trusted
        "trailing@example.com;21234568;Ja;;\n"  # a trailing delimiter: fine
    )
    audience = import_audience(write(tmp_path, text))
    short, long, trailing = audience.borrowers
    assert short.email == "short@example.com" and not short.newsletter_consent
    assert (long.email, long.mobile, long.newsletter_consent) == (None, None, False)
    assert trailing.email == "trailing@example.com" and trailing.newsletter_consent
    counts = audience.report.counts
    assert (counts["too_few_fields"], counts["too_many_fields"], counts["valid"]) == (1, 1, 1)
    assert (
        3,
        "row",
        "4 fields, the header has 3; row not used (fix: quote values that contain the delimiter)",
    ) in issues_of(audience)


def test_duplicates_in_other_case_and_spacing_keep_the_first_row(tmp_path: Path) -> None:
    text = (
        "E-mail;Mobil;Nyhedsbrev;SMS-ordning\n"
        "anna@example.com;21 23 45 67;Ja;Ja\n"
        "  ANNA@Example.COM ;+45 2123 4567;Ja;Ja\n"
        "Anna@example.com;0045-21-23-45-67;Ja;Ja\n"
        "bo@example.com;(+45) 22.34.56.78;Ja;Ja\n"
    )
    audience = import_audience(write(tmp_path, text))
    assert [b.email for b in audience.borrowers] == ["anna@example.com"] * 3 + ["bo@example.com"]
    assert {b.mobile for b in audience.borrowers} == {"+4521234567", "+4522345678"}
    assert [b.row for b in audience.newsletter_recipients()] == [2, 5]
    assert [b.row for b in audience.sms_recipients()] == [2, 5]
    assert audience.exclusions("newsletter")["duplicate"] == 2
    assert (3, "email", "same e-mail address as row 2") in issues_of(audience)
    assert (4, "mobile", "same mobile number as row 2") in issues_of(audience)
    assert audience.report.counts["duplicate_email"] == 2


def test_a_duplicate_without_consent_does_not_block_a_later_consenting_row(tmp_path: Path) -> None:
    text = "E-mail;Nyhedsbrev\nfamilie@example.com;Nej\nFamilie@example.com;Ja\n"
    audience = import_audience(write(tmp_path, text))
    assert [b.row for b in audience.newsletter_recipients()] == [3]
    assert audience.exclusions("newsletter") == {
        "no_consent": 1,
        "no_valid_address": 0,
        "suppressed": 0,
        "duplicate": 0,
    }


@pytest.mark.parametrize(
    "value",
    [
        "anna.example.com",
        "anna@@example.com",
        "anna jensen@example.com",
        "anna@example",
        "anna@-example.com",
        "anna@example-.com",
        "ånna@example.com",
        "anna@exa_mple.com",
        "@example.com",
    ],
)
def test_bad_email_addresses_become_issues(tmp_path: Path, value: str) -> None:
    audience = import_audience(write(tmp_path, f"E-mail;Nyhedsbrev\n{value};Ja\n"))
    assert audience.borrowers[0].email is None
    assert issues_of(audience) >= {(2, "email", "not a valid e-mail address")}
    assert audience.exclusions("newsletter")["no_valid_address"] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("21234567", "+4521234567"),
        (" 21 23 45 67 ", "+4521234567"),
        ("+45 21 23 45 67", "+4521234567"),
        ("0045 2123 4567", "+4521234567"),
        ("(+45) 21-23-45-67", "+4521234567"),
        ("45 21234567", "+4521234567"),
        ("+46 70 123 45 67", "+46701234567"),  # a Swedish mobile
        ("0046701234567", "+46701234567"),
        ("1234", None),
        ("20012345", None),  # 200xxxxx is not a Danish range
        ("00123456", None),  # not read as an international prefix
        ("+4520012345", None),
        ("+442079460000", None),  # a London landline, not a mobile
        ("２１２３４５６７", None),  # full-width digits
        ("tlf. følger", None),
        ("+", None),
    ],
)
def test_mobile_numbers(value: str, expected: str | None) -> None:
    assert normalise_mobile(value) == expected


def test_danish_validity_depends_only_on_the_first_three_digits() -> None:
    """The import caches validity per 3-digit prefix; this is what makes that correct."""
    rng = random.Random(7)
    for prefix in range(1000):
        numbers = {f"{prefix:03d}{rng.randrange(100_000):05d}" for _ in range(4)}
        valid = {phonenumbers.is_valid_number(phonenumbers.parse("+45" + n)) for n in numbers}
        assert len(valid) == 1, prefix


@pytest.mark.parametrize(
    ("value", "consent", "flagged"),
    [
        ("Ja", True, False),
        ("nej", False, False),
        ("YES", True, False),
        ("no", False, False),
        ("1", True, False),
        ("0", False, False),
        (" x ", True, False),
        ("", False, False),
        ("true", True, False),
        ("False", False, False),
        ("måske", False, True),
        ("2", False, True),
    ],
)
def test_consent_values(tmp_path: Path, value: str, consent: bool, flagged: bool) -> None:
    path = write(tmp_path, f"E-mail;SMS-ordning;Nyhedsbrev\nanna@example.com;{value};{value}\n")
    borrower = import_audience(path).borrowers[0]
    assert (borrower.sms_consent, borrower.newsletter_consent) == (consent, consent)
    issue_fields = {i.field for i in import_audience(path).report.issues}
    assert ({"sms_consent", "newsletter_consent"} <= issue_fields) is flagged


@pytest.mark.parametrize(
    ("value", "language", "flagged"),
    [
        ("da", Language.DA, False),
        ("EN", Language.EN, False),
        ("Engelsk", Language.EN, False),
        ("", Language.DA, False),
        ("Dansk", Language.DA, False),
        ("de", Language.DA, True),
    ],
)
def test_language(tmp_path: Path, value: str, language: Language, flagged: bool) -> None:
    audience = import_audience(write(tmp_path, f"E-mail;Sprog\nanna@example.com;{value}\n"))
    assert audience.borrowers[0].language is language
    assert ("unknown_language" in audience.report.counts) is flagged


def test_row_with_neither_address_nor_number(tmp_path: Path) -> None:
    audience = import_audience(write(tmp_path, "Navn;E-mail;Mobil\nAnna;;\n"))
    assert audience.report.counts["no_contact"] == 1
    assert len(audience.borrowers) == 1


def test_missing_consent_column_is_reported_once_on_the_header_line(tmp_path: Path) -> None:
    audience = import_audience(write(tmp_path, "E-mail;Nyhedsbrev\nanna@example.com;Ja\n"))
    assert (1, "sms_consent", "no such column; every row reads as no consent") in issues_of(
        audience
    )
    assert (1, "mobile", "no such column; nobody can be reached this way") in issues_of(audience)
    assert audience.sms_recipients() == []
    assert audience.exclusions("sms")["no_consent"] == 1


# --- headers and config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Lånernummer;Fulde navn;E-mailadresse;Mobilnummer;Sms-tilmeldt;Newsletter;Language",
        "borrower_id;Name;Email;Phone;SMS;Nyhedsbrev;Sprog",
        "LÅNERID;NAVN;MAIL;TLF;SMS ORDNING;NYHEDSBREV;SPROG",
        "Borrower id; name ;e_mail;Mobile;sms-ordning;newsletter;language",
    ],
)
def test_header_names_danish_and_english(tmp_path: Path, header: str) -> None:
    text = header + "\n7;Anna;anna@example.com;21234567;Ja;Ja;en\n"
    [borrower] = import_audience(write(tmp_path, text)).borrowers
    assert borrower == Borrower(2, "anna@example.com", "+4521234567", True, True, Language.EN)
    # Names and borrower numbers are recognised columns, but not kept (nothing sends by them).
    assert not hasattr(borrower, "name") and not hasattr(borrower, "borrower_id")


def test_columns_from_the_config_override_the_built_in_names(tmp_path: Path) -> None:
    text = "Kontakt;E-mail;Tilmeldt nyheder\nanna@example.com;old@example.com;ja\n"
    audience = import_audience(
        write(tmp_path, text),
        columns={"Kontakt": "email", "Tilmeldt nyheder": "newsletter_consent"},
    )
    assert [b.email for b in audience.newsletter_recipients()] == ["anna@example.com"]


def test_columns_naming_an_unknown_field_or_a_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "E-mail\nanna@example.com\n")
    with pytest.raises(ConfigError, match=r"laanere\.csv.*'e-mail'.*not a field"):
        import_audience(path, columns={"E-mail": "e-mail"})
    with pytest.raises(ConfigError, match=r"laanere\.csv.*\['Kontakt'\].*header"):
        import_audience(path, columns={"Kontakt": "email"})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xef\xbb\xbf\r\n\r\n  \n", "empty"),
        (b"Navn;Adresse\nAnna;Vej 1\n", "no e-mail or mobile column"),
        (b"anna@example.com;21234567\n", "looks like data"),
        (b"E-mail\n\x81\x8d\n", "neither UTF-8 nor Windows-1252"),
        (b"\xef\xbb\xbfE-mail\n\xff\n", "neither UTF-8 nor Windows-1252"),
    ],
)
def test_file_level_problems_raise_config_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "udtraek.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        import_audience(path)
    assert str(path) in str(caught.value)
    assert "fix" in str(caught.value)
    assert "anna" not in str(caught.value).lower()


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"findes-ikke\.csv.*not found"):
        import_audience(tmp_path / "findes-ikke.csv")
    with pytest.raises(ConfigError, match="folder"):
        import_audience(tmp_path)


# --- suppression -------------------------------------------------------------------------------


def test_suppression_list(tmp_path: Path) -> None:
    text = (
        "E-mail;Mobil;Nyhedsbrev;SMS-ordning\n"
        "anna@example.com;21234567;Ja;Ja\n"
        "bo@example.com;22345678;Ja;Ja\n"
        "carl@example.com;23456789;Ja;Ja\n"
    )
    suppression = write(
        tmp_path, "adresse\n ANNA@example.com \n+45 22 34 56 78\n\n", name="spaer.txt"
    )
    audience = import_audience(write(tmp_path, text), suppression=suppression)
    assert [b.row for b in audience.newsletter_recipients()] == [3, 4]
    assert [b.row for b in audience.sms_recipients()] == [2, 4]
    assert audience.exclusions("newsletter")["suppressed"] == 1
    assert audience.exclusions("sms")["suppressed"] == 1
    assert issues_of(audience) >= {
        (2, "email", "on the suppression list"),
        (3, "mobile", "on the suppression list"),
    }


def test_suppression_list_as_csv_first_column_and_missing(tmp_path: Path) -> None:
    suppression = write(tmp_path, "E-mail;Dato\nanna@example.com;2026-01-01\n", name="s.csv")
    path = write(tmp_path, "E-mail;Nyhedsbrev\nanna@example.com;Ja\n")
    assert import_audience(path, suppression=suppression).newsletter_recipients() == []
    with pytest.raises(ConfigError, match=r"nope\.csv.*suppression list not found"):
        import_audience(path, suppression=tmp_path / "nope.csv")


def test_exclusions_rejects_an_unknown_channel() -> None:
    with pytest.raises(ValueError, match="poster"):
        import_audience(EXAMPLE).exclusions("poster")


# --- privacy -----------------------------------------------------------------------------------

SECRET_NAME, SECRET_EMAIL, SECRET_MOBILE, SECRET_ID = (
    "Hemmelig Hansen",
    "hemmelig@example.com",
    "29876543",
    "998877",
)


def test_no_personal_value_in_reports_issues_reprs_or_files(tmp_path: Path) -> None:
    values = [SECRET_NAME, SECRET_EMAIL, SECRET_MOBILE, SECRET_ID, "hemmelig", "98765"]
    text = (
        DA_HEADER + "\n"
        f"{SECRET_ID};{SECRET_NAME};{SECRET_EMAIL};{SECRET_MOBILE};Ja;Ja;da\n"
        f"{SECRET_ID};{SECRET_NAME};{SECRET_EMAIL.upper()};{SECRET_MOBILE};hemmelig;Ja;hemmelig\n"
        f"{SECRET_ID};{SECRET_NAME};hemmelig@@example.com;2987654;Ja;Ja;da;hemmelig\n"
        f"{SECRET_ID};{SECRET_NAME};hemmelig@example;98765;Ja;Ja;da\n"
    )
    audience = import_audience(write(tmp_path, text))
    assert len(audience.report.issues) >= 6
    folder = audience.report.write(tmp_path / "out")
    exposed = "\n".join(
        [
            repr(audience),
            str(audience),
            repr(audience.report),
            str(audience.report.table()),
            repr(audience.report.issues),
            repr(audience.borrowers),
            str(audience.borrowers[0]),
            repr(audience.newsletter_recipients()),
            repr(audience.exclusions("sms")),
            folder.read_text(encoding="utf-8-sig"),
            (folder.parent / "import-counts.csv").read_text(encoding="utf-8-sig"),
        ]
    ).lower()
    for value in values:
        assert value.lower() not in exposed


def test_report_write_and_table(tmp_path: Path) -> None:
    audience = import_audience(write(tmp_path, "E-mail;Nyhedsbrev\nnope;Ja\n\n"))
    path = audience.report.write(tmp_path / "rapport")
    assert path.name == "import-report.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "row;field;reason"
    assert "2;email;not a valid e-mail address" in lines
    counts = (path.parent / "import-counts.csv").read_text(encoding="utf-8-sig").splitlines()
    assert {"rows;2", "blank_line;1", "invalid_email;1"} <= set(counts)
    assert {"row": 2, "field": "email", "reason": "not a valid e-mail address"} in (
        audience.report.table()
    )


def test_borrower_is_frozen_and_a_real_borrower(tmp_path: Path) -> None:
    borrower = import_audience(write(tmp_path, "E-mail\nanna@example.com\n")).borrowers[0]
    assert type(borrower) is Borrower
    with pytest.raises(dataclasses.FrozenInstanceError):
        borrower.email = "other@example.com"  # type: ignore[misc]
    assert repr(borrower) == "Borrower(row=2)"
    assert hash(borrower) == hash(Borrower(2, "anna@example.com", None, False, False, Language.DA))


# --- e-mail syntax: the fast regex is WHATWG's ---------------------------------------------------

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_WHATWG = re.compile(rf"[a-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})*")


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="ab9-._@+!", max_size=30),
        st.from_regex(rf"[a-z0-9.+-]{{1,8}}@{_LABEL}(\.{_LABEL}){{0,2}}", fullmatch=True),
        st.builds(lambda a, b: f"{a}@{'x' * b}.dk", st.just("a"), st.integers(60, 66)),
    )
)
def test_email_regex_agrees_with_whatwg_plus_a_dot_in_the_domain(value: str) -> None:
    expected = _WHATWG.fullmatch(value) is not None and "." in value.rpartition("@")[2]
    assert (normalise_email(value) is not None) is expected


# --- fuzzing: only ConfigError ever escapes ------------------------------------------------------

_PIECES = [
    *';,\t"\r\n @.+-0123456789abxæøåJajNn\x00\u2028',
    "E-mail",
    "Mobil",
    "Nyhedsbrev",
    "SMS-ordning",
    "Sprog",
    "Ja",
    "Nej",
    "+45",
    "@example.com",
]
_CSVISH = st.lists(st.sampled_from(_PIECES), max_size=120).map("".join)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    _import_survives(tmp_path, data)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_CSVISH, encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
def test_fuzz_csvish_text(tmp_path: Path, text: str, encoding: str) -> None:
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    audience = _import_survives(tmp_path, b"E-mail;Mobil;Nyhedsbrev;SMS-ordning\n" + data)
    if audience is not None and encoding == "utf-8":
        assert all(
            b.email is None or normalise_email(b.email) == b.email for b in audience.borrowers
        )
    if audience is not None:
        # The flow keys imported addresses with `normalised=True`: they must be fixed points.
        for b in audience.borrowers:
            for address in (b.email, b.mobile):
                assert address is None or normalise_address(address) == address


def _import_survives(tmp_path: Path, data: bytes) -> Audience | None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        audience = import_audience(path)
    except ConfigError:
        return None
    audience.newsletter_recipients()
    audience.sms_recipients()
    audience.report.table()
    rows = [b.row for b in audience.borrowers]
    assert rows == sorted(rows)
    return audience


# --- synthetic data ----------------------------------------------------------------------------


def test_synthetic_export_is_deterministic_and_realistic(tmp_path: Path) -> None:
    a = write_borrowers(tmp_path / "a.csv", 3000, seed=3)
    b = write_borrowers(tmp_path / "b.csv", 3000, seed=3)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().startswith(b"\xef\xbb\xbfL\xc3\xa5nernummer;Navn;E-mail;Mobil;")
    audience = import_audience(a)
    counts = audience.report.counts
    assert len(audience.borrowers) == 3000
    imported = [x for b in audience.borrowers for x in (b.email, b.mobile) if x is not None]
    assert len(imported) > 5000
    assert [normalise_address(x) for x in imported] == imported
    assert counts["valid"] / 3000 > 0.9
    for dirt in ("invalid_email", "invalid_mobile", "duplicate_email", "blank_line"):
        assert counts.get(dirt, 0) > 0, dirt
    news = sum(b.newsletter_consent for b in audience.borrowers) / 3000
    sms = sum(b.sms_consent for b in audience.borrowers) / 3000
    english = sum(b.language is Language.EN for b in audience.borrowers) / 3000
    assert 0.65 < news < 0.75 and 0.35 < sms < 0.45 and 0.07 < english < 0.13
    domains = {b.email.rpartition("@")[2] for b in audience.borrowers if b.email}
    assert domains == {"example.com", "example.net", "example.org"}


@pytest.mark.parametrize(("encoding", "delimiter"), [("cp1252", "\t"), ("utf-8", ",")])
def test_synthetic_in_other_encodings_round_trips(
    tmp_path: Path, encoding: str, delimiter: str
) -> None:
    path = write_borrowers(tmp_path / "x.csv", 500, encoding=encoding, delimiter=delimiter)
    report = import_audience(path).report
    assert (report.encoding, report.delimiter) == (encoding, delimiter)
    assert report.counts["valid"] > 450


def test_synthetic_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "cli.csv"), "20", "--delimiter", "tab"]) == 0
    assert "20 borrower rows" in capsys.readouterr().out
    assert import_audience(tmp_path / "cli.csv").report.delimiter == "\t"


def test_a_hand_built_audience_still_deduplicates() -> None:
    def borrower(row: int, email: str) -> Borrower:
        return Borrower(row, email, None, False, True, Language.DA)

    report = ImportReport("x.csv", "utf-8", ";", 3, {"valid": 3}, [])
    audience = Audience(
        [borrower(2, "a@example.com"), borrower(3, "a@example.com"), borrower(4, "b@example.com")],
        report,
    )
    assert [b.row for b in audience.newsletter_recipients()] == [2, 4]
    assert audience.exclusions("newsletter")["duplicate"] == 1
