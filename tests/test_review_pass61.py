"""Review pass 61: pip's ``no-binary``, ``only-binary``, ``prefer-binary`` (environment, pip.conf, ``-R``
lines) against the installed pip (23.2, CI's oracle), end to end: ``scan`` (a real subprocess) is clean only
when every file ``pip download --no-deps`` takes under the same settings was scanned, by name and SHA-256;
exit 2 or 3 is acceptable where it says why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fakes.pypi import MARKER_RULE, FakeFile, FakeIndex, sdist, wheel
from tests.test_requirements_end_to_end_pip import scan_subprocess
from tests.test_review_pass42 import _metadata_wheel, pip_download
from tests.test_version_choice_differential import BACKEND, PIP_DOWNLOAD, PIP_ENV, PYPROJECT, run_pip


def _sdist(name: str, version: str) -> FakeFile:
    """An sdist pip can prepare (an in-tree build backend: pip builds without isolation, the fake index
    has no setuptools, and the interpreter may lack ``wheel``)."""
    members = {"pyproject.toml": PYPROJECT, "backend.py": BACKEND, "NV": f"{name} {version}".encode()}
    return FakeFile(*sdist(name, version, members))


def _wheel(name: str, version: str, requires: str = "") -> FakeFile:
    """A wheel; its METADATA declaring ``requires`` when given."""
    if requires:
        return FakeFile(*_metadata_wheel(name, version, requires))
    return FakeFile(*wheel(name, version, {f"{name.replace('-', '_')}/__init__.py": b"pass\n"}))


def _pip(work: Path, url: str, args: list[str], env: dict[str, str]) -> tuple[int, set[tuple[str, str]], str]:
    """``pip download --no-deps ARGS``' exit code, the ``(name, sha256)`` it downloaded, its output's end."""
    dest = work / "pip"
    ((code, output),) = run_pip(work, [([*PIP_DOWNLOAD, "-d", str(dest), "--index-url", url, *args], env)])
    files = (
        {(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in dest.iterdir()}
        if dest.exists()
        else set()
    )
    return code, files, output


def _scan(
    work: Path, url: str, args: list[str], env: dict[str, str]
) -> tuple[int, set[tuple[str, str]], str]:
    """``scan ARGS``' exit code, the ``(name, sha256)`` it scanned, its stderr (pip's settings: ``env``)."""
    rules = work / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "marker.yar").write_text(MARKER_RULE)
    return scan_subprocess(args, work, url, rules, env)


def _judge(
    work: Path, index: FakeIndex, pip_args: list[str], scan_args: list[str], env: dict[str, str]
) -> tuple[set[tuple[str, str]], int, set[tuple[str, str]], str]:
    """pip's files, and scan's exit code, scanned files and stderr; asserts the yardstick."""
    env = {**PIP_ENV, **env}
    pip_code, pip_files, _ = _pip(work, index.url, pip_args, env)
    code, scanned, stderr = _scan(work, index.url, scan_args, env)
    assert "Traceback" not in stderr and code in (0, 1, 2, 3), stderr
    if pip_code == 0 and code in (0, 1):
        assert pip_files <= scanned, (
            f"pip {sorted(pip_files)}, scan (exit {code}) {sorted(scanned)}\n{stderr}"
        )
    return pip_files, code, scanned, stderr


# --------------------------------------------------------------- -R with --hash: pip's hash fallback


def _hashed_pair(index: FakeIndex, wrong: str) -> tuple[FakeFile, FakeFile, str]:
    """pkg 1.0: an sdist and a wheel, the ``wrong`` one ("wheel"/"sdist") listed with a wrong sha256; the
    requirement line allowing both files' real digests."""
    source, binary = _sdist("pkg", "1.0"), _wheel("pkg", "1.0")
    (binary if wrong == "wheel" else source).listed_sha256 = "0" * 64
    index.add("pkg", source, binary)
    return source, binary, f"pkg==1.0 --hash=sha256:{source.sha256} --hash=sha256:{binary.sha256}\n"


