"""Shared fixtures of the benchmark suite and the summary tables printed at the end of the run.

Environment:
  DFH_BENCH_CORPUS         real (default: bench/corpus.txt, downloaded once) or synthetic (generated)
  DFH_BENCH_CORPUS_CACHE   where the real corpus is kept (default ~/.cache/dragonfly-hybrid/corpus)
  DFH_BENCH_SCALE          synthetic corpus size factor (default 1.0: ~30 releases, ~70 MB compressed)
  DFH_BENCH_SEED           synthetic corpus seed
  DFH_BENCH_CACHE          synthetic corpus cache directory (default ~/.cache/dragonfly-hybrid/bench)
  DFH_BENCH_ROUNDS         rounds for every group; or DFH_BENCH_ROUNDS_LIGHT (5) / DFH_BENCH_ROUNDS_HEAVY (3)
  DFH_BENCH_THREADS        thread count of the "all threads" Rust variant, and the "cores" of the per-core
                           limits (default os.cpu_count())
  DFH_BENCH_POOL_WORKERS   processes of the baseline pool (default 2)
  DFH_BENCH_RSS            1 (default): measure each variant's peak RSS in a child process; 0: skip
  DFH_BENCH_EXTRACT_DIR    where reference-extract makes its temporary directories (default: the system's)

The node benchmark (test_bench_node.py) has its own variables, listed there, and its own table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench import rulesets
from bench.baseline import BaselinePool, Outcome, compile_rules, disagreements, outcome_of
from bench.corpora import BenchCorpus, WalkStats, corpus_kind, load_corpus, release_count, walk_stats
from bench.summary import (
    E2EMeasurement,
    Measurement,
    NodeMeasurement,
    e2e_text_lines,
    node_text_lines,
    summarize,
    text_lines,
)

DEFAULT_ROUNDS = {"light": 5, "heavy": 3}
RULESETS = ("light", "heavy")
REPO = Path(__file__).resolve().parents[1]


def rounds_for(group: str) -> int:
    value = os.environ.get(f"DFH_BENCH_ROUNDS_{group.upper()}") or os.environ.get("DFH_BENCH_ROUNDS")
    return max(1, int(value)) if value else DEFAULT_ROUNDS[group]


def record_median(benchmark: Any, medians: dict[str, float], group: str, row: str, **extra: Any) -> None:
    """Tag a pedantic benchmark's result with its group and row, and note its median in ``medians`` (the
    module's summary); under ``--benchmark-disable`` there is no median to note."""
    benchmark.extra_info.update({"group": group, "variant": row, **extra})
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        medians[row] = stats.stats.median


def medians_printed(
    request: pytest.FixtureRequest, title: str, baseline: str, *, digits: int = 3
) -> Iterator[dict[str, float]]:
    """The body of a module's ``medians`` fixture: row -> median seconds, printed when the module ends with
    each row's ratio to the ``baseline`` row (shown without ``-s`` too)."""
    rows: dict[str, float] = {}
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not rows:
        return
    base = rows.get(baseline)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        reporter.write_sep("=", f"{title} (median; ratio to {baseline})")
        width = max(len(name) for name in rows) + 2
        for name, median in rows.items():
            ratio = f"{median / base:8.2f}x" if base else "        -"
            reporter.write_line(f"{name:<{width}} {median:8.{digits}f} s  {ratio}")


def all_threads() -> int:
    return int(os.environ.get("DFH_BENCH_THREADS") or os.cpu_count() or 1)


def pool_workers() -> int:
    return int(os.environ.get("DFH_BENCH_POOL_WORKERS") or 2)


def rss_enabled() -> bool:
    return (os.environ.get("DFH_BENCH_RSS") or "1").strip() not in ("0", "no", "false", "")


