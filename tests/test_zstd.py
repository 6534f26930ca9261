"""zstd, as Python 3.14 reads it, side by side with pip's view on Python 3.14's readers.

Python 3.14's ``tarfile`` opens zstd tarballs in ``r:*`` mode (pip's mode for a ``.tar`` sdist, and for
a file whose name it does not know) and its ``zipfile`` reads members compressed with method 93. The
oracle is ``tests/pip_oracle.py`` with those readers: the standard library's on 3.14, the
``backports.zstd`` port of the same modules before it. The archives are built here with that port's
writers, and by hand where a writer would not make them (skippable frames, bytes after the last frame,
a member of two frames).
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from types import ModuleType

import pytest
from dragonfly_hybrid import DistributionResult, Rules, Scanner

from tests.pip_oracle import PipView, name_matches, pip_view, readers

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

MARKER = b"EVIL_MARKER_5c1e"
PAYLOAD = b"import os\n# " + MARKER + b"\n"
RULES = {
    "marker.yar": 'rule marker_py { meta: filetype = ".py" strings: $a = "EVIL_MARKER_5c1e" condition: $a }',
    "anywhere.yar": 'rule marker_any { strings: $a = "EVIL_MARKER_5c1e" condition: $a }',
}
TAR_MODULE, ZIP_MODULE = readers(zstd=True)


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(Rules.compile(RULES), threads=2)


def flagged_paths(dist: DistributionResult) -> list[str]:
    return [f.path for f in dist.files if any(m.identifier == "marker_py" for m in f.matches)]


def assert_scanned_as_pip_writes(data: bytes, filename: str, scanner: Scanner) -> DistributionResult:
    view: PipView = pip_view(data, filename, marker=MARKER, zstd=True)
    marked = [name for name in view.marked if name.endswith(".py")]
    assert marked, f"the case is wrong: pip writes no .py file with the marker ({view.error or view.kind})"
    dist = scanner.scan_bytes(data, filename)
    for name in marked:
        assert any(name_matches(name, path) for path in flagged_paths(dist)), (
            f"pip writes {name!r} with the marker; the .py rule matched {flagged_paths(dist)} "
            f"(files: {[f.path for f in dist.files]}, issues: {[(i.kind, i.message) for i in dist.issues]})"
        )
    return dist


def plain_tar(tar_module: ModuleType = TAR_MODULE) -> bytes:
    out = io.BytesIO()
    with tar_module.open(fileobj=out, mode="w", format=tar_module.PAX_FORMAT) as tar:
        for name, content in [
            ("pkg-1.0/setup.py", b"from setuptools import setup\n"),
            ("pkg-1.0/evil.py", PAYLOAD),
        ]:
            info = tar_module.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def skippable(content: bytes, magic: int = 0x184D2A50) -> bytes:
    return struct.pack("<II", magic, len(content)) + content


def streamed_frame(data: bytes, window_log: int) -> bytes:
    """One frame written as a stream (its size unknown up front), so its header names its window."""
    compressor = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: window_log})
    return compressor.compress(data) + compressor.flush()


# ------------------------------------------------------------------ tarballs (tarfile's r:* on 3.14)


def test_a_zstd_tarball_named_tar_is_read_as_pip_reads_it(scanner: Scanner) -> None:
    data = zstd.compress(plain_tar())
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0.tar", scanner)
    assert dist.format == "tar.zst"
    assert dist.complete, [(i.kind, i.message) for i in dist.issues]
    assert not dist.issues


def test_the_tarfile_writer_of_python_3_14_is_read(scanner: Scanner) -> None:
    out = io.BytesIO()
    with TAR_MODULE.open(fileobj=out, mode="w:zst") as tar:
        info = TAR_MODULE.TarInfo("pkg-1.0/evil.py")
        info.size = len(PAYLOAD)
        tar.addfile(info, io.BytesIO(PAYLOAD))
    dist = assert_scanned_as_pip_writes(out.getvalue(), "pkg-1.0.tar", scanner)
    assert dist.format == "tar.zst"


def test_skippable_frames_and_a_tarball_split_over_frames(scanner: Scanner) -> None:
    # libzstd passes over skippable frames and Python's ZstdFile reads frame after frame: the payload's
    # member starts in one frame and ends in the next.
    raw = plain_tar()
    cut = raw.index(MARKER) + 4
    data = (
        skippable(b"x" * 40)
        + zstd.compress(raw[:cut])
        + skippable(b"", 0x184D2A5F)
        + zstd.compress(raw[cut:])
    )
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0.tar", scanner)
    assert dist.format == "tar.zst"
    assert dist.complete


def test_bytes_after_the_last_frame_are_found_and_scanned(scanner: Scanner) -> None:
    # Python ignores what follows the last frame when it is no frame; the engine scans it as hidden data
    # (here a second payload that no rule would otherwise see).
    hidden = b"trailing " + MARKER
    data = zstd.compress(plain_tar()) + hidden
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0.tar", scanner)
    kinds = {i.kind: i for i in dist.issues}
    assert "hidden-data" in kinds, dist.issues
    assert "after the last zstd frame" in kinds["hidden-data"].message
    hidden_files = [f for f in dist.files if f.path == "<after end of zstd stream>"]
    assert [m.identifier for f in hidden_files for m in f.matches] == ["marker_any"], dist.files


def test_a_frame_over_the_window_limit_fails_as_in_python_and_is_not_clean(scanner: Scanner) -> None:
    # A 256 MiB window: over libzstd's default limit, which Python keeps, so pip cannot unpack it either.
    data = streamed_frame(plain_tar(), window_log=28)
    view = pip_view(data, "pkg-1.0.tar", marker=MARKER, zstd=True)
    assert view.failed and not view.files, view
    assert "not a zstd file" in view.error
    dist = scanner.scan_bytes(data, "pkg-1.0.tar")
    assert not dist.complete
    assert any(i.kind == "corrupt" and "too much memory" in i.message for i in dist.issues), dist.issues


def test_a_frame_at_the_window_limit_is_read(scanner: Scanner) -> None:
    data = streamed_frame(plain_tar(), window_log=27)
    dist = assert_scanned_as_pip_writes(data, "pkg-1.0.tar", scanner)
    assert dist.complete


def test_a_frame_whose_checksum_does_not_match_is_flagged_and_its_content_scanned(scanner: Scanner) -> None:
    # The checksum ends the frame, past the tarball's end marker: tarfile never reads that far, so pip
    # writes every member.
    frame = bytearray(zstd.compress(plain_tar(), options={zstd.CompressionParameter.checksum_flag: 1}))
    frame[-1] ^= 0xFF
    dist = assert_scanned_as_pip_writes(bytes(frame), "pkg-1.0.tar", scanner)
    assert any(i.kind == "bad-checksum" for i in dist.issues), dist.issues


def test_a_corrupt_frame_is_never_clean(scanner: Scanner) -> None:
    frame = bytearray(zstd.compress(plain_tar()))
    frame[6:30] = bytes(24)
    dist = scanner.scan_bytes(bytes(frame), "pkg-1.0.tar")
    assert not dist.complete
    assert any(i.kind == "corrupt" for i in dist.issues), dist.issues


def legacy_v07_frame(data: bytes) -> bytes:
    """``data`` as one frame of zstd v0.7 (before 1.0; magic 0xFD2FB527) of raw blocks, built by hand:
    no writer makes them any more. Header: no dictionary, no checksum, a 128 KiB window."""

    def block_header(kind: int, size: int) -> bytes:  # kind: 1 raw, 3 end of frame
        return bytes([kind << 6 | size >> 16, size >> 8 & 0xFF, size & 0xFF])

    chunks = [data[i : i + (1 << 17)] for i in range(0, len(data), 1 << 17)]
    blocks = b"".join(block_header(1, len(chunk)) + chunk for chunk in chunks)
    return struct.pack("<I", 0xFD2FB527) + bytes([0x00, (17 - 10) << 3]) + blocks + block_header(3, 0)


def test_a_legacy_frame_is_read(scanner: Scanner) -> None:
    # libzstd decodes frames of zstd before 1.0 where it is built with legacy support (the engine's is);
    # the backports.zstd build refuses them. pip reads such a tarball where its libzstd does, so the
    # engine reads it as the tarball inside: its members are what pip's view of that tarball writes.
    raw = plain_tar()
    marked = [name for name in pip_view(raw, "pkg-1.0.tar", marker=MARKER).marked if name.endswith(".py")]
    assert marked == ["pkg-1.0/evil.py"]
    dist = scanner.scan_bytes(legacy_v07_frame(raw), "pkg-1.0.tar")
    assert dist.format == "tar.zst"
    assert dist.complete, [(i.kind, i.message) for i in dist.issues]
    assert flagged_paths(dist) == marked
    assert dist.files_scanned == 2


# ------------------------------------------------------------------ zip members (method 93)


def test_a_wheel_of_zstd_members_is_read_as_pip_installs_it(scanner: Scanner) -> None:
    out = io.BytesIO()
    with ZIP_MODULE.ZipFile(out, "w", compression=ZIP_MODULE.ZIP_ZSTANDARD) as wheel:
        wheel.writestr("evil.py", PAYLOAD)
        wheel.writestr("evil-1.0.dist-info/RECORD", b"")
    dist = assert_scanned_as_pip_writes(out.getvalue(), "evil-1.0-py3-none-any.whl", scanner)
    assert dist.complete, dist.issues
    assert not dist.issues


def zip_of_raw_member(name: bytes, body: bytes, crc: int, size: int) -> bytes:
    """A one-member zip whose member is ``body`` as stored, compressed with method 93."""
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 63, 0, 93, 0, 0, crc, len(body), size, len(name), 0)
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        63,
        63,
        0,
        93,
        0,
        0,
        crc,
        len(body),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    end = struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        1,
        1,
        len(central) + len(name),
        len(local) + len(name) + len(body),
        0,
    )
    return local + name + body + central + name + end


def test_a_member_of_two_frames_is_its_first_frame_as_zipfile_reads_it(scanner: Scanner) -> None:
    # zipfile's ZstdDecompressor stops at the end of the first frame: that frame is the member, the
    # second is never written by pip.
    first, second = PAYLOAD, b"print('never written')\n"
    body = zstd.compress(first) + zstd.compress(second)
    data = zip_of_raw_member(b"evil.py", body, zlib.crc32(first), len(first))
    dist = assert_scanned_as_pip_writes(data, "evil-1.0-py3-none-any.whl", scanner)
    view = pip_view(data, "evil-1.0-py3-none-any.whl", zstd=True)
    [(name, digest)] = view.files
    [scanned] = [f for f in dist.files if f.path == name]
    assert scanned.sha256 == digest


def test_a_zip_member_over_the_window_limit_is_not_clean(scanner: Scanner) -> None:
    body = streamed_frame(PAYLOAD * 100, window_log=28)
    data = zip_of_raw_member(b"evil.py", body, zlib.crc32(PAYLOAD * 100), len(PAYLOAD) * 100)
    view = pip_view(data, "evil-1.0-py3-none-any.whl", zstd=True)
    assert view.failed and "too much memory" in view.error, view
    dist = scanner.scan_bytes(data, "evil-1.0-py3-none-any.whl")
    assert not dist.complete
    assert any("too much memory" in i.message for i in dist.issues), dist.issues
