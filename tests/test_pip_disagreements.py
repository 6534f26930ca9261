"""Archives built to make the engine and CPython disagree, each checked side by side with pip's view.

Every case here was a miss found by red-teaming the reader (and one by a long differential run): CPython
(as pip unpacks, ``tests/pip_oracle.py``) writes a ``.py`` file holding the marker, and the engine said
clean, scanned other bytes, or scanned them under another name so that rules limited to ``.py`` files
never ran. The oracle runs on every case, so a case that stops meaning what it says (pip no longer
writes the file) fails instead of passing silently.

The promise checked: each ``.py`` file pip writes with the marker is reported under pip's name, and the
``.py`` rule matches it.
"""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable

import pytest
from dragonfly_hybrid import DistributionResult, Rules, Scanner

from tests.pip_oracle import PipView, missing, name_matches, pip_view

MARKER = b"EVIL_MARKER_7f3a"
PAYLOAD = b"import os\n# " + MARKER + b"\n"
RULES = {
    "marker.yar": 'rule marker_py { meta: filetype = ".py" strings: $a = "EVIL_MARKER_7f3a" condition: $a }',
}


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(Rules.compile(RULES), threads=2)


def assert_scanned_as_pip_writes(
    data: bytes, filename: str, scanner: Scanner, *, current: bool = False, strip_leading: bool = False
) -> DistributionResult:
    """``current``: pip's view with the newest CPython ``tarfile`` and ``zipfile`` (Python 3.14's, see
    ``pip_oracle.readers``) instead of the running Python's; ``strip_leading``: with pip's stripping of
    an sdist's leading directory."""
    view: PipView = pip_view(data, filename, marker=MARKER, zstd=current, strip_leading=strip_leading)
    marked = [name for name in view.marked if name.endswith(".py")]  # what the .py rule must see
    assert marked, f"the case is wrong: pip writes no .py file with the marker ({view.error or view.kind})"
    dist = scanner.scan_bytes(data, filename)
    flagged = [f.path for f in dist.files if any(m.identifier == "marker_py" for m in f.matches)]
    for name in marked:
        assert any(name_matches(name, path) for path in flagged), (
            f"pip writes {name!r} with the marker; the .py rule matched {flagged} "
            f"(files: {[f.path for f in dist.files]}, issues: {[(i.kind, i.message) for i in dist.issues]})"
        )
    return dist


def assert_ambiguous(data: bytes, filename: str, scanner: Scanner) -> None:
    """The engine does not claim to know where pip writes this: incomplete, with an ``ambiguous`` issue."""
    dist = scanner.scan_bytes(data, filename)
    assert not dist.complete and "ambiguous" in [i.kind for i in dist.issues], dist.issues


def tar_of(members: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    return tar_with([regular(name, content) for name, content in members], fmt)


def regular(name: str, content: bytes, pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.pax_headers = pax or {}
    return info, content


def link(name: str, target: str, *, symbolic: bool) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE if symbolic else tarfile.LNKTYPE
    info.linkname = target
    return info, b""


def tar_with(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return out.getvalue()


# ------------------------------------------------------------------ a zip that pip finds from the end


def central_record(name: bytes, method: int = 0, crc: int = 0, sizes: tuple[int, int] = (0, 0)) -> bytes:
    """A central-directory record (version 2.0, local header at offset 0) for ``name``."""
    fields = (b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, *sizes, len(name), 0, 0, 0, 0, 0, 0)
    return struct.pack("<4sHHHHHHIIIHHHHHII", *fields) + name


def zip_behind_directories(directories: int) -> bytes:
    """A zip whose central directory lists ``directories`` directory records (with no local headers: pip
    never reads them) before ``pkg/evil.py``, deflated so that its text is not in the raw bytes, behind
    a few bytes of something else (so that no magic bytes give it away)."""
    name = b"pkg/evil.py"
    body = zlib.compress(PAYLOAD, 9)[2:-4]
    crc, sizes = zlib.crc32(PAYLOAD), (len(body), len(PAYLOAD))
    local = (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, *sizes, len(name), 0) + name + body
    )
    records = b"".join(central_record(f"d{i}/".encode()) for i in range(directories))
    records += central_record(name, 8, crc, sizes)
    count = directories + 1
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(records), len(local), 0)
    return b"JUNK" + local + records + end


@pytest.mark.parametrize("directories", [0, 16, 40])
def test_a_zip_in_a_tar_member_behind_many_directory_records_is_opened(
    directories: int, scanner: Scanner
) -> None:
    # pip unzips whatever zipfile.is_zipfile accepts, whatever its name: the zip is found from the end.
    data = tar_of(
        [("pkg-1.0/README", b"nothing here\n"), ("pkg-1.0/data.bin", zip_behind_directories(directories))]
    )
    assert_scanned_as_pip_writes(data, "pkg-1.0.tar", scanner)


def test_a_zip_in_a_stored_gzip_tarball_behind_directory_records_is_opened(scanner: Scanner) -> None:
    # Stored deflate blocks keep the zip's bytes verbatim inside a valid .tar.gz.
    data = gzip.compress(tar_of([("pkg-1.0/data.bin", zip_behind_directories(20))]), compresslevel=0)
    assert_scanned_as_pip_writes(data, "pkg-1.0.tar.gz", scanner)


@pytest.mark.parametrize("size", [len(PAYLOAD), 300_000], ids=["small", "over-a-read-chunk"])
def test_a_deflate_member_without_its_final_block_is_scanned_as_zipfile_installs_it(
    size: int, scanner: Scanner
) -> None:
    # zipfile stops at the end of a member's compressed bytes whether or not its deflate stream had its
    # final block, and checks the CRC-32 of what came out: pip installs this evil.py as it is.
    content = (PAYLOAD * (size // len(PAYLOAD) + 1))[:size]
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = packer.compress(content) + packer.flush(zlib.Z_SYNC_FLUSH)  # no final block
    name, crc, sizes = b"pkg/evil.py", zlib.crc32(content), (len(body), len(content))
    local = (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, *sizes, len(name), 0) + name + body
    )
    record = central_record(name, 8, crc, sizes)
    data = local + record + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(record), len(local), 0)
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0-py3-none-any.whl", scanner)
    assert not dist.complete  # the stream is still cut short: reported, and scanned


@pytest.mark.parametrize("runs_past_the_end", [False, True])
def test_a_zip_member_holding_more_than_it_declares_is_scanned_as_zipfile_extracts_it(
    runs_past_the_end: bool,
) -> None:
    # zipfile reads a member up to its declared size: with a matching CRC-32, pip installs that prefix.
    name, stored = b"pkg/evil.py", PAYLOAD + b"# bytes zipfile never reads\n"
    crc, sizes = zlib.crc32(PAYLOAD), (len(stored) + (4096 if runs_past_the_end else 0), len(PAYLOAD))
    local = (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, *sizes, len(name), 0) + name + stored
    )
    record = central_record(name, 0, crc, sizes)
    data = local + record + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(record), len(local), 0)
    view = pip_view(data, "pkg-1.0-py3-none-any.whl")
    assert not view.failed and [n for n, _ in view.files] == ["pkg/evil.py"], view
    catch_all = Scanner(Rules.compile({"all.yar": "rule any_file { condition: true }"}), threads=2)
    dist = catch_all.scan_bytes(data, "pkg-1.0-py3-none-any.whl")
    assert dist.complete
    assert missing(view.files, {(f.path, f.sha256) for f in dist.files}) == []
    assert [i.kind for i in dist.issues if i.path == "pkg/evil.py"][-1] == "size-mismatch"


