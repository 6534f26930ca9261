"""The ranges every numeric setting and CLI flag shares, and the engine's defaults: one value means the same
in ``DRAGONFLY_*`` settings (``node.settings``) and in the flags of ``scan``/``watch`` (``cli.common``).

Kept apart from ``node.settings`` so that commands which never read the node's settings do not import
pydantic to check a flag (start-up time)."""

from __future__ import annotations

from dragonfly_hybrid._core import Limits, default_threads

DEFAULT_LIMITS = Limits()
"""The engine's default limits (read from the extension: never written again in Python)."""
DEFAULT_MAX_DOWNLOAD_SIZE = 128_000_000
"""Largest distribution downloaded from an index (``--max-download-size``, ``DRAGONFLY_MAX_SCAN_SIZE``)."""

THREADS_PER_CORE = 4
MIN_THREADS_CAP = 8
"""Scanning threads are capped at ``THREADS_PER_CORE`` per available core (never below ``MIN_THREADS_CAP``):
each thread holds its own YARA-X scanner and member buffers, so threads cost memory, and beyond the cores
they add no speed (scanning is CPU-bound). ``DRAGONFLY_THREADS=100000`` used to start hundreds of threads and
hang."""
MAX_BYTES = 64_000_000_000
"""Largest byte limit (member, total inflated, download): 64 GB. Members and downloads are held in memory,
so a larger limit bounds nothing; and 2**64 does not fit the core's counters."""
MAX_MEMBERS = 10_000_000
"""Most members per distribution: each costs a record before it is scanned (10 M took 1.7 GB)."""
MAX_RATIO = 1_000_000
"""Highest compression ratio accepted (deflate tops out near 1032:1; bzip2 and xz on runs reach more)."""
MIN_SCAN_TIMEOUT = 0.001
MAX_SCAN_TIMEOUT = 3600.0
"""YARA-X time per file: from 1 ms (the core's resolution) to an hour."""
MAX_LEASE = 86_400.0
"""Longest job lease (``DRAGONFLY_JOB_TIMEOUT``, ``watch --lease``), poll interval: a day."""
MAX_WAIT = 3600.0
"""Longest wait for the other durations (queue-empty wait, grace period, HTTP timeout): an hour."""
MAX_BULK_SIZE = 1000
"""Most jobs claimed at once (the node holds up to twice this many, each with its downloads)."""
MAX_CONCURRENCY = 64
"""Most downloads or submissions at once (each download may hold up to the download cap in memory)."""


def available_cores() -> int:
    """CPU cores this process may run on, at least 1: the engine's own default thread count."""
    return default_threads()


def max_threads(cores: int | None = None) -> int:
    """The most scanning threads accepted: ``THREADS_PER_CORE`` per core, at least ``MIN_THREADS_CAP``."""
    return max(MIN_THREADS_CAP, THREADS_PER_CORE * (cores if cores is not None else available_cores()))


def threads_problem(value: int) -> str | None:
    """Why ``value`` scanning threads are refused, or None when they are fine."""
    if value < 1:
        return "must be at least 1"
    cores = available_cores()
    cap = max_threads(cores)
    if value > cap:
        return (
            f"must be at most {cap} on this host ({THREADS_PER_CORE} per available core, {cores} available; "
            f"never less than {MIN_THREADS_CAP}): each thread holds its own YARA-X scanner, and threads "
            "beyond the cores add memory, not speed"
        )
    return None
