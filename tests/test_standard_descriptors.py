"""A process started without its standard descriptors (``<&- >&- 2>&-``): the files it opens took their
numbers (the report being written became descriptor 2), so whatever writes to descriptor 2 directly (a panic
message of the engine, a C library's warning) wrote into the report. Each is ``/dev/null`` now."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from tests.test_redteam_watch_crash import cli

# Stands for a direct writer to descriptor 2 (the engine's panic message): from the interpreter's start,
# a thread writes a marker there every millisecond, whatever the descriptor is at that moment.
DIRECT_WRITER = """
import os, threading, time

def write() -> None:
    while True:
        try:
            os.write(2, b"DIRECT-WRITE\\n")
        except OSError:
            pass
        time.sleep(0.001)

threading.Thread(target=write, daemon=True).start()
"""


def _closing_all() -> Callable[[], None]:
    def close() -> None:
        for fd in (0, 1, 2):
            os.close(fd)

    return close


def test_a_direct_write_to_descriptor_2_never_lands_in_the_report(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DIRECT_WRITER)
    tree = tmp_path / "pkg"
    tree.mkdir()
    for i in range(200):  # a scan long enough for the writer to run while the report is open
        (tree / f"m{i}.py").write_text("print('hello')\n" * 200)
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    done = cli("scan", str(tree), "-f", "json", "-o", str(out), env=env, preexec_fn=_closing_all())
    assert done.returncode == 0
    text = out.read_text()
    assert "DIRECT-WRITE" not in text
    assert len(json.loads(text)["targets"][0]["distributions"]) == 200