def child_peak_rss(kind: str, ruleset: str, workers: int) -> dict[str, Any]:
    """Run ``python -m bench.rss`` in a fresh child process (same environment, so the same corpus)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "bench.rss", kind, "--ruleset", ruleset, "--workers", str(workers)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"bench.rss {kind} {ruleset} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


NODE_ROWS = pytest.StashKey[list[NodeMeasurement]]()
E2E_ROWS = pytest.StashKey[list[E2EMeasurement]]()


@dataclass
class BenchContext:
    """Per-session state: the corpus, rule sets compiled once per engine, and the agreed reference results."""

    corpus: BenchCorpus
    kind: str = "synthetic"
    _sources: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)
    _yara: dict[str, Any] = field(default_factory=dict)
    _rust: dict[tuple[str, bool], Any] = field(default_factory=dict)
    _reference: dict[str, list[Outcome]] = field(default_factory=dict)
    _stats: WalkStats | None = None
    _overhead: dict[str, float] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        return [str(d.path) for d in self.corpus.distributions]

    @property
    def names(self) -> list[str]:
        return [d.filename for d in self.corpus.distributions]

    @property
    def items(self) -> list[tuple[str, str, None]]:
        """``scan_many`` items: (name, file path, url)."""
        return [(d.filename, str(d.path), None) for d in self.corpus.distributions]

    @property
    def stats(self) -> WalkStats:
        """Largest download and member, distinct contents: one walk of the corpus, outside any timing."""
        if self._stats is None:
            self._stats = walk_stats(self.corpus.distributions)
        return self._stats

    def sources(self, name: str) -> dict[str, str]:
        if name not in self._sources:
            self._sources[name] = rulesets.get(name)
        return self._sources[name][0]

    def note(self, name: str) -> str:
        self.sources(name)
        return self._sources[name][1]

    def yara_rules(self, name: str) -> Any:
        if name not in self._yara:
            self._yara[name] = compile_rules(self.sources(name))
        return self._yara[name]

    def rust_rules(self, name: str, route_by_filetype: bool = True) -> Any:
        key = (name, route_by_filetype)
        if key not in self._rust:
            from dragonfly_hybrid import Rules

            self._rust[key] = Rules.compile(self.sources(name), route_by_filetype=route_by_filetype)
        return self._rust[key]

    def reference(self, name: str) -> list[Outcome]:
        """Correctness guard, run once per rule set before any timing: the baseline (on a process pool, to
        save time) and the Rust engine (all threads) must agree on every distribution's score and
        rules_matched, and the engine must have scanned everything."""
        if name not in self._reference:
            from dragonfly_hybrid import Scanner

            t0 = time.perf_counter()
            with BaselinePool(self.sources(name), pool_workers()) as pool:
                expected = pool.scan_many(self.paths)
            results = Scanner(self.rust_rules(name), threads=all_threads()).scan_many(self.items)
            incomplete = [
                f"{r.name}: {[(i.kind, i.path, i.message) for i in r.issues]}"
                for r in results
                if not r.complete
            ]
            assert not incomplete, "the engine left content unscanned:\n" + "\n".join(incomplete)
            diff = disagreements(self.names, expected, [outcome_of(r) for r in results])
            assert not diff, f"baseline and engine disagree ({name} rules):\n" + "\n".join(diff)
            findings = sum(1 for o in expected if o.rules_matched)
            assert findings, (
                f"no distribution matched any {name} rule: the benchmark would not exercise matches"
            )
            print(
                f"\n[guard] {name}: baseline and engine agree on {len(expected)} distributions "
                f"({findings} with matches) in {time.perf_counter() - t0:.1f} s"
            )
            self._reference[name] = expected
        return self._reference[name]

    def check(self, name: str, outcomes: Sequence[Outcome]) -> None:
        """The timed run's own results must equal the reference too."""
        diff = disagreements(self.names, self.reference(name), outcomes)
        assert not diff, "\n".join(diff)

    def fixed_overhead(self, name: str) -> float | None:
        """Peak RSS (MB) of a child that compiles ``name`` with the engine and builds an all-threads
        Scanner but scans nothing: the fixed overhead of the issue's RSS bound."""
        if not rss_enabled():
            return None
        if name not in self._overhead:
            self._overhead[name] = child_peak_rss("idle", name, all_threads())["maxrss_mb"]
        return self._overhead[name]

    def peak_rss(self, name: str, kind: str, workers: int) -> float | None:
        """Peak RSS (MB) of the variant run once in a fresh child process (outside any timing)."""
        if not rss_enabled():
            return None
        result = child_peak_rss(kind, name, workers)
        if "files_scanned" in result:
            assert result["files_scanned"] > 0, f"bench.rss {kind}: nothing scanned"
        if result.get("complete") is False:
            raise AssertionError(f"bench.rss {kind}: the engine left content unscanned")
        return float(result["maxrss_mb"])

    def measurement(
        self, name: str, variant: str, kind: str, median: float, workers: int, **more: Any
    ) -> Measurement:
        c = self.corpus
        stats = self.stats
        return Measurement(
            group=name,
            variant=variant,
            kind=kind,
            median=median,
            rounds=rounds_for(name),
            workers=workers,
            cores=all_threads(),
            corpus=self.kind,
            distributions=len(c.distributions),
            releases=release_count(c.distributions),
            files=c.file_count,
            inflated=c.inflated_bytes,
            compressed=c.compressed_bytes,
            rules=len(list(self.yara_rules(name))),
            ruleset=self.note(name),
            fixed_overhead_mb=self.fixed_overhead(name) if kind == "rust" else None,
            largest_download=stats.largest_download,
            largest_member=stats.largest_member,
            distinct_files=stats.distinct_files,
            distinct_bytes=stats.distinct_bytes,
            **more,
        )

    def extra_info(self, name: str, **more: Any) -> dict[str, Any]:
        c = self.corpus
        return {
            "corpus": self.kind,
            "mb_compressed": round(c.compressed_bytes / 1e6, 2),
            "mb_inflated": round(c.inflated_bytes / 1e6, 2),
            "files": c.file_count,
            "distributions": len(c.distributions),
            "releases": release_count(c.distributions),
            "rules": len(list(self.yara_rules(name))),
            "ruleset": self.note(name),
            **more,
        }


