"""pip 26's release control (``all-releases``/``only-final`` in pip.conf, ``PIP_ALL_RELEASES``/
``PIP_ONLY_FINAL``, ``--all-releases``/``--only-final`` lines of a requirements file), as pip 26.3 reads
them. ``scan`` ignored them: with ``all-releases = pkg`` pip 26 installs pkg's newest pre-release while
``scan pkg`` scanned the newest final release (another release, reported clean); with ``only-final`` a
pinned pre-release is no candidate for pip 26, yet it was scanned; and a requirements file's such line was
refused. What pip 26.3 does (checked by hand with its wheel against this fake index) is pinned here: CI's
pip does not know these settings. ``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.pipconfig import pip_settings

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_review_pass42 import pip_download


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    """``pkg``: a clean 1.0, a malicious 2.0b1; ``other``: the same; ``onlypre``: a 1.0rc1 only."""
    for name in ("pkg", "other"):
        fake_index.add(name, wheel(name, "1.0", CLEAN), wheel(name, "2.0b1", BAD))
    fake_index.add("onlypre", wheel("onlypre", "1.0rc1", BAD))
    return fake_index


def scanned(
    index: FakeIndex, rules_dir: Path, env: dict[str, str], *targets: object
) -> tuple[int, list, str]:
    """``scan TARGETS``' exit code, the ``(name, version)`` it scanned and its stderr, with pip's ``env``."""
    result, report = scan(*targets, "-r", rules_dir, "--index-url", index.url, env={**env})
    versions = [(t["name"], t["version"]) for t in report.get("targets", [])]
    return result.exit_code, versions, result.stderr


@pytest.mark.parametrize(
    ("env", "pkg", "other"),
    [
        ({"PIP_ALL_RELEASES": "Pkg"}, True, None),  # names canonicalized
        ({"PIP_ALL_RELEASES": "other, pkg"}, None, True),  # not stripped: " pkg" names nothing
        ({"PIP_ALL_RELEASES": ":all:,pkg"}, True, True),
        ({"PIP_ALL_RELEASES": ":all:,:none:,other"}, None, True),  # names after :all: only after a :none:
        ({"PIP_ONLY_FINAL": ":all:", "PIP_ALL_RELEASES": "PKG"}, True, False),  # a name over :all:
        ({"PIP_ALL_RELEASES": ":all:", "PIP_ONLY_FINAL": "pkg"}, False, True),
        ({"PIP_PRE": "1", "PIP_ALL_RELEASES": ":none:"}, True, True),  # :none: sets nothing: no conflict
    ],
)
def test_values_read_as_pip_26_3_reads_them(
    env: dict[str, str], pkg: bool | None, other: bool | None
) -> None:
    control = pip_settings({"PIP_CONFIG_FILE": "/dev/null", **env}, Path("/nonexistent")).release_control
    assert (control.allows_prereleases("pkg"), control.allows_prereleases("other")) == (pkg, other)


def test_all_releases_picks_the_pre_release_pip_26_installs(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    assert scanned(index, rules_dir, {"PIP_ALL_RELEASES": "pkg"}, "pkg", "other")[:2] == (
        1,
        [("pkg", "2.0b1"), ("other", "1.0")],
    )
    conf = write(tmp_path / "pip.conf", b"[global]\nall-releases = :all:\n")
    assert scanned(index, rules_dir, {"PIP_CONFIG_FILE": str(conf)}, "pkg")[:2] == (1, [("pkg", "2.0b1")])


@pytest.mark.parametrize(
    ("conf", "env", "version"),
    [
        (b"[global]\nonly-final = pkg\nall-releases = pkg\n", {}, "2.0b1"),  # a section's later key wins
        (b"[global]\nall-releases = pkg\n[install]\nonly-final = pkg\n", {}, "1.0"),  # [install] later
        (b"[install]\nonly-final = :all:\n", {"PIP_ALL_RELEASES": "pkg"}, "2.0b1"),  # the environment last
    ],
)
def test_pip_conf_sections_then_the_environment(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, conf: bytes, env: dict[str, str], version: str
) -> None:
    env = {"PIP_CONFIG_FILE": str(write(tmp_path / "pip.conf", conf)), **env}
    assert scanned(index, rules_dir, env, "pkg")[1] == [("pkg", version)]


def test_only_final_leaves_no_pre_release_a_candidate(index: FakeIndex, rules_dir: Path) -> None:
    """pip 26: "Could not find a final version that satisfies the requirement pkg==2.0b1"."""
    code, versions, stderr = scanned(index, rules_dir, {"PIP_ONLY_FINAL": "PKG"}, "pkg==2.0b1")
    assert (code, versions) == (2, [])
    assert "has no final version 2.0b1 (it is a pre-release); pip's only-final" in stderr
    code, _, stderr = scanned(index, rules_dir, {"PIP_ONLY_FINAL": ":all:"}, "onlypre")
    assert code == 2
    assert "'onlypre' has no installable final release" in stderr


def test_pre_with_release_control_is_a_usage_error(index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    """pip 26: "--pre cannot be used with --all-releases or --only-final."; here, where each came from."""
    conf = write(tmp_path / "pip.conf", b"[global]\npre = true\n")
    code, _, stderr = scanned(index, rules_dir, {"PIP_CONFIG_FILE": str(conf), "PIP_ONLY_FINAL": "x"}, "pkg")
    assert code == 2
    assert stderr.strip() == (
        f"error: pip's pre ({conf}) cannot be used with only-final (environment): pip refuses it "
        "(unset one of them for scan)"
    )
    code, _, stderr = scanned(index, rules_dir, {"PIP_ALL_RELEASES": "-pkg"}, "pkg")
    assert code == 2
    assert "pip's all-releases is '-pkg' (environment)" in stderr


def test_the_pre_oracle_pip_23_agrees(index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    """``pre`` alone is ``all-releases = :all:``: what the installed pip (which knows ``pre`` only) picks."""
    pip = pip_download(
        tmp_path / "pip", {"PIP_PRE": "1", "PIP_CONFIG_FILE": "/dev/null"}, "--index-url", index.url, "pkg"
    )
    assert pip.returncode == 0, pip.stderr
    assert [p.name for p in (tmp_path / "pip").iterdir()] == ["pkg-2.0b1-py3-none-any.whl"]
    assert scanned(index, rules_dir, {"PIP_PRE": "1"}, "pkg")[1] == [("pkg", "2.0b1")]


@pytest.mark.parametrize(
    ("lines", "env", "outcome"),
    [
        # In order over pip's settings, each line changing the finder's in place (not the first only).
        ("--only-final pkg\n--all-releases pkg\n", {}, (1, [("pkg", "2.0b1")])),
        ("--all-releases pkg\n--only-final=pkg\n", {}, (2, [])),
        ("--all-releases pkg\n", {"PIP_ONLY_FINAL": "pkg"}, (1, [("pkg", "2.0b1")])),
        # A --pre line adds :all: (no refusal): over only-final = :all:, not over a name.
        ("--pre\n", {"PIP_ONLY_FINAL": ":all:"}, (1, [("pkg", "2.0b1")])),
        ("--pre\n", {"PIP_ONLY_FINAL": "pkg"}, (2, [])),
    ],
)
def test_requirements_lines_as_pip_26_3_applies_them(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, lines: str, env: dict[str, str], outcome: tuple
) -> None:
    req = write(tmp_path / "requirements.txt", f"{lines}pkg==2.0b1\n".encode())
    code, versions, stderr = scanned(index, rules_dir, env, "-R", req)
    assert (code, versions) == outcome
    assert code == 1 or "pip's only-final allows no pre-release of it" in stderr  # not the line refused


@pytest.mark.parametrize(
    ("line", "env"),
    [("--all-releases pkg\n", {"PIP_ONLY_FINAL": ":all:"}), ("--pre\n", {})],  # --pre: ignored before too
)
def test_a_requirements_line_applies_to_bare_names_too(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, line: str, env: dict[str, str]
) -> None:
    req = write(tmp_path / "requirements.txt", f"{line}other==1.0\n".encode())
    assert scanned(index, rules_dir, env, "pkg", "-R", req)[:2] == (1, [("pkg", "2.0b1"), ("other", "1.0")])


def test_a_lock_files_entries_are_unaffected(index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    """uv does not read pip's settings: its entry's pre-release is what it installs."""
    entry = f'[[package]]\nname = "pkg"\nversion = "2.0b1"\nsource = {{ registry = "{index.url}" }}\n'
    lock = write(tmp_path / "uv.lock", entry.encode())
    assert scanned(index, rules_dir, {"PIP_ONLY_FINAL": ":all:"}, "-R", lock)[:2] == (1, [("pkg", "2.0b1")])
