"""Peak RSS of one benchmark variant, run once in this (fresh) process.

    python -m bench.rss KIND --ruleset light|heavy [--workers N]

Loads the corpus selected by the environment (``DFH_BENCH_CORPUS`` etc., as the benchmark does), does what
the variant does once, then prints one JSON object: ``maxrss_mb`` is the process's peak resident set size
at the end (10^6 bytes), plus the variant's own counts. The benchmark (``bench/conftest.py``) runs this in
a child process after timing a variant, so the measurement starts from a clean interpreter.

The peak is ``VmHWM`` of ``/proc/self/status`` (the high-water mark of this process's own address space),
not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux the latter survives ``execve`` and, since ``subprocess``
starts children with ``vfork``, it reports the *parent's* peak when that is larger (a child of a 170 MB
pytest process would read 170 MB whatever it does). ``ru_maxrss`` is used only where ``/proc`` is missing,
and is printed as ``ru_maxrss_mb`` for reference.

Kinds: ``idle`` (import, compile the rules with the engine, build a ``Scanner`` of N threads, scan nothing:
the fixed overhead of the RSS bound), ``baseline``, ``pool`` (``maxrss_mb`` = this process' peak + the sum
of the workers' peaks; each worker's includes the pages it shares with this process after ``fork``, so the
sum bounds the pool's total from above), ``reference``,
``rust``, ``limit-inflate`` and ``limit-scan`` (which holds every distinct content in memory by design).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any

KINDS = ("idle", "baseline", "pool", "reference", "rust", "limit-inflate", "limit-scan")


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


def peak_rss_mb() -> float:
    """This process' peak RSS in MB: ``VmHWM`` (see the module docstring), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return _mb(int(line.split()[1]))
    except (OSError, ValueError, IndexError):
        pass
    return _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _worker_peak(_: int) -> tuple[int, float]:
    time.sleep(0.05)  # so that one worker does not answer every request
    return os.getpid(), peak_rss_mb()


def run(kind: str, ruleset: str, workers: int) -> dict[str, Any]:
    from bench import rulesets
    from bench.corpora import load_corpus

    corpus = load_corpus()
    dists = corpus.distributions
    paths = [str(d.path) for d in dists]
    items = [(d.filename, str(d.path), None) for d in dists]
    out: dict[str, Any] = {"kind": kind, "ruleset": ruleset, "workers": workers}
    if kind in ("idle", "rust", "limit-inflate"):
        from dragonfly_hybrid import Rules, Scanner

        sources = rulesets.never_sources() if kind == "limit-inflate" else rulesets.get(ruleset)[0]
        scanner = Scanner(Rules.compile(sources), threads=workers)
        if kind != "idle":
            results = scanner.scan_many(items)
            out["files_scanned"] = sum(r.files_scanned for r in results)
            out["complete"] = all(r.complete for r in results)
    elif kind in ("baseline", "reference"):
        from bench.baseline import BaselineScanner
        from bench.reference import ExtractingScanner

        cls = BaselineScanner if kind == "baseline" else ExtractingScanner
        outcomes = cls(rulesets.get(ruleset)[0]).scan_many(paths)
        out["files_scanned"] = sum(o.files_scanned for o in outcomes)
    elif kind == "pool":
        from bench.baseline import BaselinePool

        with BaselinePool(rulesets.get(ruleset)[0], workers) as pool:
            outcomes = pool.scan_many(paths)
            peaks: dict[int, float] = {}
            for _ in range(50):
                peaks.update(pool.executor.map(_worker_peak, range(workers * 2)))
                if len(peaks) >= workers:
                    break
        out["files_scanned"] = sum(o.files_scanned for o in outcomes)
        out["workers_mb"] = sorted(peaks.values())
    elif kind == "limit-scan":
        import yara_x

        from bench.baseline import TIMEOUT_SECONDS, compile_rules
        from bench.corpora import distinct_contents

        contents = distinct_contents(dists)
        scanner = yara_x.Scanner(compile_rules(rulesets.get(ruleset)[0]))
        scanner.set_timeout(TIMEOUT_SECONDS)
        for content in contents:
            scanner.scan(content)
        out["files_scanned"] = len(contents)
    else:
        raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    own = peak_rss_mb()
    out["ru_maxrss_mb"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out["maxrss_mb"] = own + sum(out.get("workers_mb", ()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--ruleset", default="light")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.kind, args.ruleset, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
