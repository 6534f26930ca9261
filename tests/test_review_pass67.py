"""Review pass 67: four places where ``scan`` refused or misreported what pip 26.3 takes. The installed pip
(23.2) is the oracle where it agrees with 26.3; the rest was checked by hand with pip 26.3's wheel (``pip
download --no-deps`` against these fake indexes). ``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dragonfly_hybrid as dh
import pytest

from tests.fakes.pypi import MARKER_RULE, FakeFile, FakeIndex, sdist, wheel, write
from tests.test_find_links import BAD, CLEAN
from tests.test_no_require_hashes import scanned
from tests.test_review_pass62 import pip_files
from tests.test_review_pass64b import _command_line
from tests.test_review_pass66 import index  # noqa: F401 (the fixture: foo-bar, pkg, pre)


def _sha256(file: tuple[str, bytes]) -> str:
    return f"sha256:{hashlib.sha256(file[1]).hexdigest()}"


def test_an_option_line_drops_the_words_after_its_options_as_pip_does(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
) -> None:
    """pip (23.2 and 26.3) parses a line that begins with an option as an option line: its optparse's
    leftover words (``foo-bar==1.0``) are dropped unread, the options applied (``--pre``: a bare ``pre`` is
    its pre-release). scan refused the file (exit 2, "Incorrect and ignored trailing argument(s)"). Now read
    as pip reads it, with a note: foo-bar's malicious wheel is neither downloaded by pip nor scanned."""
    req = write(tmp_path / "req.txt", b"--pre foo-bar==1.0\npkg==1.0\n")
    assert pip_files(index, tmp_path, {}, "-r", str(req), "pre") == [
        "pkg-1.0-py3-none-any.whl",
        "pre-2.0b1-py3-none-any.whl",
    ]
    code, names, stderr = _command_line(index, tmp_path, rules_dir, "", "-R", str(req), "pre")
    assert code == 0, stderr
    assert names == {
        "pkg": ["pkg-1.0-py3-none-any.whl", "pkg-1.0.tar.gz"],
        "pre": ["pre-2.0b1-py3-none-any.whl"],
    }
    assert "req.txt:1: pip ignores 'foo-bar==1.0' after an option" in stderr, stderr


def test_a_binary_option_line_with_trailing_words_applies_and_drops_them(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
) -> None:
    """``--only-binary :all: foo-bar==1.0``: pip takes ``:all:`` as the option's value and drops foo-bar; an
    sdist-only release is then no candidate (pip installs nothing). scan refused the file (exit 2)."""
    index.add("sdonly", sdist("sdonly", "1.0", CLEAN))
    req = write(tmp_path / "req.txt", b"--only-binary :all: foo-bar==1.0\npkg==1.0\n")
    assert pip_files(index, tmp_path, {}, "-r", str(req)) == ["pkg-1.0-py3-none-any.whl"]
    code, names, stderr = scanned(index, rules_dir, {}, req)
    assert code == 0 and list(names) == ["pkg"], stderr
    assert "req.txt:1: pip ignores 'foo-bar==1.0' after an option" in stderr, stderr
    req = write(tmp_path / "req.txt", b"--only-binary :all: foo-bar==1.0\nsdonly==1.0\n")
    assert pip_files(index, tmp_path, {}, "-r", str(req)) is None
    code, names, stderr = scanned(index, rules_dir, {}, req)
    assert (code, names) == (3, {"sdonly": []}), stderr


@pytest.mark.parametrize("constraint", ["foo-bar==1.0", "foo-bar===1.0", "hashed"])
def test_a_bare_name_pinned_by_a_constraint_to_a_yanked_release_is_scanned(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, constraint: str
) -> None:
    """PEP 592: pip installs a yanked release when its specifier pins it (``==``, ``===``) and every
    candidate it admits is yanked, a constraint's specifier too: ``pip download foo-bar`` under a
    constraint ``foo-bar==1.0`` takes 1.0's yanked (malicious) wheel, with a warning (pip 23.2 and 26.3;
    with a hash, pip 26.3 by hand: 23.2 calls the bare name unpinned). scan refused the name (exit 2: "every
    release is yanked")."""
    one = wheel("foo_bar", "1.0", BAD)
    fake_index.add("foo-bar", FakeFile(*one, yanked=True), wheel("foo_bar", "2.0", CLEAN))
    text = f"foo-bar==1.0 --hash={_sha256(one)}\n" if constraint == "hashed" else f"{constraint}\n"
    if constraint != "hashed":
        env = {"PIP_CONSTRAINT": str(write(tmp_path / "pip-c.txt", text.encode()))}
        assert pip_files(fake_index, tmp_path, env, "foo-bar") == ["foo_bar-1.0-py3-none-any.whl"]
    code, names, stderr = _command_line(fake_index, tmp_path, rules_dir, text, "foo-bar")
    assert (code, names) == (1, {"foo-bar": ["foo_bar-1.0-py3-none-any.whl"]}), stderr


