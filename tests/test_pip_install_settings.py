"""pip's settings that decide which release and files ``pip install`` takes, beyond the indexes:
``no-binary``, ``only-binary``, ``prefer-binary`` and ``ignore-requires-python`` (``PIP_*``, pip.conf,
``-R`` lines) decide which files are pip's candidates, so which release a bare name installs. ``scan``
read none of them: with ``PIP_ONLY_BINARY=:all:`` (a common hardening) pip installs the newest release
that has a wheel, while ``scan pkg`` scanned a newer release of sdists only and reported it clean; under
``--hash`` with an ``--only-binary :all:`` line, an sdist listing an allowed digest kept the wheel pip
installs out of the scan. pip's ``constraint`` and ``requirement`` settings add files to every install:
the first are read now as pip reads them (``tests/test_pip_constraint_setting.py``), the second, whose
requirements pip installs too, are a usage error. Each case is held against the installed pip (23.2, which
reads these settings as pip 26.3 does; checked by hand with 26.3 too). ``PIP_*`` are cleared per test
(``conftest``)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.pipconfig import FormatControl, PipConfigError, pip_settings
from pip._internal.models.format_control import FormatControl as PipFormatControl

from tests.fakes.pypi import FakeFile, FakeIndex, tar_gz_bytes, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_review_pass42 import pip_download
from tests.test_version_choice_differential import BACKEND, PYPROJECT


def buildable_sdist(name: str, version: str) -> tuple[str, bytes]:
    """An sdist pip can prepare without the network (an in-tree backend that only writes metadata)."""
    stem = f"{name}-{version}"
    members = {"backend.py": BACKEND, "pyproject.toml": PYPROJECT, "NV": f"{name} {version}".encode()}
    return f"{stem}.tar.gz", tar_gz_bytes({f"{stem}/{path}": data for path, data in members.items()})


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    """``pkg``: 1.0 a wheel and an sdist, 2.0 an sdist only (malicious); ``wheely``: 1.0 an sdist, 2.0 a
    wheel only (malicious); ``rp``: 1.0 a wheel, 2.0 a wheel for Python 3.99+ only (malicious);
    ``sdonly``: 1.0 an sdist only."""
    fake_index.add(
        "pkg", wheel("pkg", "1.0", CLEAN), buildable_sdist("pkg", "1.0"), buildable_sdist("pkg", "2.0")
    )
    fake_index.add("wheely", buildable_sdist("wheely", "1.0"), wheel("wheely", "2.0", BAD))
    fake_index.add(
        "rp", wheel("rp", "1.0", CLEAN), FakeFile(*wheel("rp", "2.0", BAD), requires_python=">=3.99")
    )
    fake_index.add("sdonly", buildable_sdist("sdonly", "1.0"))
    return fake_index


def pip_version(index: FakeIndex, tmp_path: Path, env: dict[str, str], project: str) -> str | None:
    """The version of the file pip downloads for ``project`` under ``env``, None when it fails."""
    into = tmp_path / f"pip-{project}-{len(list(tmp_path.iterdir()))}"
    done = pip_download(into, env, "--no-build-isolation", "--index-url", index.url, project)
    if done.returncode != 0:
        return None
    (file,) = into.iterdir()
    return file.name.split("-")[1].removesuffix(".tar.gz")


@pytest.mark.parametrize(
    ("settings", "pkg", "wheely", "rp"),
    [
        ({}, "2.0", "2.0", "1.0"),
        ({"PIP_ONLY_BINARY": ":all:"}, "1.0", "2.0", "1.0"),
        ({"PIP_ONLY_BINARY": "PKG"}, "1.0", "2.0", "1.0"),  # names canonicalized
        ({"PIP_ONLY_BINARY": ":all:", "PIP_NO_BINARY": "wheely"}, "1.0", "1.0", "1.0"),  # a name over :all:
        ({"PIP_NO_BINARY": ":all:"}, "2.0", "1.0", None),  # rp has no sdist: pip installs nothing
        ({"PIP_PREFER_BINARY": "1"}, "1.0", "2.0", "1.0"),
        ({"PIP_PREFER_BINARY": "yes", "PIP_NO_BINARY": "pkg"}, "2.0", "2.0", "1.0"),
        ({"PIP_IGNORE_REQUIRES_PYTHON": "true"}, "2.0", "2.0", "2.0"),
        ({"conf": "[global]\nonly-binary = :all:\n"}, "1.0", "2.0", "1.0"),
        ({"conf": "[global]\nonly-binary = :all:\nno-binary = :all:\n"}, "2.0", "1.0", None),  # in order
        ({"conf": "[global]\nprefer-binary = on\n", "PIP_PREFER_BINARY": "off"}, "2.0", "2.0", "1.0"),
    ],
)
def test_a_bare_name_scans_the_release_pip_installs_under_its_binary_settings(
    index: FakeIndex,
    tmp_path: Path,
    rules_dir: Path,
    settings: dict[str, str],
    pkg: str,
    wheely: str,
    rp: str | None,
) -> None:
    # `pip download`, the oracle, reads pip.conf's [global] (and [download], never [install]).
    env = {k: v for k, v in settings.items() if k != "conf"}
    conf = write(tmp_path / "pip.conf", settings.get("conf", "").encode())
    env["PIP_CONFIG_FILE"] = str(conf)
    for project, expected in (("pkg", pkg), ("wheely", wheely), ("rp", rp)):
        assert pip_version(index, tmp_path, env, project) == expected, (project, settings)
        result, report = scan(project, "-r", rules_dir, "--index-url", index.url, env={**env})
        if expected is None:
            assert result.exit_code == 2, result.output
            assert "no-binary" in result.stderr and "no installable release" in result.stderr
            continue
        assert [t["version"] for t in report["targets"]] == [expected], (project, settings, result.stderr)
        assert result.exit_code == (1 if "2.0" == expected and project != "pkg" else 0), result.output


def test_only_binary_with_no_wheel_is_refused_as_pip_finds_nothing(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_ONLY_BINARY": "sdonly"}
    assert pip_version(index, tmp_path, env, "sdonly") is None
    result, _ = scan("sdonly", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 2
    assert "only-binary lets in: its sdists are no candidates" in result.stderr


def test_under_hashes_an_only_binary_line_keeps_the_wheel_pip_installs(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The index lists the wheel's sha256 wrong, the sdist's right, and the requirement allows both: pip
    keeps only the sdist (an allowed digest listed) unless ``only-binary`` makes the sdist no candidate;
    then no candidate lists an allowed digest, pip keeps them all and installs the wheel, its bytes matching
    the requirement's hash. ``scan`` scanned the sdist alone (exit 0) where pip installs the wheel."""
    wheel_name, wheel_bytes = wheel("pkg", "1.0", BAD)
    sdist_name, sdist_bytes = buildable_sdist("pkg", "1.0")
    fake_index.add(
        "pkg", FakeFile(wheel_name, wheel_bytes, listed_sha256="0" * 64), (sdist_name, sdist_bytes)
    )
    hashes = " ".join(f"--hash=sha256:{hashlib.sha256(b).hexdigest()}" for b in (wheel_bytes, sdist_bytes))
    for option in ("--only-binary :all:", "--only-binary=pkg"):
        requirements = write(tmp_path / "requirements.txt", f"{option}\npkg==1.0 {hashes}\n".encode())
        into = tmp_path / f"pip-{option[-3:]}"
        done = pip_download(
            into, {"PIP_CONFIG_FILE": "/dev/null"}, "--index-url", fake_index.url, "-r", str(requirements)
        )
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in into.iterdir()) == [wheel_name]
        result, report = scan("-R", requirements, "-r", rules_dir, "--index-url", fake_index.url, env={})
        scanned = [d["name"] for t in report["targets"] for d in t["distributions"]]
        assert wheel_name in scanned and result.exit_code == 1, (option, result.output)


