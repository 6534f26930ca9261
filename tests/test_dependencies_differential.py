"""Differential test of ``scan -R``'s dependency notes against pip's resolver (pass 46).

Releases are published on a fake index whose wheels declare ``Requires-Dist``; pip (the one this Python
has) resolves the requirements files with ``install --dry-run --report``, and ``scan -R`` scans them. Every
release pip would install must be scanned (a pin, downloaded from where the pin's release is) or be named by
a note of ours: as not pinned, pinned only by a constraint, taken from a URL, or its parent's dependencies
unknown. Only the first level is checked: the dependencies of a dependency are a documented limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.pypi.index import normalize_name
from packaging.requirements import Requirement
from typer.testing import CliRunner

from tests.fakes.pypi import FakeIndex, tar_gz_bytes, zip_bytes

pytest.importorskip("pip")

NAMING = (
    "note: not pinned, so not scanned: ",
    "note: pinned only by a -c constraint, so not scanned: ",
    "note: from a URL, not the pinned release, so not scanned: ",
)
UNKNOWN = "note: dependencies unknown, not checked: "

# An in-tree PEP 517 backend (nothing to install to build it): its metadata requires ``evil``, whatever
# the sdist's PKG-INFO says. pip asks it in a dry run; it never builds a wheel.
BACKEND = b"""
import os
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(directory, config_settings=None):
    os.makedirs(os.path.join(directory, "foo-1.0.dist-info"))
    with open(os.path.join(directory, "foo-1.0.dist-info", "METADATA"), "w") as out:
        out.write("Metadata-Version: 2.1\\nName: foo\\nVersion: 1.0\\nRequires-Dist: evil\\n")
    return "foo-1.0.dist-info"
def build_wheel(directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("not in a dry run")
"""


def wheel(
    name: str, version: str, requires: Sequence[str] = (), tag: str = "py3-none-any", head: str = ""
) -> tuple[str, bytes]:
    stem = f"{name.replace('-', '_').replace('.', '_')}-{version}"
    metadata = "".join(
        [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", head]
        + [f"Requires-Dist: {r}\n" for r in requires]
    )
    return f"{stem}-{tag}.whl", zip_bytes(
        {
            f"{stem.split('-')[0]}/__init__.py": b"",
            f"{stem}.dist-info/METADATA": metadata.encode(),
            f"{stem}.dist-info/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
            f"{stem}.dist-info/RECORD": b"",
        }
    )


def built_sdist(pkg_info: bytes) -> tuple[str, bytes]:
    """foo 1.0's sdist: ``pkg_info``, and a backend whose build requires ``evil``."""
    pyproject = b'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    members = {
        "foo-1.0/PKG-INFO": pkg_info,
        "foo-1.0/pyproject.toml": pyproject,
        "foo-1.0/backend.py": BACKEND,
    }
    return "foo-1.0.tar.gz", tar_gz_bytes(members)


