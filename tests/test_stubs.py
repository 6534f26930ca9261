"""The .pyi stubs of the extension match the real module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")


def test_stubtest_agrees_with_the_extension(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist.txt"
    # Type aliases exist only for type checkers.
    allowlist.write_text("dragonfly_hybrid._core.Verdict\ndragonfly_hybrid._core.MetaValue\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "dragonfly_hybrid._core",
            "--allowlist",
            str(allowlist),
            "--mypy-config-file",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
