"""Releases per minute of the node against a reference-style loop, on the same fake mainframe and corpus.

Every release of the corpus (``DFH_BENCH_CORPUS``: the real one by default, where each line of
``bench/corpus.txt`` is a release with one distribution; or the synthetic one, ``bench/synthetic.py``) is
queued on a fresh ``tests.fakes.mainframe.FakeMainframe`` per round, its distributions hosted on the fake's
file host at PyPI-shaped URLs; the fake serves the ``light`` rule set (the bundled rules plus the bench
markers; see ``DFH_BENCH_NODE_RULES`` for others) as the mainframe's rules. The fake runs in a child
process (``bench/remote_fake.py``): like the live, remote mainframe, its HTTP threads share no GIL with the
variant being measured. Each round drains the whole queue and its wall time is measured.

* ``reference-loop``: a Python re-creation of how the reference node works, one job at a time: log in
  (Cloudflare service token), ``GET /rules`` and compile them with the ``yara-x`` Python package, then
  ``POST /jobs?batch=1``, download each distribution in turn, scan each member serially
  (``bench/baseline.py``: tarfile/zipfile + one ``yara_x.Scanner``, the Dragonfly scoring), compute
  score / rules_matched / inspector_url, ``PUT /package``, repeat until no job is left.
* ``node-<N>threads``: ``dragonfly_hybrid.node.service.serve(settings, once=True)`` with the default
  concurrency settings and ``threads`` = every core (``DFH_BENCH_THREADS``), a fresh rules cache per round
  (so it compiles the rules like the reference loop does).
* ``node-<N>threads-warm-rules``: the same with the rules cache filled by an untimed first run, as a node
  restarts: the served rules are loaded from the cache, not compiled.
* ``node-<N>threads-paired``: ``node-<N>threads-warm-rules`` again, with an ``engine-only`` round run
  just before each of its rounds (in the untimed setup). Its "vs engine" is the median of the per-pair
  ratios (engine round / node round): the machine's speed drifts by 10% and more within an hour here, and
  the other rows' ratio compares medians taken a minute apart.
* ``engine-only``: what the node cannot do without, and nothing else: ``Scanner.scan_many`` (every core,
  ``fast_scan`` and no digests, as the node) over every distribution of the queue, read from the page
  cache, with the same rules compiled before the timing (as the scan benchmark's engine rows); no
  mainframe, no downloads, no submissions. The node's target is at least 90% of its releases/min (the
  ``vs engine`` column).
* ``engine-while-downloading``: ``engine-only`` while the node's downloader (``pypi.download.Downloader``,
  as many threads as the node's downloads) fetches every distribution of a fresh fake's queue from its
  file host on the same cores, and nothing else: no mainframe calls, rules or pipeline. What the
  downloads alone cost the engine here (the fake file host's sending, the kernel's copies and the
  download threads share the 2 cores with the scan), beside the node's whole distance to
  ``engine-only``. Not a bound: the node downloads its first jobs while it logs in and loads its rules,
  before the scans start. No target of its own.

Timed: from the start of the variant (login included) until the queue is drained. Not timed: building the
fake and queueing the jobs (``benchmark.pedantic`` setup), checking and tearing down.

Printed per round (with ``-s``): the node's CPU time (every thread of the process) and its per-stage seconds,
and the engine-only variant's CPU time. On 2 cores both are CPU-bound, so the node's CPU beyond the
engine's (downloads, the event loop, submissions, the kernel's side of the sockets) is what it loses.

Guard: in every round each release gets exactly one accepted result, a success; every round of a variant
gives the same results; and the two variants agree on every release's ``score`` and ``rules_matched``.

Environment (besides ``DFH_BENCH_CORPUS``, ``DFH_BENCH_SEED``, ``DFH_BENCH_CACHE``, ``DFH_BENCH_THREADS``,
see conftest):
  DFH_BENCH_NODE_SCALE     synthetic corpus scale of this benchmark (default: DFH_BENCH_SCALE, else 1.0)
  DFH_BENCH_NODE_RELEASES  synthetic release count (default: 30 x scale, as the corpus generator)
  DFH_BENCH_ROUNDS_NODE    rounds per variant (default: DFH_BENCH_ROUNDS, else 5)
  DFH_BENCH_NODE_RULES     light (default: bundled + bench markers), bundled, or heavy (~2,000 rules)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from dragonfly_hybrid._core import Rules, Scanner
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.node.pipeline import NodeOptions
from dragonfly_hybrid.node.service import serve
from dragonfly_hybrid.node.settings import NodeSettings
from dragonfly_hybrid.pypi.download import Downloader

from bench import rulesets
from bench.baseline import BaselineScanner, members
from bench.conftest import NODE_ROWS, all_threads
from bench.corpora import BenchCorpus, corpus_kind, load_corpus
from bench.remote_fake import FakeProcess, ReleaseSpec, RemoteFake
from bench.summary import NODE_ENGINE, NODE_ENGINE_DOWNLOADING, NODE_REFERENCE, NodeMeasurement
from bench.synthetic import DEFAULT_SEED, CorpusSpec, ensure_corpus

DEFAULT_NODE_ROUNDS = 5
REFERENCE = NODE_REFERENCE
CF_COOKIE = "CF_Authorization"

pytestmark = pytest.mark.benchmark(group="node")


def node_rounds() -> int:
    value = os.environ.get("DFH_BENCH_ROUNDS_NODE") or os.environ.get("DFH_BENCH_ROUNDS")
    return max(1, int(value)) if value else DEFAULT_NODE_ROUNDS


def node_spec() -> CorpusSpec:
    scale = os.environ.get("DFH_BENCH_NODE_SCALE") or os.environ.get("DFH_BENCH_SCALE") or "1.0"
    releases = os.environ.get("DFH_BENCH_NODE_RELEASES")
    return CorpusSpec(
        seed=int(os.environ.get("DFH_BENCH_SEED", str(DEFAULT_SEED))),
        scale=float(scale),
        releases=int(releases) if releases else None,
    )


def node_corpus() -> tuple[str, BenchCorpus]:
    kind = corpus_kind()
    return kind, (load_corpus(kind) if kind == "real" else ensure_corpus(node_spec()))


# --- the queue ----------------------------------------------------------------------------------------------
@dataclass
class Queue:
    """The corpus as releases, and the rule set the mainframe serves."""

    kind: str
    corpus: BenchCorpus
    releases: list[ReleaseSpec]
    """In corpus order; a release's distributions in corpus order."""
    rules: dict[str, str]
    rules_hash: str


