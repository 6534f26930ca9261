"""pip 26's ``--no-require-hashes`` (a requirements file's line, ``PIP_NO_REQUIRE_HASHES``,
``no-require-hashes`` in pip.conf): a ``--hash`` on one line no longer turns on hash-checking mode for every
line. ``scan -R`` refused the line as an unknown option (exit 2) and ignored the setting (so a file pip 26
installs was refused: a line without ``--hash`` in hash-checking mode). What pip 26.3 does was checked by hand
with its wheel (``pip download`` against this fake index), and is pinned here: CI's pip (23.2) does not know
the option. pip 26.3 still checks a hashed line's hashes with the mode off (it picks the file they allow, and
refuses a download that matches none: "THESE PACKAGES DO NOT MATCH THE HASHES"), takes a line without hashes
whatever its file, and refuses the option with ``--require-hashes`` ("mutually exclusive"). ``PIP_*`` are
cleared per test (``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.pipconfig import PipConfigError, pip_settings

from tests.fakes.pypi import FakeIndex, sdist, wheel, write
from tests.test_find_links import BAD, CLEAN, scan


@pytest.fixture
def index(fake_index: FakeIndex) -> tuple[FakeIndex, str]:
    """``pkg`` and ``other`` 1.0: a clean wheel, a malicious sdist each; and the sha256 of pkg's wheel."""
    pkg_wheel = wheel("pkg", "1.0", CLEAN)
    fake_index.add("pkg", pkg_wheel, sdist("pkg", "1.0", BAD))
    fake_index.add("other", wheel("other", "1.0", CLEAN), sdist("other", "1.0", BAD))
    return fake_index, hashlib.sha256(pkg_wheel[1]).hexdigest()


def scanned(index: FakeIndex, rules_dir: Path, env: dict[str, str], *files: Path) -> tuple[int, dict, str]:
    """``scan -R FILES``' exit code, ``{name: sorted file names scanned}`` and its stderr."""
    args = [a for path in files for a in ("-R", path)]
    result, report = scan(*args, "-r", rules_dir, "--index-url", index.url, env={**env})
    names = {t["name"]: sorted(d["name"] for d in t["distributions"]) for t in report.get("targets", [])}
    return result.exit_code, names, result.stderr


BOTH = ["other-1.0-py3-none-any.whl", "other-1.0.tar.gz"]


def test_a_no_require_hashes_line_keeps_a_hash_from_requiring_hashes_everywhere(
    index: tuple[FakeIndex, str], tmp_path: Path, rules_dir: Path
) -> None:
    """pip 26.3 downloads pkg's wheel (the file its hash allows) and other's sdist (an unhashed line: any
    file); scan refused the line (exit 2). Now: pkg's allowed wheel only, every file of other (its
    malicious sdist found)."""
    fake, digest = index
    requirements = write(
        tmp_path / "requirements.txt",
        f"--no-require-hashes\npkg==1.0 --hash=sha256:{digest}\nother==1.0\n".encode(),
    )
    code, names, stderr = scanned(fake, rules_dir, {}, requirements)
    assert (code, names) == (1, {"pkg": ["pkg-1.0-py3-none-any.whl"], "other": BOTH}), stderr


@pytest.mark.parametrize("where", ["environment", "pip.conf"])
def test_pips_no_require_hashes_setting(
    index: tuple[FakeIndex, str], tmp_path: Path, rules_dir: Path, where: str
) -> None:
    """``PIP_NO_REQUIRE_HASHES=1`` or pip.conf's ``no-require-hashes = true`` does what the line does (it
    was ignored: other's line without --hash refused, exit 2); the environment's false turns it off again
    over pip.conf's true (pip's booleans), and then the mode is on, as without it."""
    fake, digest = index
    requirements = write(
        tmp_path / "requirements.txt", f"pkg==1.0 --hash=sha256:{digest}\nother==1.0\n".encode()
    )
    conf = write(tmp_path / "pip.conf", b"[global]\nno-require-hashes = yes\n")
    env = {"PIP_NO_REQUIRE_HASHES": "1"} if where == "environment" else {"PIP_CONFIG_FILE": str(conf)}
    code, names, stderr = scanned(fake, rules_dir, env, requirements)
    assert (code, names) == (1, {"pkg": ["pkg-1.0-py3-none-any.whl"], "other": BOTH}), stderr
    code, _, stderr = scanned(fake, rules_dir, {**env, "PIP_NO_REQUIRE_HASHES": "off"}, requirements)
    assert code == 2 and f"{requirements}:2" in stderr and "--hash options" in stderr, stderr


