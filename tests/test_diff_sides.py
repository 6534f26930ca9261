"""``diff`` takes on each side what ``scan`` takes (local archives, directories, ``name==version``, a bare
``name``: its latest release), warns when the sides are different projects, and lists the files added,
removed and changed (by SHA-256) besides the findings. Exit codes: 0 nothing new, 1 new findings, 2 usage,
3 nothing new but a side could not be scanned or compared completely; 141 when stdout is closed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid._core import Limits
from dragonfly_hybrid.members import list_members

from tests.fakes.pypi import LIGHT_MARKER, MARKER, FakeIndex, sdist, tar_gz_bytes, wheel, write, zip_bytes

BAD = b"import os\n# " + MARKER + b"\n"
LIGHT = b"# " + LIGHT_MARKER + b"\n"


def diff(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "diff", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def diff_json(*args: object) -> tuple[int, dict[str, Any], str]:
    done = diff(*args, "-f", "json")
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.fixture
def no_default_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRAGONFLY_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


pytestmark = pytest.mark.usefixtures("no_default_store")


def local_sdist(directory: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    filename, content = sdist(name, version, files)
    return write(directory / filename, content)


def test_two_local_archives_show_files_added_removed_and_changed(tmp_path: Path, rules_dir: Path) -> None:
    old = local_sdist(tmp_path, "pkg", "1.0", {"a.py": b"same\n", "b.py": b"before\n", "c.py": b"gone\n"})
    new = local_sdist(tmp_path, "pkg", "1.1", {"a.py": b"same\n", "b.py": b"after\n", "d.py": BAD})
    code, data, stderr = diff_json(old, new, "-r", rules_dir)
    assert code == 1, stderr
    assert "warning" not in stderr
    files = data["files"]
    assert [f["file"] for f in files["added"]] == ["pkg-1.1.tar.gz/pkg-1.1/d.py"]
    assert [f["file"] for f in files["removed"]] == ["pkg-1.0.tar.gz/pkg-1.0/c.py"]
    changed = {(c["old_file"], c["file"]) for c in files["changed"]}
    assert changed == {
        ("pkg-1.0.tar.gz/pkg-1.0/b.py", "pkg-1.1.tar.gz/pkg-1.1/b.py"),
        ("pkg-1.0.tar.gz/pkg-1.0/PKG-INFO", "pkg-1.1.tar.gz/pkg-1.1/PKG-INFO"),
    }
    assert files["unchanged"] == 1 and files["problems"] == []
    assert files["added"][0]["sha256"] == hashlib.sha256(BAD).hexdigest()
    assert data["new_rules"] == ["test_marker"]
    assert [f["file"] for f in data["new_findings"]] == ["pkg-1.1.tar.gz/pkg-1.1/d.py"]
    assert (data["old"]["version"], data["new"]["version"]) == ("1.0", "1.1")
    table = diff(old.name, new.name, "-r", rules_dir, cwd=tmp_path)
    assert table.returncode == 1
    assert "files in pkg-1.1.tar.gz: 1 added, 1 removed, 2 changed, 1 unchanged" in table.stdout
    assert "new rules in pkg-1.1.tar.gz: test_marker" in table.stdout
    assert "added     pkg-1.1.tar.gz/pkg-1.1/d.py" in table.stdout


def test_two_directories_compare_file_by_file(tmp_path: Path, rules_dir: Path) -> None:
    for side, files in (
        ("old", {"x.py": b"1\n", "lib/y.py": LIGHT}),
        ("new", {"x.py": b"2\n", "lib/y.py": LIGHT}),
    ):
        for path, content in files.items():
            write(tmp_path / side / path, content)
    code, data, stderr = diff_json(tmp_path / "old", tmp_path / "new", "-r", rules_dir)
    assert code == 0, stderr  # the light finding is in both
    assert [c["file"] for c in data["files"]["changed"]] == ["x.py"]
    assert data["files"]["unchanged"] == 1 and data["unchanged_findings"] == 1


def test_different_projects_are_compared_with_a_warning(tmp_path: Path, rules_dir: Path) -> None:
    one = local_sdist(tmp_path, "alpha", "1.0", {"a.py": b"x\n"})
    other = local_sdist(tmp_path, "beta", "1.0", {"a.py": b"x\n"})
    done = diff(one, other, "-r", rules_dir)
    assert done.returncode == 0
    assert f"warning: {one} and {other} are different projects (alpha, beta)" in done.stderr


def test_a_bare_name_is_the_latest_release_and_a_local_archive_compares_with_a_release(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    for version, files in (
        ("1.0", {"lib/util.py": LIGHT}),
        ("1.1", {"lib/util.py": LIGHT, "lib/_boot.py": BAD}),
    ):
        fake_index.add("trusted", sdist("trusted", version, files), wheel("trusted", version, files))
    fake_index.add("trusted", sdist("trusted", "2.0rc1", {"lib/util.py": LIGHT}))  # pip skips pre-releases
    common = ("-r", rules_dir, "--index-url", fake_index.url)
    code, data, stderr = diff_json("trusted==1.0", "trusted", *common)
    assert code == 1, stderr
    assert data["new"]["version"] == "1.1" and data["new"]["target"] == "trusted"
    added = sorted(f["file"] for f in data["files"]["added"])
    assert added == [
        "trusted-1.1-py3-none-any.whl/lib/_boot.py",
        "trusted-1.1.tar.gz/trusted-1.1/lib/_boot.py",
    ]
    # The same sdist, once on disk and once on the index: every member of it is unchanged.
    local = local_sdist(tmp_path, "trusted", "1.1", {"lib/util.py": LIGHT, "lib/_boot.py": BAD})
    code, data, stderr = diff_json(local, "trusted==1.1", *common)
    assert code == 1, stderr  # the wheel, on the index only, is all new: its _boot.py finding too
    assert sorted(f["file"] for f in data["new_findings"]) == [
        "trusted-1.1-py3-none-any.whl/lib/_boot.py",
        "trusted-1.1-py3-none-any.whl/lib/util.py",
    ]
    files = data["files"]
    assert files["changed"] == [] and files["removed"] == [] and files["unchanged"] == 3
    assert all(f["file"].startswith("trusted-1.1-py3-none-any.whl/") for f in files["added"])  # the wheel


def test_a_side_that_cannot_be_read_completely_exits_3(tmp_path: Path, rules_dir: Path) -> None:
    old = local_sdist(tmp_path, "pkg", "1.0", {"a.py": b"x\n"})
    whole = sdist("pkg", "1.1", {"a.py": b"x\n" * 50_000})[1]
    new = write(tmp_path / "pkg-1.1.tar.gz", whole[: len(whole) // 2])  # truncated
    code, data, stderr = diff_json(old, new, "-r", rules_dir)
    assert code == 3, stderr
    assert data["new"]["verdict"] == "incomplete"
    assert any("pkg-1.1.tar.gz" in p for p in data["files"]["problems"])


def test_usage_errors_exit_2(tmp_path: Path, rules_dir: Path) -> None:
    old = local_sdist(tmp_path, "pkg", "1.0", {"a.py": b"x\n"})
    missing = diff(old, tmp_path / "nope-1.1.tar.gz", "-r", rules_dir)
    assert missing.returncode == 2 and "nope-1.1.tar.gz: no such file or directory" in missing.stderr


def test_diff_into_a_closed_pipe_exits_141(tmp_path: Path, rules_dir: Path) -> None:
    old = local_sdist(tmp_path, "pkg", "1.0", {"a.py": b"x\n"})
    new = local_sdist(tmp_path, "pkg", "1.1", {f"m{i}.py": BAD for i in range(300)})
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "diff", str(old), str(new), "-r", str(rules_dir)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.read(20)
        process.stdout.close()
        assert (process.wait(timeout=120), process.stderr.read()) == (141, b"")


def test_member_listing_is_bounded_and_says_where_it_stopped(tmp_path: Path) -> None:
    archive = write(tmp_path / "many.zip", zip_bytes({f"f{i}.txt": b"x" for i in range(5)}))
    listing = list_members(archive, "many.zip", Limits(max_members=3))
    assert len(listing.hashes) == 3
    assert listing.problems == ["many.zip: more than 3 members; the rest not compared"]
    big = write(tmp_path / "big.tar.gz", tar_gz_bytes({"big.bin": b"\0" * 5000, "small.txt": b"s"}))
    listing = list_members(big, "big.tar.gz", Limits(max_member_size=4096))
    assert listing.problems == ["big.tar.gz/big.bin: larger than 4096 bytes; the rest not compared"]
    plain = write(tmp_path / "setup.py", b"print(1)\n")
    assert list(list_members(plain, "setup.py", Limits()).hashes) == ["setup.py"]
