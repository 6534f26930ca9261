"""Review pass 64b: ``--hash`` on pip's constraint lines for names given on the command line, markers of
hashed constraints, and ``--hash`` on an option line of its own. pip 26.3 (by hand: ``pip download
--no-deps`` of its wheel against this fake index) checks ``foo==1.0`` given on the command line against its
constraints' hashes, picks a bare ``foo``'s newest release with an allowed file, and turns hash-checking mode
on for every command-line requirement once a constraint is hashed; it takes a hashed constraint's hashes
only where its marker holds. The installed pip (23.2) is the oracle where it agrees. ``PIP_*`` are cleared
per test (``conftest``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, write
from tests.test_find_links import scan
from tests.test_no_require_hashes import scanned
from tests.test_review_pass62 import pip_files
from tests.test_review_pass63c import ONE, TWO, foo_bar_and_baz


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    return foo_bar_and_baz(fake_index)


def _command_line(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, constraints: str, *args: str, **env: str
) -> tuple[int, dict[str, list[str]], str]:
    """``scan ARGS`` under ``PIP_CONSTRAINT`` holding ``constraints``: its exit code, ``{name: sorted file
    names scanned}`` and stderr."""
    written = write(tmp_path / "c.txt", constraints.encode())
    full = {"PIP_CONSTRAINT": str(written), **env}
    result, report = scan(*args, "-r", rules_dir, "--index-url", index.url, env={**full})
    names = {t["name"]: sorted(d["name"] for d in t["distributions"]) for t in report.get("targets", [])}
    return result.exit_code, names, result.stderr


def test_a_command_line_pin_takes_its_constraints_hashes(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip 26.3 downloads ``foo-bar==1.0`` under a constraint hashed for 1.0's wheel: that wheel only, not
    the malicious sdist; ``foo-bar==2.0`` it refuses (no file has the hash). scan refused both (exit 2)."""
    code, names, stderr = _command_line(index, tmp_path, rules_dir, f"foo-bar --hash={ONE}\n", "foo-bar==1.0")
    assert (code, names) == (0, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl"]}), stderr
    code, names, stderr = _command_line(index, tmp_path, rules_dir, f"foo-bar --hash={ONE}\n", "foo-bar==2.0")
    assert (code, names) == (3, {"foo-bar": []}), stderr


def test_a_bare_name_is_the_newest_release_with_an_allowed_file(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip 26.3 downloads 1.0's wheel for a bare ``foo-bar`` under a constraint hashed for it (2.0 is newer,
    but has no allowed file), and 2.0's under one allowing both; with ``PIP_NO_REQUIRE_HASHES`` the same.
    scan refused the name (exit 2)."""
    constraint = f"foo-bar --hash={ONE}\n"
    code, names, stderr = _command_line(index, tmp_path, rules_dir, constraint, "foo-bar")
    assert (code, names) == (0, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl"]}), stderr
    code, names, stderr = _command_line(
        index, tmp_path, rules_dir, constraint, "foo-bar", PIP_NO_REQUIRE_HASHES="1"
    )
    assert (code, names) == (0, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl"]}), stderr
    code, names, stderr = _command_line(
        index, tmp_path, rules_dir, f"foo-bar --hash={ONE} --hash={TWO}\n", "foo-bar"
    )
    assert (code, names) == (1, {"foo-bar": ["foo_bar-2.0-py3-none-any.whl"]}), stderr


def test_a_hashed_constraint_turns_hash_checking_mode_on_for_the_command_line(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip (23.2 and 26.3) refuses ``baz==1.0`` on the command line under a constraint hashed for foo-bar (the
    mode is on: baz has no hashes), and so under ``PIP_REQUIRE_HASHES``; scan scanned it (exit 0). pip 26.3
    takes it with ``PIP_NO_REQUIRE_HASHES``."""
    constraint = f"foo-bar --hash={ONE}\n"
    written = write(tmp_path / "c.txt", constraint.encode())
    assert pip_files(index, tmp_path, {"PIP_CONSTRAINT": str(written)}, "baz==1.0") is None
    code, _, stderr = _command_line(index, tmp_path, rules_dir, constraint, "baz==1.0")
    assert code == 2, stderr
    assert "baz==1.0: in hash-checking mode (turned on by --hash options of a constraint (" in stderr, stderr
    code, names, stderr = _command_line(
        index, tmp_path, rules_dir, constraint, "baz", "foo-bar==1.0", PIP_NO_REQUIRE_HASHES="1"
    )
    assert code == 0 and names["baz"] == ["baz-1.0-py3-none-any.whl"], stderr
    assert pip_files(index, tmp_path, {"PIP_REQUIRE_HASHES": "1"}, "baz==1.0") is None
    code, _, stderr = _command_line(index, tmp_path, rules_dir, "", "baz==1.0", PIP_REQUIRE_HASHES="1")
    assert code == 2 and "turned on by require-hashes (environment)" in stderr, stderr


@pytest.mark.parametrize("via", ["-R", "command line"])
def test_a_hashed_constraints_marker_is_evaluated(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, via: str
) -> None:
    """pip 26.3 takes a hashed constraint's hashes where its marker holds (1.0's wheel only), and where it
    does not the requirement has none (refused: the constraint still turns the mode on). scan refused a
    -R pin under such a constraint (exit 2, "does not evaluate"). Markers follow ``--python-version``."""
    constraint = f"foo-bar ; python_version >= '3.12' --hash={ONE}\n"
    req = write(tmp_path / "req.txt", b"foo-bar==1.0\n")
    target = ("-R", str(req)) if via == "-R" else ("foo-bar==1.0",)
    code, names, stderr = _command_line(
        index, tmp_path, rules_dir, constraint, *target, "--python-version", "3.12"
    )
    assert (code, names) == (0, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl"]}), stderr
    code, _, stderr = _command_line(
        index, tmp_path, rules_dir, constraint, *target, "--python-version", "3.11"
    )
    assert code == 2 and "in hash-checking mode" in stderr, stderr


def test_a_hashed_constraint_of_another_python_leaves_a_pin_without_hashes_to_no_require_hashes(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """With ``--no-require-hashes`` a pin whose hashed constraint's marker does not hold has no hashes: pip
    26.3 downloads its files as any unhashed line's (the malicious sdist among them)."""
    env = {
        "PIP_CONSTRAINT": str(
            write(tmp_path / "c.txt", f"foo-bar ; python_version < '3' --hash={ONE}\n".encode())
        )
    }
    req = write(tmp_path / "req.txt", b"--no-require-hashes\nfoo-bar==1.0\n")
    code, names, stderr = scanned(index, rules_dir, env, req)
    assert (code, names) == (1, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl", "foo_bar-1.0.tar.gz"]}), stderr


@pytest.mark.parametrize("value", ["SHA256:abc", "md5:abc", "sha256"])
def test_a_hash_option_line_pip_refuses_is_refused(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, value: str
) -> None:
    """pip (23.2 and 26.3) refuses a file with ``--hash=VALUE`` on a line of its own when VALUE is not one of
    its algorithms followed by ``:``; scan ignored the line (exit 0)."""
    req = write(tmp_path / "req.txt", f"--hash={value}\nbaz==1.0\n".encode())
    assert pip_files(index, tmp_path, {}, "-r", str(req)) is None
    code, _, stderr = scanned(index, rules_dir, {}, req)
    assert code == 2 and f"req.txt:1: --hash={value}: not ALGORITHM:VALUE" in stderr, stderr


def test_a_hash_option_line_pip_takes_is_ignored_with_a_note(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip (23.2 and 26.3) ignores a valid ``--hash`` on a line of its own: no requirement takes it, and the
    mode stays off (baz's file downloaded though its hash is another's)."""
    req = write(tmp_path / "req.txt", f"--hash={ONE}\nbaz==1.0\n".encode())
    assert pip_files(index, tmp_path, {}, "-r", str(req)) == ["baz-1.0-py3-none-any.whl"]
    code, names, stderr = scanned(index, rules_dir, {}, req)
    assert (code, names) == (0, {"baz": ["baz-1.0-py3-none-any.whl"]}), stderr
    assert "req.txt:1: pip ignores --hash on a line of its own" in stderr, stderr
