"""Which corpus the benchmarks run on (``DFH_BENCH_CORPUS``), and what is measured about it once.

* ``real`` (default): the pinned PyPI files of ``bench/corpus.txt`` (``bench/realcorpus.py``); the issue's
  targets are stated on this corpus. ``DFH_BENCH_SCALE`` does not apply to it.
* ``synthetic``: the deterministic generated corpus (``bench/synthetic.py``; ``DFH_BENCH_SCALE``,
  ``DFH_BENCH_SEED``, ``DFH_BENCH_CACHE``).

Both give an object with ``root``, ``distributions`` (``bench.synthetic.Distribution``: release, version,
filename, path, size, inflated, files, sha256), ``compressed_bytes``, ``inflated_bytes``, ``file_count``
and ``describe()``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.synthetic import Distribution

KINDS = ("real", "synthetic")
DEFAULT_KIND = "real"


class BenchCorpus(Protocol):
    root: Path
    distributions: list[Distribution]

    @property
    def compressed_bytes(self) -> int: ...

    @property
    def inflated_bytes(self) -> int: ...

    @property
    def file_count(self) -> int: ...

    def describe(self) -> str: ...


def corpus_kind() -> str:
    """``DFH_BENCH_CORPUS``: ``real`` (default) or ``synthetic``."""
    kind = (os.environ.get("DFH_BENCH_CORPUS") or DEFAULT_KIND).strip().lower()
    if kind not in KINDS:
        raise ValueError(f"DFH_BENCH_CORPUS={kind!r}: use one of {', '.join(KINDS)}")
    return kind


def load_corpus(kind: str | None = None) -> BenchCorpus:
    """The selected corpus, made available (generated or downloaded) and verified."""
    kind = kind or corpus_kind()
    if kind == "real":
        from bench.realcorpus import ensure_real_corpus

        return ensure_real_corpus()
    if kind == "synthetic":
        from bench.synthetic import ensure_corpus, spec_from_env

        return ensure_corpus(spec_from_env())
    raise ValueError(f"unknown corpus kind {kind!r}: use one of {', '.join(KINDS)}")


def release_count(distributions: Iterable[Distribution]) -> int:
    return len({(d.release, d.version) for d in distributions})


@dataclass(frozen=True)
class WalkStats:
    """What one walk of every distribution (``bench.baseline.members``: regular files) tells."""

    largest_download: int
    largest_member: int
    distinct_files: int
    distinct_bytes: int


def walk_stats(distributions: Sequence[Distribution]) -> WalkStats:
    """Largest archive, largest member, and the count / size of the distinct contents (by sha256)."""
    from bench.baseline import members

    largest_member = 0
    distinct: dict[bytes, int] = {}
    for d in distributions:
        for _, content in members(d.path.read_bytes(), d.filename):
            largest_member = max(largest_member, len(content))
            distinct.setdefault(hashlib.sha256(content).digest(), len(content))
    return WalkStats(
        largest_download=max((d.size for d in distributions), default=0),
        largest_member=largest_member,
        distinct_files=len(distinct),
        distinct_bytes=sum(distinct.values()),
    )


def distinct_contents(distributions: Sequence[Distribution]) -> list[bytes]:
    """Every distinct regular-file content of the distributions (dedup by sha256), in first-seen order."""
    from bench.baseline import members

    seen: set[bytes] = set()
    out: list[bytes] = []
    for d in distributions:
        for _, content in members(d.path.read_bytes(), d.filename):
            digest = hashlib.sha256(content).digest()
            if digest not in seen:
                seen.add(digest)
                out.append(content)
    return out
