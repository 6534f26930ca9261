"""Hostile inputs through the Python API: bounded memory, precise issues, timeouts honoured.

Each bomb is scanned in a child process, which reports its own peak RSS (``bench.rss.peak_rss_mb``: the
high-water mark of its address space), so the bound is the scan's, not the test runner's. (Not the
child's rusage from ``os.wait4``: on Linux that includes the runner's own peak, the address space the
child was spawned from.) The bombs are built here, streamed: one compressed unit repeated, never the
inflated bytes. The full hostile corpus is in ``rust/core/tests/hostile.rs``; this proves the same
guarantees through the binding.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dragonfly_hybrid as dh
import pytest

MARKER = b"import os\nEVIL_MARKER = 1\n"
RULES = {
    "markers.yar": 'rule evil_marker { meta: weight = 5 strings: $a = "EVIL_MARKER" condition: $a }',
}
# A regular expression with long bounded gaps: on a file of one letter every offset keeps it
# alive, and YARA-X takes minutes (measured: over 20 s on 300 kB). Only the timeout stops it.
PATHOLOGICAL = {
    "slow.yar": "rule slow_regex { strings: $a = /a[^z]{0,60000}q[^z]{0,60000}z/ condition: $a }\n"
    'rule quick { meta: weight = 1 strings: $a = "QUICK" condition: $a }',
}
MiB = 1 << 20


def deflate_blocks(data: bytes) -> bytes:
    """Non-final deflate blocks from a fresh compressor: they can be repeated back to back."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def deflate(parts: list[tuple[bytes, int]]) -> bytes:
    """A raw deflate stream of each ``(unit, count)`` in turn, each unit compressed once."""
    return b"".join(deflate_blocks(unit) * count for unit, count in parts) + b"\x03\x00"


def gzip_stream(parts: list[tuple[bytes, int]]) -> bytes:
    # The CRC is left 0: every bomb here is cut by a limit long before the trailer is read.
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + deflate(parts) + b"\x00" * 8


def tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def tar_member(name: str, content: bytes) -> bytes:
    return tar_header(name, len(content)) + content + b"\0" * (-len(content) % 512)


def low_ratio_unit(size: int) -> bytes:
    """Mostly zeros with a varying byte every 512: about 100:1, under the default ratio limit."""
    unit = bytearray(size)
    for i in range(0, size, 512):
        unit[i] = (i * 2654435761 >> 16) & 0xFF | 1
    return bytes(unit)


def zip_one(name: str, method: int, data: bytes, size: int, crc: int = 0) -> bytes:
    """A zip with one member, written by hand so that its headers can say anything."""
    encoded = name.encode()
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(encoded), 0
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        0x0314,
        20,
        0,
        method,
        0,
        0,
        crc,
        len(data),
        size,
        len(encoded),
        0,
        0,
        0,
        0,
        0o100644 << 16,
        0,
    )
    body = local + encoded + data
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(encoded), len(body), 0)
    return body + central + encoded + end


# --- The cases run in a child ------------------------------------------------------------------


def case_tar_gz_bomb() -> dict[str, Any]:
    data = gzip_stream(
        [
            (tar_member("bomb/before.py", MARKER), 1),
            (tar_header("bomb/zeros.bin", 4 << 30), 1),
            (bytes(MiB), 4096),
        ]
    )
    assert len(data) < 8 * MiB
    return summarize(dh.Scanner(dh.Rules.compile(RULES), threads=2).scan_bytes(data, "bomb.tar.gz"))


def case_zip_bomb() -> dict[str, Any]:
    bomb = zip_one("zeros.bin", 8, deflate([(bytes(MiB), 3072)]), 3 << 30)
    return summarize(dh.Scanner(dh.Rules.compile(RULES), threads=2).scan_bytes(bomb, "bomb.zip"))