def zip_of_records(records: list[tuple[bytes, bytes | None]]) -> bytes:
    """A stored zip of ``(raw name, content)`` records; content ``None``: a record with no local header
    (its offset points past the end), which pip never reads for what it takes for a directory. Behind
    a few bytes of something else."""
    local, central = b"", b""
    for name, content in records:
        if content is None:
            record = bytearray(central_record(name))
            record[42:46] = struct.pack("<I", 0x7FFFFFFF)
            central += bytes(record)
            continue
        crc, sizes = zlib.crc32(content), (len(content), len(content))
        header = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, *sizes, len(name), 0)
        record = bytearray(central_record(name, 0, crc, sizes))
        record[42:46] = struct.pack("<I", len(local))
        local += header + name + content
        central += bytes(record)
    count = struct.pack("<H", len(records))
    end = b"PK\x05\x06" + bytes(4) + count * 2 + struct.pack("<II", len(central), len(local)) + bytes(2)
    return b"JUNK" + local + central + end


HIDDEN_ZIPS = {
    # zipfile cuts a name at its NUL: `evil.py\0/` is the file `evil.py`, not a directory.
    "nul-then-slash": [(b"pkg/evil.py\x00/", PAYLOAD)],
    # pip's unzip takes names ending in a backslash for directories and never reads their headers.
    "backslash-directories": [*((f"d{i}\\".encode(), None) for i in range(20)), (b"pkg/evil.py", PAYLOAD)],
    # pip reads a name by its last record: the bad ones before it do not matter.
    "duplicates-without-headers": [*((b"pkg/evil.py", None) for _ in range(20)), (b"pkg/evil.py", PAYLOAD)],
}


@pytest.mark.parametrize("records", HIDDEN_ZIPS.values(), ids=HIDDEN_ZIPS.keys())
@pytest.mark.parametrize("filename", ["pkg-1.0-py3-none-any.whl", "pkg-1.0.tar"])
def test_a_zip_behind_a_tarball_is_found_whatever_records_come_first(
    records: list[tuple[bytes, bytes | None]], filename: str, scanner: Scanner
) -> None:
    # A .whl is a zip to every pip, whatever its bytes; a .tar to pip before 26.1 when is_zipfile says so.
    data = tar_of([("pkg-1.0/README", b"nothing here\n"), ("pkg-1.0/data.bin", zip_of_records(records))])
    assert_scanned_as_pip_writes(data, filename, scanner)


# ------------------------------------------------------------------------ links, as the kernel sees them


LINKED = {
    # tarfile opens an existing name for writing: through a hard link, into the file it shares.
    "write-through-hard-link": [
        regular("pkg-1.0/setup.py", b"print('benign')\n"),
        link("pkg-1.0/x.txt", "pkg-1.0/setup.py", symbolic=False),
        regular("./pkg-1.0/x.txt", PAYLOAD),
    ],
    # `..` after the directory symlink `d` leaves `sub/deep`, not `pkg-1.0`.
    "symlink-target-after-a-directory-symlink": [
        link("pkg-1.0/d", "sub/deep", symbolic=True),
        regular("pkg-1.0/sub/deep/keep", b"k"),
        regular("pkg-1.0/data.txt", b"benign\n"),
        regular("pkg-1.0/sub/data.txt", PAYLOAD),
        link("pkg-1.0/evil.py", "d/../data.txt", symbolic=True),
    ],
    # The kernel follows the link after the extraction: through `d`, made after the link.
    "symlink-target-through-a-later-directory-symlink": [
        regular("pkg-1.0/sub/deep/keep", b"k"),
        regular("pkg-1.0/data.txt", b"benign\n"),
        regular("pkg-1.0/sub/data.txt", PAYLOAD),
        link("pkg-1.0/setup.py", "d/../data.txt", symbolic=True),
        link("pkg-1.0/d", "sub/deep", symbolic=True),
    ],
    # tarfile cannot unlink the directory `d` to make the symlink: the error is ignored, `d` stays.
    "symlink-over-a-directory": [
        regular("pkg-1.0/a.txt", PAYLOAD),
        link("pkg-1.0/d/m.py", "pkg-1.0/a.txt", symbolic=False),
        link("pkg-1.0/d", "sub", symbolic=True),
        link("pkg-1.0/setup.py", "d/m.py", symbolic=True),
    ],
    # A hard link to a symlink that dangles then: tarfile makes the symlink again at the link's name,
    # its target read from there (b/x/setup.py, not x/setup.py).
    "hard-link-to-a-dangling-symlink": [
        link("pkg-1.0/e.py", "x/setup.py", symbolic=True),
        link("pkg-1.0/b/h.py", "pkg-1.0/e.py", symbolic=False),
        regular("pkg-1.0/b/x/setup.py", PAYLOAD),
        regular("pkg-1.0/x/setup.py", b"print('benign')\n"),
    ],
    # A symlink to the unpack directory itself, which the data filter lets through.
    "symlink-to-the-unpack-directory": [
        regular("setup.cfg", b"[metadata]\n"),
        link("pkg/a", "..", symbolic=True),
        regular("pkg/a/setup.py", PAYLOAD),
    ],
    "hard-link-target-after-a-directory-symlink": [
        regular("pkg-1.0/sub/deep/keep", b"k"),
        link("pkg-1.0/d", "sub/deep", symbolic=True),
        regular("pkg-1.0/data.txt", b"benign\n"),
        regular("pkg-1.0/sub/data.txt", PAYLOAD),
        link("pkg-1.0/evil.py", "pkg-1.0/d/../data.txt", symbolic=False),
    ],
    "symlink-name-after-a-directory-symlink": [
        regular("pkg-1.0/sub/deep/x", b"x"),
        link("pkg-1.0/d", "sub/deep", symbolic=True),
        link("pkg-1.0/d/../evil.txt", "../setup.py", symbolic=True),  # made at pkg-1.0/sub/evil.txt
        regular("pkg-1.0/setup.py", b"print('benign')\n"),
        regular("pkg-1.0/sub/evil.txt", PAYLOAD),  # written through it, into setup.py
    ],
}


