"""Library errors (SQLAlchemy, sqlite3, psycopg, OSError, a missing driver) into fbsflow's error tree.

The one place where a database or disk fault becomes a `StorageError` (exit 1) or a
`ConfigError` (exit 2) whose message names the file or the database and the fix. A database
is named by its URL with the password masked; an error's own text is quoted only where the
library writes no personal data into it (connection and file-system messages).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError, FbsflowError, StorageError

DATABASE_URL_ENV = "FBSFLOW_DATABASE_URL"  # as tasks/settings.py reads it
URL_EXAMPLE = "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
# Drivers a URL may name: psycopg is the one fbsflow installs and documents.
_DRIVERS = {"psycopg", "psycopg2", "psycopg_binary", "asyncpg", "pg8000", "MySQLdb", "pymysql"}
# Up to the last @: a password written with an unencoded @ in it is masked whole.
_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*@")
# What psycopg puts before its reason: the host and port are in the masked URL already.
_SERVER_PREFIX = re.compile(
    r'^(connection failed: )?(connection to server at "[^"]*"(, port \d+)? failed: )?(FATAL: )?'
)


def mask_url(url: Any) -> str:
    """A database URL with its password replaced by ***; works on URLs SQLAlchemy cannot parse."""
    render = getattr(url, "render_as_string", None)
    if render is not None:
        return render(hide_password=True)
    return _PASSWORD.sub(r"\1***@", str(url))


def translate(exc: BaseException, places: Sequence[Path] = ()) -> FbsflowError | None:
    """fbsflow's error for `exc` (or the error it was raised from); None when it is none we know.

    `places` are the folders the command writes (output root, data dir): a full disk without a
    file name in the error is reported on the fullest of them.
    """
    for error in _chain(exc):
        if isinstance(error, FbsflowError):
            return error
        found = _database_error(error) or _os_error(error, places)
        if found is not None:
            return found
    return None


@contextmanager
def translated(places: Sequence[Path] = ()) -> Iterator[None]:
    """Within: a library error we know is raised as fbsflow's error, from the original."""
    try:
        yield
    except FbsflowError:
        raise
    except Exception as exc:
        error = translate(exc, places)
        if error is None:
            raise
        raise error from exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _database_error(error: BaseException) -> FbsflowError | None:
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    url = _configured_url() or ""
    fix_url = f"(fix: set {DATABASE_URL_ENV} to e.g. {URL_EXAMPLE}, or unset it for SQLite)"
    if isinstance(error, NoSuchModuleError):
        kind = str(error).rpartition(":")[2]
        return ConfigError(
            f"{DATABASE_URL_ENV} names an unknown kind of database {kind!r} {fix_url}"
        )
    if isinstance(error, ArgumentError | ValueError) and _raised_in(error, "sqlalchemy.engine.url"):
        return ConfigError(f"{DATABASE_URL_ENV}={mask_url(url)!r} is not a database URL {fix_url}")
    if isinstance(error, ModuleNotFoundError) and (error.name or "") in _DRIVERS:
        return StorageError(
            f"the database driver {error.name!r} for {mask_url(url)} is not installed (fix: "
            f"use {URL_EXAMPLE} and install psycopg: .venv/bin/pip install 'psycopg[binary]'; "
            "`make run` installs it)"
        )
    if not isinstance(error, DBAPIError):
        return None
    database = _database_url(error)
    orig = error.orig
    text = str(orig).strip()
    if type(orig).__module__.startswith("sqlite3"):
        return _sqlite_error(text, _sqlite_file(database))
    return _server_error(text, database)


_FIX_PLACE = "or set FBSFLOW_DATA_DIR to a writable folder"


def read_only_database(file: str) -> StorageError:
    """The error for a SQLite database that cannot be written."""
    return StorageError(
        f"{file}: the database is read-only (fix: make the file and its folder writable "
        f"for this user, {_FIX_PLACE})"
    )


