"""The Rust path against the pure-Python baselines and the machine's limit: same rules, same corpus, one run.

Every variant scans all distributions of the corpus (``DFH_BENCH_CORPUS``: the real one by default) given
as *file paths* (the archives are in the page cache: the fixture reads them once before timing). Rule
compilation, process-pool start-up and ``Scanner`` construction are outside the timed region; each round
gets a fresh ``Scanner`` so that its content cache starts empty. Before any timing, ``ctx.reference``
checks that the baseline and the engine agree on every distribution's score and rules_matched; each timed
run's own results are checked against that reference afterwards.

Variants (per rule set): ``baseline-1proc``, ``baseline-<N>proc`` (process pool), ``reference-extract``
(extract to a temporary directory, scan file by file), ``rust-1thread``, ``rust-<N>threads``,
``rust-<N>threads-whole`` (the same rules compiled whole, without filetype routing), and the two
limits: ``limit-inflate`` (the engine with a rule that applies to no file: inflate and walk only, 1 thread)
and ``limit-scan`` (one ``yara_x.Scanner`` over the distinct contents, pre-inflated outside the timing,
1 thread). After timing, each variant runs once more in a child process to measure its peak RSS.
"""

from __future__ import annotations

import pytest

from bench import rulesets
from bench.baseline import TIMEOUT_SECONDS, BaselinePool, BaselineScanner, outcome_of
from bench.conftest import all_threads, pool_workers, rounds_for
from bench.corpora import distinct_contents
from bench.reference import ExtractingScanner

RULESET = [
    pytest.param(name, marks=pytest.mark.benchmark(group=name), id=name) for name in ("light", "heavy")
]


def _pedantic(benchmark, group, target, *args):
    return benchmark.pedantic(target, args=args, rounds=rounds_for(group), iterations=1, warmup_rounds=0)


def _python_one_thread(benchmark, ctx, record, ruleset, scanner_class, variant, kind):
    """A pure-Python variant on one thread: time `scanner_class(...).scan_many` over the corpus paths."""
    ctx.reference(ruleset)
    scanner = scanner_class(rules=ctx.yara_rules(ruleset))
    outcomes = _pedantic(benchmark, ruleset, scanner.scan_many, ctx.paths)
    ctx.check(ruleset, outcomes)
    rss = ctx.peak_rss(ruleset, kind, 1)
    record(benchmark, ruleset, variant, kind, 1, rss, engine="yara-x python")


@pytest.mark.parametrize("ruleset", RULESET)
def test_baseline_single_process(benchmark, ctx, record, ruleset):
    _python_one_thread(benchmark, ctx, record, ruleset, BaselineScanner, "baseline-1proc", "baseline")


@pytest.mark.parametrize("ruleset", RULESET)
def test_baseline_process_pool(benchmark, ctx, record, ruleset):
    ctx.reference(ruleset)
    workers = pool_workers()
    with BaselinePool(ctx.sources(ruleset), workers) as pool:
        outcomes = _pedantic(benchmark, ruleset, pool.scan_many, ctx.paths)
    ctx.check(ruleset, outcomes)
    rss = ctx.peak_rss(ruleset, "pool", workers)
    note = f"the parent's peak + the {workers} workers' peaks (an upper bound of their total)"
    variant = f"baseline-{workers}proc"
    record(benchmark, ruleset, variant, "pool", workers, rss, note, engine="yara-x python")


def _rust_rounds(benchmark, group, rules, threads, items):
    from dragonfly_hybrid import Scanner

    def fresh_scanner():
        # A new Scanner every round, built outside the timed region: its content cache must not carry
        # one round's results into the next (dedup inside a round is part of what is measured).
        return (Scanner(rules, threads=threads), items), {}

    def scan(scanner, items):
        return scanner.scan_many(items)

    return benchmark.pedantic(
        scan, setup=fresh_scanner, rounds=rounds_for(group), iterations=1, warmup_rounds=0
    )


def _threads_label(prefix: str, used: int) -> str:
    return f"{prefix}-{used}thread{'s' if used > 1 else ''}"