_ROWS = pytest.StashKey[list[Measurement]]()


@pytest.fixture(scope="session")
def ctx() -> BenchContext:
    kind = corpus_kind()
    corpus = load_corpus(kind)
    for d in corpus.distributions:  # warm the page cache: every variant reads the archives from it
        d.path.read_bytes()
    print(f"\n[corpus] {kind}: {corpus.root}: {corpus.describe()}")
    return BenchContext(corpus, kind)


@pytest.fixture
def record(request: pytest.FixtureRequest, ctx: BenchContext):
    """``record(benchmark, group, variant, kind, workers, rss_mb=..., **extra)`` after timing: adds a row to
    the summary table and the row (and ``extra``) to the benchmark's ``extra_info``."""
    rows = request.config.stash.setdefault(_ROWS, [])

    def _record(
        benchmark: Any,
        group: str,
        variant: str,
        kind: str,
        workers: int,
        rss_mb: float | None = None,
        rss_note: str = "",
        **extra: Any,
    ) -> None:
        benchmark.extra_info.update(ctx.extra_info(group, variant=variant, kind=kind, **extra))
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable
            return
        row = ctx.measurement(
            group, variant, kind, stats.stats.median, workers, rss_mb=rss_mb, rss_note=rss_note
        )
        benchmark.extra_info["row"] = asdict(row)
        rows.append(row)

    return _record


GROUP_ORDER = ("light", "heavy", "node", "end-to-end")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run each group's variants back to back (light, heavy, node, end-to-end), in the order their tests
    are defined, instead of pytest's default (each test for every group in turn): this machine's speed
    drifts over minutes, and a group's ratios should compare rounds taken close together."""

    def group(item: pytest.Item) -> int:
        marker = item.get_closest_marker("benchmark")
        name = marker.kwargs.get("group") if marker is not None else None
        return GROUP_ORDER.index(name) if name in GROUP_ORDER else len(GROUP_ORDER)

    items.sort(key=group)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from bench.machine import describe

    machine_info["dfh"] = describe()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if rows:
        terminalreporter.write_sep("=", "dragonfly-hybrid scan benchmark (median of rounds)")
        for line in text_lines(summarize(rows)):
            terminalreporter.write_line(line)
    node_rows = config.stash.get(NODE_ROWS, [])
    if node_rows:
        terminalreporter.write_sep("=", "dragonfly-hybrid node vs reference-style loop (median of rounds)")
        for line in node_text_lines(node_rows):
            terminalreporter.write_line(line)
    e2e_rows = config.stash.get(E2E_ROWS, [])
    if e2e_rows:
        terminalreporter.write_sep("=", "dragonfly-hybrid end to end, fresh processes (median of rounds)")
        for line in e2e_text_lines(e2e_rows):
            terminalreporter.write_line(line)
