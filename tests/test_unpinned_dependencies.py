"""``scan -R requirements.txt`` names the dependencies pip would install that no ``-R`` file pins (so were not
scanned), read from the downloaded wheels' METADATA and sdists' PKG-INFO: a note, never an exit code."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.pypi import dependencies
from dragonfly_hybrid.pypi.dependencies import Unknown
from typer.testing import CliRunner, Result

from tests.fakes.pypi import FakeFile, FakeIndex, tar_gz_bytes, wheel, zip_bytes

NOTE = "note: not pinned, so not scanned:"


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def metadata(
    name: str, version: str, requires: list[str], meta_version: str = "2.1", extra: str = ""
) -> bytes:
    lines = [f"Metadata-Version: {meta_version}", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n" + extra).encode()


def wheel_requiring(name: str, version: str, requires: list[str]) -> tuple[str, bytes]:
    stem = f"{name}-{version}"
    return f"{stem}-py3-none-any.whl", zip_bytes(
        {
            f"{name}/__init__.py": b"",
            f"{stem}.dist-info/METADATA": metadata(name, version, requires),
            f"{stem}.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
    )


def sdist_with(name: str, version: str, pkg_info: bytes) -> tuple[str, bytes]:
    stem = f"{name}-{version}"
    return f"{stem}.tar.gz", tar_gz_bytes({f"{stem}/setup.py": b"pass\n", f"{stem}/PKG-INFO": pkg_info})


def scan(index: FakeIndex, rules_dir: Path, tmp_path: Path, lines: str, *extra: object) -> Result:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(lines)
    return run("scan", "-R", requirements, "-r", rules_dir, "--index-url", index.url, "-q", *extra)


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    fake_index.add(
        "foo",
        wheel_requiring(
            "foo",
            "1.0",
            [
                "Bar_Baz",
                "qux>=2",
                'old ; python_version < "3"',
                'xdep ; extra == "x"',
                'new ; python_version >= "3.99"',
            ],
        ),
    )
    fake_index.add("bar-baz", wheel("bar-baz", "1.0", {"bar_baz/__init__.py": b""}))
    fake_index.add("qux", wheel("qux", "2.0", {"qux/__init__.py": b""}))
    return fake_index


def test_unpinned_dependencies_are_named_and_the_exit_code_is_unchanged(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    result = scan(index, rules_dir, tmp_path, "foo==1.0\n")
    assert result.exit_code == 0, result.output
    # Names as pip normalizes them; markers for another Python and extras not asked for are left out.
    assert f"{NOTE} bar-baz, qux>=2 (required by foo==1.0)" in result.stderr
    assert "old" not in result.stderr and "xdep" not in result.stderr and "new" not in result.stderr

    result = scan(index, rules_dir, tmp_path, "foo==1.0\nbar.baz==1.0\n")
    assert result.exit_code == 0, result.output
    assert f"{NOTE} qux>=2 (required by foo==1.0)" in result.stderr


def test_extras_and_the_python_version_choose_the_dependencies(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    result = scan(index, rules_dir, tmp_path, "foo[X]==1.0\nbar-baz==1.0\nqux==2.0\n")
    assert f"{NOTE} xdep (required by foo==1.0)" in result.stderr
    result = scan(
        index, rules_dir, tmp_path, "foo==1.0\nbar-baz==1.0\nqux==2.0\n", "--python-version", "3.99"
    )
    assert f"{NOTE} new (required by foo==1.0)" in result.stderr


def test_every_pinned_dependency_gives_no_note(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    fake_index.add("foo", wheel_requiring("foo", "1.0", ["bar"]))
    fake_index.add("bar", wheel("bar", "1.0", {"bar/__init__.py": b""}))
    result = scan(fake_index, rules_dir, tmp_path, "foo==1.0\nbar==1.0\n")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr


def test_hash_checking_mode_and_lock_files_give_no_note(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    digest = hashlib.sha256(index.projects["foo"][0].content).hexdigest()
    result = scan(index, rules_dir, tmp_path, f"foo==1.0 --hash=sha256:{digest}\n")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr
    lock = tmp_path / "uv.lock"
    lock.write_text(f'[[package]]\nname = "foo"\nversion = "1.0"\nsource = {{ registry = "{index.url}" }}\n')
    result = run("scan", "-R", lock, "-r", rules_dir, "--index-url", index.url, "-q")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr


def test_a_hash_under_no_require_hashes_keeps_the_notes(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    # pip 26's --no-require-hashes: a --hash no longer turns hash-checking mode on, so pip installs the
    # unpinned dependencies (checked with pip 26.3's `pip download -r`: foo's hash checked, bar downloaded).
    digest = hashlib.sha256(index.projects["foo"][0].content).hexdigest()
    result = scan(index, rules_dir, tmp_path, f"--no-require-hashes\nfoo==1.0 --hash=sha256:{digest}\n")
    assert result.exit_code == 0, result.output
    assert f"{NOTE} bar-baz, qux>=2 (required by foo==1.0)" in result.stderr


def test_sdist_dependencies_are_known_from_metadata_2_2_only(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    fake_index.add("old", sdist_with("old", "1.0", metadata("old", "1.0", ["bar"], "2.1")))
    fake_index.add("new", sdist_with("new", "1.0", metadata("new", "1.0", ["bar"], "2.2")))
    fake_index.add(
        "dyn", sdist_with("dyn", "1.0", metadata("dyn", "1.0", [], "2.4", "Dynamic: Requires-Dist\n"))
    )
    result = scan(fake_index, rules_dir, tmp_path, "old==1.0\nnew==1.0\ndyn==1.0\n")
    assert result.exit_code == 0, result.output
    assert f"{NOTE} bar (required by new==1.0)" in result.stderr
    for release in ("old==1.0 (old-1.0.tar.gz", "dyn==1.0 (dyn-1.0.tar.gz"):
        assert f"note: dependencies unknown, not checked: {release}: an sdist's are known once built)" in (
            result.stderr
        )
    # Beside a wheel whose dependencies are known, pip installs the wheel: the sdist's are not asked for.
    fake_index.add("old", wheel_requiring("old", "1.0", ["bar"]))
    result = scan(fake_index, rules_dir, tmp_path, "old==1.0\n")
    assert f"{NOTE} bar (required by old==1.0)" in result.stderr and "unknown" not in result.stderr


def test_a_yanked_wheel_beside_an_sdist_leaves_the_sdists_dependencies_unknown(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip takes a yanked file of a pinned release only when all it could take here are yanked (PEP 592;
    pip's resolver, 23.2 as 26.3: ``iter_index_candidate_infos``): here it builds the sdist, whose
    dependencies its build decides, not the yanked wheel's METADATA."""
    name, content = wheel_requiring("foo", "1.0", ["bar"])
    pkg_info = metadata("foo", "1.0", [], "2.1")
    fake_index.add("foo", FakeFile(name, content, True), sdist_with("foo", "1.0", pkg_info))
    fake_index.add("bar", wheel("bar", "1.0", {"bar/__init__.py": b""}))
    result = scan(fake_index, rules_dir, tmp_path, "foo==1.0\nbar==1.0\n")
    assert result.exit_code == 0, result.output
    unknown = (
        f"note: dependencies unknown, not checked: foo==1.0 (foo-1.0.tar.gz: {dependencies.SDIST_UNKNOWN})"
    )
    assert unknown in result.stderr
    # Every file yanked: pip takes the wheel, which declares its dependencies.
    fake_index.projects["foo"] = [FakeFile(name, content, True)]
    result = scan(fake_index, rules_dir, tmp_path, "foo==1.0\nbar==1.0\n")
    assert result.exit_code == 0 and "note:" not in result.stderr, result.output