@pytest.mark.parametrize("members", LINKED.values(), ids=LINKED.keys())
def test_content_that_links_give_a_py_name_is_scanned_under_it(
    members: list[tuple[tarfile.TarInfo, bytes]], scanner: Scanner
) -> None:
    assert_scanned_as_pip_writes(gzip.compress(tar_with(members)), "pkg-1.0.tar.gz", scanner)


# Current CPython (the security releases of June 2025 on, and 3.14) rewrites a link's target with
# os.path.normpath in the data filter: `d/../data.txt` is `data.txt`, whatever `d` is. Older releases
# leave `..` to the kernel, after the symlink (the cases above). Both readings are scanned.
LINKED_CURRENT = {
    "symlink-target-normalised-by-the-filter": [
        link("pkg-1.0/d", "sub/deep", symbolic=True),
        regular("pkg-1.0/sub/deep/keep", b"k"),
        regular("pkg-1.0/data.txt", PAYLOAD),
        regular("pkg-1.0/sub/data.txt", b"benign\n"),
        link("pkg-1.0/evil.py", "d/../data.txt", symbolic=True),
    ],
    "symlink-target-normalised-before-a-later-directory-symlink": [
        regular("pkg-1.0/sub/deep/keep", b"k"),
        regular("pkg-1.0/data.txt", PAYLOAD),
        regular("pkg-1.0/sub/data.txt", b"benign\n"),
        link("pkg-1.0/setup.py", "d/../data.txt", symbolic=True),
        link("pkg-1.0/d", "sub/deep", symbolic=True),
    ],
    "hard-link-target-normalised-by-the-filter": [
        regular("pkg-1.0/sub/deep/keep", b"k"),
        link("pkg-1.0/d", "sub/deep", symbolic=True),
        regular("pkg-1.0/data.txt", PAYLOAD),
        regular("pkg-1.0/sub/data.txt", b"benign\n"),
        link("pkg-1.0/evil.py", "pkg-1.0/d/../data.txt", symbolic=False),
    ],
    # Found by fuzzing: `b` -> `a/..` is `.` for current Pythons; the hard link `a` (which the engine
    # also records as a copy of the symlink `g.py`) makes `b` a loop in the kernel's reading, where the
    # content written through `g.py` lands in `c.py` for current Pythons.
    "write-through-a-symlink-a-later-hard-link-makes-a-loop-for-the-kernel": [
        link("pkg-1.0/b", "a/..", symbolic=True),
        link("pkg-1.0/g.py", "b/c.py", symbolic=True),
        regular("pkg-1.0/g.py", PAYLOAD),
        link("pkg-1.0/a", "pkg-1.0/g.py", symbolic=False),
    ],
    # Found by fuzzing: `g` is a loop for the kernel (through `a` -> `a/b`) and `x.py` for current
    # Pythons; a hard link to it copies the symlink (it dangles), its target read from the link's own
    # directory, so the content written to `b/f.py` lands in `b/x.py` on current Pythons.
    "hard-link-copies-a-symlink-only-current-pythons-can-follow": [
        link("pkg-1.0/a", "a/b", symbolic=True),
        link("pkg-1.0/g", "a/../x.py", symbolic=True),
        link("pkg-1.0/b/c/g/", "pkg-1.0/g", symbolic=False),
        link("pkg-1.0/b/f.py", "pkg-1.0/g", symbolic=False),
        regular("pkg-1.0/b/f.py", PAYLOAD),
    ],
    # Found by fuzzing: `e` -> `e/..` is a loop for the kernel and `.` for current Pythons, so `d.py`,
    # made before it, shows `setup.py` there only: a symlink on a link's way is read both ways too.
    "symlink-through-a-symlink-only-current-pythons-can-follow": [
        link("pkg-1.0/d.py", "e/setup.py", symbolic=True),
        link("pkg-1.0/e", "e/..", symbolic=True),
        regular("pkg-1.0/setup.py", PAYLOAD),
    ],
}


@pytest.mark.parametrize("members", LINKED_CURRENT.values(), ids=LINKED_CURRENT.keys())
def test_link_targets_are_read_as_current_cpython_normalises_them_too(
    members: list[tuple[tarfile.TarInfo, bytes]], scanner: Scanner
) -> None:
    data = gzip.compress(tar_with(members))
    assert_scanned_as_pip_writes(data, "pkg-1.0.tar.gz", scanner, current=True)
    # The older reading is still scanned: the benign file's content under the link's name too.
    dist = scanner.scan_bytes(data, "pkg-1.0.tar.gz")
    assert dist.complete, dist.issues


# Found by fuzzing, scanned under every name pip writes with either reader.
LINKED_ALIKE = {
    # Each hard link names the symlink `sub/x.py` (or a link to it); the engine recorded `setup.py` as a
    # copy of that symlink too, a loop in its model, and lost the names after it.
    "hard-links-chained-through-a-symlink": [
        link("pkg-1.0/sub/x.py", "setup.py", symbolic=True),
        regular("pkg-1.0/./sub/x.py", PAYLOAD),
        link("pkg-1.0/setup.py", "pkg-1.0/./sub/x.py", symbolic=False),
        link("pkg-1.0/d/setup.py", "pkg-1.0/setup.py", symbolic=False),
    ],
    # `d/sub/e.py` makes the directory `sub` (through `d` -> `.`), which the symlink `sub` cannot
    # replace; the engine had recorded the directory as `d/sub` only, so `sub` was followed to `x` and
    # the content listed as `x/e.py`.
    "symlink-over-a-directory-made-through-a-symlink": [
        link("pkg-1.0/d", ".", symbolic=True),
        regular("pkg-1.0/d/sub/e.py", PAYLOAD),
        link("pkg-1.0/sub", "x", symbolic=True),
    ],
}


@pytest.mark.parametrize("current", [False, True], ids=["running-python", "newest-readers"])
@pytest.mark.parametrize("members", LINKED_ALIKE.values(), ids=LINKED_ALIKE.keys())
def test_content_linked_alike_by_every_reader_shows_under_each_name(
    members: list[tuple[tarfile.TarInfo, bytes]], current: bool, scanner: Scanner
) -> None:
    assert_scanned_as_pip_writes(tar_with(members), "pkg-1.0.tar", scanner, current=current)


