"""The output folder: build everything in a staging folder, move it into place only at the end.

Every staging folder is named after the process that owns it (`.staging-<slug>.<host>.<pid>.<id>`),
so the next run removes those of runs that died (kill -9 leaves them behind) and never one a live
parallel run is still writing. Personal data never enters a staging folder: see `PrivateFiles`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tasks.processes import Owner

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
OLD_PREFIX = ".old-"
# The folder name under a channel for files with addresses or numbers (the outbox's requests).
PRIVATE_FOLDER = "requests"
# Folders named before owners were recorded (`.staging-<slug>-<8 hex>`) cannot tell whether
# their run still lives; after a day none does (a run waiting on its approval form included).
OWNERLESS_AGE_SECONDS = 24 * 3600


class OutputFolder:
    """`outbox/<slug>/`, written through a sibling staging folder so a failed run leaves nothing half-done."""

    def __init__(self, root: Path, slug: str) -> None:
        self.root = root
        self.slug = slug
        self.final = root / slug
        self.owner = Owner.me()
        self.staging = root / _owned_name(STAGING_PREFIX, slug, self.owner)
        self.private = PrivateFiles(root)
        # Private folders of the last output that this run carries over untouched (see commit).
        self._carried: list[str] = []

    def __enter__(self) -> OutputFolder:
        self.root.mkdir(parents=True, exist_ok=True)
        remove_dead_runs_folders(self.root, self.slug)
        self.staging.mkdir()
        return self

    def keep_previous(self, except_folders: set[str]) -> None:
        """Carry the last run's output over, except the folders this run rewrites.

        A run for one channel (a scheduled channel deployment) must not wipe the others' output.
        Private folders are not copied into staging: `commit` moves them across instead.
        """
        if not self.final.is_dir():
            return
        for entry in self.final.iterdir():
            if entry.name in except_folders:
                continue
            target = self.staging / entry.name
            if entry.is_dir():
                ignore = shutil.ignore_patterns(PRIVATE_FOLDER)
                shutil.copytree(entry, target, dirs_exist_ok=True, ignore=ignore)
                if (entry / PRIVATE_FOLDER).is_dir():
                    self._carried.append(f"{entry.name}/{PRIVATE_FOLDER}")
            else:
                shutil.copy2(entry, target)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.discard()

    def path(self, relative: str) -> Path:
        target = self.staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, relative: str, content: str | bytes) -> Path:
        target = self.path(relative)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        return target

    def write_json(self, relative: str, data: Any) -> Path:
        return self.write(
            relative, json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"
        )

    def commit(self) -> Path:
        """Swap the staging folder into place, then name this run's private files in it.

        The last output's private files are deleted where they are before the swap (unless
        carried over), so they never sit in the `.old-` folder that a crash could leave.
        """
        if self.final.is_dir():
            for folder in self.final.glob(f"*/{PRIVATE_FOLDER}"):
                if folder.relative_to(self.final).as_posix() not in self._carried:
                    shutil.rmtree(folder, ignore_errors=True)
        old = None
        if self.final.exists():
            old = self.root / _owned_name(OLD_PREFIX, self.slug, self.owner)
            self.final.rename(old)
        self.staging.rename(self.final)
        if old is not None:
            for relative in self._carried:
                (old / relative).rename(self.final / relative)
            shutil.rmtree(old, ignore_errors=True)
        self.private.publish(self.final)
        return self.final

    def discard(self) -> None:
        self.private.close()
        shutil.rmtree(self.staging, ignore_errors=True)


class PrivateFiles:
    """Files with personal data, kept in one unnamed file until `publish` names them (mode 0600).

    Why not the staging folder: the outbox's request bodies carry every recipient's address or
    number, and a run killed with SIGKILL left them in its staging folder (two such folders
    once held 48,776 phone numbers). An unnamed file (O_TMPFILE on Linux; elsewhere a temporary
    file unlinked the moment it is made) has no name to leave behind: the kernel frees it when
    the process ends, however it ends. The ledger still protects each request as it would a
    provider's: its recipients are claimed before it is written and marked after, so a crash
    in between leaves them `unknown`, never sent twice. A crash before `publish` loses only the
    outbox's copy; nothing was delivered anywhere.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: Any = None
        self._size = 0
        self._index: list[tuple[str, int, int]] = []  # (relative path, offset, length)
        self._lock = threading.Lock()

    def write(self, relative: str, content: bytes) -> None:
        """Keep `content` to be published as `relative` (e.g. `sms/requests/da-1f2e.json`)."""
        with self._lock:
            if self._file is None:
                # Held open until `publish` or `close`: its open descriptor is all that keeps it.
                self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115
            offset = self._size
            os.pwrite(self._file.fileno(), content, offset)
            self._size += len(content)
            self._index.append((relative, offset, len(content)))

    def publish(self, folder: Path) -> list[Path]:
        """Write every kept file under `folder`, readable by this user only; then forget them."""
        written = []
        with self._lock:
            for relative, offset, length in self._index:
                target = folder / relative
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                content = os.pread(self._file.fileno(), length, offset)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content)
                written.append(target)
        self.close()
        return written

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file, self._size, self._index = None, 0, []


def _owned_name(prefix: str, slug: str, owner: Owner) -> str:
    # Dots part the fields: a slug and `this_host()` never hold one.
    return f"{prefix}{slug}.{owner.host}.{owner.pid}.{uuid.uuid4().hex[:8]}"


def remove_dead_runs_folders(root: Path, slug: str) -> list[str]:
    """Remove the staging and `.old-` folders of `slug` whose run has ended; return their names.

    A folder of a live run on this host, or of a run on another host, is left alone. When a
    run died halfway through its commit (its last output moved aside, the new one not yet in
    place), that last output is put back.
    """
    removed = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if not (entry.is_dir() and _of_dead_run(entry, slug)):
            continue
        if entry.name.startswith(OLD_PREFIX) and not (root / slug).exists():
            entry.rename(root / slug)
            log.warning("%s: the last output, set aside by a run that died, is back", slug)
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    if removed:
        log.warning("removed %d folders left by runs that died: %s", len(removed), removed)
    return removed


def _of_dead_run(folder: Path, slug: str) -> bool:
    """Whether `folder` is a staging or `.old-` folder of `slug` whose run has ended."""
    for prefix in (STAGING_PREFIX, OLD_PREFIX):
        if not folder.name.startswith(prefix):
            continue
        rest = folder.name.removeprefix(prefix)
        fields = rest.split(".")
        if len(fields) == 4 and fields[0] == slug:
            owner = Owner.parse(f"{fields[1]}:{fields[2]}")
            return owner is not None and owner.is_dead()
        if re.fullmatch(rf"{re.escape(slug)}-[0-9a-f]{{8}}", rest):
            return time.time() - folder.stat().st_mtime > OWNERLESS_AGE_SECONDS
    return False
