"""The output folder: build everything in a staging folder, move it into place only at the end."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any


class OutputFolder:
    """`outbox/<slug>/`, written through a sibling staging folder so a failed run leaves nothing half-done."""

    def __init__(self, root: Path, slug: str) -> None:
        self.final = root / slug
        self.staging = root / f".staging-{slug}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> OutputFolder:
        self.staging.mkdir(parents=True)
        return self

    def keep_previous(self, except_folders: set[str]) -> None:
        """Carry the last run's output over, except the folders this run rewrites.

        A run for one channel (a scheduled channel deployment) must not wipe the others' output.
        """
        if not self.final.is_dir():
            return
        for entry in self.final.iterdir():
            if entry.name in except_folders:
                continue
            target = self.staging / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target, dirs_exist_ok=True)
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
        """Swap the staging folder into place; the previous output is removed only after the swap."""
        old = None
        if self.final.exists():
            old = self.final.with_name(f".old-{self.final.name}-{uuid.uuid4().hex[:8]}")
            self.final.rename(old)
        self.staging.rename(self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
