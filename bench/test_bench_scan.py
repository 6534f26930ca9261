"""The Rust path against the pure-Python baseline: same rules, same synthetic corpus, one run.

Every variant scans all distributions of the corpus given as *file paths* (the archives are in the page
cache: the fixture reads them once before timing). Rule compilation, process-pool start-up and
``Scanner`` construction are outside the timed region; each round gets a fresh ``Scanner`` so that its
content cache starts empty. Before any timing, ``ctx.reference`` checks that the
baseline and the engine agree on every distribution's score and rules_matched; each timed run's own
results are checked against that reference afterwards.
"""

from __future__ import annotations

import pytest

from bench.baseline import BaselinePool, BaselineScanner, outcome_of
from bench.conftest import all_threads, pool_workers, rounds_for

RULESET = [
    pytest.param(name, marks=pytest.mark.benchmark(group=name), id=name) for name in ("light", "heavy")
]


def _pedantic(benchmark, group, target, *args):
    return benchmark.pedantic(target, args=args, rounds=rounds_for(group), iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("ruleset", RULESET)
def test_baseline_single_process(benchmark, ctx, record, ruleset):
    ctx.reference(ruleset)
    scanner = BaselineScanner(rules=ctx.yara_rules(ruleset))
    outcomes = _pedantic(benchmark, ruleset, scanner.scan_many, ctx.paths)
    ctx.check(ruleset, outcomes)
    record(benchmark, ruleset, "baseline-1proc", engine="yara-x python", workers=1)


@pytest.mark.parametrize("ruleset", RULESET)
def test_baseline_process_pool(benchmark, ctx, record, ruleset):
    ctx.reference(ruleset)
    workers = pool_workers()
    with BaselinePool(ctx.sources(ruleset), workers) as pool:
        outcomes = _pedantic(benchmark, ruleset, pool.scan_many, ctx.paths)
    ctx.check(ruleset, outcomes)
    record(benchmark, ruleset, f"baseline-{workers}proc", engine="yara-x python", workers=workers)


def _rust(benchmark, ctx, record, ruleset, threads):
    from dragonfly_hybrid import Scanner

    ctx.reference(ruleset)
    rules = ctx.rust_rules(ruleset)

    def fresh_scanner():
        # A new Scanner every round, built outside the timed region: its content cache must not carry
        # one round's results into the next (dedup inside a round is part of what is measured).
        return (Scanner(rules, threads=threads), ctx.items), {}

    def scan(scanner, items):
        return scanner.scan_many(items)

    results = benchmark.pedantic(
        scan, setup=fresh_scanner, rounds=rounds_for(ruleset), iterations=1, warmup_rounds=0
    )
    ctx.check(ruleset, [outcome_of(r) for r in results])
    used = Scanner(rules, threads=threads).threads
    record(
        benchmark,
        ruleset,
        f"rust-{used}thread{'s' if used > 1 else ''}",
        engine="dragonfly-hybrid",
        threads=used,
        files_scanned=sum(r.files_scanned for r in results),
        bytes_scanned=sum(r.bytes_scanned for r in results),
    )


@pytest.mark.parametrize("ruleset", RULESET)
def test_rust_one_thread(benchmark, ctx, record, ruleset):
    _rust(benchmark, ctx, record, ruleset, 1)


@pytest.mark.parametrize("ruleset", RULESET)
def test_rust_all_threads(benchmark, ctx, record, ruleset):
    if all_threads() == 1:
        pytest.skip("one CPU: same as test_rust_one_thread")
    _rust(benchmark, ctx, record, ruleset, all_threads())