def case_member_limit() -> dict[str, Any]:
    # 512 MiB at ~100:1: under the ratio limit, so only the member-size limit (16 MB here) holds.
    data = gzip_stream(
        [
            (tar_header("p/big.bin", 512 * MiB), 1),
            (low_ratio_unit(64 * 1024), 8192),
            (tar_member("p/a.py", MARKER), 1),
        ]
    )
    limits = dh.Limits(max_member_size=16_000_000)
    return summarize(
        dh.Scanner(dh.Rules.compile(RULES), limits=limits, threads=2).scan_bytes(data, "big.tar.gz")
    )


def case_many_members() -> dict[str, Any]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for i in range(60_000):
            content = MARKER if i == 100 else b""
            info = tarfile.TarInfo(f"pkg/m{i:06}.py")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    limits = dh.Limits(max_members=50_000)
    scanner = dh.Scanner(dh.Rules.compile(RULES), limits=limits, threads=2)
    return summarize(scanner.scan_bytes(buffer.getvalue(), "many.tar.gz"))


def case_scan_path_bomb(path: str) -> dict[str, Any]:
    return summarize(dh.Scanner(dh.Rules.compile(RULES), threads=2).scan_path(path))


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "tar_gz_bomb": case_tar_gz_bomb,
    "zip_bomb": case_zip_bomb,
    "member_limit": case_member_limit,
    "many_members": case_many_members,
    "scan_path_bomb": case_scan_path_bomb,
}


def summarize(result: dh.DistributionResult) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "files": [f.path for f in result.files],
        "files_scanned": result.files_scanned,
        "issues": [(i.kind, i.path, i.message, i.unscanned) for i in result.issues],
    }


def run_isolated(case: str, *args: str) -> tuple[dict[str, Any], float]:
    """Run a case in a child; return its summary and its peak RSS in MB."""
    code = "import sys, json; from bench.rss import peak_rss_mb; from tests import test_hostile as h; "
    code += "print(json.dumps([h.CASES[sys.argv[1]](*sys.argv[2:]), peak_rss_mb()]))"
    child = subprocess.run(
        [sys.executable, "-c", code, case, *args],
        capture_output=True,
        cwd=Path(__file__).resolve().parents[1],  # the repository root: `tests` imports as a package
    )
    assert child.returncode == 0, f"{case} failed ({child.returncode}):\n{child.stderr.decode()}"
    summary, peak = json.loads(child.stdout)
    return summary, peak


def issue(summary: dict[str, Any], kind: str, path: str) -> list[Any]:
    for found in summary["issues"]:
        if found[0] == kind and found[1] == path:
            return found
    raise AssertionError(f"no {kind} issue for {path!r} in {summary['issues']}")


# Peak-RSS bounds: generous (the interpreter and YARA-X start near 60 MB), yet each bomb would
# need gigabytes if the limits were not enforced while streaming.
def test_gzip_bomb_tarball_is_cut_with_bounded_memory() -> None:
    summary, peak = run_isolated("tar_gz_bomb")
    assert peak < 400, peak
    assert summary["files"] == ["bomb/before.py"]
    _, _, message, unscanned = issue(summary, "compression-ratio", "bomb/zeros.bin")
    assert unscanned and "1000:1" in message
    assert summary["verdict"] == "findings"


def test_zip_bomb_is_cut_with_bounded_memory() -> None:
    summary, peak = run_isolated("zip_bomb")
    assert peak < 400, peak
    issue(summary, "compression-ratio", "zeros.bin")
    assert summary["verdict"] == "incomplete"


def test_member_limit_holds_under_the_ratio_limit() -> None:
    summary, peak = run_isolated("member_limit")
    assert peak < 400, peak
    _, _, message, _ = issue(summary, "member-too-large", "p/big.bin")
    assert "only the first 16000000 bytes were scanned" in message
    assert summary["files"] == ["p/a.py"]


def test_member_count_limit() -> None:
    summary, peak = run_isolated("many_members")
    assert peak < 400, peak
    assert summary["files_scanned"] == 50_000
    assert summary["files"] == ["pkg/m000100.py"]
    assert [i[0] for i in summary["issues"]] == ["too-many-members"]


