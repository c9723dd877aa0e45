"""Reading the borrower file while Prefect starts, kept for the flow (switch: `FBSFLOW_SPEED_PREFETCH=0`)."""

from __future__ import annotations

from pathlib import Path

from tasks.audience import Audience, PendingImport, start_import
from tasks.config import resolve_relative
from tasks.errors import ConfigError
from tasks.models import MunicipalityConfig
from tasks.speed.switches import enabled

SWITCH = "PREFETCH"

# Audiences parsed ahead of the flow, by the fingerprint of their files. No Prefect in this
# module: `fbsflow run` starts reading before it imports Prefect.
_prefetched: dict[tuple[object, ...], tuple[Audience, int]] = {}  # (audience, processes)


class Prefetch:
    """A borrower file being read ahead of the flow; `finish()` keeps the result for it."""

    def __init__(self, fingerprint: tuple[object, ...], pending: PendingImport) -> None:
        self._before, self._pending = fingerprint, pending

    @classmethod
    def start(
        cls,
        config: MunicipalityConfig,
        config_path: str,
        audience_path: str | None,
        *,
        split: bool = False,
    ) -> Prefetch | None:
        """Read the files now; with `split`, a child process starts parsing part of them.

        None if the run reads no borrower file, or it cannot be read: a file with mistakes is
        left to the flow's import step, which reports them as always. None too with the switch
        off: the import step then parses the file itself, in one process.

        Why: against a Prefect server, the forked child parses most of the file while this
        process imports Prefect (see `tasks.speed.fork_import`); without a server, Prefect's
        temporary server boots in a process of its own on the other core (5-6 s) and this
        process parses the whole file meanwhile. Measured, embedded: 1M SMS 20.6-21.1 s ->
        17.0-17.8 s, 1M e-mails 35-45 s -> 22.5-27.7 s.
        """
        if not enabled(SWITCH):
            return None
        source = audience_source(config, config_path, audience_path)
        if source is None:
            return None
        before = fingerprint(config, *source)
        try:
            pending = start_import(
                source[0], columns=config.audience.columns, suppression=source[1], split=split
            )
        except ConfigError:
            return None
        return cls(before, pending)

    def finish(
        self, config: MunicipalityConfig, config_path: str, audience_path: str | None
    ) -> bool:
        """Parse the rest and keep the Audience for the import step; whether it was kept."""
        try:
            audience = self._pending.result()
        except ConfigError:
            return False
        source = audience_source(config, config_path, audience_path)
        if source is None or fingerprint(config, *source) != self._before:
            return False  # written to while we read it (an export still being saved): not trusted
        _prefetched[self._before] = audience, self._pending.processes
        return True

    def close(self) -> None:
        """Stop a child still parsing (when the run ends before `finish`)."""
        self._pending.close()


def prefetch_audience(
    config: MunicipalityConfig, config_path: str, audience_path: str | None
) -> bool:
    """Parse the borrower file now; the flow's import step then takes the result as it is.

    Why: `fbsflow run` without a Prefect server first boots Prefect's temporary server, a
    process of its own that takes seconds on the other core. Parsing meanwhile hides the
    import (~3 s on 1M rows). The step still writes the report and the artifact; if the
    files change in between, it parses again. Returns whether anything was kept.
    """
    started = Prefetch.start(config, config_path, audience_path)
    return started is not None and started.finish(config, config_path, audience_path)


def take_prefetched(
    config: MunicipalityConfig, path: Path, suppression: Path | None
) -> tuple[Audience, int] | None:
    """The audience read ahead from these files as they are now, and by how many processes;
    None if there is none (each is handed over once)."""
    taken = _prefetched.pop(fingerprint(config, path, suppression), None)
    _prefetched.clear()  # a stale one (its file changed since) is of no use to anyone
    return taken


def audience_source(
    config: MunicipalityConfig, config_path: str, audience_path: str | None
) -> tuple[Path, Path | None] | None:
    """The borrower file and the suppression list a run reads, if any."""
    source = audience_path or config.audience.file
    if source is None:
        return None
    path = Path(audience_path) if audience_path else resolve_relative(Path(config_path), source)
    suppression = (
        resolve_relative(Path(config_path), config.audience.suppression_file)
        if config.audience.suppression_file
        else None
    )
    return path, suppression


def fingerprint(
    config: MunicipalityConfig, path: Path, suppression: Path | None
) -> tuple[object, ...]:
    """Which files (inode), at which size and modification and change times, read with which
    column names: a changed file or mapping is parsed again. The change time catches a copy
    that kept the old size and modification time (`cp -p`, `rsync -t`)."""
    parts: list[object] = [tuple(sorted((config.audience.columns or {}).items()))]
    for file in (path, suppression):
        try:
            stat = file.stat() if file is not None else None
        except OSError:
            stat = None
        identity = stat and (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        parts += [str(file.resolve()) if file else None, identity]
    return tuple(parts)
