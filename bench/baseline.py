"""A pure-Python scanner doing the same job as the Rust core, as a benchmark baseline.

For each distribution: detect the format from the magic bytes, open it with ``tarfile`` (``r:*``) or
``zipfile``, read every regular member, scan it with the ``yara-x`` Python package (one ``Scanner`` reused,
10 s timeout) and apply the Dragonfly scoring: a rule counts for a file only if its ``filetype``
metadata (space-separated suffixes) is absent or one suffix ends the member path; the distribution score is
the sum of the ``weight`` metadata (an integer, else 0) of the distinct rules that counted;
``rules_matched`` is their set.

No same-content deduplication, no nested archives: this is what a straightforward Python node does.

As a command (the end-to-end benchmark runs it in a fresh process, as the product is run)::

    python -m bench.baseline --rules DIR [--workers N] --output FILE PATH...

compiles the ``.yar``/``.yara`` files under ``DIR``, scans every ``PATH`` (one process, or a pool of
``N``) and writes one JSON object per distribution: path, score, rules_matched.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yara_x

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Outcome:
    """The comparable part of a distribution's result."""

    score: int
    rules_matched: frozenset[str]
    files_scanned: int
    bytes_scanned: int

    def key(self) -> tuple[int, frozenset[str]]:
        return self.score, self.rules_matched


def compile_rules(sources: Mapping[str, str]) -> yara_x.Rules:
    """Compile ``origin -> source`` into one namespace, as ``dragonfly_hybrid.Rules.compile`` does."""
    compiler = yara_x.Compiler()
    for origin in sorted(sources):
        compiler.add_source(sources[origin], origin=origin)
    return compiler.build()


def _weight(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def members(data: bytes, name: str) -> Iterator[tuple[str, bytes]]:
    """Every regular file of a distribution as (archive-relative path, content)."""
    if (
        data[:2] == b"\x1f\x8b"
        or data[:3] == b"BZh"
        or data[:6] == b"\xfd7zXZ\x00"
        or data[257:262] == b"ustar"
    ):
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for info in tar:
                if info.isreg():
                    f = tar.extractfile(info)
                    assert f is not None
                    yield info.name, f.read()
    elif data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, zf.read(info)
    else:
        yield name, data


class BaselineScanner:
    """Single-threaded: one compiled rule set, one ``yara_x.Scanner`` reused for every file."""

    def __init__(self, sources: Mapping[str, str] | None = None, rules: yara_x.Rules | None = None) -> None:
        if rules is None:
            if sources is None:
                raise TypeError("give sources or rules")
            rules = compile_rules(sources)
        self.rules = rules
        self.scanner = yara_x.Scanner(rules)
        self.scanner.set_timeout(TIMEOUT_SECONDS)
        # identifier -> (weight, suffixes or None); metadata is per rule, so cache it.
        self._meta: dict[str, tuple[int, tuple[str, ...] | None]] = {}

    def _rule_info(self, rule: yara_x.Rule) -> tuple[int, tuple[str, ...] | None]:
        info = self._meta.get(rule.identifier)
        if info is None:
            # The first `weight` and the first `filetype` (or `filetypes`) entry count, as in the engine.
            meta = list(rule.metadata)
            weight = next((_weight(v) for k, v in meta if k == "weight"), 0)
            filetype = next((v for k, v in meta if k in ("filetype", "filetypes")), None)
            if isinstance(filetype, bytes):  # a string holding an escape, as yara-x hands it over
                try:
                    filetype = filetype.decode()
                except UnicodeDecodeError:  # no filter, as in the engine
                    filetype = None
            # No filter when absent, not a string or only whitespace.
            suffixes = tuple(filetype.split()) if isinstance(filetype, str) else ()
            info = self._meta[rule.identifier] = (weight, suffixes or None)
        return info

    def scan_bytes(self, data: bytes, name: str) -> Outcome:
        matched: dict[str, int] = {}
        files = 0
        total = 0
        for path, content in members(data, name):
            files += 1
            total += len(content)
            for rule in self.scanner.scan(content).matching_rules:
                weight, suffixes = self._rule_info(rule)
                # The reference node's absolute path: "/setup.py" fits a root "setup.py" too.
                if suffixes is not None and not f"/{path}".endswith(suffixes):
                    continue
                matched[rule.identifier] = weight
        return Outcome(sum(matched.values()), frozenset(matched), files, total)

    def scan_path(self, path: str | os.PathLike[str]) -> Outcome:
        with open(path, "rb") as f:
            data = f.read()
        return self.scan_bytes(data, os.path.basename(path))

    def scan_many(self, paths: Iterable[str | os.PathLike[str]]) -> list[Outcome]:
        return [self.scan_path(p) for p in paths]


def baseline_single(paths: Sequence[str | os.PathLike[str]], sources: Mapping[str, str]) -> list[Outcome]:
    """Compile and scan every distribution on this thread (compilation included)."""
    return BaselineScanner(sources).scan_many(paths)


# --- process pool -------------------------------------------------------------------------------------------
_worker: BaselineScanner | None = None


def _init_worker(sources: Mapping[str, str]) -> None:
    global _worker
    _worker = BaselineScanner(sources)


def _scan_in_worker(path: str) -> Outcome:
    assert _worker is not None, "worker not initialised"
    return _worker.scan_path(path)


def _ping(_: int) -> int:
    import time

    time.sleep(0.05)
    return os.getpid()


class BaselinePool:
    """A ``ProcessPoolExecutor`` whose workers each compile the rules once (initializer).

    Workers receive distribution *paths* and read the files themselves (no pickling of archive bytes).
    Use ``start()`` to spawn and initialise every worker before timing ``scan_many``.
    """

    def __init__(self, sources: Mapping[str, str], workers: int = 2) -> None:
        self.workers = workers
        self.executor = ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(dict(sources),)
        )

    def start(self) -> BaselinePool:
        pids: set[int] = set()
        for _ in range(20):
            pids.update(self.executor.map(_ping, range(self.workers * 2)))
            if len(pids) >= self.workers:
                break
        return self

    def scan_many(self, paths: Iterable[str | os.PathLike[str]]) -> list[Outcome]:
        # Largest first so that one big distribution does not finish last on an otherwise idle pool.
        paths = [os.fspath(p) for p in paths]
        order = sorted(range(len(paths)), key=lambda i: -os.path.getsize(paths[i]))
        futures = {i: self.executor.submit(_scan_in_worker, paths[i]) for i in order}
        return [futures[i].result() for i in range(len(paths))]

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BaselinePool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def baseline_process_pool(
    paths: Sequence[str | os.PathLike[str]], sources: Mapping[str, str], workers: int = 2
) -> list[Outcome]:
    """Scan with ``workers`` processes (pool start-up and per-worker compilation included)."""
    with BaselinePool(sources, workers) as pool:
        return pool.scan_many(paths)


