"""Review pass 65b: a bare name under hashed constraints, and pip's hash-checking mode outside ``scan``.
pip 26.3 (by hand: ``pip download --no-deps`` of its wheel against these fake indexes) sorts a bare name's
candidates by "lists an allowed digest" before the version, and filters pre-releases before the hashes;
``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dragonfly_hybrid.cli import app
from typer.testing import CliRunner

from tests.fakes.pypi import FakeFile, FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN
from tests.test_review_pass64b import _command_line


def _sha256(file: tuple[str, bytes]) -> str:
    return f"sha256:{hashlib.sha256(file[1]).hexdigest()}"


def test_a_release_listing_an_allowed_digest_wins_over_a_newer_listing_none(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """foo-bar 1.0 (malicious, its digest listed) and 2.0 (clean, no digest listed), a constraint allowing
    both: pip 26.3 downloads 1.0 for a bare ``foo-bar`` (its sort key's first term is an allowed digest).
    scan scanned 2.0 and gave a clean verdict (exit 0)."""
    one, two = wheel("foo_bar", "1.0", BAD), wheel("foo_bar", "2.0", CLEAN)
    fake_index.add("foo-bar", FakeFile(*one), FakeFile(*two, listed_sha256=""))
    constraint = f"foo-bar --hash={_sha256(one)} --hash={_sha256(two)}\n"
    code, names, stderr = _command_line(fake_index, tmp_path, rules_dir, constraint, "foo-bar")
    assert (code, names) == (1, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl"]}), stderr


def test_an_allowed_pre_release_is_not_taken_over_a_final_release(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """foo-bar 1.0 and 2.0rc1 (both digests listed), a constraint allowing 2.0rc1 only: pip 26.3 leaves the
    pre-release out before it filters by hash, takes 1.0 and refuses its bytes (installs nothing). scan
    filtered by hash first and scanned 2.0rc1: a clean verdict (exit 0) for what pip does not install."""
    final, rc = wheel("foo_bar", "1.0", CLEAN), wheel("foo_bar", "2.0rc1", CLEAN)
    fake_index.add("foo-bar", final, rc)
    constraint = f"foo-bar --hash={_sha256(rc)}\n"
    code, names, stderr = _command_line(fake_index, tmp_path, rules_dir, constraint, "foo-bar")
    assert (code, names) == (3, {"foo-bar": []}), stderr
    # With PIP_PRE pip takes the pre-release.
    code, names, stderr = _command_line(fake_index, tmp_path, rules_dir, constraint, "foo-bar", PIP_PRE="1")
    assert (code, names) == (0, {"foo-bar": ["foo_bar-2.0rc1-py3-none-any.whl"]}), stderr


def test_diff_is_not_refused_in_hash_checking_mode(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """``diff`` compares releases (it installs none, and takes no -R file that could give a name hashes):
    under ``PIP_REQUIRE_HASHES`` or a constraint hashed for another project it refused both sides (exit 2,
    "pin it with its hashes in a -R file")."""
    fake_index.add("foo-bar", wheel("foo_bar", "1.0", CLEAN), wheel("foo_bar", "2.0", CLEAN))
    other = wheel("baz", "1.0", CLEAN)
    fake_index.add("baz", other)
    constraints = write(tmp_path / "c.txt", f"baz --hash={_sha256(other)}\n".encode())
    for env in ({"PIP_REQUIRE_HASHES": "1"}, {"PIP_CONSTRAINT": str(constraints)}):
        result = CliRunner().invoke(
            app,
            ["diff", "foo-bar==1.0", "foo-bar==2.0", "-r", str(rules_dir), "--index-url", fake_index.url],
            env={**env, "DRAGONFLY_STORE": str(tmp_path / "store.db")},
        )
        assert result.exit_code == 0, result.output
        assert "foo_bar-2.0-py3-none-any.whl" in result.stdout, result.output