def test_a_value_pip_does_not_read_as_a_boolean_is_refused() -> None:
    """pip 26.3: "maybe is not a valid value for no-require-hashes option" (exit 2); it was ignored."""
    with pytest.raises(PipConfigError, match=r"no-require-hashes is 'maybe' \(environment\): not a boolean"):
        pip_settings({"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_REQUIRE_HASHES": "maybe"}, Path("/nonexistent"))


@pytest.mark.parametrize(
    ("lines", "env", "named"),
    [
        (
            "--no-require-hashes\n",
            {"PIP_REQUIRE_HASHES": "1"},
            ("require-hashes (environment)", "--no-require-hashes (R:1)"),
        ),
        (
            "--require-hashes\n",
            {"PIP_NO_REQUIRE_HASHES": "1"},
            ("--require-hashes (R:1)", "no-require-hashes (environment)"),
        ),
        (
            "--require-hashes\n--no-require-hashes\n",
            {},
            ("--require-hashes (R:1)", "--no-require-hashes (R:2)"),
        ),
        (
            "",
            {"PIP_REQUIRE_HASHES": "1", "PIP_NO_REQUIRE_HASHES": "1"},
            ("require-hashes (environment)", "no-require-hashes (environment)"),
        ),
    ],
)
def test_require_hashes_with_no_require_hashes_is_a_usage_error(
    index: tuple[FakeIndex, str],
    tmp_path: Path,
    rules_dir: Path,
    lines: str,
    env: dict[str, str],
    named: tuple,
) -> None:
    """pip 26.3: "--require-hashes and --no-require-hashes are mutually exclusive" wherever each is set.
    One line naming both and where (the line was refused as an unknown option, or ignored)."""
    fake, digest = index
    requirements = write(tmp_path / "requirements.txt", f"{lines}pkg==1.0 --hash=sha256:{digest}\n".encode())
    code, names, stderr = scanned(fake, rules_dir, env, requirements)
    first, second = (name.replace("R:", f"{requirements}:") for name in named)
    assert code == 2 and not names, stderr
    assert f"{first} and {second} are mutually exclusive" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_hash_matching_no_file_still_scans_nothing_of_the_release(
    index: tuple[FakeIndex, str], tmp_path: Path, rules_dir: Path
) -> None:
    """With the mode off pip 26.3 still checks a line's hashes: a wrong one, and it downloads the wheel and
    refuses it (hash mismatch). Not one file of pkg is allowed, so it is not scanned (incomplete),
    while other, without hashes, is."""
    fake, _ = index
    requirements = write(
        tmp_path / "requirements.txt",
        f"--no-require-hashes\npkg==1.0 --hash=sha256:{'0' * 64}\nother==1.0\n".encode(),
    )
    result, report = scan("-R", requirements, "-r", rules_dir, "--index-url", fake.url, env={})
    pkg, other = report["targets"]
    assert result.exit_code == 1 and other["verdict"] == "findings", result.output  # other's sdist
    assert (pkg["verdict"], pkg["distributions"]) == ("incomplete", []) and "no file of pkg==1.0" in pkg[
        "error"
    ]


def test_an_unpinned_line_is_refused_as_before(
    index: tuple[FakeIndex, str], tmp_path: Path, rules_dir: Path
) -> None:
    """pip 26.3 installs ``pkg>=1.0 --hash=...`` with the mode off (the mode would refuse it); scan scans
    pinned releases only and refuses it, naming the line (not the option)."""
    fake, digest = index
    requirements = write(
        tmp_path / "requirements.txt", f"--no-require-hashes\npkg>=1.0 --hash=sha256:{digest}\n".encode()
    )
    code, _, stderr = scanned(fake, rules_dir, {}, requirements)
    assert code == 2 and f"{requirements}:2: pkg>=1.0 is not pinned to one version" in stderr, stderr