def test_format_control_values_are_read_as_pips_own_code_reads_them() -> None:
    """At random, sequences of values for the two settings, against pip's ``FormatControl``."""
    rng = random.Random(61)
    words = ["foo", "Foo_Bar", "foo-bar", "bar", ":all:", ":none:", " foo", "", "-x"]
    for _ in range(3000):
        ours, theirs = FormatControl(), PipFormatControl(set(), set())
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(["no-binary", "only-binary"])
            value = ",".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
            target, other = (
                (theirs.no_binary, theirs.only_binary)
                if key == "no-binary"
                else (theirs.only_binary, theirs.no_binary)
            )
            try:
                PipFormatControl.handle_mutual_excludes(value, target, other)
            except Exception:
                with pytest.raises(PipConfigError):
                    ours.apply(key, value, "test")
                break
            ours = ours.apply(key, value, "test")
            assert (ours.no_binary, ours.only_binary) == (theirs.no_binary, theirs.only_binary), value
            for name in ("foo", "foo-bar", "bar", "baz"):
                for wheel_file in (True, False):
                    allowed = "binary" if wheel_file else "source"
                    assert ours.takes(name, wheel=wheel_file) == (allowed in theirs.get_allowed_formats(name))


def test_a_setting_pip_refuses_is_a_usage_error() -> None:
    with pytest.raises(PipConfigError, match=r"pip's only-binary is '-x' \(environment\)"):
        pip_settings({"PIP_CONFIG_FILE": "/dev/null", "PIP_ONLY_BINARY": "-x"}, Path("/nonexistent"))
    with pytest.raises(PipConfigError, match="prefer-binary is 'maybe'"):
        pip_settings({"PIP_CONFIG_FILE": "/dev/null", "PIP_PREFER_BINARY": "maybe"}, Path("/nonexistent"))