def test_a_wheel_for_another_python_beside_an_sdist_leaves_the_sdists_dependencies_unknown(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A wheel whose Requires-Python excludes this Python is no candidate of pip's here (its link evaluator
    drops it): pip builds the sdist, whose dependencies its build decides."""
    name, content = wheel_requiring("foo", "1.0", ["bar"])
    pkg_info = metadata("foo", "1.0", [], "2.1")
    fake_index.add(
        "foo", FakeFile(name, content, requires_python=">=3.99"), sdist_with("foo", "1.0", pkg_info)
    )
    fake_index.add("bar", wheel("bar", "1.0", {"bar/__init__.py": b""}))
    result = scan(fake_index, rules_dir, tmp_path, "foo==1.0\nbar==1.0\n")
    assert result.exit_code == 0, result.output
    unknown = f"foo==1.0 (foo-1.0.tar.gz: {dependencies.SDIST_UNKNOWN})"
    assert f"note: dependencies unknown, not checked: {unknown}" in result.stderr


def _lying_size(archive: bytes, member: bytes, size: int) -> bytes:
    """``archive`` with the uncompressed size of ``member`` given as ``size`` in both of its headers."""
    data = bytearray(archive)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (local := data.find(signature, start)) != -1:
            name_at = local + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(member)] == member:
                struct.pack_into("<I", data, local + offset, size)
            start = local + 4
    return bytes(data)


def test_hostile_wheels_give_unknown_without_a_traceback(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    big = zip_bytes({"bomb-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\n" + b" " * (50 << 20)})
    lying_name = b"liar-1.0.dist-info/METADATA"
    liar = _lying_size(
        zip_bytes({lying_name.decode(): b"Metadata-Version: 2.1\nX: " + b"a" * (50 << 20)}), lying_name, 100
    )
    fake_index.add("bomb", ("bomb-1.0-py3-none-any.whl", big))
    fake_index.add("liar", ("liar-1.0-py3-none-any.whl", liar))
    fake_index.add("broken", ("broken-1.0-py3-none-any.whl", b"PK\x03\x04" + b"\x00" * 200))
    result = scan(fake_index, rules_dir, tmp_path, "bomb==1.0\nliar==1.0\nbroken==1.0\n")
    assert "Traceback" not in result.output and result.exit_code in (0, 3)  # the engine says 3: corrupt
    stderr = result.stderr
    assert (
        "dependencies unknown, not checked: bomb==1.0 (bomb-1.0-py3-none-any.whl: its metadata is over 1 MiB)"
        in stderr
    )
    assert (
        "dependencies unknown, not checked: liar==1.0 (liar-1.0-py3-none-any.whl: unreadable (BadZipFile))"
        in stderr
    )
    assert "dependencies unknown, not checked: broken==1.0 (broken-1.0-py3-none-any.whl: unreadable" in stderr


def test_a_lying_member_size_never_inflates_past_the_limit(tmp_path: Path) -> None:
    """The declared size passes the check; reading stops at the limit, whatever the member holds."""
    name = b"liar-1.0.dist-info/METADATA"
    path = tmp_path / "liar-1.0-py3-none-any.whl"
    path.write_bytes(_lying_size(zip_bytes({name.decode(): b"a" * (8 << 20)}), name, 8 << 20))
    with pytest.raises(Unknown, match="over 1 MiB"):
        dependencies._declared(path, path.name, "liar")


def test_an_sdist_tarball_is_walked_only_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dependencies, "TAR_WALK_LIMIT", 1 << 20)
    path = tmp_path / "pad-1.0.tar.gz"
    path.write_bytes(
        tar_gz_bytes(
            {"pad-1.0/aaa.bin": b"\0" * (4 << 20), "pad-1.0/PKG-INFO": metadata("pad", "1.0", [], "2.2")}
        )
    )
    with pytest.raises(Unknown, match="no PKG-INFO in its first 1 MiB"):
        dependencies._declared(path, path.name, "pad")


def test_credentials_in_a_dependency_url_are_never_printed(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    fake_index.add(
        "foo", wheel_requiring("foo", "1.0", ["bar @ https://user:s3cr3t@example.invalid/bar.whl"])
    )
    result = scan(fake_index, rules_dir, tmp_path, "foo==1.0\n")
    assert f"{NOTE} bar (required by foo==1.0)" in result.stderr
    assert "s3cr3t" not in result.output
