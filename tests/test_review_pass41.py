"""Red-team review (pass 41) of the dependency notes of ``scan -R requirements.txt``: hostile archives
(zip members compressed with bzip2/lzma, a huge central directory, a PKG-INFO given twice), an escape
sequence in a dependency, a note of 40,000 names, extras asked of a release by the dependencies
(``foo[x]`` in foo's own metadata), and a dependency pinned only by a ``-c`` constraint."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.pypi import dependencies
from dragonfly_hybrid.pypi.dependencies import Unknown
from typer.testing import CliRunner, Result

from tests.fakes.pypi import FakeIndex, zip_bytes

NOTE = "note: not pinned, so not scanned:"


def metadata(name: str, requires: list[str], meta_version: str = "2.1") -> bytes:
    lines = [f"Metadata-Version: {meta_version}", f"Name: {name}", "Version: 1.0"]
    return ("\n".join([*lines, *(f"Requires-Dist: {r}" for r in requires)]) + "\n").encode()


def wheel_requiring(name: str, requires: list[str]) -> tuple[str, bytes]:
    stem = f"{name}-1.0"
    wheel_info = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = {f"{stem}.dist-info/METADATA": metadata(name, requires), f"{stem}.dist-info/WHEEL": wheel_info}
    return f"{stem}-py3-none-any.whl", zip_bytes({f"{name}/__init__.py": b"", **members})


def scan(index: FakeIndex, rules_dir: Path, tmp_path: Path, lines: str, *extra: object) -> Result:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(lines)
    args = ["scan", "-R", requirements, "-r", rules_dir, "--index-url", index.url, "-q", *extra]
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_an_escape_sequence_in_a_dependency_is_escaped(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    # `===` takes any version without a space: an ANSI escape reaches the note, printed on the terminal.
    fake_index.add("foo", wheel_requiring("foo", ["bar===\x1b[2J\x1b[31mred\x07"]))
    result = scan(fake_index, rules_dir, tmp_path, "foo==1.0\n")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert f"{NOTE} bar===\\x1b[2J\\x1b[31mred\\x07 (required by foo==1.0)" in result.stderr


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_metadata_zipfile_inflates_whole_is_not_read(tmp_path: Path, method: int) -> None:
    """zipfile inflates a bzip2/lzma member a whole read at a time (a few KiB of bzip2: GiBs of zeros)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("foo-1.0.dist-info/METADATA", metadata("foo", ["bar"]), compress_type=method)
    path = tmp_path / "foo-1.0-py3-none-any.whl"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(Unknown, match=f"compressed with method {method}, not read"):
        dependencies._declared(path, path.name, "foo")


def test_a_huge_central_directory_is_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A million empty entries (88 MB, under the download cap) cost zipfile 6 s and half a GiB."""
    monkeypatch.setattr(dependencies, "CENTRAL_DIRECTORY_LIMIT", 1 << 20, raising=False)
    files = {f"foo/{n}": b"" for n in range(30_000)}  # ~1.4 MiB of central directory
    path = tmp_path / "foo-1.0-py3-none-any.whl"
    path.write_bytes(zip_bytes({**files, "foo-1.0.dist-info/METADATA": metadata("foo", ["bar"])}))
    with pytest.raises(Unknown, match="its central directory is over 1 MiB"):
        dependencies._declared(path, path.name, "foo")


def _tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    """A tarball of ``members`` in that order (names may repeat)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_an_sdist_with_two_pkg_info_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "foo-1.0.tar.gz"
    benign, real = metadata("foo", [], "2.2"), metadata("foo", ["evil"], "2.2")
    path.write_bytes(_tar_gz([("foo-1.0/PKG-INFO", benign), ("foo-1.0/PKG-INFO", real)]))
    with pytest.raises(Unknown, match="several metadata files"):
        dependencies._declared(path, path.name, "foo")
    # A nested one is not the sdist's (pip reads the top one); one found before the walk limit is kept.
    path.write_bytes(_tar_gz([("foo-1.0/PKG-INFO", real), ("foo-1.0/sub/PKG-INFO", benign)]))
    assert [r.name for r in dependencies._declared(path, path.name, "foo") or ()] == ["evil"]
    monkeypatch.setattr(dependencies, "TAR_WALK_LIMIT", 1 << 20)
    path.write_bytes(_tar_gz([("foo-1.0/PKG-INFO", real), ("foo-1.0/pad", b"\0" * (4 << 20))]))
    assert [r.name for r in dependencies._declared(path, path.name, "foo") or ()] == ["evil"]


def test_a_note_names_at_most_fifty_dependencies(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    fake_index.add("foo", wheel_requiring("foo", [f"d{n:05}" for n in range(40_000)]))
    result = scan(fake_index, rules_dir, tmp_path, "foo==1.0\n")
    assert result.exit_code == 0, result.output
    shown = ", ".join(f"d{n:05}" for n in range(50))
    assert f"{NOTE} {shown} and 39950 more (required by foo==1.0)\n" in result.stderr


def test_extras_the_dependencies_ask_of_a_named_release_are_taken(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    # foo[all] asks foo[x] of itself, which brings xdep; foo asks bar[y] of the pinned bar, which brings ydep.
    foo = ['foo[X] ; extra == "all"', 'xdep ; extra == "x"', "bar[y]", 'never ; extra == "z"']
    fake_index.add("foo", wheel_requiring("foo", foo))
    fake_index.add("bar", wheel_requiring("bar", ['ydep>=2 ; extra == "y"']))
    result = scan(fake_index, rules_dir, tmp_path, "foo[all]==1.0\nbar==1.0\n")
    assert result.exit_code == 0, result.output
    assert f"{NOTE} xdep (required by foo==1.0)" in result.stderr
    assert f"{NOTE} ydep>=2 (required by bar==1.0)" in result.stderr
    assert "never" not in result.stderr


def test_markers_evaluated_per_release_are_bounded(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain of self-extras (e1 asks e2, which asks e3...) would evaluate every marker once per extra."""
    monkeypatch.setattr(dependencies, "EVALUATION_LIMIT", 1000, raising=False)
    chain = [f'foo[e{n + 1}] ; extra == "e{n}"' for n in range(100)] + ['last ; extra == "e100"']
    fake_index.add("foo", wheel_requiring("foo", chain))
    result = scan(fake_index, rules_dir, tmp_path, "foo[e0]==1.0\n")
    assert result.exit_code == 0, result.output
    assert (
        "note: dependencies unknown, not checked: foo==1.0 (over 1000 markers to evaluate)" in result.stderr
    )


def test_a_dependency_pinned_only_by_a_constraint_is_said_so(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    fake_index.add("foo", wheel_requiring("foo", ["Bar_Baz", "qux"]))
    (tmp_path / "constraints.txt").write_text("bar.baz==1.0\n")
    result = scan(fake_index, rules_dir, tmp_path, "-c constraints.txt\nfoo==1.0\n")
    assert result.exit_code == 0, result.output
    # pip installs bar-baz 1.0, which is still not scanned: not "not pinned".
    assert (
        "note: pinned only by a -c constraint, so not scanned: bar-baz (required by foo==1.0)"
        in result.stderr
    )
    assert f"{NOTE} qux (required by foo==1.0)" in result.stderr
