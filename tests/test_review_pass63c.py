"""Review pass 63c: ``--hash`` options on pip's constraint lines (``PIP_CONSTRAINT``, ``-c`` lines of ``-R``
files). pip 26.3 checks a requirement without hashes of its own against its constraints' hashes (those all
of them allow), a requirement with its own against those alone, and a hashed constraint turns hash-checking
mode on for every requirement (not with ``--no-require-hashes``). scan refused any ``-R`` pin under a hashed
constraint (exit 2) and let a hashed constraint of another name leave the mode off. Held against the
installed pip (23.2) where it agrees with 26.3; the rest checked by hand with pip 26.3's wheel (``pip
download --no-deps`` against this fake index). ``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, sdist, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_no_require_hashes import scanned
from tests.test_review_pass62 import pip_files

ONE_WHEEL = wheel("foo_bar", "1.0", CLEAN)
TWO_WHEEL = wheel("foo_bar", "2.0", BAD)
ONE = f"sha256:{hashlib.sha256(ONE_WHEEL[1]).hexdigest()}"
TWO = f"sha256:{hashlib.sha256(TWO_WHEEL[1]).hexdigest()}"


def foo_bar_and_baz(fake_index: FakeIndex) -> FakeIndex:
    """foo-bar 1.0 (a clean wheel, a malicious sdist) and 2.0 (malicious); baz 1.0 (clean)."""
    fake_index.add("foo-bar", ONE_WHEEL, sdist("foo_bar", "1.0", BAD), TWO_WHEEL)
    fake_index.add("baz", wheel("baz", "1.0", CLEAN))
    return fake_index


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    return foo_bar_and_baz(fake_index)


def _setup(tmp_path: Path, via: str, constraints: str, requirements: str) -> tuple[dict[str, str], Path]:
    """pip's environment and the -R file, the constraints read through ``PIP_CONSTRAINT`` or a ``-c``
    line."""
    written = write(tmp_path / "c.txt", constraints.encode())
    env = {"PIP_CONSTRAINT": str(written)} if via == "PIP_CONSTRAINT" else {}
    head = "" if env else f"-c {written}\n"
    return env, write(tmp_path / "req.txt", (head + requirements).encode())


@pytest.mark.parametrize("via", ["PIP_CONSTRAINT", "-c line"])
def test_a_pin_with_its_own_hashes_is_scanned_with_them(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, via: str
) -> None:
    """pip (23.2 and 26.3) downloads ``foo-bar==2.0 --hash=<2.0's>`` under a constraint hashed for 1.0: a
    requirement's own hashes decide. scan refused it (exit 2: "has --hash options")."""
    env, req = _setup(tmp_path, via, f"foo-bar --hash={ONE}\n", f"foo-bar==2.0 --hash={TWO}\n")
    assert pip_files(index, tmp_path, env, "-r", str(req)) == ["foo_bar-2.0-py3-none-any.whl"]
    code, names, stderr = scanned(index, rules_dir, env, req)
    assert (code, names) == (1, {"foo-bar": ["foo_bar-2.0-py3-none-any.whl"]}), stderr


@pytest.mark.parametrize("via", ["PIP_CONSTRAINT", "-c line"])
def test_a_pin_without_hashes_takes_its_constraints_hashes(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, via: str
) -> None:
    """pip 26.3 (by hand) downloads ``foo-bar==1.0`` under a constraint hashed for 1.0's wheel: that wheel
    only (pip 23.2 refuses: the line has no hashes). scan refused it (exit 2). Now the wheel alone is
    scanned, not the malicious sdist the hash does not allow."""
    env, req = _setup(tmp_path, via, f"foo-bar --hash={ONE}\n", "foo-bar==1.0\n")
    code, names, stderr = scanned(index, rules_dir, env, req)
    assert (code, names) == (0, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl"]}), stderr


def test_a_pin_none_of_whose_files_has_its_constraints_hashes_is_not_scanned(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip 26.3 (by hand) refuses ``foo-bar==2.0`` under a constraint hashed for 1.0 ("THESE PACKAGES DO NOT
    MATCH THE HASHES"), with ``--no-require-hashes`` too, and downloads baz (no hashes, the mode off).
    scan refused the whole file (exit 2)."""
    env, req = _setup(
        tmp_path, "PIP_CONSTRAINT", f"foo-bar --hash={ONE}\n", "--no-require-hashes\nfoo-bar==2.0\nbaz==1.0\n"
    )
    result, report = scan("-R", req, "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 3, result.output
    [foo, baz] = report["targets"]
    assert "no file of foo-bar==2.0 has a hash allowed" in foo["error"], foo
    assert (foo["verdict"], foo["distributions"], baz["verdict"]) == ("incomplete", [], "clean"), report


@pytest.mark.parametrize("via", ["PIP_CONSTRAINT", "-c line"])
def test_a_hashed_constraint_turns_hash_checking_mode_on(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, via: str
) -> None:
    """pip (23.2 and 26.3) refuses ``foo-bar==1.0`` without hashes under a constraint hashed for baz (a
    hashed constraint turns hash-checking mode on for every requirement): scan scanned it (exit 0)."""
    env, req = _setup(tmp_path, via, f"baz --hash={ONE}\n", "foo-bar==1.0\n")
    assert pip_files(index, tmp_path, env, "-r", str(req)) is None
    code, _, stderr = scanned(index, rules_dir, env, req)
    assert code == 2, stderr
    assert f"{req}:{1 if env else 2}: foo-bar==1.0: in hash-checking mode" in stderr, stderr
    assert "(turned on by --hash options of a constraint (" in stderr and "c.txt:1))" in stderr, stderr
    # A line of the constrained name takes its hashes; another still needs its own (pip 26.3 by hand).
    env, req = _setup(tmp_path, via, f"foo-bar --hash={ONE}\n", "foo-bar==1.0\nbaz==1.0\n")
    code, _, stderr = scanned(index, rules_dir, env, req)
    assert code == 2 and "baz==1.0: in hash-checking mode" in stderr and "foo-bar" not in stderr, stderr


def test_a_pin_takes_the_hashes_all_its_constraints_allow(tmp_path: Path) -> None:
    """pip 26.3 combines a name's constraints: only the hashes all of them allow (by hand: 1.0 refused under
    ``--hash=ONE --hash=TWO`` and ``--hash=TWO``); none left, the line has none (refused in hash-checking
    mode, as pip 26.3 refuses it). scan took no constraint's hashes."""
    from dragonfly_hybrid.pypi.pipconfig import PipSettings
    from dragonfly_hybrid.pypi.requirements import RequirementsError, read_pins

    req = write(tmp_path / "req.txt", b"-c c.txt\nfoo-bar==1.0\n")
    write(tmp_path / "c.txt", f"foo-bar --hash={ONE} --hash={TWO}\nfoo-bar --hash={TWO}\nbaz\n".encode())
    [pin] = read_pins([req], PipSettings()).pins
    assert pin.hashes == frozenset({TWO})
    write(tmp_path / "c.txt", f"foo-bar --hash={ONE}\nFoo_Bar --hash={TWO}\n".encode())
    with pytest.raises(RequirementsError, match=r"req\.txt:2: foo-bar==1\.0: in hash-checking mode"):
        read_pins([req], PipSettings())
