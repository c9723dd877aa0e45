"""A forked child parses the tail of a large borrower file (switch: `FBSFLOW_SPEED_FORK_IMPORT=0`)."""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import tempfile
import threading
from bisect import bisect_left, bisect_right
from collections import deque
from itertools import compress, count, repeat
from typing import IO, TYPE_CHECKING

from tasks.audience.borrowers import Borrower, BorrowerBuilder, ImportIssue
from tasks.audience.reading import Header
from tasks.audience.validation import REASONS, Part
from tasks.errors import ConfigError
from tasks.models import Language
from tasks.speed.gcpause import gc_paused
from tasks.speed.switches import enabled

if TYPE_CHECKING:
    from tasks.audience.importing import PendingImport

SWITCH = "FORK_IMPORT"
# Below this many characters (~100k rows) a second process costs more than it saves.
SPLIT_MIN = 8 << 20
# The child's share of the file. It starts about a second before this process gets to its own
# part (the Prefect import, ~0.8 s), and then spends ~0.15 s packing its part (measured; 57 %
# instead of 62 %: 1.00x over four pairs).
TAIL_SHARE = 0.62


class ForkedTail:
    """A child process parsing the rows of a borrower file from `split` on."""

    def __init__(self, pid: int, done: int, handover: IO[bytes], split: int) -> None:
        # The child's pid, the read end of its "done" pipe, and the file it writes its part to.
        self.pid, self._done, self._handover, self.split = pid, done, handover, split
        self._over = False

    def joined(self, pending: PendingImport) -> Part | None:
        """The head parsed here plus the child's tail, as one pass over both would find them;
        None if the child failed (a single pass then says why: a ConfigError in the tail, such
        as an unclosed quote, costs that pass)."""
        head = pending.parse(0, self.split)  # a ConfigError here: the caller stops the child
        # Still ours until it has answered: interrupted while waiting, stop() ends it.
        finished = os.read(self._done, 1) == b"1"  # b"" once the child has gone without a word
        self._over = True
        os.close(self._done)
        tail = None
        if finished:
            self._handover.seek(0)
            tail = self._handover.read()
        _reap(self.pid, self._handover)
        return None if tail is None else join(head, tail)

    def stop(self) -> None:
        """Stop the child, if it has not answered yet."""
        if self._over:
            return
        self._over = True
        os.close(self._done)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        _reap(self.pid, self._handover)


def fork_tail(pending: PendingImport) -> ForkedTail | None:
    """Start a child parsing the last TAIL_SHARE of the file, where that is safe and pays; None
    where not (`pending.result()` then parses it all in this process).

    Why: the import is pure Python, one core's work (~3 s on a million rows), while the machine
    has two. `fbsflow run` starts the child before it imports Prefect (~0.9 s), so the tail is
    parsed while Prefect loads, and the parent then parses the head. The child sends its rows
    back as plain columns (`marshal`, version 2: 0.07 s to write and 0.08 s to read 600k rows,
    against 0.17 and 0.10 s for pickle) through an unlinked temporary file, and says "done" on a
    pipe (waiting for its exit instead waited 0.2 s for the kernel to free its memory; a pipe
    for the data itself made the child wait for the reader, 0.5 s). Measured: 1M SMS against a
    server, median 10.3 s against 11.6 s (0.89x, four pairs). Only with the switch on, a file
    of at least SPLIT_MIN characters, a platform with fork, and no other thread in this process
    (a forked child gets only the calling thread, and locks other threads hold would stay held
    in it).
    """
    if not enabled(SWITCH) or len(pending.text) < SPLIT_MIN or not hasattr(os, "fork"):
        return None
    if threading.active_count() != 1:
        return None
    point = split_point(pending)
    if point is None:
        return None
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
        return None
    if pid == 0:  # the child: parse the tail, hand it over, and leave without cleanup
        status = 1
        try:
            os.close(done)
            handover.write(parse_tail(pending, split, header))
            handover.flush()
            os.write(done_write, b"1")
            status = 0
        finally:
            os._exit(status)  # no atexit handlers or buffered output of the parent's
    os.close(done_write)
    return ForkedTail(pid, done, handover, split)


def split_point(pending: PendingImport) -> tuple[int, Header] | None:
    """Where the child's part starts (a line start), and the header its rows are read with (its
    `line_no`: the lines before the split); None: no split."""
    try:
        header = pending.header()
    except ConfigError:
        return None  # result() reports it, as a single pass would
    text, newline = pending.text, pending.newline
    split = text.find(newline, int(len(text) * (1 - TAIL_SHARE)))
    if split < 0:
        return None
    split += len(newline)
    # The tail's first line number: the lines before it, counted as the lines are split.
    before = text.count(newline, 0, split)
    if split >= len(text) or before <= header.line_no:
        return None  # a last line or a header that long: nothing to share
    return split, Header(header.index, header.ncols, before)


def parse_tail(pending: PendingImport, split: int, header: Header) -> bytes:
    """The rows from `split` on (`header` as `split_point` gives it), parsed and packed for the
    trip to the parent."""
    with gc_paused():
        part = pending.parse(split, None, header)
        # marshal, not pickle: plain lists of strings are all it carries, and version 2
        # writes and reads them in half the time (no memo of objects).
        return marshal.dumps(_pack(part), 2)


def join(head: Part, tail: bytes) -> Part:
    """The head's rows and the child's packed tail, as one pass over both would find them."""
    packed = marshal.loads(tail)
    return merge(head, _unpack(packed), packed[1], packed[2])


def merge(head: Part, tail: Part, emails: list[str | None], mobiles: list[str | None]) -> Part:
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
                field_name, reason = REASONS[code]
                added.append((len(merged), address))
                inserted_before.append(at)
                merged.append(ImportIssue(row, field_name, reason.format(first="?")))
                counts[code] = counts.get(code, 0) + 1
        merged += issues[taken:]
        pending = [(i + bisect_right(inserted_before, i), a) for i, a in pending] + added
        issues = merged
    offset = len(head.issues)
    return Part(
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


def _pack(part: Part) -> tuple[object, ...]:
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


def _unpack(packed: tuple[object, ...]) -> Part:
    rows, emails, mobiles, flags, issues, pending, counts, duplicated, n, blank, valid = packed
    sms = map(_SMS_OF.__getitem__, flags)  # type: ignore[call-overload]
    news = map(_NEWS_OF.__getitem__, flags)  # type: ignore[call-overload]
    language = map(_LANGUAGE_OF.__getitem__, flags)  # type: ignore[call-overload]
    borrowers = list(map(BorrowerBuilder, rows, emails, mobiles, sms, news, language))  # type: ignore[call-overload]
    # object.__setattr__ for each, in C: re-labelling as in `validation.parse_rows`.
    deque(map(object.__setattr__, borrowers, repeat("__class__"), repeat(Borrower)), maxlen=0)
    return Part(
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