# Members written through symlinks whose two readings (the kernel's, older Pythons; `os.path.normpath`'s,
# current ones) lead to different places: (members, the names current Pythons write with the marker, or
# None for any).
PLACED_BY_VERSION: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes]], list[str] | None]] = {
    # `b` leads to `sub/deep/..` = `sub` on older Pythons, to `.` (pkg-1.0) on current ones: `b/setup.py`
    # lands in one directory or the other.
    "symlink-target-read-apart": (
        [
            regular("pkg-1.0/sub/deep/keep", b"k"),
            link("pkg-1.0/d", "sub/deep", symbolic=True),
            link("pkg-1.0/b", "d/..", symbolic=True),
            regular("pkg-1.0/b/setup.py", PAYLOAD),
        ],
        None,
    ),
    # `b` -> `a/..` is `pkg` both ways when it is made; once `a` is a symlink loop, older Pythons cannot
    # follow `b`, current ones (which wrote `.`) write `b/c/g.py` to `pkg/c/g.py`.
    "readings-parted-by-a-later-link": (
        [
            link("pkg/b", "a/..", symbolic=True),
            link("pkg/a", "a", symbolic=True),
            regular("pkg/b/c/g.py", PAYLOAD),
        ],
        ["pkg/c/g.py"],
    ),
    # Found by fuzzing against the newest tarfile: `sub` -> `b/../..` and `b` -> `sub` loop for the
    # kernel (older Pythons cannot write `b/x.py`); current ones wrote `sub` -> `..`, so `b` leads to
    # the unpack directory and `b/x.py` lands there.
    "a-loop-current-pythons-do-not-see": (
        [
            link("pkg-1.0/sub", "b/../..", symbolic=True),
            link("pkg-1.0/b", "sub", symbolic=True),
            regular("pkg-1.0/b/x.py", PAYLOAD),
        ],
        ["x.py"],
    ),
    # Found by fuzzing: the kernel refuses an empty symlink target (older Pythons make no `d`, and write
    # `d/sub/e.py` into a directory `d`); current Pythons' filter writes it as `.`.
    "empty-symlink-target": (
        [
            link("pkg-1.0/d", "", symbolic=True),
            regular("pkg-1.0/d/sub/e.py", PAYLOAD),
        ],
        ["pkg-1.0/sub/e.py"],
    ),
    # Found by fuzzing: the same for a hard link named through it.
    "hard-link-through-an-empty-symlink-target": (
        [
            link("pkg-1.0/a", "", symbolic=True),
            regular("pkg-1.0/setup.py", PAYLOAD),
            link("pkg-1.0/a/b/e.py", "pkg-1.0/setup.py", symbolic=False),
        ],
        ["pkg-1.0/setup.py", "pkg-1.0/b/e.py"],
    ),
}


@pytest.mark.parametrize(("members", "marked"), PLACED_BY_VERSION.values(), ids=PLACED_BY_VERSION.keys())
def test_a_member_through_a_symlink_python_versions_place_apart_is_not_clean(
    members: list[tuple[tarfile.TarInfo, bytes]], marked: list[str] | None, scanner: Scanner
) -> None:
    data = tar_with(members)
    written = pip_view(data, "pkg-1.0.tar", marker=MARKER, zstd=True).marked
    if marked is None:
        assert written
    else:
        assert written == marked
    assert_ambiguous(data, "pkg-1.0.tar", scanner)


def test_a_member_named_with_dot_dot_after_a_symlink_is_not_clean(scanner: Scanner) -> None:
    # Older Pythons write `d/../setup.py` to sub/setup.py (the kernel applies `..` after `d`); current
    # ones normalise the name first and write pkg-1.0/setup.py.
    members = [
        regular("pkg-1.0/sub/deep/keep", b"k"),
        link("pkg-1.0/d", "sub/deep", symbolic=True),
        regular("pkg-1.0/d/../setup.py", PAYLOAD),
    ]
    data = tar_with(members)
    old, new = (pip_view(data, "pkg-1.0.tar", marker=MARKER, zstd=zstd).marked for zstd in (False, True))
    assert old != new, (old, new)
    assert_ambiguous(data, "pkg-1.0.tar", scanner)


# Found by fuzzing link programs against the newest tarfile: a hard link re-declaring a name that is
# already a link or a file. Python versions replace the name differently (older ones fall back to copying
# the target's content into it, through whatever is there); the engine says the result is incomplete.
REPLACED_BY_A_HARD_LINK = {
    "hard-link-over-a-symlink-loop": [
        regular("pkg-1.0/a/b", PAYLOAD),
        link("pkg-1.0/d", "d", symbolic=True),
        link("pkg-1.0/d", "pkg-1.0/a/b", symbolic=False),
        link("pkg-1.0/g.py", "pkg-1.0/d", symbolic=False),
    ],
    "hard-link-over-a-hard-link-to-a-symlink": [
        link("pkg-1.0/f", "g", symbolic=True),
        link("pkg-1.0/g", "pkg-1.0/f", symbolic=False),
        regular("pkg-1.0/b/c", PAYLOAD),
        link("pkg-1.0/g", "pkg-1.0/b/c", symbolic=False),
        link("pkg-1.0/setup.py", "f", symbolic=True),
    ],
}


@pytest.mark.parametrize("members", REPLACED_BY_A_HARD_LINK.values(), ids=REPLACED_BY_A_HARD_LINK.keys())
def test_a_hard_link_replacing_a_link_is_never_clean(
    members: list[tuple[tarfile.TarInfo, bytes]], scanner: Scanner
) -> None:
    data = tar_with(members)
    marked = pip_view(data, "pkg-1.0.tar", marker=MARKER, zstd=True).marked
    assert any(name.endswith(".py") for name in marked), marked
    assert_ambiguous(data, "pkg-1.0.tar", scanner)


def ustar_block(name: bytes, size: int, kind: bytes) -> bytes:
    """One ustar header block, by hand (``tarfile`` will not write a PAX header before a GNU long name)."""
    header = bytearray(512)
    header[: len(name)] = name
    header[100:124] = b"0000644\x000000000\x000000000\x00"
    header[124:136] = b"%011o\x00" % size
    header[136:148] = b"00000000000\x00"
    header[156:157] = kind
    header[257:265] = b"ustar\x0000"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header)


def padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 512)


@pytest.mark.parametrize("content", [b"", PAYLOAD], ids=["empty", "with-data"])
def test_a_v7_directory_header_after_a_gnu_long_name_is_not_clean(content: bytes, scanner: Scanner) -> None:
    # Found by fuzzing against the newest tarfile: a v7 header (type NUL) named with a trailing slash
    # right after a GNU long name. Python 3.13 and earlier make it a directory; Python 3.14's tarfile
    # writes a file, here `x.py`, empty or not.
    name = b"pkg-1.0/sub/x.py/"
    data = (
        ustar_block(b"././@LongLink", len(name) + 1, b"L")
        + padded(name + b"\x00")
        + ustar_block(name, len(content), b"\x00")
        + padded(content)
        + bytes(1024)
    )
    new = pip_view(data, "pkg-1.0.tar", zstd=True)
    assert [path for path, _ in new.files] == ["pkg-1.0/sub/x.py"], new
    assert_ambiguous(data, "pkg-1.0.tar", scanner)