@pytest.mark.parametrize("key", ["PIP_CONSTRAINT", "PIP_REQUIREMENT"])
def test_pips_constraint_and_requirement_files_are_a_usage_error_not_a_wrong_release(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, key: str
) -> None:
    """pip reads the files of its ``constraint``/``requirement`` settings into every install: with one that
    pins ``wheely==1.0``, pip installs 1.0 where ``scan wheely`` scanned 2.0 (clean or not, another release).
    ``scan`` reads the constraint files as pip does (``scan wheely``: 1.0; a pin they do not admit is a
    usage error, as pip refuses it); the requirement files, whose requirements pip installs too, are a
    usage error naming the setting. Neither matters for a lock file's entry (its installer does not read
    them)."""
    pinned = write(tmp_path / "pins.txt", b"wheely==1.0\n")
    env = {"PIP_CONFIG_FILE": "/dev/null", key: f"{pinned}"}
    assert pip_version(index, tmp_path, env, "wheely") == "1.0"
    for target, version in (("wheely", "1.0"), ("wheely==2.0", None)):
        result, report = scan(target, "-r", rules_dir, "--index-url", index.url, env={**env})
        if key == "PIP_REQUIREMENT":
            assert result.exit_code == 2
            assert f"pip's requirement (environment): {pinned}: pip installs these files'" in result.stderr
        elif version is None:
            assert pip_version(index, tmp_path, env, target) is None
            assert result.exit_code == 2, result.output
            assert "pip's constraints do not admit wheely==2.0" in result.stderr
        else:
            assert [t["version"] for t in report["targets"]] == [version], result.output
            assert result.exit_code == 0, result.output
    [locked] = [f for f in index.projects["wheely"] if f.filename.endswith(".whl")]
    lock = write(
        tmp_path / "poetry.lock",
        f'[[package]]\nname = "wheely"\nversion = "2.0"\n'
        f'files = [{{file = "{locked.filename}", hash = "sha256:{locked.sha256}"}}]\n'.encode(),
    )
    result, _ = scan("-R", lock, "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 1, result.output  # scanned: the malicious 2.0 wheel
