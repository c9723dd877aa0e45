"""The import split across two processes gives exactly what a single pass gives.

`start_import` lets a forked child parse the tail of a large export while this process parses
the head (`tasks.speed.fork_import`); `merge` then joins them. The equivalence is checked here on the join itself, in
this process, at every line boundary of dirty files (duplicates across the split, quoted values,
ragged rows, a stray quote), and for real through fork in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.audience import Audience, import_audience, start_import
from tasks.audience.reading import Header
from tasks.audience.validation import REASONS
from tasks.errors import ConfigError
from tasks.speed import fork_import
from tasks.synthetic import write_borrowers
from tests.audience.test_audience import export_with_stray_quote

ROOT = Path(__file__).resolve().parents[2]


def fingerprint(audience: Audience) -> tuple[object, ...]:
    """Everything an import hands on: borrowers, report and the duplicated addresses."""
    report = audience.report
    return (
        [(type(b).__name__, *astuple(b)) for b in audience.borrowers],
        report.rows,
        list(report.counts.items()),
        [astuple(i) for i in report.issues],
        report.encoding,
        report.delimiter,
        audience.duplicated,
        audience.suppressed,
    )


def split_at(path: Path, split: int, **kwargs: object) -> Audience:
    """Head and tail parsed here at `split` and joined as the parent joins the child's part.

    A ConfigError from the tail is what the parent raises too: its single pass finds the same.
    """
    pending = start_import(path, split=False, **kwargs)  # type: ignore[arg-type]
    header = pending.header()
    # As split_point hands it to the child: rows after `split`, numbered on from there.
    before = pending.text.count(pending.newline, 0, split)
    tail_header = Header(header.index, header.ncols, before)
    head = pending.parse(0, split)
    tail = fork_import.parse_tail(pending, split, tail_header)
    return pending._audience(fork_import.join(head, tail))


def outcome(read: Callable[[], Audience]) -> tuple[object, ...] | str:
    """What an import hands on, or the message it stops with."""
    try:
        return fingerprint(read())
    except ConfigError as exc:
        return str(exc)


def line_starts(path: Path) -> tuple[int, list[int]]:
    """The header's last line number and the character offset of every later line."""
    pending = start_import(path, split=False)
    text, newline = pending.text, pending.newline
    header = pending.header()
    starts, at = [], 0
    while (at := text.find(newline, at)) >= 0:
        at += len(newline)
        starts.append(at)
    # Not the end of the text: split_point never splits there.
    return header.line_no, [at for at in starts[header.line_no - 1 :] if at < len(text)]


DIRTY = (
    "Lånernummer;Navn;E-mail;Mobil;SMS-ordning;Nyhedsbrev;Sprog\r\n"
    "1;Anna;anna@example.com;20123456;Ja;Ja;da\r\n"
    "2;Bo;bo@example.com;+45 30 12 34 56;Nej;Ja;en\r\n"
    '3;"Carl; Carlsen";carl@example.com;;x;1;\r\n'
    "\r\n"
    "4;Dorte; ANNA@example.com ;20123456;Ja;Ja;da\r\n"  # duplicate of row 2, both addresses
    "5;Eva;eva@example;40123456;ja;nej;fr\r\n"
    "6;Finn;finn@example.com\r\n"  # too few fields
    "7;Gry;gry@example.com;50123456;Ja;Ja;da;ekstra\r\n"  # too many fields
    '8;"Hans ""H"" Hansen";hans@example.com;;Ja;Ja;da\r\n'
    "9;Ida;bo@example.com;20123456;Ja;maybe;da\r\n"
    ";;;;;;\r\n"
    "10;Jens;eva@example.com;40123456;Ja;Ja;da\r\n"
    '11;"Kim ""K"" Kimsen";kim@example.com;60123456;Ja;Ja;da\r\n'
    "12;Lis;kim@example.com;60123456;Ja;Ja;da\r\n"
    "13;Mads;mads@example.com;+46701234567;Ja;Ja;en\r\n"
)