# --- agreement with the Rust engine -------------------------------------------------------------------------
def outcome_of(result: object) -> Outcome:
    """The comparable part of a ``dragonfly_hybrid.DistributionResult``."""
    return Outcome(
        score=result.score,  # type: ignore[attr-defined]
        rules_matched=frozenset(result.rules_matched),  # type: ignore[attr-defined]
        files_scanned=result.files_scanned,  # type: ignore[attr-defined]
        bytes_scanned=result.bytes_scanned,  # type: ignore[attr-defined]
    )


def disagreements(names: Sequence[str], expected: Sequence[Outcome], actual: Sequence[Outcome]) -> list[str]:
    """Per-distribution differences in score or rules_matched (empty when both paths agree)."""
    if len(expected) != len(actual):
        return [f"{len(expected)} baseline results but {len(actual)} engine results"]
    out = []
    for name, e, a in zip(names, expected, actual, strict=True):
        if e.key() != a.key():
            only_e = sorted(e.rules_matched - a.rules_matched)
            only_a = sorted(a.rules_matched - e.rules_matched)
            out.append(
                f"{name}: baseline score {e.score}, engine score {a.score}; "
                f"only baseline: {only_e}; only engine: {only_a}"
            )
    return out


# --- as a command -------------------------------------------------------------------------------------------
def read_sources(directory: Path) -> dict[str, str]:
    """``origin -> source`` of every ``.yar``/``.yara`` file under ``directory`` (origins relative to it)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in (".yar", ".yara"))
    if not files:
        raise SystemExit(f"no .yar or .yara files under {directory}")
    return {p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8") for p in files}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=Path, required=True, help="directory of .yar/.yara files")
    parser.add_argument("--workers", type=int, default=1, help="processes (1: scan in this process)")
    parser.add_argument("--output", type=Path, required=True, help="where the JSON report is written")
    parser.add_argument("paths", nargs="+", help="distributions to scan")
    args = parser.parse_args(argv)
    sources = read_sources(args.rules)
    if args.workers > 1:
        outcomes = baseline_process_pool(args.paths, sources, args.workers)
    else:
        outcomes = baseline_single(args.paths, sources)
    report = [
        {"path": path, "score": o.score, "rules_matched": sorted(o.rules_matched)}
        for path, o in zip(args.paths, outcomes, strict=True)
    ]
    args.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
