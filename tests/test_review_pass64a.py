"""Red-team pass 64a: the archive side against CPython and pip, looking for a false clean.

What pip installs from a wheel or unpacks from an sdist for the build is read here as before
(``tarfile``, ``zipfile``, pip's installer); the earlier passes hold (see the report). What this pass
found is one level down: a zip *inside* a distribution is read by the engine with ``zipfile``'s rules
only, but CPython runs code out of a zip with its other zip reader, ``zipimport``, which reads the same
bytes differently:

- ``zipimport`` (``_get_data``) reads a member's whole compressed size and inflates all of it: it never
  truncates to the declared uncompressed size and never checks the CRC-32. The engine (after the
  first red-team pass's fix for ``zipfile``) scans only the first ``file_size`` bytes under the
  member's name when their CRC-32 matches, and the bytes after them under
  ``NAME<after its declared size>``, a name no ``.py`` rule fits.
- ``zipimport`` (``_read_directory``, Python 3.9 to 3.12) ignores zip64: it finds the central directory
  from the classic end record's size and offset, and reads records until a signature that is not a
  central record; ``zipfile`` (and the engine) take the zip64 end record's directory whenever a zip64
  locator sits before the end record. Two directories, two ``backend.py`` (3.13's ``zipimport`` reads
  zip64 and agrees with ``zipfile``).

A zip is a legitimate place for Python code to run from: pip puts an sdist's ``backend-path`` entries
(relative paths inside the project, which may name a zip file) on ``sys.path`` and imports the
build backend from there while it builds the sdist. Run by hand with pip 26.3 on Python 3.11.7
(``pip wheel --no-deps --no-index`` of each sdist below, the payload writing a file): the bytes after
the declared size ran (case 1), and the zip64-hidden directory's ``backend.py`` ran (case 2); the
engine's verdict for both with a ``.py``-only rule was ``clean``, complete (the bundled rules all have a
``filetype``). ``test_pip_runs_the_bytes_after_the_declared_size`` re-runs case 1 through pip 26.3
when its wheel is at ``/tmp/modpip`` (skipped otherwise).

Each test asserts the verdict as it should be: the ``.py`` rule matches the content CPython imports
under a ``.py`` name, or the result is not complete. They failed before the fix: the engine now scans a
member's whole content as the file too (``split_at_declared_size``: ``NAME<as zipimport reads it>``, the
rules of ``NAME`` counting for it) and reports an archive whose
classic end record names another directory than its zip64 record ``ambiguous`` (``classic_directory``).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import subprocess
import sys
import tarfile
import zipimport
import zlib
from pathlib import Path

import pytest
from dragonfly_hybrid import DistributionResult, Rules, Scanner

MARKER = b"EVIL_MARKER_7f3a"
RULES = {
    "marker.yar": 'rule marker_py { meta: filetype = ".py" strings: $a = "EVIL_MARKER_7f3a" condition: $a }',
}
BENIGN = b"def build_wheel(*args, **kwargs):\n    raise SystemExit('benign backend')\n"
PIP26 = Path("/tmp/modpip/pip-26.3-py3-none-any.whl")


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(Rules.compile(RULES), threads=2)


def local_header(name: bytes, method: int, crc: int, csize: int, usize: int) -> bytes:
    return (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, csize, usize, len(name), 0)
        + name
    )


def central_record(name: bytes, method: int, crc: int, csize: int, usize: int, offset: int) -> bytes:
    fields = (b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, csize, usize, len(name), 0, 0, 0, 0, 0, offset)
    return struct.pack("<4sHHHHHHIIIHHHHHII", *fields) + name


def end_record(records: int, size: int, offset: int) -> bytes:
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, records, records, size, offset, 0)


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def longer_than_declared(tail: bytes, method: int) -> bytes:
    """A zip of one ``backend.py`` whose data holds ``BENIGN + tail`` while its directory record declares
    ``BENIGN`` alone (size and CRC-32): ``zipfile`` extracts ``BENIGN``, ``zipimport`` imports all of it."""
    full = BENIGN + tail
    body = full if method == 0 else deflate(full)
    crc = zlib.crc32(BENIGN)
    local = local_header(b"backend.py", method, crc, len(body), len(BENIGN)) + body
    record = central_record(b"backend.py", method, crc, len(body), len(BENIGN), 0)
    return local + record + end_record(1, len(record), len(local))


def two_directories(evil: bytes) -> bytes:
    """A zip with two central directories: the zip64 end record's (``zipfile``: ``backend.py`` is
    ``BENIGN``) and, before it, the classic end record's (``zipimport``: ``backend.py`` is ``evil``).
    A line of junk before the second local header and four zero bytes after the classic record's
    directory keep each reader to its own records."""
    out = bytearray()
    benign_at = len(out)
    out += local_header(b"backend.py", 0, zlib.crc32(BENIGN), len(BENIGN), len(BENIGN)) + BENIGN
    out += b"#\n"
    evil_at = len(out)
    out += local_header(b"backend.py", 0, zlib.crc32(evil), len(evil), len(evil)) + evil
    classic_at = len(out)
    out += central_record(b"backend.py", 0, zlib.crc32(evil), len(evil), len(evil), evil_at)
    out += b"\0" * 4
    zip64_dir_at = len(out)
    zip64_dir = central_record(b"backend.py", 0, zlib.crc32(BENIGN), len(BENIGN), len(BENIGN), benign_at)
    out += zip64_dir
    zip64_end_at = len(out)
    out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, len(zip64_dir), zip64_dir_at)
    out += struct.pack("<4sIQI", b"PK\x06\x07", 0, zip64_end_at, 1)
    out += end_record(1, len(out) - classic_at, classic_at)
    return bytes(out)


def sdist(archive_name: str, archive: bytes) -> bytes:
    """An sdist whose build backend pip imports from ``archive`` (``backend-path``)."""
    pyproject = (
        f'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["{archive_name}"]\n'
    ).encode()
    members = [
        ("pkg-1.0/PKG-INFO", b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n"),
        ("pkg-1.0/pyproject.toml", pyproject),
        (f"pkg-1.0/{archive_name}", archive),
    ]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue())


def zipimport_source(archive: bytes, tmp_path: Path) -> bytes:
    """What CPython's ``zipimport`` imports as ``backend`` from ``archive`` (the oracle)."""
    path = tmp_path / "backend.zip"
    path.write_bytes(archive)
    source = zipimport.zipimporter(str(path)).get_source("backend")
    assert source is not None
    return source.encode()


