"""Shared fixtures of the benchmark suite and the speed-up table printed at the end of the run.

Environment:
  DFH_BENCH_SCALE          corpus size factor (default 1.0: ~30 releases, ~70 MB compressed, ~180 MB inflated)
  DFH_BENCH_SEED           corpus seed
  DFH_BENCH_CACHE          corpus cache directory (default ~/.cache/dragonfly-hybrid/bench)
  DFH_BENCH_ROUNDS         rounds for every group; or DFH_BENCH_ROUNDS_LIGHT (5) / DFH_BENCH_ROUNDS_HEAVY (3)
  DFH_BENCH_THREADS        thread count of the "all threads" Rust variant (default os.cpu_count())
  DFH_BENCH_POOL_WORKERS   processes of the baseline pool (default 2)

The node benchmark (test_bench_node.py) has its own variables, listed there, and its own table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench import rulesets
from bench.baseline import BaselinePool, Outcome, compile_rules, disagreements, outcome_of
from bench.synthetic import Corpus, ensure_corpus, spec_from_env

DEFAULT_ROUNDS = {"light": 5, "heavy": 3}
RULESETS = ("light", "heavy")


def rounds_for(group: str) -> int:
    value = os.environ.get(f"DFH_BENCH_ROUNDS_{group.upper()}") or os.environ.get("DFH_BENCH_ROUNDS")
    return max(1, int(value)) if value else DEFAULT_ROUNDS[group]


def all_threads() -> int:
    return int(os.environ.get("DFH_BENCH_THREADS") or os.cpu_count() or 1)


def pool_workers() -> int:
    return int(os.environ.get("DFH_BENCH_POOL_WORKERS") or 2)


@dataclass
class Row:
    group: str
    variant: str
    median: float
    inflated: int
    compressed: int


@dataclass
class NodeRow:
    """One variant of the node benchmark (test_bench_node.py): wall time to drain the whole queue."""

    variant: str
    median: float
    rounds: int
    releases: int
    distributions: int
    inflated: int
    compressed: int
    rules: str


NODE_ROWS = pytest.StashKey[list[NodeRow]]()
NODE_REFERENCE = "reference-loop"
NODE_TARGET = 5.0


@dataclass
class BenchContext:
    """Per-session state: the corpus, rule sets compiled once per engine, and the agreed reference results."""

    corpus: Corpus
    _sources: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)
    _yara: dict[str, Any] = field(default_factory=dict)
    _rust: dict[str, Any] = field(default_factory=dict)
    _reference: dict[str, list[Outcome]] = field(default_factory=dict)

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

    def rust_rules(self, name: str) -> Any:
        if name not in self._rust:
            from dragonfly_hybrid import Rules

            self._rust[name] = Rules.compile(self.sources(name))
        return self._rust[name]

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

    def extra_info(self, name: str, **more: Any) -> dict[str, Any]:
        c = self.corpus
        return {
            "mb_compressed": round(c.compressed_bytes / 1e6, 2),
            "mb_inflated": round(c.inflated_bytes / 1e6, 2),
            "files": c.file_count,
            "distributions": len(c.distributions),
            "rules": len(list(self.yara_rules(name))),
            "ruleset": self.note(name),
            **more,
        }


_ROWS = pytest.StashKey[list[Row]]()


@pytest.fixture(scope="session")
def ctx() -> BenchContext:
    corpus = ensure_corpus(spec_from_env())
    for d in corpus.distributions:  # warm the page cache: every variant reads the archives from it
        d.path.read_bytes()
    print(f"\n[corpus] {corpus.root}: {corpus.describe()}")
    return BenchContext(corpus)


@pytest.fixture
def record(request: pytest.FixtureRequest, ctx: BenchContext):
    """Call ``record(benchmark, group, variant)`` after timing to add a row to the speed-up table."""
    rows = request.config.stash.setdefault(_ROWS, [])

    def _record(benchmark: Any, group: str, variant: str, **more: Any) -> None:
        benchmark.extra_info.update(ctx.extra_info(group, **more))
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable
            return
        rows.append(
            Row(group, variant, stats.stats.median, ctx.corpus.inflated_bytes, ctx.corpus.compressed_bytes)
        )

    return _record


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if rows:
        _speedup_table(terminalreporter, rows)
    node_rows = config.stash.get(NODE_ROWS, [])
    if node_rows:
        _node_table(terminalreporter, node_rows)


def _speedup_table(tr: Any, rows: list[Row]) -> None:
    tr.write_sep("=", "dragonfly-hybrid speed-up vs single-thread baseline (median of rounds)")
    for group in sorted({r.group for r in rows}, key=lambda g: (*RULESETS, g).index(g)):
        group_rows = [r for r in rows if r.group == group]
        base = next((r for r in group_rows if r.variant == "baseline-1proc"), None)
        tr.write_line(f"[{group}] {group_rows[0].inflated / 1e6:.1f} MB inflated, {rounds_for(group)} rounds")
        tr.write_line(
            f"  {'variant':<22}{'median s':>10}{'speed-up':>10}{'MB/s infl.':>12}{'MB/s compr.':>13}"
        )
        for r in group_rows:
            ratio = f"{base.median / r.median:.2f}x" if base and r.median else "-"
            tr.write_line(
                f"  {r.variant:<22}{r.median:>10.3f}{ratio:>10}"
                f"{r.inflated / 1e6 / r.median:>12.1f}{r.compressed / 1e6 / r.median:>13.1f}"
            )


def _node_table(tr: Any, rows: list[NodeRow]) -> None:
    tr.write_sep("=", "dragonfly-hybrid node vs reference-style loop (median of rounds)")
    first = rows[0]
    tr.write_line(
        f"[node] {first.releases} releases, {first.distributions} distributions, "
        f"{first.compressed / 1e6:.1f} MB compressed, {first.inflated / 1e6:.1f} MB inflated, "
        f"{first.rules}, {first.rounds} rounds"
    )
    base = next((r for r in rows if r.variant == NODE_REFERENCE), None)
    tr.write_line(
        f"  {'variant':<22}{'median s':>10}{'releases/min':>14}{'MB/s infl.':>12}{'vs reference':>14}"
    )
    for r in rows:
        ratio = f"{base.median / r.median:.2f}x" if base and r.median else "-"
        tr.write_line(
            f"  {r.variant:<22}{r.median:>10.3f}{r.releases / r.median * 60:>14.1f}"
            f"{r.inflated / 1e6 / r.median:>12.1f}{ratio:>14}"
        )
    for r in rows:
        if base and r is not base and r.median:
            ratio = base.median / r.median
            verdict = "met" if ratio >= NODE_TARGET else "NOT met"
            tr.write_line(
                f"  target >= {NODE_TARGET:g}x releases/min for {r.variant}: {verdict} ({ratio:.2f}x)"
            )