@pytest.mark.parametrize(
    ("lines", "env", "conf"),
    [
        ("--only-binary :all:\n", {}, ""),
        ("--only-binary=PKG\n", {}, ""),
        ("", {"PIP_ONLY_BINARY": ":all:"}, ""),
        ("", {}, "[global]\nonly-binary = pkg\n"),
    ],
)
def test_only_binary_keeps_the_wheel_listed_wrong_as_pips_one_candidate(
    tmp_path: Path, fake_index: FakeIndex, lines: str, env: dict[str, str], conf: str
) -> None:
    """Under only-binary the sdist is no candidate: its allowed digest does not turn pip's fallback off, so
    pip keeps the wheel (listed wrong), downloads it and installs it (its bytes match)."""
    _, binary, line = _hashed_pair(fake_index, "wheel")
    if conf:
        (tmp_path / "pip.conf").write_text(conf)
        env = {**env, "PIP_CONFIG_FILE": str(tmp_path / "pip.conf")}
    (tmp_path / "req.txt").write_text(lines + line)
    pip_files, code, scanned, _ = _judge(
        tmp_path, fake_index, ["-r", str(tmp_path / "req.txt")], ["-R", str(tmp_path / "req.txt")], env
    )
    assert pip_files == {(binary.filename, binary.sha256)}
    assert code == 0 and (binary.filename, binary.sha256) in scanned


@pytest.mark.parametrize(("lines", "env"), [("--no-binary :all:\n", {}), ("", {"PIP_NO_BINARY": "pkg"})])
def test_no_binary_keeps_the_sdist_listed_wrong_as_pips_one_candidate(
    tmp_path: Path, fake_index: FakeIndex, lines: str, env: dict[str, str]
) -> None:
    """The mirror: under no-binary pip's only candidate is the sdist (listed wrong): pip downloads it."""
    source, _, line = _hashed_pair(fake_index, "sdist")
    (tmp_path / "req.txt").write_text(lines + line)
    req = str(tmp_path / "req.txt")
    pip_files, code, scanned, _ = _judge(tmp_path, fake_index, ["-r", req], ["-R", req], env)
    assert pip_files == {(source.filename, source.sha256)}
    assert code == 0 and (source.filename, source.sha256) in scanned


def test_only_binary_with_the_wheels_hash_missing_is_no_clean_verdict(
    tmp_path: Path, fake_index: FakeIndex
) -> None:
    """Only the sdist's digest allowed, only the wheel a candidate: pip downloads the wheel and refuses its
    bytes (hash mismatch). Nothing pip would install was scanned: no clean verdict either."""
    source, _, _ = _hashed_pair(fake_index, "wheel")
    (tmp_path / "req.txt").write_text(f"--only-binary :all:\npkg==1.0 --hash=sha256:{source.sha256}\n")
    req = str(tmp_path / "req.txt")
    pip_code, _, output = _pip(tmp_path, fake_index.url, ["-r", req], PIP_ENV)
    assert pip_code != 0 and "THESE PACKAGES DO NOT MATCH THE HASHES" in output
    code, _, stderr = _scan(tmp_path, fake_index.url, ["-R", req], PIP_ENV)
    assert code in (2, 3), stderr


# --------------------------------------------------------------- which release a bare name is


@pytest.fixture
def releases(fake_index: FakeIndex) -> FakeIndex:
    """``foo-bar``: 2.0 a wheel only, 1.0 an sdist only (no-binary: 1.0); ``baz``: 2.0 an sdist only, 1.0 a
    wheel only (only-binary and prefer-binary: 1.0)."""
    fake_index.add("foo-bar", _wheel("foo-bar", "2.0"), _sdist("foo-bar", "1.0"))
    fake_index.add("baz", _sdist("baz", "2.0"), _wheel("baz", "1.0"))
    return fake_index


def _versions(files: set[tuple[str, str]]) -> list[str]:
    return sorted(name for name, _ in files)


