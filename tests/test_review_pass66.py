"""Review pass 66: options on a ``-r FILE``/``-c FILE`` line of a ``-R`` file. pip (23.2 and 26.3) follows
such a line without handling it as an option line: its ``--index-url``, ``--pre``, ``--require-hashes``, ...
are ignored, and only the options whose callbacks change pip's finder as the line is parsed
(``--no-binary``, ``--only-binary``; pip 26.3: ``--all-releases``, ``--only-final``) apply, before the
lines of the file it includes. scan applied them all, after that file. The installed pip (23.2) is the
oracle where it agrees with 26.3; the release options were checked by hand with pip 26.3's wheel (``pip
download --no-deps`` against this fake index). ``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, sdist, wheel, write
from tests.test_find_links import BAD, CLEAN
from tests.test_no_require_hashes import scanned
from tests.test_review_pass62 import pip_files


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    """foo-bar 1.0 (a malicious wheel only), pkg 1.0 (a clean sdist and wheel), pre 2.0b1 (a clean wheel)."""
    fake_index.add("foo-bar", wheel("foo_bar", "1.0", BAD))
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN), sdist("pkg", "1.0", CLEAN))
    fake_index.add("pre", wheel("pre", "1.0", CLEAN), wheel("pre", "2.0b1", CLEAN))
    return fake_index


def test_an_index_url_beside_a_requirement_file_line_is_ignored(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip downloads foo-bar's malicious wheel from the command line's index: ``--index-url`` on a ``-r``
    line is ignored. scan scanned the other index's clean sdist (exit 0, a clean verdict for bytes pip does
    not install). The note names the option, not its value (a password)."""
    with FakeIndex() as other:
        other.add("foo-bar", sdist("foo_bar", "1.0", CLEAN))
        other.add("pkg", sdist("pkg", "1.0", CLEAN))
        secret = other.url.replace("http://", "http://user:s3cret@")
        write(tmp_path / "other.txt", b"pkg==1.0\n")
        req = write(tmp_path / "req.txt", f"-r other.txt --index-url {secret}\nfoo-bar==1.0\n".encode())
        assert pip_files(index, tmp_path, {}, "-r", str(req)) == [
            "foo_bar-1.0-py3-none-any.whl",
            "pkg-1.0-py3-none-any.whl",
        ]
        code, names, stderr = scanned(index, rules_dir, {}, req)
    assert (code, names["foo-bar"]) == (1, ["foo_bar-1.0-py3-none-any.whl"]), stderr
    assert "req.txt:1: pip ignores --index-url on a -r/-c line" in stderr, stderr
    assert "s3cret" not in stderr


@pytest.mark.parametrize("include", ["-r", "-c"])
def test_a_require_hashes_beside_an_include_line_is_ignored(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, include: str
) -> None:
    """pip downloads unhashed pins under ``-r FILE --require-hashes`` (the option is ignored there); scan
    refused them (exit 2, hash-checking mode)."""
    write(tmp_path / "other.txt", b"pkg==1.0\n")
    req = write(tmp_path / "req.txt", f"{include} other.txt --require-hashes\npkg==1.0\n".encode())
    assert pip_files(index, tmp_path, {}, "-r", str(req)) is not None
    code, names, stderr = scanned(index, rules_dir, {}, req)
    assert code == 0 and names == {"pkg": ["pkg-1.0-py3-none-any.whl", "pkg-1.0.tar.gz"]}, stderr


@pytest.mark.parametrize(("line", "included", "downloaded"), [
    ("-r other.txt --no-binary :all:", "--only-binary :all:\n", ["foo_bar-1.0-py3-none-any.whl"]),
    ("-c other.txt --no-binary :all:", "--only-binary :all:\n", ["foo_bar-1.0-py3-none-any.whl"]),
    ("-r other.txt --only-binary :all:", "--no-binary :all:\n", None),
])  # fmt: skip
def test_format_options_beside_an_include_line_apply_before_its_file(
    index: FakeIndex,
    tmp_path: Path,
    rules_dir: Path,
    line: str,
    included: str,
    downloaded: list[str] | None,
) -> None:
    """pip applies ``--no-binary``/``--only-binary`` of a ``-r``/``-c`` line before the included file's own:
    the file's wins. scan applied the line's last: it refused foo-bar's wheel (exit 3) where pip downloads
    it, and scanned it (a verdict) where pip finds nothing to install."""
    write(tmp_path / "other.txt", included.encode())
    req = write(tmp_path / "req.txt", f"{line}\nfoo-bar==1.0\n".encode())
    assert pip_files(index, tmp_path, {}, "-r", str(req)) == downloaded
    code, names, stderr = scanned(index, rules_dir, {}, req)
    assert (code, names) == ((1, {"foo-bar": downloaded}) if downloaded else (3, {"foo-bar": []})), stderr


def test_release_options_beside_an_include_line_apply_before_its_file(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip 26.3 (by hand) downloads ``pre==2.0b1`` under ``-r other.txt --only-final :all:`` when other.txt
    says ``--all-releases pre``: the included line comes last. scan refused it (exit 2: only-final)."""
    write(tmp_path / "other.txt", b"--all-releases pre\n")
    req = write(tmp_path / "req.txt", b"-r other.txt --only-final :all:\npre==2.0b1\n")
    code, names, stderr = scanned(index, rules_dir, {}, req)
    assert (code, names) == (0, {"pre": ["pre-2.0b1-py3-none-any.whl"]}), stderr
