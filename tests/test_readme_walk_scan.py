"""An acceptance walk of the README's top and its `scan` section, as a new user reads it, with real
processes. Each test pins a fix and fails on the code it was written against (0758288):

* ``scan -o -`` and ``rules compile -o -`` wrote a file named ``-`` in the working directory, where ``-``
  means stdout (as for the node's ``--output -``);
* ``scan -r requirements.txt`` (pip's habit, no TARGET) said "nothing to scan" instead of the hint that
  ``-r`` is ``--rules`` here: the hint came only after a TARGET was given.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fakes.pypi import MARKER, MARKER_RULE

HANG_GUARD = 60


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """A command of the CLI as a real process, in ``cwd``, its output as bytes (a blob is no text)."""
    return subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *(str(a) for a in args)],
        capture_output=True,
        timeout=HANG_GUARD,
        check=False,
        cwd=cwd,
    )


def test_output_dash_is_stdout_for_scan_and_rules_compile(tmp_path: Path) -> None:
    """``-o -`` is stdout: the report (or the blob) on stdout, and no file named ``-`` left behind."""
    rules = tmp_path / "marker.yar"
    rules.write_text(MARKER_RULE)
    target = tmp_path / "evil.py"
    target.write_bytes(b"x = '" + MARKER + b"'\n")

    scanned = cli("scan", target, "-r", rules, "-f", "json", "-q", "-o", "-", cwd=tmp_path)
    assert scanned.returncode == 1, scanned.stderr
    assert json.loads(scanned.stdout)["summary"]["exit_code"] == 1
    assert not (tmp_path / "-").exists()

    compiled = cli("rules", "compile", rules, "-o", "-", cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    assert not (tmp_path / "-").exists()
    assert compiled.stderr.decode().endswith(", to stdout\n")
    blob = tmp_path / "rules.bin"
    blob.write_bytes(compiled.stdout)  # the blob itself: it loads as one written to a file does
    again = cli("scan", target, "--rules", blob, "-f", "json", "-q", cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    assert json.loads(again.stdout)["targets"][0]["rules_matched"] == ["test_marker"]


def test_rules_option_given_only_a_requirements_file_hints_at_requirements(tmp_path: Path) -> None:
    """``scan -r requirements.txt`` with no TARGET, as ``pip install -r`` is typed: the hint, exit 2."""
    (tmp_path / "requirements.txt").write_text("requests==2.31.0\nsix\n")
    result = cli("scan", "-r", "requirements.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "error: requirements.txt looks like a requirements file, not YARA rules (-r is --rules here): "
        "did you mean -R/--requirements requirements.txt?\n"
    )