@pytest.mark.parametrize(
    ("env", "conf", "expected"),
    [
        ({"PIP_NO_BINARY": ":all:"}, "", ["baz-2.0.tar.gz", "foo_bar-1.0.tar.gz"]),
        ({"PIP_ONLY_BINARY": ":all:"}, "", ["baz-1.0-py3-none-any.whl", "foo_bar-2.0-py3-none-any.whl"]),
        ({"PIP_PREFER_BINARY": "1"}, "", ["baz-1.0-py3-none-any.whl", "foo_bar-2.0-py3-none-any.whl"]),
        # Names canonicalized; the environment after [global] (no-binary Foo_Bar leaves only-binary).
        (
            {"PIP_NO_BINARY": "Foo_Bar"},
            "[global]\nonly-binary = foo-bar,baz\n",
            ["baz-1.0-py3-none-any.whl", "foo_bar-1.0.tar.gz"],
        ),
        (
            {"PIP_ONLY_BINARY": ":none:"},
            "[global]\nonly-binary = :all:\n",
            ["baz-2.0.tar.gz", "foo_bar-2.0-py3-none-any.whl"],
        ),
        (
            {"PIP_PREFER_BINARY": "no"},
            "[global]\nprefer-binary = yes\n",
            ["baz-2.0.tar.gz", "foo_bar-2.0-py3-none-any.whl"],
        ),
        (
            {"PIP_NO_BINARY": ""},
            "[global]\nno-binary = :all:\n",
            ["baz-2.0.tar.gz", "foo_bar-1.0.tar.gz"],
        ),  # empty: unset
        ({}, "[global]\nno-binary = foo.bar\n", ["baz-2.0.tar.gz", "foo_bar-1.0.tar.gz"]),
    ],
)
def test_a_bare_names_release_under_pips_format_settings(
    tmp_path: Path, releases: FakeIndex, env: dict[str, str], conf: str, expected: list[str]
) -> None:
    if conf:
        (tmp_path / "pip.conf").write_text(conf)
        env = {**env, "PIP_CONFIG_FILE": str(tmp_path / "pip.conf")}
    pip_files, code, scanned, stderr = _judge(tmp_path, releases, ["foo-bar", "baz"], ["foo-bar", "baz"], env)
    assert _versions(pip_files) == expected
    assert code == 0 and _versions(scanned) == expected, stderr


def test_install_section_over_global_as_pip_install_reads_it(tmp_path: Path, releases: FakeIndex) -> None:
    """pip install reads [install] after [global] (pip download reads [download]: the oracle's copy)."""
    conf = "[global]\nonly-binary = foo-bar\n[{}]\nno-binary = foo-bar\n"
    (tmp_path / "scan.conf").write_text(conf.format("install"))
    (tmp_path / "pip.conf").write_text(conf.format("download"))
    env = {**PIP_ENV, "PIP_CONFIG_FILE": str(tmp_path / "pip.conf")}
    pip_code, pip_files, _ = _pip(tmp_path, releases.url, ["foo-bar"], env)
    assert pip_code == 0 and _versions(pip_files) == ["foo_bar-1.0.tar.gz"]
    code, scanned, stderr = _scan(
        tmp_path, releases.url, ["foo-bar"], {**env, "PIP_CONFIG_FILE": str(tmp_path / "scan.conf")}
    )
    assert code == 0 and scanned == pip_files, stderr


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # pip applies its environment's keys in the environment's order, each changing one FormatControl.
        (
            ("PIP_NO_BINARY", ":all:"),
            ("PIP_ONLY_BINARY", "baz"),
            ["baz-1.0-py3-none-any.whl", "foo_bar-1.0.tar.gz"],
        ),
        (("PIP_ONLY_BINARY", "baz"), ("PIP_NO_BINARY", ":all:"), ["baz-2.0.tar.gz", "foo_bar-1.0.tar.gz"]),
    ],
)
def test_environment_keys_in_the_environments_order(
    tmp_path: Path, releases: FakeIndex, first: tuple[str, str], second: tuple[str, str], expected: list[str]
) -> None:
    env = dict([first, second])
    pip_files, code, scanned, stderr = _judge(tmp_path, releases, ["foo-bar", "baz"], ["foo-bar", "baz"], env)
    assert _versions(pip_files) == expected
    assert code == 0 and _versions(scanned) == expected, stderr