def test_scan_path_of_a_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(gzip_stream([(tar_header("z.bin", 4 << 30), 1), (bytes(MiB), 4096)]))
    summary, peak = run_isolated("scan_path_bomb", str(path))
    assert peak < 400, peak
    issue(summary, "compression-ratio", "z.bin")
    assert summary["verdict"] == "incomplete"


# --- In process: hidden data, timeouts ---------------------------------------------------------


def test_data_hidden_after_the_zip_end_is_scanned_and_reported() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/__init__.py", b"x = 1")
    data = b"#!/bin/sh\nEVIL_MARKER\n" + buffer.getvalue() + b"EVIL_MARKER after the end"
    result = dh.Scanner(dh.Rules.compile(RULES), threads=2).scan_bytes(data, "odd.whl")
    kinds = sorted(i.kind for i in result.issues)
    assert kinds == ["hidden-data", "hidden-data"]
    assert all(not i.unscanned for i in result.issues)
    assert result.verdict == "findings" and len(result.files) == 2


def test_pathological_regex_times_out_and_the_rest_is_scanned() -> None:
    scanner = dh.Scanner(dh.Rules.compile(PATHOLOGICAL), limits=dh.Limits(timeout=1.0), threads=2)
    slow = zip_one("p/slow.txt", 0, b"a" * 300_000, 300_000, zlib.crc32(b"a" * 300_000))
    started = time.monotonic()
    result = scanner.scan_bytes(slow, "slow.zip")
    elapsed = time.monotonic() - started
    [timeout] = result.issues
    assert (timeout.kind, timeout.path, timeout.unscanned) == ("scan-timeout", "p/slow.txt", True)
    assert result.verdict == "incomplete"
    # Unbounded it runs for minutes; with a wide margin for a loaded machine.
    assert elapsed < 30, elapsed


def test_a_slow_file_does_not_stall_other_scans() -> None:
    """One worker is stuck on a pathological file until its timeout; every other scan, from
    another Python thread on the same Scanner, finishes before it (the GIL is released and the
    pool's other worker is free)."""
    scanner = dh.Scanner(dh.Rules.compile(PATHOLOGICAL), limits=dh.Limits(timeout=4.0), threads=2)
    slow = zip_one("p/slow.txt", 0, b"a" * 300_000, 300_000, zlib.crc32(b"a" * 300_000))
    fast = zip_one("p/q.py", 0, b"QUICK", 5, zlib.crc32(b"QUICK"))
    finished: dict[str, float] = {}

    def scan_slow() -> None:
        result = scanner.scan_bytes(slow, "slow.zip")
        finished["slow"] = time.monotonic()
        finished["slow_kinds"] = [i.kind for i in result.issues]  # type: ignore[assignment]

    thread = threading.Thread(target=scan_slow)
    thread.start()
    time.sleep(0.2)
    results = scanner.scan_many([(f"fast{i}.zip", fast, None) for i in range(50)])
    finished["fast"] = time.monotonic()
    thread.join()
    assert all(r.verdict == "findings" and not r.issues for r in results)
    assert finished["slow_kinds"] == ["scan-timeout"]
    assert finished["fast"] < finished["slow"]


@pytest.mark.parametrize("timeout", [0.5])
def test_timeout_is_reported_in_the_message(timeout: float) -> None:
    scanner = dh.Scanner(dh.Rules.compile(PATHOLOGICAL), limits=dh.Limits(timeout=timeout), threads=1)
    result = scanner.scan_bytes(b"a" * 300_000, "slow.txt")
    [found] = result.issues
    assert found.kind == "scan-timeout" and "500ms" in found.message


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_every_method_zipfile_writes_is_read(method: int) -> None:
    """What pip can install, the scanner reads: zipfile's LZMA members (method 14) included."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr("pkg/evil.py", MARKER * 100)
        archive.writestr("pkg/ok.py", b"x = 1\n" * 100)
    result = dh.Scanner(dh.Rules.compile(RULES), threads=2).scan_bytes(buffer.getvalue(), "m.whl")
    assert not result.issues
    assert [f.path for f in result.files] == ["pkg/evil.py"]
