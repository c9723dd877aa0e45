"""Every module of tasks/ and flows/ imports first, on its own: no import cycle hides behind an order."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT

_EACH_FIRST = """
import importlib, pathlib, sys
names = sys.argv[1:]
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("tasks", "flows")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
        raise SystemExit(1)
print("OK", len(names))
"""


def test_every_module_imports_first() -> None:
    files = sorted([*ROOT.glob("tasks/**/*.py"), *ROOT.glob("flows/*.py")])
    names = [
        ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for f in files
    ]
    done = subprocess.run(
        [sys.executable, "-c", _EACH_FIRST, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip() == f"OK {len(names)}"