def test_a_pax_size_before_a_gnu_long_name_moves_the_next_header_in_python_3_14(scanner: Scanner) -> None:
    # Python 3.14's tarfile counts a PAX size from the header right after the PAX header (here the GNU
    # long name), so it reads the member's own header again, with its 512-byte size: the payload past
    # the PAX size is extracted over setup.py. Earlier versions (and the engine) read 10 bytes.
    longname = b"pkg-1.0/setup.py\x00"
    data = (
        ustar_block(b"././@PaxHeader", 11, b"x")
        + padded(b"11 size=10\n")
        + ustar_block(b"././@LongLink", len(longname), b"L")
        + padded(longname)
        + ustar_block(b"pkg-1.0/setup.py", 512, b"0")
        + (b"x = 1    \n" + PAYLOAD).ljust(512, b"\n")
        + b"\x00" * 1024
    )
    assert pip_view(data, "pkg-1.0.tar", marker=MARKER, zstd=True).marked == ["pkg-1.0/setup.py"]
    assert not pip_view(data, "pkg-1.0.tar", marker=MARKER).marked
    assert_ambiguous(data, "pkg-1.0.tar", scanner)


@pytest.mark.parametrize("separator", ["\x1c", "\x1f"])
def test_a_pax_size_int_refuses_is_zero_as_tarfile_reads_it(separator: str, scanner: Scanner) -> None:
    # str.strip() removes \x1c-\x1f, int() does not: tarfile reads the size as 0, and the next block
    # is the next header (here a symlink giving the payload a .py name), not this member's data.
    members = [
        regular("pkg-1.0/data.txt", PAYLOAD),
        regular("pkg-1.0/README.txt", b"", {"size": separator + "512"}),
        link("pkg-1.0/setup.py", "data.txt", symbolic=True),
    ]
    assert_scanned_as_pip_writes(tar_with(members), "pkg-1.0.tar", scanner)


def directory(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, b""


BENIGN = b"# benign\n"
UNPLACED = {
    # What lands where here depends on how tarfile replaces existing names, version by version: the
    # engine does not claim to know, and says the result is incomplete.
    "link-named-through-a-directory-symlink": [
        regular("pkg-1.0/data.txt", PAYLOAD),
        directory("pkg-1.0/sub"),
        regular("pkg-1.0/sub/setup.py", BENIGN),
        link("pkg-1.0/b", "sub", symbolic=True),
        link("pkg-1.0/b/setup.py", "../data.txt", symbolic=True),
    ],
    "hard-link-named-through-a-symlink": [
        regular("pkg-1.0/data.txt", PAYLOAD),
        link("pkg-1.0/b", ".", symbolic=True),
        link("pkg-1.0/b/setup.py", "pkg-1.0/data.txt", symbolic=False),
    ],
    "hard-link-target-replaced-by-a-symlink-loop": [
        regular("pkg-1.0/data.txt", PAYLOAD),
        link("pkg-1.0/setup.py", "pkg-1.0/data.txt", symbolic=False),
        link("pkg-1.0/data.txt", "data.txt", symbolic=True),
    ],
    "symlink-named-with-a-dot": [
        regular("pkg-1.0/m.txt", PAYLOAD),
        link("pkg-1.0/m.txt/.", "../", symbolic=True),
        link("pkg-1.0/setup.py", "pkg-1.0/m.txt", symbolic=False),
    ],
    "symlink-over-a-hard-link": [
        regular("a/f", PAYLOAD),
        link("pkg/b", "a/f", symbolic=False),
        link("pkg/a/f.py", "pkg/b", symbolic=False),
        link("pkg/b", "b", symbolic=True),
    ],
    "directory-over-a-symlink-then-a-symlink": [
        regular("pkg-1.0/benign.txt", BENIGN),
        link("pkg-1.0/setup.py", "benign.txt", symbolic=True),
        directory("pkg-1.0/setup.py"),
        regular("pkg-1.0/evil.txt", PAYLOAD),
        link("pkg-1.0/setup.py", "evil.txt", symbolic=True),
    ],
    "directory-over-a-file-then-a-symlink": [
        regular("pkg-1.0/setup.py", BENIGN),
        directory("pkg-1.0/setup.py"),
        regular("pkg-1.0/evil.txt", PAYLOAD),
        link("pkg-1.0/setup.py", "evil.txt", symbolic=True),
    ],
}


@pytest.mark.parametrize("members", UNPLACED.values(), ids=UNPLACED.keys())
def test_links_the_engine_cannot_place_exactly_are_never_clean(
    members: list[tuple[tarfile.TarInfo, bytes]], scanner: Scanner
) -> None:
    data = tar_with(members)
    view = pip_view(data, "pkg-1.0.tar", marker=MARKER)
    assert any(name.endswith(".py") for name in view.marked) or sys.version_info >= (3, 13), view
    assert_ambiguous(data, "pkg-1.0.tar", scanner)


def test_a_gnu_sparse_map_older_pythons_read_differently_is_not_clean(scanner: Scanner) -> None:
    # Python 3.12.5, 3.11.9, 3.10.14, 3.9.19 and earlier find the 0.0 map with a pattern over the whole
    # header: here inside a comment's value, so they extract the stored bytes; later versions, zeros.
    comment = f"\n1 GNU.sparse.offset=0\n1 GNU.sparse.numbytes={len(PAYLOAD)}\n"
    member = regular("pkg-1.0/setup.py", PAYLOAD, {"GNU.sparse.size": "64", "comment": comment})
    data = gzip.compress(tar_with([member]))
    # The Python 3.11.7 of the project's machines is one of them: the oracle sees the marker written.
    assert pip_view(data, "pkg-1.0.tar.gz", marker=MARKER).marked or sys.version_info >= (3, 11, 10)
    assert_ambiguous(data, "pkg-1.0.tar.gz", scanner)


# ----------------------------------------------------------------------------- gzip member headers

FHCRC, FNAME, RESERVED = 0x02, 0x08, 0x20


def gzip_member(data: bytes, flags: int = 0, header_crc: bytes = b"\x00\x00") -> bytes:
    """One gzip member with ``flags``; its header CRC-16 (when flagged) is ``header_crc``, right or not."""
    header = struct.pack("<2sBBIBB", b"\x1f\x8b", 8, flags, 0, 0, 255)
    if flags & FNAME:
        header += b"pkg-1.0.tar\x00"
    if flags & FHCRC:
        header += header_crc
    body = zlib.compress(data, 9)[2:-4]
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


SDIST = [("pkg-1.0/setup.py", PAYLOAD)]


@pytest.mark.parametrize(
    "flags",
    [FHCRC, FHCRC | FNAME, RESERVED, FHCRC | RESERVED],
    ids=["wrong-header-crc", "wrong-header-crc-with-name", "reserved-flag", "both"],
)
def test_gzip_header_fields_python_ignores_do_not_stop_the_scan(flags: int, scanner: Scanner) -> None:
    # gzip reads the header CRC-16 without checking it and ignores reserved flag bits.
    data = gzip_member(tar_of(SDIST), flags, header_crc=b"\xde\xad")
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0.tar.gz", scanner)
    assert dist.complete and not dist.issues


def test_a_second_gzip_member_with_a_wrong_header_crc_is_read(scanner: Scanner) -> None:
    tar = tar_of(SDIST)
    data = gzip_member(tar[:512]) + gzip_member(tar[512:], FHCRC, header_crc=b"\xbe\xef")
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0.tar.gz", scanner)
    assert dist.complete and not dist.issues


def test_a_wrong_trailer_crc_is_still_reported(scanner: Scanner) -> None:
    member = bytearray(gzip_member(tar_of(SDIST)))
    member[-8] ^= 0xFF
    dist = scanner.scan_bytes(bytes(member), "pkg-1.0.tar.gz")
    assert [i.kind for i in dist.issues] == ["bad-checksum"]
    assert any(m.identifier == "marker_py" for f in dist.files for m in f.matches)


# ------------------------------------------------------------------- v7 headers tarfile accepts


def v7_tar(checksum_text: bytes | None, *, signed: bool) -> bytes:
    """``setup.py`` in a v7 tar (no ustar magic) whose checksum field is written as ``checksum_text``
    formats it (``%o`` of the sum); ``signed``: bytes >= 0x80 in the header, and the signed sum."""
    block = bytearray(tar_of(SDIST, fmt=tarfile.USTAR_FORMAT)[:512])
    block[257:265] = bytes(8)  # no magic, no version: a v7 header
    block[345:500] = bytes(155)
    if signed:
        block[500:512] = b"\xff" * 12  # unused, but summed: the signed and unsigned sums differ
    block[148:156] = b" " * 8
    total = 256 + sum((b - 256 if signed and b > 127 else b) for b in block[:148] + block[156:])
    text = (checksum_text or b"%06o") % total
    block[148:156] = text.ljust(8, b"\x00")[:8]
    content = PAYLOAD + bytes(-len(PAYLOAD) % 512)
    return bytes(block) + content + bytes(1024)


@pytest.mark.parametrize(
    ("text", "signed"),
    [(None, True), (b"+%o", False), (b"\t%o", False), (b"0o%o", False), (b"0_%o", False)],
    ids=["signed-sum", "plus", "tab", "0o", "underscore"],
)
@pytest.mark.parametrize("compress", ["gz", "bz2", "xz"])
def test_v7_checksums_tarfile_accepts_open_the_tarball(
    text: bytes | None, signed: bool, compress: str, scanner: Scanner
) -> None:
    tar = v7_tar(text, signed=signed)
    data = {"gz": gzip.compress, "bz2": __import__("bz2").compress, "xz": lzma.compress}[compress](tar)
    dist = assert_scanned_as_pip_writes(data, f"pkg-1.0.tar.{compress}", scanner)
    assert dist.format == f"tar.{compress}"


# ------------------------------------------------------- the other formats Python's lzma reads


def lzip(data: bytes) -> bytes:
    """One lzip member (version 1, 1 MiB dictionary): LZMA with lc=3, lp=0, pb=2 and an end marker."""
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 20, "lc": 3, "lp": 0, "pb": 2}]
    body = b"LZIP\x01\x14" + lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    return body + struct.pack("<IQQ", zlib.crc32(data), len(data), len(body) + 20)


