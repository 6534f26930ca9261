"""Scans of local directories and files that an attacker shaped: links, FIFOs, odd names, deep trees.

A directory's verdict is clean only when every file under it was read: what is not (a link out of it, a
FIFO) makes it incomplete, and nothing under it may hang the scan or lose another target's findings.
Each case runs the real CLI in a fresh process (a hang is a timeout, not a stuck test run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid import Rules, Scanner

from tests.fakes.pypi import MARKER

PAYLOAD = b"x = 1  # " + MARKER + b"\n"
SETUP_RULE = 'rule setup_marker { meta: filetype = "setup.py" strings: $a = "%s" condition: $a }'


def scan_json(*targets: Path, rules: Path, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", *map(str, targets), "-r", str(rules)]
    done = subprocess.run(
        [*command, "-f", "json", "-o", str(out)], capture_output=True, timeout=60, check=False
    )
    assert out.exists(), done.stderr.decode(errors="replace")
    return done.returncode, json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture
def setup_rules(tmp_path: Path) -> Path:
    directory = tmp_path / "setup-rules"
    directory.mkdir()
    (directory / "setup.yar").write_text(SETUP_RULE % MARKER.decode())
    return directory


def test_a_link_out_of_the_directory_is_not_followed_and_the_directory_is_not_clean(
    tmp_path: Path, rules_dir: Path
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "payload.py").write_bytes(PAYLOAD)
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.txt").write_text("hello\n")
    (project / "setup.py").symlink_to("../outside/payload.py")
    code, report = scan_json(project, rules=rules_dir, tmp_path=tmp_path)
    (target,) = report["targets"]
    assert code == 3 and target["verdict"] == "incomplete"
    assert "setup.py: a symbolic link to '../outside/payload.py', not followed" in target["error"]
    assert report["summary"]["findings"] == 0  # the payload out of the directory was never read


def test_a_link_to_a_file_in_the_directory_is_scanned_under_the_link_name(
    tmp_path: Path, setup_rules: Path
) -> None:
    # Rules pick files by name: the payload shows as setup.py only through the link.
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "payload.txt").write_bytes(PAYLOAD)
    (project / "setup.py").symlink_to("data/payload.txt")
    code, report = scan_json(project, rules=setup_rules, tmp_path=tmp_path)
    (target,) = report["targets"]
    assert code == 1 and target["verdict"] == "findings", target
    found = [f["path"] for d in target["distributions"] for f in d["files"] if f["matches"]]
    assert found == ["setup.py"]


def test_a_fifo_in_a_directory_neither_hangs_the_scan_nor_passes_for_scanned(
    tmp_path: Path, rules_dir: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.txt").write_text("hello\n")
    os.mkfifo(project / "setup.py")
    code, report = scan_json(project, rules=rules_dir, tmp_path=tmp_path)
    (target,) = report["targets"]
    assert code == 3 and "setup.py: a FIFO, socket or device, not read" in target["error"]


def test_the_engine_does_not_block_on_a_fifo_it_is_handed_as_a_file(tmp_path: Path) -> None:
    # A file replaced by a FIFO between the listing and the read: the engine opens it without
    # blocking and refuses what is not a regular file once open. Run apart: a regression would hang.
    fifo = tmp_path / "setup.py"
    os.mkfifo(fifo)
    code = (
        "import sys; from dragonfly_hybrid import Rules, Scanner\n"
        "scanner = Scanner(Rules.compile({'r.yar': 'rule r { condition: true }'}), threads=2)\n"
        "try:\n"
        "    (dist,) = scanner.scan_many([('setup.py', sys.argv[1], None)])\n"
        "    print([i.kind for i in dist.issues], dist.complete)\n"
        "except OSError as err:\n"
        "    print('OSError', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "not a regular file" in done.stdout or "['unreadable'] False" in done.stdout, done.stdout


def test_a_name_that_is_not_utf8_is_scanned_and_loses_no_other_finding(
    tmp_path: Path, rules_dir: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (Path(os.fsdecode(bytes(project) + b"/bad\xff.py"))).write_bytes(PAYLOAD)
    other = tmp_path / "evil.py"
    other.write_bytes(PAYLOAD)
    code, report = scan_json(project, other, rules=rules_dir, tmp_path=tmp_path)
    assert code == 1 and [t["verdict"] for t in report["targets"]] == ["findings", "findings"]
    found = [f["path"] for d in report["targets"][0]["distributions"] for f in d["files"] if f["matches"]]
    assert found == ["bad\\xff.py"]


def test_a_directory_nested_thousands_deep_is_walked(tmp_path: Path, rules_dir: Path) -> None:
    project = tmp_path / "project"
    deep = str(project)
    os.mkdir(deep)
    for _ in range(1100):  # past Python 3.11's recursive os.walk (and os.makedirs, so made one by one)
        deep += "/d"
        os.mkdir(deep)
    Path(deep, "evil.py").write_bytes(PAYLOAD)
    try:
        code, report = scan_json(project, rules=rules_dir, tmp_path=tmp_path)
        assert code == 1 and report["targets"][0]["verdict"] == "findings"
    finally:  # removed bottom up: shutil.rmtree (pytest's clean-up) recurses per level too
        os.remove(os.path.join(deep, "evil.py"))
        while deep != str(project):
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_names_with_c1_or_bidi_controls_are_flagged(tmp_path: Path) -> None:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ("pkg/invoice\u202etxt.exe.py", "pkg/csi\u009b2J.py", "pkg/plain.py"):
            info = tarfile.TarInfo(name)
            info.size = len(PAYLOAD)
            tar.addfile(info, io.BytesIO(PAYLOAD))
    scanner = Scanner(Rules.compile({"r.yar": "rule r { condition: true }"}), threads=2)
    dist = scanner.scan_bytes(out.getvalue(), "pkg-1.0.tar")
    flagged = {i.path: i.message for i in dist.issues if i.kind == "unsafe-path"}
    assert set(flagged) == {"pkg/invoice\u202etxt.exe.py", "pkg/csi\u009b2J.py"}
    assert "bidirectional" in flagged["pkg/invoice\u202etxt.exe.py"]
    assert "control characters" in flagged["pkg/csi\u009b2J.py"]
