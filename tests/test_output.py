"""The output folder after a crash: dead runs' staging folders go, live ones stay, and no address is
ever left in a staging folder (a real subprocess killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.output import (
    OLD_PREFIX,
    OWNERLESS_AGE_SECONDS,
    STAGING_PREFIX,
    OutputFolder,
    remove_dead_runs_folders,
)
from tasks.processes import this_host

from .conftest import ROOT

SLUG = "eksempel-kommune"
NUMBER = b'{"recipients": [{"msisdn": 4512345678}]}'


def dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def owned(root: Path, prefix: str, host: str, pid: int, slug: str = SLUG) -> Path:
    folder = root / f"{prefix}{slug}.{host}.{pid}.0123abcd"
    (folder / "sms").mkdir(parents=True)
    (folder / "sms" / "sms.da.txt").write_text("tekst", encoding="utf-8")
    return folder


def test_the_staging_folder_names_its_owner(tmp_path: Path) -> None:
    with OutputFolder(tmp_path, SLUG) as out:
        name = out.staging.name
        assert name.startswith(f"{STAGING_PREFIX}{SLUG}.{this_host()}.{os.getpid()}.")
        out.write("plan.md", "# plan")
        out.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == [SLUG]


@pytest.mark.parametrize(
    ("make", "removed"),
    [
        (lambda root: owned(root, STAGING_PREFIX, this_host(), dead_pid()), True),
        (lambda root: owned(root, OLD_PREFIX, this_host(), dead_pid()), True),
        (lambda root: owned(root, STAGING_PREFIX, this_host(), os.getpid()), False),  # alive
        (lambda root: owned(root, STAGING_PREFIX, "another-host", dead_pid()), False),
        (lambda root: owned(root, STAGING_PREFIX, this_host(), dead_pid(), "anden-kommune"), False),
        (lambda root: _ownerless(root, age=OWNERLESS_AGE_SECONDS + 60), True),
        (lambda root: _ownerless(root, age=60), False),  # may still be a live older version's
    ],
    ids=["dead", "dead-old", "live", "other-host", "other-slug", "ownerless-old", "ownerless-new"],
)
def test_the_next_run_removes_the_folders_of_dead_runs_only(
    tmp_path: Path, make: Callable[[Path], Path], removed: bool
) -> None:
    (tmp_path / SLUG).mkdir()
    folder = make(tmp_path)
    with OutputFolder(tmp_path, SLUG) as out:
        assert folder.exists() is not removed
        out.discard()


def _ownerless(root: Path, age: float) -> Path:
    folder = root / f"{STAGING_PREFIX}{SLUG}-0123abcd"
    folder.mkdir()
    os.utime(folder, (time.time() - age, time.time() - age))
    return folder


def test_a_run_that_died_mid_commit_gets_its_last_output_back(tmp_path: Path) -> None:
    old = owned(tmp_path, OLD_PREFIX, this_host(), dead_pid())
    assert remove_dead_runs_folders(tmp_path, SLUG) == []
    assert (tmp_path / SLUG / "sms" / "sms.da.txt").is_file() and not old.exists()


def test_private_files_never_enter_staging_and_are_published_for_the_owner_only(
    tmp_path: Path,
) -> None:
    with OutputFolder(tmp_path, SLUG) as out:
        out.write("sms/sms.da.txt", "tekst")
        out.private.write("sms/requests/da-1.json", NUMBER)
        assert not any(NUMBER in p.read_bytes() for p in _files(tmp_path))
        out.commit()
    request = tmp_path / SLUG / "sms" / "requests" / "da-1.json"
    assert request.read_bytes() == NUMBER
    assert request.stat().st_mode & 0o777 == 0o600
    assert request.parent.stat().st_mode & 0o777 == 0o700


def test_a_failed_run_leaves_no_private_file_anywhere(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), OutputFolder(tmp_path, SLUG) as out:
        out.private.write("sms/requests/da-1.json", NUMBER)
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []


def test_a_run_replaces_the_last_requests_and_a_channel_run_keeps_the_others(
    tmp_path: Path,
) -> None:
    with OutputFolder(tmp_path, SLUG) as out:
        out.private.write("sms/requests/da-1.json", NUMBER)
        out.private.write("newsletter/requests/da-1.json", b"{}")
        out.commit()
    # A run of the SMS channel alone: the newsletter's requests are carried over, not copied.
    with OutputFolder(tmp_path, SLUG) as out:
        out.keep_previous({"sms"})
        assert not (out.staging / "newsletter" / "requests").exists()
        out.private.write("sms/requests/da-2.json", NUMBER)
        out.commit()
    requests = sorted(p.relative_to(tmp_path / SLUG).as_posix() for p in _files(tmp_path))
    assert requests == ["newsletter/requests/da-1.json", "sms/requests/da-2.json"]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


CHILD = """
import sys, time
from pathlib import Path
from tasks.output import OutputFolder

out = OutputFolder(Path(sys.argv[1]), sys.argv[2]).__enter__()
out.write("plan.md", "# plan")
for i in range(50):
    out.private.write(f"sms/requests/da-{i}.json", sys.argv[3].encode())
print(out.staging, flush=True)
time.sleep(60)
"""


def test_a_sigkilled_run_leaves_no_number_in_staging_and_the_next_run_removes_it(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), SLUG, NUMBER.decode()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    staging = Path(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert staging.is_dir() and (staging / "plan.md").is_file()  # what kill -9 leaves
    assert f".{this_host()}.{child.pid}." in staging.name
    assert not any(NUMBER in p.read_bytes() for p in _files(tmp_path))
    with OutputFolder(tmp_path, SLUG) as out:
        assert not staging.exists()
        out.commit()
    assert [p.name for p in tmp_path.iterdir()] == [SLUG]