def lzma_alone(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_ALONE)


@pytest.mark.parametrize(
    ("compress", "filename", "fmt"),
    [
        (lzma_alone, "pkg-1.0.tar.lzma", "tar.lzma"),
        (lzma_alone, "pkg-1.0.tlz", "tar.lzma"),
        (lzma_alone, "pkg-1.0.tar.xz", "tar.lzma"),
        (lzip, "pkg-1.0.tar.lz", "tar.lz"),
    ],
    ids=["lzma", "tlz", "lzma-named-xz", "lzip"],
)
def test_tarballs_in_the_formats_tarfile_xz_mode_reads_are_opened(
    compress: Callable[[bytes], bytes], filename: str, fmt: str, scanner: Scanner
) -> None:
    # tarfile's "r:xz" reads with lzma's FORMAT_AUTO: .lzma always, lzip with liblzma 5.4 and later.
    data = compress(tar_of(SDIST))
    if compress is lzip:
        try:
            lzma.decompress(data)
        except lzma.LZMAError:
            pytest.skip("this Python's liblzma reads no lzip (it does from 5.4)")
    dist = assert_scanned_as_pip_writes(data, filename, scanner)
    assert dist.format == fmt and dist.complete


@pytest.mark.parametrize("second", [lzma_alone, lzma.compress], ids=["then-lzma", "then-xz"])
@pytest.mark.parametrize("filename", ["pkg-1.0.tar.lzma", "pkg-1.0.tar"])
def test_streams_after_an_lzma_stream_are_read_as_python_reads_them(
    second: Callable[[bytes], bytes], filename: str, scanner: Scanner
) -> None:
    # Python's lzma reads one stream after another, of any format: the tarball goes on in the next one.
    first = tar_of([("pkg-1.0/README", b"hello\n")])[:1024]  # one member, no end-of-archive blocks
    data = lzma_alone(first) + second(tar_of(SDIST))
    assert_scanned_as_pip_writes(data, filename, scanner)


def test_what_only_looks_like_an_lzma_header_stays_a_file(scanner: Scanner) -> None:
    # An .lzma stream that does not hold a tarball, and bytes that only start like an .lzma header.
    for data in (lzma_alone(PAYLOAD * 50), b"\x5d\x00\x00\x80\x00" + b"\xff" * 8 + PAYLOAD):
        dist = scanner.scan_bytes(data, "payload.bin")
        assert dist.format == "file" and dist.complete and not dist.issues


@pytest.mark.parametrize("dictionary", [0, 0xFFFFFFFF, 1 << 28], ids=["zero", "all-ones", "over-the-limit"])
def test_a_second_lzma_stream_the_engine_cannot_open_is_never_clean(
    dictionary: int, scanner: Scanner
) -> None:
    # Python's lzma reads stream after stream, and liblzma takes these dictionary sizes (0 passes its
    # round-up check; the others are under its default memory limit): pip writes evil.py from the second.
    tar = tar_of([("pkg-1.0/PKG-INFO", b"Name: pkg\n"), ("pkg-1.0/evil.py", PAYLOAD)])
    second = bytearray(lzma_alone(tar[1024:]))  # the second member's header on
    second[1:5] = struct.pack("<I", dictionary)
    data = lzma_alone(tar[:1024]) + bytes(second)
    view = pip_view(data, "pkg-1.0.tar.lzma", marker=MARKER)
    assert view.marked == ["pkg-1.0/evil.py"], f"the case is wrong: {view}"
    dist = scanner.scan_bytes(data, "pkg-1.0.tar.lzma")
    assert not dist.complete, dist.issues


def test_bytes_after_the_last_lzma_stream_are_never_clean(scanner: Scanner) -> None:
    data = lzma_alone(tar_of([("pkg-1.0/PKG-INFO", b"Name: pkg\n")])) + b"not a stream " + PAYLOAD
    dist = scanner.scan_bytes(data, "pkg-1.0.tar.lzma")
    assert not dist.complete, dist.issues