def _sqlite_error(text: str, file: str) -> FbsflowError:
    fix_place = _FIX_PLACE
    if "readonly" in text or "read-only" in text:
        return read_only_database(file)
    if "unable to open" in text:
        return StorageError(
            f"{file}: the database cannot be opened: its folder is missing or not writable, or "
            f"the file is not readable (fix: check the path and permissions, {fix_place})"
        )
    if "disk is full" in text:
        return StorageError(f"{file}: the disk is full (fix: free space on that disk)")
    if "disk I/O error" in text:
        return StorageError(
            f"{file}: disk I/O error: the disk may be full, failing or mounted read-only (fix: "
            "check `df` and the system log)"
        )
    if "locked" in text:
        return StorageError(
            f"{file}: the database stayed locked by another process (fix: let the other "
            "fbsflow command finish, then run again)"
        )
    if "not a database" in text or "malformed" in text:
        return StorageError(
            f"{file}: not a readable SQLite database (fix: restore it from a backup, or point "
            f"{DATABASE_URL_ENV} or FBSFLOW_DATA_DIR at fbsflow's own database)"
        )
    return StorageError(f"{file}: the database failed: {_first_line(text)}")


def _server_error(text: str, database: Any) -> FbsflowError:
    where = mask_url(database) if database is not None else f"the database at {DATABASE_URL_ENV}"
    reason = " ".join(_SERVER_PREFIX.sub("", _first_line(text)).split())
    if missing := re.search(r'database "([^"]+)" does not exist', text):
        return ConfigError(
            f"{where}: the database {missing.group(1)!r} does not exist (fix: create it, e.g. "
            f"createdb {missing.group(1)}, or correct the name in {DATABASE_URL_ENV})"
        )
    if re.search(r"authentication failed|role \"[^\"]+\" does not exist|no password", text):
        return ConfigError(
            f"{where}: the database refused the login ({reason}) (fix: correct the user and "
            f"password in {DATABASE_URL_ENV})"
        )
    if re.search(r"refused|resolve host|timeout|timed out|could not connect|unreachable", text):
        return StorageError(
            f"{where}: the database cannot be reached ({reason}) (fix: start the database "
            f"server, or correct the host and port in {DATABASE_URL_ENV})"
        )
    return StorageError(f"{where}: the database failed: {reason}")


def _os_error(error: BaseException, places: Sequence[Path]) -> FbsflowError | None:
    if not isinstance(error, OSError):
        return None
    where = error.filename or _fullest(places)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(
            f"{where}: no space left on the disk (fix: free space there, or write to another "
            "disk with --output or FBSFLOW_DATA_DIR)"
        )
    if error.errno == errno.EROFS:
        return StorageError(
            f"{where}: the file system is read-only (fix: write to a writable disk with "
            "--output or FBSFLOW_DATA_DIR)"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return StorageError(
            f"{where}: permission denied (fix: make it writable for this user, or write "
            "elsewhere with --output or FBSFLOW_DATA_DIR)"
        )
    return None


def _fullest(places: Sequence[Path]) -> str:
    """The place whose disk has the least room left: where a full-disk error most likely struck."""
    free = []
    for place in places:
        probe = next((p for p in (place, *place.absolute().parents) if p.exists()), None)
        if probe is not None:
            free.append((shutil.disk_usage(probe).free, str(place)))
    return min(free)[1] if free else "the output or data folder"


def _database_url(exc: BaseException) -> Any:
    """The URL of the engine that raised `exc`, found on its way up (a Connection or an Engine)."""
    from sqlalchemy.engine import Connection, Engine

    for frame, _line in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, Engine):
            return owner.url
        if isinstance(owner, Connection):
            return owner.engine.url
    url = _configured_url()
    if url:
        from sqlalchemy.engine import make_url

        return make_url(url)
    return None


def _configured_url() -> str | None:
    # Imported here: every command imports this module, and pydantic-settings takes ~0.1 s.
    from tasks.settings import StorageSettings, settings

    # Only the storage variables: a mistake in another variable must not hide this error.
    configured = settings(StorageSettings).database_url
    return configured.get_secret_value() if configured is not None else None


def _sqlite_file(url: Any) -> str:
    database = (getattr(url, "database", None) or "") if url is not None else ""
    if not database:
        return "the SQLite database in FBSFLOW_DATA_DIR"
    database = database.removeprefix("file:").partition("?")[0]
    return os.path.abspath(database)


def _raised_in(exc: BaseException, module: str) -> bool:
    return any(
        frame.f_globals.get("__name__", "").startswith(module)
        for frame, _line in traceback.walk_tb(exc.__traceback__)
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else "no reason given"
