"""How an fbsflow command ends: an exit code a scheduler can trust, one line for a person, a log file.

    0    the command did its work; a run: complete, or waiting for approval, for confirmations
         or for another run of the campaign (said in one line)
    1    a failure: one line with the cause and the log's path; the traceback is in the log
    2    the user's mistake: the file, the field and the fix
    3    `fbsflow checklist`: steps are still open
    130  interrupted (Ctrl-C)

The lines that end a run well (done, waiting, rejected) speak the operator language
(tasks/operator_text.py). A failure's line keeps its English `error:` / `failed:` form: it
carries fbsflow's error texts, which are English, and schedulers and scripts match on it.

The log (`fbsflow.log` in the data dir, else in the temp dir when that cannot be written) gets
every record of the run, Prefect's included, with full tracebacks; the terminal gets Prefect's
records without their tracebacks, unless `--debug`. The log holds what the terminal shows plus
tracebacks, so it is made readable by its owner only (0600).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from tasks.errors import ConfigError, FbsflowError
from tasks.operator_text import say
from tasks.translation import translate

LOG_NAME = "fbsflow.log"
# One earlier log is kept beside the current one (`fbsflow.log.1`) once it grows past this.
MAX_LOG_BYTES = 10 * 1024 * 1024
OK, FAILED, USAGE, OPEN_STEPS, INTERRUPTED = 0, 1, 2, 3, 130
_ROOT = Path(__file__).resolve().parent.parent


class LogFile(logging.Handler):
    """The command's log file, opened at its first record: a command that logs nothing makes none.

    The first of the command's folders that takes a write gets it; the temp dir comes last,
    since the others may sit on the very disk that is full or read-only.
    """

    def __init__(self, command: str, folders: Callable[[], Sequence[Path]]) -> None:
        super().__init__(logging.INFO)
        self.command = command
        self.folders = folders  # asked at the first record: finding them may import Prefect
        self.path: Path | None = None
        self.trouble = ""  # why the last folder tried did not take the log
        self._left: list[Path] | None = None  # folders not tried yet
        self._stream: TextIO | None = None
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s - %(message)s"))

    def _write(self, text: str) -> None:
        if self._left is None:
            self._left = [*self.folders(), Path(tempfile.gettempdir()) / f"fbsflow-{os.getuid()}"]
        while True:
            if self._stream is None:
                if not self._left:
                    return
                self._open(self._left.pop(0))
                continue
            try:
                self._stream.write(text)
                self._stream.flush()
                return
            except OSError as exc:  # e.g. the disk filled up: on to the next folder
                self.trouble = f"{self.path}: {exc.strerror or exc}"
                self._drop()

    def _open(self, folder: Path) -> None:
        path = Path(os.path.abspath(folder / LOG_NAME))
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size > MAX_LOG_BYTES:
                path.replace(path.with_name(LOG_NAME + ".1"))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            self.trouble = f"{path}: {exc.strerror or exc}"
            return
        self._stream = os.fdopen(fd, "a", encoding="utf-8")
        self.path = path
        started = f"{datetime.now():%Y-%m-%d %H:%M:%S}"
        self._stream.write(f"--- fbsflow {self.command}, pid {os.getpid()}, {started}\n")

    def _drop(self) -> None:
        stream, self._stream, self.path = self._stream, None, None
        with contextlib.suppress(OSError):  # its buffer could not be written either
            if stream is not None:
                stream.close()

    def emit(self, record: logging.LogRecord) -> None:
        # A log that cannot be written must neither fail the run nor print.
        with contextlib.suppress(Exception):
            self._write(self.format(record) + "\n")

    def write_exception(self, exc: BaseException) -> None:
        """The full traceback of the command's failure."""
        record = logging.LogRecord(
            "fbsflow",
            logging.ERROR,
            __file__,
            0,
            "the command failed",
            None,
            (type(exc), exc, exc.__traceback__),
        )
        self.emit(record)

    def where(self) -> str:
        """`log: PATH`, or why there is none."""
        if self.path is not None:
            return f"log: {self.path}"
        return f"no log written ({self.trouble or 'nothing to log'}); rerun with --debug"

    def close(self) -> None:
        path = self.path
        self._drop()
        self.path = path  # still named in the line printed after the command
        super().close()