def _rust(benchmark, ctx, record, ruleset, threads):
    from dragonfly_hybrid import Scanner

    ctx.reference(ruleset)
    rules = ctx.rust_rules(ruleset)
    results = _rust_rounds(benchmark, ruleset, rules, threads, ctx.items)
    ctx.check(ruleset, [outcome_of(r) for r in results])
    used = Scanner(rules, threads=threads).threads
    rss = ctx.peak_rss(ruleset, "rust", used)
    record(
        benchmark,
        ruleset,
        _threads_label("rust", used),
        "rust",
        used,
        rss,
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


@pytest.mark.parametrize("ruleset", RULESET)
def test_rust_all_threads_whole(benchmark, ctx, record, ruleset):
    """Filetype routing off (the rules compiled whole): what routing saves, measured in the same run."""
    from dragonfly_hybrid import Scanner

    ctx.reference(ruleset)
    rules = ctx.rust_rules(ruleset, route_by_filetype=False)
    assert rules.filetype_classes is None
    results = _rust_rounds(benchmark, ruleset, rules, all_threads(), ctx.items)
    ctx.check(ruleset, [outcome_of(r) for r in results])
    used = Scanner(rules, threads=all_threads()).threads
    variant = _threads_label("rust", used) + "-whole"
    record(benchmark, ruleset, variant, "rust-whole", used, None, engine="dragonfly-hybrid", threads=used)


@pytest.mark.parametrize("ruleset", RULESET)
def test_limit_inflate(benchmark, ctx, record, ruleset):
    """Inflate and walk only: the engine with one rule that no file's suffix fits, so it runs neither
    YARA-X nor a hash on any file. The same for every rule set; measured in each group all the same."""
    from dragonfly_hybrid import Rules

    rules = Rules.compile(rulesets.never_sources())
    results = _rust_rounds(benchmark, ruleset, rules, 1, ctx.items)
    incomplete = [r.name for r in results if not r.complete]
    assert not incomplete, f"the engine left content unwalked: {incomplete}"
    assert all(not r.rules_matched for r in results)
    rss = ctx.peak_rss(ruleset, "limit-inflate", 1)
    record(
        benchmark,
        ruleset,
        "limit-inflate",
        "limit-inflate",
        1,
        rss,
        engine="dragonfly-hybrid (no applicable rule)",
        threads=1,
        files_walked=sum(r.files_scanned for r in results),
    )


@pytest.mark.parametrize("ruleset", RULESET)
def test_limit_scan(benchmark, ctx, record, ruleset):
    """Scan only: every distinct content (dedup by sha256, pre-inflated outside the timing) once, with one
    ``yara_x.Scanner`` on one thread."""
    import yara_x

    contents = distinct_contents(ctx.corpus.distributions)
    assert len(contents) == ctx.stats.distinct_files
    scanner = yara_x.Scanner(ctx.yara_rules(ruleset))
    scanner.set_timeout(TIMEOUT_SECONDS)

    def scan_all(contents):
        matched = 0
        for content in contents:
            if scanner.scan(content).matching_rules:
                matched += 1
        return matched

    matched = _pedantic(benchmark, ruleset, scan_all, contents)
    assert matched > 0, "no distinct content matched: matches are not exercised"
    del contents
    rss = ctx.peak_rss(ruleset, "limit-scan", 1)
    record(
        benchmark,
        ruleset,
        "limit-scan",
        "limit-scan",
        1,
        rss,
        "holds every distinct content in memory, by design",
        engine="yara-x python",
        threads=1,
        distinct_files=ctx.stats.distinct_files,
        mb_distinct=round(ctx.stats.distinct_bytes / 1e6, 2),
        contents_with_matches=matched,
    )


@pytest.mark.parametrize("ruleset", RULESET)
def test_reference_extract(benchmark, ctx, record, ruleset):
    _python_one_thread(benchmark, ctx, record, ruleset, ExtractingScanner, "reference-extract", "reference")