def test_every_split_point_gives_the_single_pass(tmp_path: Path) -> None:
    path = tmp_path / "dirty.csv"
    path.write_text(DIRTY, encoding="utf-8-sig", newline="")
    suppression = tmp_path / "stop.txt"
    suppression.write_text("mads@example.com\n", encoding="utf-8")
    single = fingerprint(import_audience(path, suppression=suppression))
    _, starts = line_starts(path)
    for split in starts:
        audience = split_at(path, split, suppression=suppression)
        assert fingerprint(audience) == single, f"split at character {split}"
    assert len(starts) == 15


@pytest.mark.parametrize("row", ["1;Anna", "7;Gry", "13;Mads"])
def test_a_stray_quote_stops_every_split_as_it_stops_a_single_pass(
    tmp_path: Path, row: str
) -> None:
    path = tmp_path / "dirty.csv"
    path.write_text(DIRTY.replace(row + ";", row + ';"', 1), encoding="utf-8", newline="")
    single = outcome(lambda: import_audience(path))
    line = 1 + DIRTY[: DIRTY.index(row)].count("\r\n")
    assert isinstance(single, str) and f"csv: row {line}: " in single
    for split in line_starts(path)[1]:
        assert outcome(lambda split=split: split_at(path, split)) == single, split


def test_duplicates_across_the_split_name_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "dirty.csv"
    path.write_text(DIRTY, encoding="utf-8", newline="")
    _, starts = line_starts(path)
    # starts[i] is where line i + 2 starts: the head holds rows 2 (Anna) and 3 (Bo) only.
    audience = split_at(path, starts[2])
    issues = [astuple(i) for i in audience.report.issues if i.row in (6, 11)]
    assert issues == [
        # Dorte: the tail's first row with Anna's address and number.
        (6, "email", "same e-mail address as row 2"),
        (6, "mobile", "same mobile number as row 2"),
        # Ida: the tail's first row with Bo's address; Anna's number repeats Dorte's.
        (11, "email", "same e-mail address as row 3"),
        (11, "mobile", "same mobile number as row 2"),
        (11, "newsletter_consent", REASONS["invalid_newsletter_consent"][1]),
    ]
    assert audience.report.counts["duplicate_email"] == 3  # Dorte, Ida, Lis


_ROW_PIECES = st.sampled_from(
    [
        "anna@example.com",
        "ANNA@example.com ",
        "bo@example.com",
        "bad@",
        "20123456",
        "+45 20 12 34 56",
        "30123456",
        "12",
        "Ja",
        "Nej",
        "x",
        "",
        '"a;b"',
        '"un;closed',
        '"un""quoted"',
        "en",
        "da",
    ]
)
_ROWS = st.lists(
    st.lists(_ROW_PIECES, min_size=0, max_size=7).map(";".join), min_size=1, max_size=25
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=_ROWS, newline=st.sampled_from(["\n", "\r\n"]))
def test_fuzz_split_points_agree_with_a_single_pass(
    tmp_path: Path, rows: list[str], newline: str
) -> None:
    header = "E-mail;Mobil;Nyhedsbrev;SMS-ordning;Sprog;Navn;Ekstra"
    path = tmp_path / "fuzz.csv"
    path.write_text(newline.join([header, *rows]) + newline, encoding="utf-8", newline="")
    single = outcome(lambda: import_audience(path))
    for split in line_starts(path)[1]:
        assert outcome(lambda split=split: split_at(path, split)) == single


def test_no_fork_beside_other_threads_or_for_small_files(tmp_path: Path) -> None:
    path = write_borrowers(tmp_path / "small.csv", 200)
    assert not start_import(path).split  # far below SPLIT_MIN
    big = tmp_path / "big.csv"
    big.write_bytes(path.read_bytes() + b"\r\n" * (fork_import.SPLIT_MIN + 1))
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        assert not start_import(big).split  # a forked child would inherit no thread but ours
    finally:
        stop.set()
        helper.join()