def test_a_file_named_like_an_lzma_tarball_that_is_none_is_not_clean(scanner: Scanner) -> None:
    dist = scanner.scan_bytes(b"not compressed at all\n" * 40, "pkg-1.0.tar.lzma")
    assert not dist.complete, [(i.kind, i.message) for i in dist.issues]


# --------------------------------------------------------------------------------- member names


def test_a_regular_file_named_with_a_trailing_slash_is_scanned_under_the_name_tarfile_writes(
    scanner: Scanner,
) -> None:
    # tarfile extracts it as `setup.py` (it strips trailing slashes from the target path).
    data = gzip.compress(tar_of([("pkg-1.0/setup.py/", PAYLOAD)], fmt=tarfile.GNU_FORMAT))
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0.tar.gz", scanner)
    assert [f.path for f in dist.files] == ["pkg-1.0/setup.py"]


def test_names_that_differ_after_the_display_limit_are_not_duplicates(scanner: Scanner) -> None:
    stem = "pkg-1.0/" + "a" * 5000
    data = tar_of([(stem + "/one.py", b"x = 1\n"), (stem + "/two.py", b"x = 2\n")])
    dist = scanner.scan_bytes(data, "pkg-1.0.tar")
    assert "duplicate-name" not in [i.kind for i in dist.issues]
    assert dist.files_scanned == 2


# ------------------------------------------------------- names pip writes after normalising or stripping


def wheel_of(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, content in [*members, ("pkg-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n")]:
            wheel.writestr(name, content)
    return out.getvalue()


@pytest.mark.parametrize("name", ["pkg/evil.py/.", "pkg/evil.py/x/..", "./pkg//evil.py/."])
def test_a_wheel_member_is_scanned_under_the_name_the_installer_normalises_it_to(
    name: str, scanner: Scanner
) -> None:
    # pip's wheel installer writes each member to os.path.normpath(name) (pip 23.2 and 24.2 install this
    # wheel's `pkg/evil.py/.` as pkg/evil.py): under its raw name, no `.py` rule saw it.
    data = wheel_of([("pkg/__init__.py", b""), (name, PAYLOAD)])
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0-py3-none-any.whl", scanner)
    assert dist.complete
    assert [i.kind for i in dist.issues if i.path == name and "normpath" in i.message] == ["ambiguous"]


def test_a_unicode_path_name_is_scanned_under_the_name_the_installer_normalises_it_to(
    scanner: Scanner,
) -> None:
    # Python 3.12 and later take the Unicode Path extra field's name (`pkg/evil.py/.`) for `pkg/a.txt`,
    # and pip's wheel installer writes its os.path.normpath form: pip 24.2 on 3.13 installs pkg/evil.py.
    name = b"pkg/a.txt"
    body = zlib.compress(PAYLOAD, 9)[2:-4]
    crc = zlib.crc32(PAYLOAD)
    field = struct.pack("<BI", 1, zlib.crc32(name)) + b"pkg/evil.py/."
    extra = struct.pack("<HH", 0x7075, len(field)) + field
    header = (b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), len(PAYLOAD), len(name), len(extra))
    local = struct.pack("<4sHHHHHIIIHH", *header) + name + extra + body
    fields = (
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(body),
        len(PAYLOAD),
        len(name),
        len(extra),
        0,
        0,
        0,
        0,
        0,
    )
    record = struct.pack("<4sHHHHHHIIIHHHHHII", *fields) + name + extra
    data = local + record + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(record), len(local), 0)
    assert_scanned_as_pip_writes(data, "pkg-1.0-py3-none-any.whl", scanner, current=True)


def test_a_tar_member_named_with_dot_dot_after_its_py_name_is_scanned_as_current_tarfile_writes_it(
    scanner: Scanner,
) -> None:
    # The newest tarfile's data filter normalises a name holding `..`: `pkg/evil.py/x/..` is pkg/evil.py.
    data = gzip.compress(tar_of([("pkg/evil.py/x/..", PAYLOAD)]))
    assert_scanned_as_pip_writes(data, "pkg-1.0.tar.gz", scanner, current=True)