def test_a_requirements_files_lines_apply_to_bare_names_too(tmp_path: Path, releases: FakeIndex) -> None:
    """``pip download baz -r req.txt``: the file's --prefer-binary and --no-binary change the finder's."""
    (tmp_path / "req.txt").write_text("--prefer-binary\n--no-binary foo_bar\nfoo-bar==1.0\n")
    req = str(tmp_path / "req.txt")
    pip_files, code, scanned, stderr = _judge(tmp_path, releases, ["baz", "-r", req], ["baz", "-R", req], {})
    assert _versions(pip_files) == ["baz-1.0-py3-none-any.whl", "foo_bar-1.0.tar.gz"]
    assert code == 0 and _versions(scanned) == _versions(pip_files), stderr


@pytest.mark.parametrize(
    ("env", "lines"),
    [({"PIP_NO_BINARY": "-foo"}, ""), ({}, "--only-binary -foo\n"), ({}, "--no-binary=-x\n")],
)
def test_a_value_starting_with_a_dash_is_refused_as_pip_refuses_it(
    tmp_path: Path, releases: FakeIndex, env: dict[str, str], lines: str
) -> None:
    (tmp_path / "req.txt").write_text(lines + "baz==2.0\n")
    req = str(tmp_path / "req.txt")
    # pip 23.2 raises CommandError ("--no-binary / --only-binary option requires 1 argument.") out of its
    # main for the environment's: a real process, not the driver.
    pip = pip_download(tmp_path / "pip", {**PIP_ENV, **env}, "--index-url", releases.url, "-r", req)
    assert pip.returncode != 0 and "option requires 1 argument" in pip.stderr, pip.stderr
    code, _, stderr = _scan(tmp_path, releases.url, ["-R", req], {**PIP_ENV, **env})
    assert code == 2 and "-" in stderr and len(stderr.strip().splitlines()) == 1, stderr


# --------------------------------------------------------------- dependency notes under no-binary


def test_under_no_binary_the_sdists_dependencies_are_unknown(tmp_path: Path, fake_index: FakeIndex) -> None:
    """A wheel declaring no dependency beside an sdist: under no-binary pip builds the sdist (what it
    declares is known once built): the note must not call pkg's dependencies known."""
    fake_index.add("pkg", _sdist("pkg", "1.0"), _wheel("pkg", "1.0"))
    (tmp_path / "req.txt").write_text("--no-binary pkg\npkg==1.0\n")
    req = str(tmp_path / "req.txt")
    pip_files, code, _, stderr = _judge(tmp_path, fake_index, ["-r", req], ["-R", req], {})
    assert _versions(pip_files) == ["pkg-1.0.tar.gz"]
    assert code == 0
    assert "pkg==1.0 (pkg-1.0.tar.gz: an sdist's are known once built)" in stderr
    # Without no-binary pip takes the wheel, which declares nothing: no note.
    (tmp_path / "req.txt").write_text("pkg==1.0\n")
    assert "known once built" not in _scan(tmp_path, fake_index.url, ["-R", req], PIP_ENV)[2]


# --------------------------------------------------------------- pip 26.3's uploaded-prior-to


@pytest.mark.parametrize(
    ("env", "missing", "outcome"),
    [
        # pip 26.3's LinkEvaluator.evaluate_link: no-binary leaves a wheel out before the upload-time check
        # (pip downloads the sdist), only-binary an sdist after it ("ERROR: Index ... does not provide
        # upload-time metadata."): checked by hand with pip 26.3's wheel against this index.
        ({"PIP_NO_BINARY": "Pkg"}, "wheel", (0, ["pkg-1.0.tar.gz"])),
        ({"PIP_ONLY_BINARY": ":all:"}, "sdist", (3, [])),
    ],
)
def test_uploaded_prior_to_with_a_file_lacking_its_upload_time_as_pip_26_3(
    tmp_path: Path, fake_index: FakeIndex, env: dict[str, str], missing: str, outcome: tuple[int, list[str]]
) -> None:
    source, binary = _sdist("pkg", "1.0"), _wheel("pkg", "1.0")
    for file in (source, binary):
        file.upload_time = "2024-01-01T00:00:00Z"
    fake_index.add("pkg", source, binary)
    (source if missing == "sdist" else binary).upload_time = None  # published without one
    env = {**PIP_ENV, **env, "PIP_UPLOADED_PRIOR_TO": "2025-01-01"}
    code, scanned, stderr = _scan(tmp_path, fake_index.url, ["pkg==1.0"], env)
    assert (code, _versions(scanned)) == outcome, stderr