@pytest.fixture(scope="module")
def queue() -> Queue:
    kind, corpus = node_corpus()
    grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for d in corpus.distributions:
        grouped.setdefault((d.release, d.version), []).append((d.filename, str(d.path)))
    releases = [ReleaseSpec(n, v, tuple(files)) for (n, v), files in grouped.items()]
    name, rules = node_rules()
    digest = hashlib.sha256(repr(sorted(rules.items())).encode()).hexdigest()[:12]
    print(
        f"\n[node corpus] {kind}: {corpus.root}: {len(releases)} releases, {corpus.describe()}; {name} rules"
    )
    return Queue(kind, corpus, releases, rules, f"{name}-{digest}")


@pytest.fixture(scope="module")
def fakes(queue: Queue) -> Iterator[FakeProcess]:
    """The child process that hosts a fresh fake mainframe per round."""
    with FakeProcess(queue.releases, queue.rules_hash, queue.rules) as process:
        yield process


def node_rules() -> tuple[str, dict[str, str]]:
    """``DFH_BENCH_NODE_RULES``: ``light`` (default: the bundled rules + the bench markers, as the scan
    benchmark's light group; the markers make the real corpus produce findings, which the bundled rules
    alone do not), ``bundled``, or ``heavy`` (~2,000 generated rules)."""
    name = os.environ.get("DFH_BENCH_NODE_RULES") or "light"
    if name != "bundled":
        return name, dict(rulesets.get(name)[0])
    directory = rulesets.bundled_rules_dir()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in (".yar", ".yara"))
    assert files, f"no bundled rules under {directory}"
    return name, {p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8") for p in files}


# --- variant A: the reference-style loop ------------------------------------------------------------------
@dataclass
class DistributionScan:
    url: str
    score: int
    rules: dict[str, int]
    top_file: str


class ReferenceScanner(BaselineScanner):
    """``BaselineScanner``'s member walk and scoring, keeping what a node reports: per-file scores and the
    top file of a distribution (ties: the last, as the reference node's ``max_by_key``)."""

    def scan_distribution(self, data: bytes, url: str) -> DistributionScan:
        matched: dict[str, int] = {}
        top_file, top_score = "", -1
        for path, content in members(data, url.rsplit("/", 1)[-1]):
            in_file: dict[str, int] = {}
            for rule in self.scanner.scan(content).matching_rules:
                weight, suffixes = self._rule_info(rule)
                if suffixes is not None and not path.endswith(suffixes):
                    continue
                in_file[rule.identifier] = weight
            score = sum(in_file.values())
            if score >= top_score:
                top_file, top_score = path, score
            matched.update(in_file)
        return DistributionScan(url, sum(matched.values()), matched, top_file)


def release_body(job: dict, scans: list[DistributionScan], commit: str) -> dict:
    """The success body the reference node sends: max distribution score, union of rules, inspector URL of
    the top file of the top distribution (filled even when nothing matched, as the reference node does)."""
    top: DistributionScan | None = None
    for scan in scans:
        if top is None or scan.score >= top.score:
            top = scan
    rules: set[str] = set()
    for scan in scans:
        rules.update(scan.rules)
    inspector_url = None
    if top is not None:
        path = urlsplit(top.url).path.lstrip("/")
        inspector_url = (
            f"https://inspector.pypi.io/project/{job['name']}/{job['version']}/{path}/{top.top_file}"
        )
    return {
        "name": job["name"],
        "version": job["version"],
        "score": top.score if top is not None else 0,
        "inspector_url": inspector_url,
        "rules_matched": sorted(rules),
        "commit": commit,
        "attempt": job["attempt"],
        "assignment_id": job["assignment_id"],
    }


class ReferenceNode:
    """Synchronous, one job at a time: what the reference node does, in Python."""

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(60.0, connect=15.0))
        self._credentials = {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": client_secret}
        self.scanner: ReferenceScanner | None = None
        self.commit = ""

    def login(self) -> None:
        response = self.http.get("/", headers=self._credentials)
        response.raise_for_status()
        token = response.cookies.get(CF_COOKIE)
        assert token, "the Cloudflare login set no cookie"
        self.http.headers["Cookie"] = f"{CF_COOKIE}={token}"

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code in (401, 403):
            self.login()
            response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    def load_rules(self) -> None:
        payload = self.call("GET", "/rules").json()
        self.scanner = ReferenceScanner(payload["rules"])
        self.commit = payload["hash"]

    def run(self) -> int:
        """Drain the queue; the number of jobs submitted."""
        self.login()
        self.load_rules()
        done = 0
        while jobs := self.call("POST", "/jobs", params={"batch": 1}).json():
            job = jobs[0]
            if job["hash"] != self.commit:
                self.load_rules()
            assert self.scanner is not None
            scans = []
            for url in job["distributions"]:
                response = self.http.get(url)
                response.raise_for_status()
                scans.append(self.scanner.scan_distribution(response.content, url))
            self.call("PUT", "/package", json=release_body(job, scans, self.commit))
            done += 1
        return done

    def close(self) -> None:
        self.http.close()


def reference_loop(fake: RemoteFake) -> int:
    node = ReferenceNode(fake.url, fake.client_id, fake.client_secret)
    try:
        return node.run()
    finally:
        node.close()


# --- variant B: the node ----------------------------------------------------------------------------------
def hybrid_node(fake: RemoteFake, cache_dir: Path, threads: int) -> NodeMetrics:
    values = fake.node_settings(metrics_port=None, rules_cache_dir=cache_dir, threads=threads)
    settings = NodeSettings(_env_file=None, **values)  # type: ignore[call-arg]
    metrics = NodeMetrics()
    asyncio.run(serve(settings, once=True, metrics=metrics))
    return metrics


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (every thread: the node's or the engine's)."""
    times = os.times()
    return times.user + times.system


def stage_seconds(metrics: NodeMetrics) -> str:
    """Where the node's time went, summed over its jobs (its per-stage metrics): informational."""

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    parts = [f"{h} {value(f'dragonfly_{h}_seconds_sum'):.2f}" for h in ("download", "scan", "submit")]
    parts += [
        f"wait for {stage} {value('dragonfly_queue_wait_seconds_sum', stage=stage):.2f}"
        for stage in ("download", "scan", "submit")
    ]
    parts.append(f"scanners idle {value('dragonfly_scan_idle_seconds_total'):.2f}")
    return "s, ".join(parts) + "s (summed over jobs)"


# --- variant C: the engine alone -------------------------------------------------------------------------
def engine_only(rules: Rules, queue: Queue, threads: int) -> int:
    """Scan every distribution of the queue with ``rules``; the number of files scanned."""
    scanner = Scanner(rules, threads=threads, fast_scan=True, digests=False)
    items = [(filename, path, None) for release in queue.releases for filename, path in release.files]
    return sum(d.files_scanned for d in scanner.scan_many(items))


# --- rounds, checks, table ----------------------------------------------------------------------------------
Outcomes = dict[tuple[str, str], tuple[int, tuple[str, ...], str | None]]

_OUTCOMES: dict[str, Outcomes] = {}
"""Per variant: (name, version) -> (score, rules_matched, inspector_url) of its first round."""
_COMPARED: set[tuple[str, str]] = set()


def harvest(results: list[dict[str, Any]], queue: Queue, variant: str) -> Outcomes:
    """The accepted results (bodies) of a drained fake; every release exactly once, all successes."""
    keys = [(body["name"], body["version"]) for body in results]
    expected = {(r.name, r.version) for r in queue.releases}
    assert len(keys) == len(set(keys)) and set(keys) == expected, (
        f"{variant}: {len(keys)} accepted results for {len(expected)} releases "
        f"(missing: {sorted(expected - set(keys))[:5]})"
    )
    failures = [body for body in results if "reason" in body]
    assert not failures, f"{variant}: failure results: {failures[:3]}"
    assert all(body["commit"] == queue.rules_hash for body in results)
    return {
        (body["name"], body["version"]): (
            body["score"],
            tuple(sorted(body["rules_matched"])),
            body["inspector_url"],
        )
        for body in results
    }


def check(variant: str, outcomes: Outcomes) -> None:
    """Same results every round; score and rules_matched equal to every other variant's."""
    first = _OUTCOMES.setdefault(variant, outcomes)
    assert outcomes == first, f"{variant}: results differ between rounds"
    assert any(rules for _, rules, _ in outcomes.values()), "no release matched: matches are not exercised"
    for other, theirs in _OUTCOMES.items():
        if other == variant:
            continue
        diff = [
            f"{name}=={version}: {variant} score {outcomes[(name, version)][0]} "
            f"{list(outcomes[(name, version)][1])}, {other} score {theirs[(name, version)][0]} "
            f"{list(theirs[(name, version)][1])}"
            for name, version in sorted(outcomes)
            if outcomes[(name, version)][:2] != theirs[(name, version)][:2]
        ]
        assert not diff, f"{variant} and {other} disagree:\n" + "\n".join(diff)
        if (variant, other) in _COMPARED:
            continue
        _COMPARED.add((variant, other))
        # Informational: the top file may legitimately differ on ties.
        findings = [k for k, v in outcomes.items() if v[1]]
        same_url = sum(1 for k in findings if outcomes[k][2] == theirs[k][2])
        print(
            f"\n[guard] {variant} and {other} agree on score and rules_matched of {len(outcomes)} releases "
            f"({len(findings)} with findings; same inspector_url for {same_url} of them)"
        )


def run_rounds(
    benchmark,
    request,
    queue: Queue,
    process: FakeProcess,
    variant: str,
    target,
    *,
    submits: bool = True,
    before_round=None,
    engine_ratios: list[float] | None = None,
) -> None:
    """``benchmark.pedantic`` over fresh fakes (in the child process): building one is setup (not timed);
    each is checked (when the variant ``submits`` results) and closed once the next round is set up, the
    last one afterwards. ``before_round``, when given, runs last in each setup (not timed)."""
    live: list[RemoteFake] = []
    made = 0

    def settle() -> None:
        while live:
            fake = live.pop()
            try:
                if submits:
                    check(variant, harvest(fake.results(), queue, variant))
            finally:
                fake.close()

    def setup():
        nonlocal made
        settle()
        fake = process.new_round()
        live.append(fake)
        made += 1
        if before_round is not None:
            before_round()
        return (fake, made), {}

    rounds = node_rounds()
    try:
        benchmark.pedantic(target, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
        settle()
    finally:
        for fake in live:
            fake.close()
    record_row(benchmark, request, queue, variant, rounds, engine_ratios)


def record_row(
    benchmark, request, queue: Queue, variant: str, rounds: int, engine_ratios: list[float] | None = None
) -> None:
    """The variant's extra_info and its row of the node table (none with ``--benchmark-disable``)."""
    corpus = queue.corpus
    benchmark.extra_info.update(
        variant=variant,
        corpus=queue.kind,
        releases=len(queue.releases),
        distributions=len(corpus.distributions),
        files=corpus.file_count,
        mb_compressed=round(corpus.compressed_bytes / 1e6, 2),
        mb_inflated=round(corpus.inflated_bytes / 1e6, 2),
        rules=len(queue.rules),
        ruleset=queue.rules_hash,
    )
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    median = stats.stats.median
    benchmark.extra_info["releases_per_minute"] = round(len(queue.releases) / median * 60, 1)
    row = NodeMeasurement(
        variant=variant,
        median=median,
        rounds=rounds,
        releases=len(queue.releases),
        distributions=len(corpus.distributions),
        inflated=corpus.inflated_bytes,
        compressed=corpus.compressed_bytes,
        rules=f"{queue.rules_hash.rsplit('-', 1)[0]} rules ({len(queue.rules)} files)",
        corpus=queue.kind,
        engine_ratios=tuple(round(r, 4) for r in engine_ratios or ()),
    )
    benchmark.extra_info["node_row"] = asdict(row)
    request.config.stash.setdefault(NODE_ROWS, []).append(row)


def node_variant(threads: int, suffix: str = "") -> str:
    return f"node-{threads}thread{'s' if threads > 1 else ''}{suffix}"


def warm_rules_cache(fakes: FakeProcess, queue: Queue, cache: Path, threads: int) -> Path:
    """``cache`` filled by an untimed node run (it compiles the served rules into it), as a node restarts."""
    warm_up = fakes.new_round()
    try:
        hybrid_node(warm_up, cache, threads)
        harvest(warm_up.results(), queue, "node warm-up")
    finally:
        warm_up.close()
    return cache


def test_reference_loop(benchmark, request, queue, fakes):
    def target(fake, _round):
        assert reference_loop(fake) == len(queue.releases)

    run_rounds(benchmark, request, queue, fakes, REFERENCE, target)


def test_node(benchmark, request, queue, fakes, tmp_path):
    threads = all_threads()

    def target(fake, round_no):
        cpu = cpu_seconds()
        metrics = hybrid_node(fake, tmp_path / f"rules-cache-{round_no}", threads)
        cpu = cpu_seconds() - cpu
        print(f"\n[node stages] round {round_no}: CPU {cpu:.2f} s; {stage_seconds(metrics)}")

    run_rounds(benchmark, request, queue, fakes, node_variant(threads), target)


def test_node_warm_rules(benchmark, request, queue, fakes, tmp_path):
    """The node as it restarts: its rules cache already holds the served set (loaded, not compiled)."""
    threads = all_threads()
    cache = warm_rules_cache(fakes, queue, tmp_path / "rules-cache", threads)

    def target(fake, round_no):
        cpu = cpu_seconds()
        metrics = hybrid_node(fake, cache, threads)
        cpu = cpu_seconds() - cpu
        print(f"\n[node stages] warm rules, round {round_no}: CPU {cpu:.2f} s; {stage_seconds(metrics)}")

    variant = node_variant(threads, "-warm-rules")
    run_rounds(benchmark, request, queue, fakes, variant, target)


def test_node_paired(benchmark, request, queue, fakes, tmp_path):
    """``node-<N>threads-warm-rules`` with an ``engine-only`` round run just before each of its rounds (in
    the untimed setup): the "vs engine" of this row is the median of the pairs' ratios."""
    threads = all_threads()
    cache = warm_rules_cache(fakes, queue, tmp_path / "rules-cache", threads)
    rules = compiled_engine_rules(queue)
    engine_seconds: list[float] = []
    ratios: list[float] = []

    def engine_round() -> None:
        started = time.perf_counter()
        assert engine_only(rules, queue, threads) > 0
        engine_seconds.append(time.perf_counter() - started)

    def target(fake, _round):
        started = time.perf_counter()
        hybrid_node(fake, cache, threads)
        ratios.append(engine_seconds[-1] / (time.perf_counter() - started))

    variant = node_variant(threads, "-paired")
    run_rounds(
        benchmark, request, queue, fakes, variant, target, before_round=engine_round, engine_ratios=ratios
    )
    print(f"\n[{variant}] engine-only / node per pair: {', '.join(f'{r:.3f}' for r in ratios)}")


def compiled_engine_rules(queue: Queue) -> Rules:
    """The queue's rules compiled, with its distributions read once into the page cache (where the fake's
    file host serves them from): the engine-only rounds' setup, before any timing."""
    for release in queue.releases:
        for _, path in release.files:
            Path(path).read_bytes()
    return Rules.compile(queue.rules)  # as the scan benchmark's engine rows: compiled before the timing


def test_engine_only(benchmark, request, queue):
    threads = all_threads()
    rules = compiled_engine_rules(queue)

    def target() -> None:
        cpu = cpu_seconds()
        assert engine_only(rules, queue, threads) > 0
        print(f"\n[engine-only] CPU {cpu_seconds() - cpu:.2f} s (the node's CPU, above, includes this work)")

    rounds = node_rounds()
    benchmark.pedantic(target, rounds=rounds, iterations=1, warmup_rounds=0)
    record_row(benchmark, request, queue, NODE_ENGINE, rounds)


def download_all(urls: list[str]) -> int:
    """Every URL into memory with the node's downloader and concurrency; the bytes received."""

    async def fetch() -> int:
        downloader = Downloader(NodeOptions().download_concurrency)
        try:
            bodies = await asyncio.gather(*(downloader.download(url, 1 << 40) for url in urls))
        finally:
            downloader.close()
        return sum(len(body) for body in bodies)

    return asyncio.run(fetch())


def test_engine_while_downloading(benchmark, request, queue, fakes):
    threads = all_threads()
    rules = Rules.compile(queue.rules)

    def target(fake: RemoteFake, _round: int) -> None:
        with ThreadPoolExecutor(1) as downloads:
            received = downloads.submit(download_all, fake.files)
            assert engine_only(rules, queue, threads) > 0
            assert received.result() == queue.corpus.compressed_bytes

    run_rounds(benchmark, request, queue, fakes, NODE_ENGINE_DOWNLOADING, target, submits=False)