def assert_py_rule_sees_it(dist: DistributionResult) -> None:
    """The content ``zipimport`` imports as ``backend.py`` holds the marker: a ``.py`` rule must match
    it under a ``.py`` name, or the result must not claim to be complete."""
    flagged = [f.path for f in dist.files if any(m.identifier == "marker_py" for m in f.matches)]
    assert flagged or not dist.complete, (
        f"zipimport runs the marker as backend.py; verdict {dist.verdict!r}, complete, the .py rule matched "
        f"nothing (files: {[f.path for f in dist.files]}, "
        f"issues: {[(i.kind, i.path, i.message) for i in dist.issues]})"
    )


@pytest.mark.parametrize("method", [0, 8], ids=["stored", "deflated"])
def test_bytes_zipimport_reads_past_the_declared_size_are_scanned_as_the_py_file(
    method: int, scanner: Scanner, tmp_path: Path
) -> None:
    """A stored (or deflated) ``backend.py`` in ``b.zip`` whose directory record declares the benign
    first lines (size and CRC-32 of those) and whose data goes on with the payload. ``zipfile`` reads
    ``file_size`` bytes: the benign lines. ``zipimport._get_data`` reads the whole compressed size, inflates
    all of it and checks no CRC: it imports the payload too, and pip 26.3 ran it (``backend-path``,
    by hand). The engine scans the first ``file_size`` bytes as ``b.zip!/backend.py`` and the rest as
    ``b.zip!/backend.py<after its declared size>``, which no ``.py`` rule fits: clean, complete, with
    one ``size-mismatch`` issue that is not ``unscanned``.

    Fixed in ``split_at_declared_size`` (``rust/core/src/walk/zip.rs``): the whole content, as
    ``zipimport`` reads it, is scanned as the file too (``NAME<as zipimport reads it>``, which the rules
    for ``NAME`` fit)."""
    archive = longer_than_declared(b"import os  # " + MARKER + b"\n", method)
    assert MARKER in zipimport_source(archive, tmp_path)
    dist = scanner.scan_bytes(sdist("b.zip", archive), "pkg-1.0.tar.gz")
    assert_py_rule_sees_it(dist)
    flagged = [f.path for f in dist.files if any(m.identifier == "marker_py" for m in f.matches)]
    # And as the sdist's build backend (session 47), read as zipimport reads it: whole.
    assert flagged == [
        "pkg-1.0/b.zip!/backend.py<as zipimport reads it>",
        "pkg-1.0/b.zip!/backend.py<as the sdist's build backend>",
    ]


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13's zipimport reads the zip64 directory too")
def test_the_directory_zipimport_reads_beside_a_zip64_one_is_scanned_as_members(
    scanner: Scanner, tmp_path: Path
) -> None:
    """A zip whose zip64 end record names a directory listing a benign ``backend.py`` while the classic
    end record (sizes not saturated) names another directory listing a ``backend.py`` with the payload.
    ``zipfile`` takes the zip64 record whenever a locator precedes the end record; CPython's ``zipimport``
    before 3.13 ignores zip64 and reads the classic record's directory until a signature that is not a
    central record (checked with 3.9.18, 3.10.13, 3.11.7 and 3.12.1; 3.13.0 agrees with ``zipfile``).
    pip 26.3 on 3.11.7 ran the payload (``backend-path``, by hand). The engine reads the zip64 directory
    only; the other local header and directory are one ``hidden-data`` blob (scanned raw, not
    ``unscanned``), which no ``.py`` rule fits: clean, complete.

    Fixed in ``rust/core/src/zipdir.rs`` (``classic_directory``): the archive is reported ``ambiguous``
    (incomplete), as for a zip64 locator read two ways."""
    archive = two_directories(b"import os  # " + MARKER + b"\n")
    assert MARKER in zipimport_source(archive, tmp_path)
    dist = scanner.scan_bytes(sdist("c.zip", archive), "pkg-1.0.tar.gz")
    assert_py_rule_sees_it(dist)
    assert [(i.kind, i.path) for i in dist.issues if "zipimport" in i.message] == [
        ("ambiguous", "pkg-1.0/c.zip")
    ]


@pytest.mark.skipif(not PIP26.exists(), reason="pip 26.3's wheel is not at /tmp/modpip")
def test_pip_runs_the_bytes_after_the_declared_size(scanner: Scanner, tmp_path: Path) -> None:
    """The first case end to end: pip 26.3 building the sdist imports ``backend`` from ``b.zip`` and runs
    the line after the declared size (it writes a file), where the engine's ``.py`` rule saw nothing."""
    witness = tmp_path / "ran"
    tail = f"open({str(witness)!r}, 'w').write('ran')  # ".encode() + MARKER + b"\n"
    data = sdist("b.zip", longer_than_declared(tail, 0))
    path = tmp_path / "pkg-1.0.tar.gz"
    path.write_bytes(data)
    command = [
        sys.executable,
        str(PIP26 / "pip"),
        "wheel",
        "--no-deps",
        "--no-index",
        "-w",
        str(tmp_path / "w"),
    ]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([*command, str(path)], capture_output=True, timeout=300, env=env, check=False)
    assert witness.exists(), "pip did not run the bytes after the declared size: the case no longer holds"
    assert_py_rule_sees_it(scanner.scan_bytes(data, "pkg-1.0.tar.gz"))