class _WithoutTraceback(logging.Formatter):
    """A console formatter that shows a record's message but not its traceback (the log has it)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info or record.exc_text or record.stack_info):
            return self.inner.format(record)
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
        return self.inner.format(bare)


class Session:
    """One command's log file and terminal: set up by `run_command`, undone when it returns."""

    def __init__(self, command: str, *, debug: bool, places: Callable[[], Sequence[Path]]) -> None:
        self.debug = debug
        self.places = places
        self.log = LogFile(command, places)
        self._undo: list[Callable[[], None]] = []

    def follow_prefect_logging(self) -> None:
        """Once Prefect has set up its logging: its records to the log, its tracebacks off the terminal.

        Not earlier: Prefect's setup replaces the root logger's handlers, and leaves its console
        out when it finds a handler of someone else's there.
        """
        from prefect.logging.handlers import PrefectConsoleHandler

        root = logging.getLogger()
        if self.log not in root.handlers:
            root.addHandler(self.log)
            self._undo.append(lambda: root.removeHandler(self.log))
        if self.debug:
            return
        for handler in root.handlers:
            formatter = handler.formatter
            if (
                isinstance(handler, PrefectConsoleHandler)
                and formatter is not None
                and not isinstance(formatter, _WithoutTraceback)
            ):
                handler.setFormatter(_WithoutTraceback(formatter))
                self._undo.append(lambda h=handler, f=formatter: h.setFormatter(f))

    def fail(self, exc: Exception) -> int:
        """Print the one line for a command that raised; return its exit code."""
        error = translate(exc, self.places())
        if self.debug:
            traceback.print_exception(exc)
        if isinstance(error, ConfigError):
            print(f"error: {error}", file=sys.stderr)
            return USAGE
        self.log.write_exception(exc)
        cause = str(error) if isinstance(error, FbsflowError) else _unexpected(exc)
        print(f"failed: {cause} ({self.log.where()})", file=sys.stderr)
        return FAILED

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self.log.close()


_current: Session | None = None


def session() -> Session | None:
    """The running command's session (None outside `run_command`)."""
    return _current


def run_command(
    command: str, call: Callable[[], int], *, debug: bool, places: Callable[[], Sequence[Path]]
) -> int:
    """Run one command; turn what it raises into one line and an exit code.

    `places` gives the folders the command writes, data dir first: the log goes to the first
    that takes it, and a full disk is looked for among them.
    """
    global _current
    _current = Session(command, debug=debug, places=places)
    try:
        return call()
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as exc:
        return _current.fail(exc)
    finally:
        _current.close()
        _current = None


def run_outcome(record: dict[str, Any], config_path: str) -> tuple[int, str]:
    """A finished run's exit code and the one line that says it."""
    # Imported here: every command imports this module, and tasks.models takes ~0.2 s.
    from tasks.models import ChannelStatus

    # The statuses that mean something went wrong (a person must look), not "waiting".
    failed_states = (ChannelStatus.FAILED, ChannelStatus.UNCONFIRMED)
    channels: dict[str, Any] = record["channels"]
    failed = {n: c for n, c in channels.items() if c["status"] in failed_states}
    if failed:
        said = "; ".join(
            f"{n} {c['status']}" + _short(c.get("detail", "")) for n, c in failed.items()
        )
        return FAILED, f"failed: {said}"
    if record["status"] == "complete":
        return OK, say("exit.complete")
    states = {c["status"] for c in channels.values()}
    if ChannelStatus.REJECTED in states:
        return OK, say("exit.rejected")
    waiting = []
    if ChannelStatus.AWAITING_APPROVAL in states:
        waiting.append(say("exit.wait_approval"))
    if ChannelStatus.IN_PROGRESS in states:
        waiting.append(say("exit.wait_other_run"))
    if steps := record["awaiting_confirmation"]:
        waiting.append(say("exit.wait_confirmations", count=len(steps), config=config_path))
    if not waiting:  # a state this list does not know yet: say the reasons
        waiting = record["reasons"][:1] or [say("exit.wait_steps")]
    return OK, say("exit.waiting", what=say("exit.and").join(waiting))


def _short(detail: str, limit: int = 160) -> str:
    first = detail.split("; ")[0]
    return f" ({first[:limit]}{'...' if len(first) > limit else ''})" if first else ""


def _unexpected(exc: BaseException) -> str:
    """A bug's one line: its type and where in fbsflow it struck; never its text (it may hold data).

    Prefect's own errors (its server did not start, its API did not answer) keep their first
    line: Prefect writes no borrower's data into them.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    ours = []
    for frame in frames:
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_ROOT / "flows") or path.is_relative_to(_ROOT / "tasks"):
            ours.append(f"{path.relative_to(_ROOT)}:{frame.lineno}")
    if frames and f"{os.sep}prefect{os.sep}" in frames[-1].filename:
        text = str(exc).strip().splitlines()
        return f"Prefect: {type(exc).__name__}: {text[0] if text else 'no reason given'}"
    where = f" at {ours[-1]}" if ours else ""
    return f"unexpected {type(exc).__name__}{where} (a fault fbsflow does not know)"