def zip_of(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return out.getvalue()


SPLIT_AT_A_BACKSLASH = {
    "tar": ("pkg-1.0.tar.gz", gzip.compress(tar_of([("pkg/README", b"hello\n"), ("pkg\\evil.py", PAYLOAD)]))),
    "zip": ("pkg-1.0.zip", zip_of([("pkg/README", b"hello\n"), ("pkg\\evil.py", PAYLOAD)])),
}


@pytest.mark.parametrize(("filename", "data"), SPLIT_AT_A_BACKSLASH.values(), ids=SPLIT_AT_A_BACKSLASH.keys())
def test_a_name_pip_splits_at_a_backslash_is_scanned_under_the_name_it_writes(
    filename: str, data: bytes, scanner: Scanner
) -> None:
    # Every name shares the leading directory `pkg` once pip splits `pkg\evil.py` at its backslash: it
    # strips it and writes evil.py next to README.
    dist = assert_scanned_as_pip_writes(data, filename, scanner, strip_leading=True)
    assert dist.complete


def test_a_backslash_name_without_a_shared_leading_directory_is_scanned_under_its_own_name_only(
    scanner: Scanner,
) -> None:
    # The names share no first component: pip strips nothing and writes `pkg\evil.py` as it is.
    data = gzip.compress(tar_of([("README", b"hello\n"), ("pkg\\evil.py", PAYLOAD)]))
    dist = scanner.scan_bytes(data, "pkg-1.0.tar.gz")
    assert dist.complete and [f.path for f in dist.files] == ["pkg\\evil.py"]
    assert "ambiguous" not in [i.kind for i in dist.issues]


BENIGN = b"print('benign')\n"
LINKED_ONCE_STRIPPED = {
    # pip strips `pkg/` from the names but not from the target `./pkg/evil.txt` (its first component is
    # `.`): setup.py is linked to what was `pkg/pkg/evil.txt`.
    "hard-link-target-left-as-written": [
        regular("pkg/evil.txt", BENIGN),
        regular("pkg/pkg/evil.txt", PAYLOAD),
        link("pkg/setup.py", "./pkg/evil.txt", symbolic=False),
    ],
    # `pkg\setup.py` becomes setup.py, beside evil.txt, where its target is.
    "symlink-named-with-a-backslash": [
        regular("pkg/evil.txt", PAYLOAD),
        link("pkg\\setup.py", "evil.txt", symbolic=True),
    ],
    # `pkg\x.txt` becomes x.txt, the symlink to setup.py: its content is written through it.
    "written-through-a-symlink-once-stripped": [
        regular("pkg/setup.py", BENIGN),
        link("pkg/x.txt", "setup.py", symbolic=True),
        regular("pkg\\x.txt", PAYLOAD),
    ],
}


@pytest.mark.parametrize("members", LINKED_ONCE_STRIPPED.values(), ids=LINKED_ONCE_STRIPPED.keys())
def test_links_pip_makes_apart_once_it_strips_the_leading_directory_are_never_clean(
    members: list[tuple[tarfile.TarInfo, bytes]], scanner: Scanner
) -> None:
    data = gzip.compress(tar_with(members))
    stripped = pip_view(data, "pkg-1.0.tar.gz", marker=MARKER, strip_leading=True)
    kept = pip_view(data, "pkg-1.0.tar.gz", marker=MARKER)
    moved = [name for name in stripped.marked if name.endswith(".py") and name not in kept.marked]
    assert moved, f"the case is wrong: stripping puts the marker in no other .py file ({stripped.error})"
    assert_ambiguous(data, "pkg-1.0.tar.gz", scanner)


@pytest.mark.parametrize("target", ["../../evil.py", "/tmp/dfh-never-written/evil.py"])
@pytest.mark.parametrize("second", ["file", "hard-link"])
def test_a_member_written_through_a_symlink_leading_out_of_the_unpack_directory_is_never_clean(
    target: str, second: str, scanner: Scanner
) -> None:
    # pip before 24.1 (23.2.1 here) has no data filter: it makes the symlink, then opens the member's name
    # for writing, through it, and writes the content out there (current pip refuses the symlink).
    written = regular("pkg-1.0/x.txt", PAYLOAD)
    if second == "hard-link":
        written = link("pkg-1.0/x.txt", "pkg-1.0/README", symbolic=False)
    members = [regular("pkg-1.0/README", PAYLOAD), link("pkg-1.0/x.txt", target, symbolic=True), written]
    dist = scanner.scan_bytes(tar_with(members), "pkg-1.0.tar")
    assert not dist.complete
    assert [i.path for i in dist.issues if i.kind == "ambiguous" and "out of the unpack" in i.message] == [
        "pkg-1.0/x.txt"
    ]


def test_hard_links_within_the_leading_directory_stay_complete(scanner: Scanner) -> None:
    members = [
        regular("pkg-1.0/a.py", b"x = 1\n"),
        link("pkg-1.0/b.py", "pkg-1.0/a.py", symbolic=False),
        link("pkg-1.0/c.py", "a.py", symbolic=True),
    ]
    dist = scanner.scan_bytes(gzip.compress(tar_with(members)), "pkg-1.0.tar.gz")
    assert dist.complete and "ambiguous" not in [i.kind for i in dist.issues], dist.issues


# ------------------------------------------------------------------------------------ zip64 locators


def local_record(name: bytes, body: bytes, crc: int, size: int, method: int) -> bytes:
    fields = (b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(body), size, len(name), 0)
    return struct.pack("<4sHHHHHIIIHH", *fields) + name + body


def zip64_end_record(records: int, size: int, offset: int, extensible: int = 0) -> bytes:
    fields = (b"PK\x06\x06", 44 + extensible, 45, 45, 0, 0, records, records, size, offset)
    return struct.pack("<4sQHHIIQQQQ", *fields)


def zip64_locator(offset: int) -> bytes:
    return struct.pack("<4sIQI", b"PK\x06\x07", 0, offset, 1)


def end_record(records: int, size: int, offset: int, comment: int = 0) -> bytes:
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, records, records, size, offset, comment)


def zip64_locator_elsewhere() -> bytes:
    """A zip whose end record lists only ``pkg/data.bin``, stored, and whose zip64 locator names a zip64
    end record hidden in that member's data, behind a central directory listing ``pkg/evil.py``
    (deflated, so its text is in no raw bytes). Python 3.14's ``zipfile`` (and the October 2025
    security releases') follows the locator there; older ones look for that record only right before
    the locator, find none, and read the end record."""
    evil = zlib.compress(PAYLOAD, 9)[2:-4]
    evil_local = local_record(b"pkg/evil.py", evil, zlib.crc32(PAYLOAD), len(PAYLOAD), 8)
    inner_start = 30 + len(b"pkg/data.bin")  # where data.bin's data starts
    evil_offset = inner_start + 4
    evil_record = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            *(b"PK\x01\x02", 20, 20, 0, 8, 0, 0, zlib.crc32(PAYLOAD), len(evil), len(PAYLOAD)),
            *(len(b"pkg/evil.py"), 0, 0, 0, 0, 0, evil_offset),
        )
        + b"pkg/evil.py"
    )
    directory_offset = evil_offset + len(evil_local)
    record_offset = directory_offset + len(evil_record)
    # data.bin's own record follows its data, with a 20-byte comment that the locator takes the place
    # of: the zip64 record's extensible data runs from its end to the locator.
    outer_record_len = 46 + len(b"pkg/data.bin") + 20
    padding = 8
    extensible = padding + outer_record_len - 20
    zip64 = zip64_end_record(1, len(evil_record), directory_offset, extensible)
    inner = b"JUNK" + evil_local + evil_record + zip64 + b"\x00" * padding
    data_local = local_record(b"pkg/data.bin", inner, zlib.crc32(inner), len(inner), 0)
    outer_record = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            *(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, zlib.crc32(inner), len(inner), len(inner)),
            *(len(b"pkg/data.bin"), 0, 20, 0, 0, 0, 0),
        )
        + b"pkg/data.bin"
    )
    outer_offset = len(data_local)
    return (
        data_local
        + outer_record
        + zip64_locator(record_offset)
        + end_record(1, outer_record_len, outer_offset)
    )


def test_a_zip64_locator_leading_to_another_directory_is_never_clean(scanner: Scanner) -> None:
    data = zip64_locator_elsewhere()
    newest = pip_view(data, "pkg-1.0.zip", marker=MARKER, zstd=True)
    assert newest.marked == ["pkg/evil.py"], f"the case is wrong: {newest}"
    for filename in ("pkg-1.0-py3-none-any.whl", "pkg-1.0.zip"):
        assert_ambiguous(data, filename, scanner)


@pytest.mark.parametrize("prepended", [b"", b"#!/bin/sh\nexit 0\n"], ids=["plain", "prepended"])
def test_a_zip64_end_record_every_python_reads_alike_stays_complete(
    prepended: bytes, scanner: Scanner
) -> None:
    # The locator names the record right before it (offsets not shifted by what is prepended, as for a
    # self-extracting archive): every Python reads the same directory.
    evil = zlib.compress(PAYLOAD, 9)[2:-4]
    local = local_record(b"pkg/evil.py", evil, zlib.crc32(PAYLOAD), len(PAYLOAD), 8)
    record = central_record(b"pkg/evil.py", 8, zlib.crc32(PAYLOAD), (len(evil), len(PAYLOAD)))
    zip64_offset = len(local) + len(record)
    tail = zip64_end_record(1, len(record), len(local)) + zip64_locator(zip64_offset)
    data = prepended + local + record + tail + end_record(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    for current in (False, True):
        dist = assert_scanned_as_pip_writes(data, "pkg-1.0-py3-none-any.whl", scanner, current=current)
        assert "ambiguous" not in [i.kind for i in dist.issues], dist.issues
