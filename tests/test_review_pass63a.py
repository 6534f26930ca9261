"""Review pass 63a: pip's constraint files (``PIP_CONSTRAINT``, ``-c`` lines of ``-R`` files) as ``scan``
reads them, held against the installed pip (23.2; pip 26.3 by hand where they agree): a clean verdict only
for what pip installs. ``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_review_pass42 import _metadata_wheel
from tests.test_review_pass62 import pip_files


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    """foo-bar: 1.0 clean, 2.0 malicious, 3.0 clean."""
    fake_index.add(
        "foo-bar",
        wheel("foo_bar", "1.0", CLEAN),
        wheel("foo_bar", "2.0", BAD),
        wheel("foo_bar", "3.0", CLEAN),
    )
    return fake_index


@pytest.mark.parametrize("via", ["PIP_CONSTRAINT", "-c line"])
def test_a_pin_the_constraints_do_not_admit_is_a_usage_error(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, via: str
) -> None:
    """pip refuses a pin its constraints do not admit (ResolutionImpossible: nothing installs); scan scanned
    the pinned release and reported it clean (exit 0)."""
    constraints = write(tmp_path / "c.txt", b"foo-bar<2\n")
    env = {"PIP_CONSTRAINT": str(constraints)} if via == "PIP_CONSTRAINT" else {}
    head = b"" if env else f"-c {constraints}\n".encode()
    for pin, admitted in (("foo-bar==3.0", False), ("Foo_Bar==1.0", True)):
        req = write(tmp_path / "req.txt", head + f"{pin}\n".encode())
        expected = ["foo_bar-1.0-py3-none-any.whl"] if admitted else None
        assert pip_files(index, tmp_path, env, "-r", str(req)) == expected
        targets = [("-R", req), (pin,)] if env else [("-R", req)]
        for args in targets:
            result, _ = scan(*args, "-r", rules_dir, "--index-url", index.url, env={**env})
            assert result.exit_code == (0 if admitted else 2), (args, result.output)
            if not admitted:
                assert "do not admit foo-bar==3.0" in result.stderr, result.stderr
                assert f"foo-bar<2 ({constraints}:1)" in result.stderr, result.stderr
                assert "Traceback" not in result.output


def test_a_pre_release_pin_the_constraints_admit_is_scanned(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A pinned pre-release is admitted by a constraint without one (pip 23.2 and 26.3 install it): the
    check above must not refuse it."""
    fake_index.add("foo-bar", wheel("foo_bar", "1.0", CLEAN), wheel("foo_bar", "2.1rc1", BAD))
    env = {"PIP_CONSTRAINT": str(write(tmp_path / "c.txt", b"foo-bar<3\n"))}
    assert pip_files(fake_index, tmp_path, env, "foo-bar==2.1rc1") == ["foo_bar-2.1rc1-py3-none-any.whl"]
    result, report = scan("foo-bar==2.1rc1", "-r", rules_dir, "--index-url", fake_index.url, env={**env})
    assert result.exit_code == 1, result.output
    assert [t["version"] for t in report["targets"]] == ["2.1rc1"]


def test_a_hashed_constraint_is_refused_by_the_index_client(index: FakeIndex) -> None:
    """pip 26.3 installs a constrained name only from a file with one of the constraint's hashes (a bare
    name: the newest release with one, 1.0 here, where scan took 3.0; a pin: pip refuses 3.0's file);
    pip 23.2 refuses both (hash-checking mode). The lookup took no notice of the hashes."""
    from dragonfly_hybrid.pypi.index import PyPIClient, VersionNotFound
    from dragonfly_hybrid.pypi.pipconfig import Constraint

    [one] = [f for f in index.projects["foo-bar"] if "-1.0-" in f.filename]
    hashed = Constraint("foo-bar", "", None, None, "c.txt:3", frozenset({f"sha256:{one.sha256}"}))
    with PyPIClient(index.url, constraints=[hashed]) as client:
        for version in (None, "3.0", "1.0"):
            with pytest.raises(VersionNotFound, match=r"constraint at c\.txt:3 has --hash options"):
                client.resolve("foo-bar", version)
        assert client.resolve("foo-bar", "1.0", find_links=False).version == "1.0"  # a lock's entry


def test_a_pin_no_file_of_which_a_hashed_constraint_allows_is_not_clean(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """End to end: pip 23.2 and 26.3 both refuse ``foo-bar==3.0`` under a constraint hashed for 1.0; scan
    scanned 3.0 and reported it clean. It takes the constraint's hashes now (pass 64b): no file of 3.0 has
    one, so the release is incomplete (exit 3), naming that."""
    [one] = [f for f in index.projects["foo-bar"] if "-1.0-" in f.filename]
    env = {"PIP_CONSTRAINT": str(write(tmp_path / "c.txt", f"foo-bar --hash=sha256:{one.sha256}\n".encode()))}
    assert pip_files(index, tmp_path, env, "foo-bar==3.0") is None
    result, report = scan("foo-bar==3.0", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 3, result.output
    assert "no file of foo-bar==3.0 has a hash allowed" in json.dumps(report)


def test_dependency_notes_count_pip_constraint_settings_names_as_constrained(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A dependency pinned by PIP_CONSTRAINT's file was called "not pinned"; pip installs it at the
    constraint's version, as for a ``-c`` line of the ``-R`` file."""
    fake_index.add("foo", _metadata_wheel("foo", "1.0", "bar"))
    fake_index.add("bar", wheel("bar", "1.0", CLEAN))
    req = write(tmp_path / "req.txt", b"foo==1.0\n")
    env = {"PIP_CONSTRAINT": str(write(tmp_path / "c.txt", b"bar==1.0\n"))}
    result, _ = scan("-R", req, "-r", rules_dir, "--index-url", fake_index.url, env={**env})
    assert result.exit_code == 0, result.output
    assert "note: pinned only by a -c constraint, so not scanned: bar (required by foo==1.0)" in result.stderr
    assert "not pinned" not in result.stderr