def test_a_bare_name_under_a_range_constraint_of_yanked_releases_is_still_refused(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The other side: a constraint that pins no version (``foo-bar<2``) takes no yanked release; pip
    (23.2 and 26.3) installs nothing (ResolutionImpossible), and scan refuses the name."""
    fake_index.add(
        "foo-bar", FakeFile(*wheel("foo_bar", "1.0", BAD), yanked=True), wheel("foo_bar", "2.0", CLEAN)
    )
    env = {"PIP_CONSTRAINT": str(write(tmp_path / "pip-c.txt", b"foo-bar<2\n"))}
    assert pip_files(fake_index, tmp_path, env, "foo-bar") is None
    code, names, stderr = _command_line(fake_index, tmp_path, rules_dir, "foo-bar<2\n", "foo-bar")
    assert (code, names) == (2, {}), stderr


def test_fetch_and_scan_is_not_refused_in_hash_checking_mode(
    fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API takes no ``-R`` file, so no requirement of it can have ``--hash`` options: under
    ``PIP_REQUIRE_HASHES`` (or a hashed constraint of another project) it raised VersionNotFound advising
    "pin it with its hashes in a -R file". It scans the release asked for now, as ``diff`` does; a hashed
    constraint on its own name still picks the files it allows (the malicious sdist left out)."""
    good = wheel("foo_bar", "1.0", CLEAN)
    fake_index.add("foo-bar", good, sdist("foo_bar", "1.0", BAD))
    other = wheel("baz", "1.0", CLEAN)
    fake_index.add("baz", other)
    rules = dh.Rules.compile({"marker.yar": MARKER_RULE})
    monkeypatch.setenv("PIP_REQUIRE_HASHES", "1")
    for requirement in ("foo-bar==1.0", "foo-bar"):
        result = dh.fetch_and_scan(requirement, rules=rules, index_url=fake_index.url)
        assert (result.verdict, result.error) == ("findings", None), requirement
    monkeypatch.delenv("PIP_REQUIRE_HASHES")
    constraints = write(
        tmp_path / "c.txt", f"baz --hash={_sha256(other)}\nfoo-bar --hash={_sha256(good)}\n".encode()
    )
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
    result = dh.fetch_and_scan("foo-bar==1.0", rules=rules, index_url=fake_index.url)
    assert result.verdict == "clean", result.error
    assert [d.name for d in result.distributions] == ["foo_bar-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("include", ["-r", "-c"])
def test_a_hash_beside_an_include_line_is_named_as_ignored_there(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
    include: str,
) -> None:
    """pip (23.2 and 26.3) follows ``-r other.txt --hash=...`` and drops the hash silently (it checks the
    value's algorithm first): the mode stays off, every file of an unhashed pin is downloaded. scan did
    the same but said "pip ignores --hash on a line of its own (no requirement before it)", pip's warning
    for another line. A bad algorithm is still refused, as pip refuses it."""
    write(tmp_path / "other.txt", b"pkg==1.0\n")
    req = write(
        tmp_path / "req.txt", f"{include} other.txt --hash=sha256:{'0' * 64}\nfoo-bar==1.0\n".encode()
    )
    assert pip_files(index, tmp_path, {}, "-r", str(req)) is not None
    code, names, stderr = scanned(index, rules_dir, {}, req)
    assert code == 1 and names["foo-bar"] == ["foo_bar-1.0-py3-none-any.whl"], stderr
    assert "req.txt:1: pip ignores --hash on a -r/-c line" in stderr, stderr
    assert "line of its own" not in stderr, stderr
    bad = write(tmp_path / "bad.txt", f"{include} other.txt --hash=md5:abc\nfoo-bar==1.0\n".encode())
    assert pip_files(index, tmp_path, {}, "-r", str(bad)) is None
    code, _, stderr = scanned(index, rules_dir, {}, bad)
    assert code == 2 and "--hash=md5:abc: not ALGORITHM:VALUE" in stderr, stderr
