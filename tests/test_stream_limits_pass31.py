"""The compressed-stream guard against generated archives (pass 31, after f762f2d).

The invariant: whenever a stream's guard trips (the total-size or the ratio limit), an issue names the
limit and the result is not complete: content left unread never looks clean. A marker in a member the
engine read whole before the limit is still reported. Every container the engine opens (gzip, bzip2,
xz, ``.lzma``, lzip, zstd), a tar in each, a single compressed file, several gzip members, bytes after
the stream and a tarball inside a wheel, with the limit swept through the first 1024 inflated bytes,
the member boundaries, a member's data, its padding, the end-of-archive blocks and the last byte.

Where markers are lost by design (the member in which the limit falls is not scanned, as "this and
later members were not scanned" says; the bytes of the read that trips are never handed out): a limit
inside the marker's own member, which includes every limit under 1 KiB on a tarball and any limit under
the size of a single compressed file.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import dragonfly_hybrid as dh
import pytest
from backports import zstd

from tests.archive_gen import BLOCK, member, tar_of
from tests.fakes.pypi import MARKER, MARKER_RULE

RULES = dh.Rules.compile({"marker.yar": MARKER_RULE})
LIMIT_KINDS = {"total-size-exceeded", "compression-ratio"}
RATIO_GRACE = 1 << 20


def lzip(data: bytes) -> bytes:
    """One lzip member (as tests/test_pip_disagreements.py builds it: Python writes no lzip)."""
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 20, "lc": 3, "lp": 0, "pb": 2}]
    body = b"LZIP\x01\x14" + lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    return body + struct.pack("<IQQ", zlib.crc32(data), len(data), len(body) + 20)


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gz": lambda data: gzip.compress(data, mtime=0),
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    "lz": lzip,
    "zst": zstd.compress,
}

# A tar of a marker file and a random (incompressible) one: the ratio never trips on it.
_rng = random.Random(31)
MARKED = b"# " + MARKER + b"\n" + _rng.randbytes(700).hex().encode()[:700]
FILLER = _rng.randbytes(3000)
TAR = tar_of(member("p/a.py", MARKED), member("p/b.bin", FILLER))
MARKED_END = BLOCK + len(MARKED)  # the marker member's data ends here in the tar stream
FILLER_AT = 2 * BLOCK + -(-len(MARKED) // BLOCK) * BLOCK  # the filler member's data starts here
END_AT = FILLER_AT + -(-len(FILLER) // BLOCK) * BLOCK  # the end-of-archive blocks start here


def interesting(total: int, *points: int, step: int = 97) -> list[int]:
    """Limits around each point, and a sweep through 1..total+1."""
    near = {p + d for p in (1, 512, 1024, total, *points) for d in (-1, 0, 1)}
    return sorted(n for n in near | set(range(1, total + 2, step)) if n >= 1)


TAR_LIMITS = interesting(
    len(TAR),
    MARKED_END,  # inside the first member's padding
    FILLER_AT - BLOCK,  # at the second header
    FILLER_AT,  # at the second member's data
    FILLER_AT + 1500,  # inside its data
    END_AT - 1,  # inside its padding
    END_AT,  # at the end-of-archive blocks
    END_AT + BLOCK,  # between them
)


def scan(data: bytes, name: str, threads: int, **limits: int) -> dh.DistributionResult:
    return dh.Scanner(RULES, dh.Limits(**limits), threads=threads).scan_bytes(data, name)


def kinds(result: dh.DistributionResult) -> set[str]:
    return {issue.kind for issue in result.issues}


def assert_limit_held(result: dh.DistributionResult, inflated: int, limit: int, what: str) -> None:
    """Over the limit: not complete, a limit named. At or under it: complete, no limit named."""
    summary = f"{what}: limit {limit}, inflated {inflated}: complete={result.complete} issues={kinds(result)}"
    if inflated > limit:
        assert not result.complete and kinds(result) & LIMIT_KINDS, summary
        assert result.verdict != "clean", summary
    else:
        assert result.complete and not kinds(result) & LIMIT_KINDS, summary


# ----------------------------------------------------------------------------- a tarball in each stream


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ext", list(COMPRESS))
def test_a_tarball_stopped_anywhere_in_its_stream_is_never_clean(ext: str, threads: int) -> None:
    data = COMPRESS[ext](TAR)
    for limit in TAR_LIMITS:
        result = scan(data, f"p-1.0.tar.{ext}", threads, max_total_size=limit)
        assert_limit_held(result, len(TAR), limit, f"tar.{ext}")
        if limit >= MARKED_END + BLOCK:
            # The marker's member was read whole before the limit (its padding and the next header too).
            assert "test_marker" in result.rules_matched, f"tar.{ext}: limit {limit} lost the marker"


@pytest.mark.parametrize("threads", [1, 2])
def test_the_same_tarball_uncompressed_is_held_as_the_compressed_one(threads: int) -> None:
    """A plain tar is read through the same guard (headers and blocks count): the same outcome."""
    compressed = COMPRESS["gz"](TAR)
    for limit in TAR_LIMITS:
        result = scan(TAR, "p-1.0.tar", threads, max_total_size=limit)
        assert_limit_held(result, len(TAR), limit, "tar")
        expected = scan(compressed, "p-1.0.tar.gz", threads, max_total_size=limit)
        outcome = (result.complete, kinds(result), result.rules_matched)
        assert outcome == (expected.complete, kinds(expected), expected.rules_matched), f"tar: limit {limit}"


@pytest.mark.parametrize("ext", list(COMPRESS))
def test_scan_path_holds_the_limit_as_scan_bytes(ext: str, tmp_path: Path) -> None:
    path = tmp_path / f"p-1.0.tar.{ext}"
    path.write_bytes(COMPRESS[ext](TAR))
    for limit in (1000, MARKED_END + BLOCK, END_AT, len(TAR) - 1, len(TAR)):
        for threads in (1, 2):
            scanner = dh.Scanner(RULES, dh.Limits(max_total_size=limit), threads=threads)
            result = scanner.scan_path(path)
            assert_limit_held(result, len(TAR), limit, f"scan_path tar.{ext}")
            if limit < path.stat().st_size:
                continue  # refused whole, as documented (docs/security.md, "Limits")
            expected = scan(path.read_bytes(), path.name, threads, max_total_size=limit)
            assert (result.complete, kinds(result), result.rules_matched) == (
                expected.complete,
                kinds(expected),
                expected.rules_matched,
            )


# ------------------------------------------------------------------- a single file, members, trailers


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ext", [ext for ext in COMPRESS if ext != "lzma"])
def test_a_single_compressed_file_stopped_anywhere_is_never_clean(ext: str, threads: int) -> None:
    """Not a tar: one member, so any limit under its size loses the marker (by design). (A ``.lzma``
    stream that does not inflate to a tar header is a plain file: it has no magic bytes.)"""
    content = b"# " + MARKER + b"\n" + random.Random(7).randbytes(5000)
    data = COMPRESS[ext](content)
    for limit in interesting(len(content)):
        result = scan(data, f"evil.py.{ext}", threads, max_total_size=limit)
        assert_limit_held(result, len(content), limit, f"py.{ext}")
        assert ("test_marker" in result.rules_matched) == (limit >= len(content)), f"py.{ext}: limit {limit}"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cut", [100, BLOCK, 2 * BLOCK, 1500, FILLER_AT, END_AT, len(TAR) - 1])
def test_gzip_members_split_anywhere_are_held_as_one_stream(cut: int, threads: int) -> None:
    data = gzip.compress(TAR[:cut], mtime=0) + gzip.compress(TAR[cut:], mtime=0)
    for limit in interesting(len(TAR), cut, MARKED_END, END_AT, step=211):
        result = scan(data, "p-1.0.tar.gz", threads, max_total_size=limit)
        assert_limit_held(result, len(TAR), limit, f"gzip cut at {cut}")
        if limit >= MARKED_END + BLOCK:
            assert "test_marker" in result.rules_matched, f"gzip cut at {cut}: limit {limit}"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ext", ["gz", "zst"])
def test_bytes_after_the_stream_do_not_hide_a_limit(ext: str, threads: int) -> None:
    """The trailing bytes are scanned when the stream was read whole; when the limit stopped it, the
    result is incomplete whatever they hold."""
    data = COMPRESS[ext](TAR) + b"TRAILER " + MARKER
    for limit in interesting(len(TAR), MARKED_END, END_AT, step=211):
        result = scan(data, f"p-1.0.tar.{ext}", threads, max_total_size=limit)
        assert_limit_held(result, len(TAR), limit, f"tar.{ext} with a trailer")
        if limit >= len(TAR):
            assert "hidden-data" in kinds(result) and "test_marker" in result.rules_matched


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ext", list(COMPRESS))
def test_a_tarball_inside_a_wheel_is_held_by_its_own_stream_and_the_total(ext: str, threads: int) -> None:
    """The total counts the wheel's member (the compressed tarball) and then the tarball's members."""
    inner = COMPRESS[ext](TAR)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as wheel:
        wheel.writestr(f"p/data.tar.{ext}", inner)
    data = buffer.getvalue()
    counted = len(inner) + len(MARKED) + len(FILLER)
    for limit in interesting(counted, len(inner), len(inner) + len(MARKED), step=173):
        result = scan(data, "p-1.0-py3-none-any.whl", threads, max_total_size=limit)
        assert_limit_held(result, counted, limit, f"wheel with a tar.{ext}")
        if limit >= len(inner) + MARKED_END + BLOCK:
            assert "test_marker" in result.rules_matched, f"wheel with a tar.{ext}: limit {limit}"


# ------------------------------------------------------------------------------------------ the ratio


def at_ratio(compressed_size: Callable[[bytes], int], over: int) -> tuple[bytes, int]:
    """Content (the marker, random bytes, zeros; past the 1 MiB grace) exactly ``over`` bytes longer
    than N times its compressed size, and N (about its natural ratio)."""
    start = b"# " + MARKER + b"\n" + random.Random(3).randbytes(1000)
    zeros = 2 << 20
    ratio = (len(start) + zeros) // compressed_size(start + bytes(zeros))
    for _ in range(60):
        content = start + bytes(zeros)
        wanted = ratio * compressed_size(content) + over
        if len(content) == wanted:
            return content, ratio
        zeros += wanted - len(content) if abs(wanted - len(content)) > 1 else 1
    raise AssertionError("no content of that ratio found")


def zip_member_size(content: bytes) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("p/a.py", content)
    return archive.getinfo("p/a.py").compress_size


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("over", [0, 1])
def test_a_zip_member_at_its_ratio_passes_and_one_byte_over_is_stopped(over: int, threads: int) -> None:
    content, ratio = at_ratio(zip_member_size, over)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("p/a.py", content)
    result = scan(buffer.getvalue(), "p-1.0-py3-none-any.whl", threads, max_ratio=ratio)
    assert "test_marker" in result.rules_matched  # before the ratio is judged
    if over:
        assert not result.complete and kinds(result) == {"compression-ratio"}
    else:
        assert result.complete and not result.issues


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ext", ["gz", "xz", "zst"])
def test_a_stream_one_byte_over_its_ratio_is_stopped(ext: str, threads: int) -> None:
    """Judged against the compressed bytes consumed so far (never more than the file), so a stream over
    N:1 of its file size is always stopped; as a single file and as a tarball's one member. (Exactly at
    N:1 of its file size a gzip, xz or zstd stream is stopped too, unlike a zip member: its trailer,
    index or checksum is not consumed yet when the last bytes come out. Stricter, so not asserted.)"""
    compress = COMPRESS[ext]
    content, ratio = at_ratio(lambda c: len(compress(c)), 1)
    packed = compress(content)
    result = scan(packed, f"big.py.{ext}", threads, max_ratio=ratio)
    assert not result.complete and "compression-ratio" in kinds(result), kinds(result)
    # A tarball over the ratio (its headers and blocks only add to the inflated side).
    tar = tar_of(member("p/a.py", content))
    result = scan(compress(tar), f"p-1.0.tar.{ext}", threads, max_ratio=(len(tar) - 1) // len(compress(tar)))
    assert not result.complete and "compression-ratio" in kinds(result), kinds(result)
    # Well under the ratio: complete, the marker found.
    result = scan(packed, f"big.py.{ext}", threads, max_ratio=2 * ratio)
    assert result.complete and "test_marker" in result.rules_matched and len(content) > RATIO_GRACE
