"""``_core.DownloadBuffer``: the node's download buffers, whose arrays are kept and reused. A reused array
still holds the bytes of the download before it, so these tests tell reuse by those bytes, and check that
a scan reads exactly a buffer's own size, never what an earlier, larger download left beyond it."""

from __future__ import annotations

import os

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid._core import DownloadBuffer

from tests.fakes.pypi import zip_bytes

MIB = 1024 * 1024
POOL_BYTES = 64 * MIB


pytestmark = pytest.mark.usefixtures("empty_download_pool")


def filled(size: int, pattern: bytes) -> DownloadBuffer:
    buffer = DownloadBuffer(size)
    buffer.data[:] = (pattern * (size // len(pattern) + 1))[:size]
    return buffer


def test_a_buffer_dropped_unshared_serves_the_next_download_of_about_its_size() -> None:
    pattern = os.urandom(16)
    first = filled(300_001, pattern)
    assert len(first) == len(first.data) == 300_001
    del first
    assert DownloadBuffer.pooled() == (1, 300_001)
    # Half its size or more: the same array, resized in place, its bytes those of the download before.
    second = DownloadBuffer(150_001)
    assert len(second) == 150_001
    assert bytes(second.data) == (pattern * 20_000)[:150_001]
    assert DownloadBuffer.pooled() == (0, 0)
    del second
    assert DownloadBuffer.pooled() == (1, 300_001), "kept with the size it was made with"
    # Grown back to that size in place (CPython ends a resized array with a NUL, one byte past it).
    third = DownloadBuffer(300_001)
    assert bytes(third.data[150_002:]) == (pattern * 20_000)[150_002:300_001]
    del third


def test_sizes_it_cannot_serve_in_place_get_new_memory() -> None:
    pattern = os.urandom(16)
    del_me = filled(400_003, pattern)
    del del_me
    count, size = DownloadBuffer.pooled()
    assert (count, size) == (1, 400_003)
    smaller = DownloadBuffer(200_000)  # under half: CPython would reallocate it
    larger = DownloadBuffer(400_004)
    assert (len(smaller), len(larger)) == (200_000, 400_004)
    assert DownloadBuffer.pooled() == (count, size)


def test_an_array_its_user_resized_past_what_it_was_made_for_is_not_kept() -> None:
    grown = DownloadBuffer(100_000)
    grown.data.extend(bytes(300_000))  # CPython reallocates it
    shrunk = DownloadBuffer(100_000)
    del shrunk.data[40_000:]  # under half: reallocated too
    within = DownloadBuffer(100_000)
    del within.data[60_000:]
    del grown, shrunk, within
    assert DownloadBuffer.pooled() == (1, 100_000)


def test_a_buffer_freed_while_an_exception_is_raised_leaves_the_exception_alone() -> None:
    # The list, and the buffer in it, are freed while the IndexError is being raised.
    with pytest.raises(IndexError, match="list index out of range"):
        [DownloadBuffer(100_000)][1]
    assert DownloadBuffer.pooled() == (1, 100_000)


def test_an_array_held_elsewhere_is_not_reused() -> None:
    pattern = os.urandom(16)
    buffer = filled(500_009, pattern)
    held = buffer.data
    before = DownloadBuffer.pooled()
    del buffer
    assert DownloadBuffer.pooled() == before
    other = filled(500_009, os.urandom(16))
    assert bytes(held) == (pattern * 31_251)[:500_009], "a holder's bytes never change under it"
    del other


def test_small_buffers_are_not_kept_and_the_pool_is_bounded() -> None:
    before = DownloadBuffer.pooled()
    small = DownloadBuffer(64 * 1024 - 1)
    del small
    assert DownloadBuffer.pooled() == before
    buffers = [DownloadBuffer(20 * MIB + i) for i in range(5)]
    while buffers:
        buffers.pop(0)
    count, size = DownloadBuffer.pooled()
    assert size <= POOL_BYTES
    # The buffers given back last are kept; the first two were freed.
    assert count == 3 and size == 3 * 20 * MIB + 2 + 3 + 4
    taken = [DownloadBuffer(20 * MIB + i) for i in (2, 3, 4)]
    assert DownloadBuffer.pooled() == (count - 3, size - sum(len(b) for b in taken))
    del taken
    buffers = [DownloadBuffer(POOL_BYTES + 1)]
    before = DownloadBuffer.pooled()
    del buffers
    assert DownloadBuffer.pooled() == before, "one larger than the whole pool is freed"


def test_a_scan_reads_a_reused_buffer_up_to_its_own_size() -> None:
    scanner = dh.Scanner(
        dh.Rules.compile({"m.yar": 'rule marker { strings: $a = "OLD_MARKER" condition: $a }'})
    )
    # A wheel whose central directory, at its end, lists a member with the marker.
    wheel = zip_bytes({"p/x.py": b"OLD_MARKER", "p/pad.bin": os.urandom(200_000)})
    first = DownloadBuffer(len(wheel))
    first.data[:] = wheel
    assert scanner.scan_bytes(first, "p-1.whl").rules_matched == ["marker"]
    del first
    # The next download, smaller, is plain text: what lies past its end (the wheel's directory) is not its.
    text = b"print('hello')\n" * (len(wheel) * 3 // 4 // 15)
    second = DownloadBuffer(len(text))
    assert second.data[:4] == wheel[:4], "the wheel's array, reused"
    second.data[:] = text
    result = scanner.scan_bytes(second, "p-2.py")
    assert result.rules_matched == [] and result.files_scanned == 1 and result.bytes_scanned == len(text)
    [many] = scanner.scan_many([("p-2.py", second, None)])
    assert many.rules_matched == [] and many.bytes_scanned == len(text)


def test_a_size_too_large_for_the_platform_is_a_clear_error() -> None:
    with pytest.raises((OverflowError, ValueError, MemoryError)):
        DownloadBuffer(2**63)