_FORKED = """
import os, signal, sys, threading, time
from tasks.audience import import_audience, start_import
from tasks.errors import ConfigError
from tests.speed.test_fork_import import fingerprint
path = sys.argv[1]
single = fingerprint(import_audience(path))
pending = start_import(path)
assert pending.split, "no child was started"
assert fingerprint(pending.result()) == single, "forked import differs"
# A child that dies leaves the import to a single pass.
pending = start_import(path)
os.kill(pending.tail.pid, signal.SIGKILL)
assert fingerprint(pending.result()) == single, "fallback differs"
# A run that stops before the result leaves no child behind.
pending = start_import(path)
pid = pending.tail.pid
pending.close()
import time
for _ in range(100):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.05)
else:
    raise AssertionError("child still there")
# A stray quote in the parent's part (the child is stopped) and in the child's (the child
# fails and a single pass names the row): the same message as a single pass either way.
text = open(path, encoding="utf-8-sig", newline="").read()
for share in (0.2, 0.8):
    at = text.find("\\r\\n", int(len(text) * share)) + 2
    stray = path + f".{share}.csv"
    open(stray, "w", encoding="utf-8", newline="").write(text[:at] + '"' + text[at:])
    row = text.count("\\r\\n", 0, at) + 1
    try:
        import_audience(stray)
    except ConfigError as exc:
        message = str(exc)
    assert message.startswith(f"{stray}: row {row}: "), message
    while threading.active_count() > 1:  # the last child's reaper: no fork beside a thread
        time.sleep(0.01)
    pending = start_import(stray)
    assert pending.split, "no child was started for the file with a stray quote"
    try:
        pending.result()
    except ConfigError as exc:
        assert str(exc) == message, (str(exc), message)
    else:
        raise AssertionError("the forked import took the stray quote")
# Switched off: one process, the same audience.
os.environ["FBSFLOW_SPEED_FORK_IMPORT"] = "0"
pending = start_import(path)
assert not pending.split, "a child was started with the switch off"
assert fingerprint(pending.result()) == single, "the plain path differs"
print("OK", len(single[0]))
"""


def test_forked_import_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """Through os.fork for real: the pytest process has threads, so it is done in a new one."""
    path = write_borrowers(tmp_path / "borrowers.csv", 150_000)
    assert path.stat().st_size >= fork_import.SPLIT_MIN
    done = subprocess.run(
        [sys.executable, "-c", _FORKED, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("OK 150")


_FORKED_STRAY = """
import sys, threading, time
from tasks.audience import start_import
from tasks.errors import ConfigError
from tasks.speed import fork_import
fork_import.SPLIT_MIN = 0  # small files: forked all the same
for path, row, part in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    while threading.active_count() > 1:  # the last child's reaper: no fork beside a thread
        time.sleep(0.01)
    pending = start_import(path)
    assert pending.split, f"no child for {path}"
    text, newline, start = pending.text, pending.newline, 0
    for _ in range(int(row) - 1):  # where the row starts
        start = text.index(newline, start) + len(newline)
    assert (start >= pending.tail.split) == (part == "tail"), f"row {row} is not in the {part}"
    try:
        pending.result()
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: row {row}: "), str(exc)
    else:
        raise AssertionError(f"{path}: imported in spite of the stray quote")
print("OK")
"""


def test_a_stray_quote_stops_the_forked_import_in_every_delimiter_and_encoding(
    tmp_path: Path,
) -> None:
    """In the parent's part or the child's, through os.fork for real (in a new interpreter, as
    above), with the quote in the first, a middle and the last row."""
    args = []
    for encoding in ("utf-8", "utf-8-sig", "cp1252", "utf-16"):
        for delimiter, name in ((";", "semicolon"), (",", "comma"), ("\t", "tab")):
            for newline in ("\r\n", "\n"):
                for bad_row, part in ((2, "head"), (17, "tail"), (31, "tail")):
                    path = export_with_stray_quote(
                        tmp_path,
                        30,
                        bad_row,
                        delimiter=delimiter,
                        encoding=encoding,
                        newline=newline,
                        name=f"{encoding}-{name}-{len(newline)}-{bad_row}.csv",
                    )
                    args += [str(path), str(bad_row), part]
    done = subprocess.run(
        [sys.executable, "-c", _FORKED_STRAY, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "OK\n"


@pytest.mark.parametrize("rows", [0, 1])
def test_a_file_of_only_a_header_is_not_split(tmp_path: Path, rows: int) -> None:
    path = write_borrowers(tmp_path / "tiny.csv", rows)
    pending = start_import(path, split=False)
    assert fork_import.split_point(pending) is None or rows == 1