def pip_installs(index: FakeIndex, paths: list[Path], tmp_path: Path) -> dict[str, tuple[str, list[str]]]:
    """Normalized name -> the URL of the file pip's resolver would install, and its dependencies' names."""
    report = tmp_path / "pip-report.json"
    args = [a for p in paths for a in (("-c" if p.name.startswith("constraints") else "-r"), str(p))]
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-cache-dir", "-q"]
    done = subprocess.run(
        [*pip, "--disable-pip-version-check", "--report", str(report), "--index-url", index.url, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    installs = json.loads(report.read_text())["install"]
    return {
        normalize_name(i["metadata"]["name"]): (
            i["download_info"]["url"],
            [normalize_name(Requirement(r).name) for r in i["metadata"].get("requires_dist", [])],
        )
        for i in installs
    }


def check(index: FakeIndex, tmp_path: Path, rules_dir: Path, files: dict[str, str]) -> str:
    """Run both on ``files`` (``constraints*`` ones are -c files of the first one) and check that every
    first-level release pip installs is scanned or named; the notes."""
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    installs = pip_installs(index, paths, tmp_path)
    requirements = [a for p in paths if not p.name.startswith("constraints") for a in ("-R", p)]
    result = CliRunner().invoke(
        app,
        ["scan", *map(str, requirements), "-r", str(rules_dir), "--index-url", index.url, "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    notes = result.stderr.splitlines()
    pinned = {
        normalize_name(line.split("==")[0].split("[")[0])
        for name, text in files.items()
        if not name.startswith("constraints")
        for line in text.split()
        if not line.startswith("-") and "==" in line
    }
    named = {
        normalize_name(entry.split(" ")[0].split("<")[0].split(">")[0].split("=")[0])
        for line in notes
        for prefix in NAMING
        if line.startswith(prefix)
        for entry in line[len(prefix) : line.rindex(" (required by")].split(", ")
    }
    # The releases whose dependencies a note says are unknown (a dependency of one of them may go unnamed).
    unknown = {
        normalize_name(line[len(UNKNOWN) :].split("==")[0]) for line in notes if line.startswith(UNKNOWN)
    }
    # Scanned: a pin, the file pip takes being one of the pinned release's on the index.
    scanned = {name for name, (url, _) in installs.items() if name in pinned and f"/files/{name}/" in url}
    first_level = {dependency for name in scanned for dependency in installs[name][1]}
    for name, (url, _) in installs.items():
        if name in first_level and name not in scanned:
            parents = {parent for parent in scanned if name in installs[parent][1]}
            assert name in named or parents & unknown, f"pip installs {name} ({url}), not scanned nor named"
    return result.stderr


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    for name in ("dep.one", "dep2", "dep3", "dep5", "dep6", "dep7", "evil", "other", "cons"):
        fake_index.add(name, wheel(name, "1.0"))
    return fake_index


def test_markers_extras_names_and_other_files_agree_with_pip(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    index.add(
        "Foo_Bar",
        wheel(
            "Foo_Bar",
            "1.0",
            [
                "Dep_One",
                'dep2 ; python_full_version >= "3"',
                'dep3 ; extra == "a"',
                'Foo.Bar[a] ; extra == "all"',
                'dep5 ; sys_platform == "' + sys.platform + '"',
                'dep6 ; implementation_name == "cpython" or implementation_name != "cpython"',
                "dep7 ; platform_machine != 'no-such-machine'",
                'never ; python_version < "3"',
                "Other",
                "CONS",
            ],
            head="Provides-Extra: a\nProvides-Extra: all\n",
        ),
    )
    stderr = check(
        index,
        tmp_path,
        rules_dir,
        {
            "requirements.txt": "foo-bar[all]==1.0\n-c constraints.txt\n",
            "requirements2.txt": "other==1.0\n",
            "constraints.txt": "cons==1.0\n",
        },
    )
    assert "note: not pinned, so not scanned: dep-one, dep2, dep3, dep5, dep6, dep7 (required by" in stderr
    assert "note: pinned only by a -c constraint, so not scanned: cons (required by" in stderr


def test_a_url_dependency_of_a_pinned_name_is_not_the_pinned_release(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip takes ``bar @ URL`` from the URL even though ``bar==2.0`` is pinned: those bytes were never
    scanned (they used to pass as the pin)."""
    index.add("bar", wheel("bar", "2.0"))
    index.add("elsewhere", wheel("bar", "2.0", ["evil"]))
    url = index.file_url("elsewhere", "bar-2.0-py3-none-any.whl")
    index.add("foo", wheel("foo", "1.0", [f"bar @ {url}"]))
    stderr = check(index, tmp_path, rules_dir, {"requirements.txt": "foo==1.0\nbar==2.0\n"})
    assert "note: from a URL, not the pinned release, so not scanned: bar (required by foo==1.0)" in stderr


def test_a_wheel_for_another_platform_does_not_vouch_for_the_sdist_pip_builds(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    index.add(
        "foo",
        wheel("foo", "1.0", tag="cp27-cp27mu-win32"),
        built_sdist(b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"),
    )
    stderr = check(index, tmp_path, rules_dir, {"requirements.txt": "foo==1.0\n"})
    assert f"{UNKNOWN}foo==1.0 (foo-1.0.tar.gz: an sdist's are known once built)" in stderr


def test_an_sdist_pip_builds_is_unknown_whatever_its_pkg_info_says(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip never reads an sdist's PKG-INFO for its dependencies: Metadata 2.2 without ``Dynamic`` still
    says nothing of what the build (the attacker's code) declares. What it says is still named."""
    index.add("foo", built_sdist(b"Metadata-Version: 2.2\nName: foo\nVersion: 1.0\nRequires-Dist: dep2\n"))
    stderr = check(index, tmp_path, rules_dir, {"requirements.txt": "foo==1.0\n"})
    assert f"{UNKNOWN}foo==1.0 (foo-1.0.tar.gz: an sdist's are known once built)" in stderr
    assert "note: not pinned, so not scanned: dep2 (required by foo==1.0)" in stderr


def test_wheels_for_several_pythons_name_the_union_of_their_dependencies(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    index.add(
        "foo",
        wheel("foo", "1.0", ["dep2"], tag="py2-none-any"),
        wheel("foo", "1.0", ["dep3"], tag="py3-none-any"),
    )
    stderr = check(index, tmp_path, rules_dir, {"requirements.txt": "foo==1.0\n"})
    assert "note: not pinned, so not scanned: dep2, dep3 (required by foo==1.0)" in stderr
