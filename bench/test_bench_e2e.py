"""End to end: the product as people run it, against the pure-Python baselines run the same way.

Every variant but ``engine-only`` is a fresh process, timed from its start until it has exited with its
report written: interpreter start-up, imports, loading the rules, scanning every distribution of the
corpus (``DFH_BENCH_CORPUS``: the real one by default), rendering and writing the report. The rules are
``common`` (``bench/rulesets.py``: the bundled rules, the bench markers and rules that match common code,
so reports are large), written once to a directory that every variant reads.

* ``cli-table``, ``cli-json``, ``cli-sarif``: ``dragonfly-hybrid scan --rules DIR --format F --output FILE
  --quiet PATH...`` with every core. The compiled-rules cache is warm (an untimed first run fills it), as
  it is for anyone who scanned before with the same rules.
* ``baseline-1proc``, ``baseline-pool``: ``python -m bench.baseline`` (``tarfile``/``zipfile`` + the
  ``yara-x`` Python package) in one process, and with a pool of ``DFH_BENCH_POOL_WORKERS`` processes;
  each compiles the rules (yara-x has no cache) and writes a JSON report.
* ``engine-only``: in this process, ``Scanner.scan_many`` over the same paths, rules compiled and Scanner
  built outside the timing, with no content cache as the CLI builds it for archives of distinct projects:
  what the CLI costs on top of its engine.
* ``startup-python``, ``startup-version``, ``startup-scan-file``: the interpreter alone (``python -c
  pass``), ``dragonfly-hybrid --version``, and ``scan`` of one small file with the bundled rules (target:
  under 0.2 s for the last two; the first is the floor of any Python command on the machine).
* ``startup-node-once``: ``dragonfly-hybrid node --once`` against a fake mainframe (in this process) with no
  job queued, its metrics server on as by default: start-up, log-in, ``GET /rules`` (loaded from a warm
  rules cache), one claim that finds nothing, the exit. No target: what a node costs to start and stop.

Guard: ``cli-json`` and ``baseline-1proc`` agree on every distribution's score and rules_matched, and the
engine finds the same.

    pytest bench/test_bench_e2e.py -s --benchmark-json=bench/results/e2e.json

Environment (besides those of ``bench/README.md``): ``DFH_BENCH_ROUNDS_E2E`` rounds per variant (default:
``DFH_BENCH_ROUNDS``, else 5).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from dragonfly_hybrid._core import Rules, Scanner

from bench import rulesets
from bench.conftest import E2E_ROWS, all_threads, pool_workers
from bench.corpora import BenchCorpus, corpus_kind, load_corpus
from bench.summary import E2E_BASELINE_1PROC, E2E_BASELINE_POOL, E2EMeasurement
from tests.fakes.mainframe import FakeMainframe

RULESET = "common"
DEFAULT_E2E_ROUNDS = 5
STARTUP_ROUNDS = 10
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.benchmark(group="end-to-end")


def e2e_rounds() -> int:
    value = os.environ.get("DFH_BENCH_ROUNDS_E2E") or os.environ.get("DFH_BENCH_ROUNDS")
    return max(1, int(value)) if value else DEFAULT_E2E_ROUNDS


@dataclass
class Setup:
    kind: str
    corpus: BenchCorpus
    paths: list[str]
    rules_dir: Path
    sources: dict[str, str]
    note: str
    env: dict[str, str]
    """The environment of every child: the rules cache in the session's directory, the package importable."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    kind = corpus_kind()
    corpus = load_corpus(kind)
    paths = [str(d.path) for d in corpus.distributions]
    for path in paths:
        Path(path).read_bytes()  # into the page cache, for every variant alike
    sources, note = rulesets.get(RULESET)
    root = tmp_path_factory.mktemp("e2e")
    for origin, text in sources.items():
        (root / "rules" / origin).parent.mkdir(parents=True, exist_ok=True)
        (root / "rules" / origin).write_text(text, encoding="utf-8")
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "DRAGONFLY_RULES_CACHE_DIR": str(root / "rules-cache"), "PYTHONPATH": python_path}
    # An installed package has its bytecode compiled: without it every start would compile every module.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    print(f"\n[e2e corpus] {kind}: {len(paths)} distributions; {RULESET} rules: {note}")
    return Setup(kind, corpus, paths, root / "rules", sources, note, env)


def run(command: list[str], env: dict[str, str], expected: tuple[int, ...]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode in expected, f"{command[:6]}... exited {done.returncode}: {done.stderr[-2000:]}"


def node_environment(base: dict[str, str], fake: FakeMainframe, tmp_path: Path) -> dict[str, str]:
    """``base`` with the node's settings for ``fake`` (none inherited), its metrics server on a free port."""
    env = {k: v for k, v in base.items() if not k.startswith("DRAGONFLY_")}
    for key, value in fake.node_settings().items():
        env[f"DRAGONFLY_{key.upper()}"] = str(value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        env["DRAGONFLY_METRICS_PORT"] = str(probe.getsockname()[1])
    env["DRAGONFLY_METRICS_HOST"] = "127.0.0.1"
    env["DRAGONFLY_RULES_CACHE_DIR"] = str(tmp_path / "rules-cache")
    return env


def cli_command(setup: Setup, fmt: str, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "--rules", str(setup.rules_dir),
        "--format", fmt, "--output", str(output), "--quiet", "--threads", str(all_threads()), *setup.paths,
    ]  # fmt: skip


def baseline_command(setup: Setup, workers: int, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "bench.baseline", "--rules", str(setup.rules_dir), "--workers", str(workers),
        "--output", str(output), *setup.paths,
    ]  # fmt: skip


def record(benchmark, request, setup: Setup, variant: str, what: str, rounds: int | None = None) -> None:
    benchmark.extra_info.update(variant=variant, corpus=setup.kind, distributions=len(setup.paths))
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    row = E2EMeasurement(
        variant=variant,
        median=stats.stats.median,
        rounds=rounds or e2e_rounds(),
        distributions=len(setup.paths),
        inflated=setup.corpus.inflated_bytes,
        rules=f"{RULESET} rules ({setup.note})",
        what=what,
        corpus=setup.kind,
    )
    benchmark.extra_info["e2e_row"] = asdict(row)
    request.config.stash.setdefault(E2E_ROWS, []).append(row)


def outcomes_of_cli_json(path: Path) -> dict[str, tuple[int, list[str]]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return {t["target"]: (t["score"], sorted(t["rules_matched"])) for t in document["targets"]}


def outcomes_of_baseline(path: Path) -> dict[str, tuple[int, list[str]]]:
    return {d["path"]: (d["score"], sorted(d["rules_matched"])) for d in json.loads(path.read_text())}


_OUTCOMES: dict[str, dict[str, tuple[int, list[str]]]] = {}


def agree(variant: str, outcomes: dict[str, tuple[int, list[str]]]) -> None:
    """Every variant that reports outcomes agrees with the first one that did."""
    assert any(rules for _, rules in outcomes.values()), f"{variant}: nothing matched: matches not exercised"
    for other, theirs in _OUTCOMES.items():
        diff = [
            f"{p}: {variant} {outcomes.get(p)}, {other} {theirs[p]}"
            for p in theirs
            if outcomes.get(p) != theirs[p]
        ]
        assert not diff, f"{variant} and {other} disagree:\n" + "\n".join(diff[:10])
    _OUTCOMES.setdefault(variant, outcomes)


@pytest.mark.parametrize("fmt", ["table", "json", "sarif"])
def test_cli(benchmark, request, setup: Setup, fmt: str, tmp_path: Path) -> None:
    output = tmp_path / f"report.{fmt}"
    command = cli_command(setup, fmt, output)
    findings = (1,)  # the common rules match: exit 1

    def target() -> None:
        output.unlink(missing_ok=True)
        run(command, setup.env, findings)

    run(command, setup.env, findings)  # fills the compiled-rules cache (untimed)
    benchmark.pedantic(target, rounds=e2e_rounds(), iterations=1, warmup_rounds=0)
    assert output.stat().st_size > 0
    if fmt == "json":
        agree("cli-json", outcomes_of_cli_json(output))
    record(
        benchmark, request, setup, f"cli-{fmt}", f"fresh process, {all_threads()} threads, report to a file"
    )


@pytest.mark.parametrize("variant", [E2E_BASELINE_1PROC, E2E_BASELINE_POOL])
def test_baseline(benchmark, request, setup: Setup, variant: str, tmp_path: Path) -> None:
    output = tmp_path / "baseline.json"
    workers = 1 if variant == E2E_BASELINE_1PROC else pool_workers()
    command = baseline_command(setup, workers, output)
    benchmark.pedantic(
        lambda: run(command, setup.env, (0,)), rounds=e2e_rounds(), iterations=1, warmup_rounds=0
    )
    agree(variant, outcomes_of_baseline(output))
    what = "fresh process" if workers == 1 else f"fresh process + a pool of {workers}"
    record(benchmark, request, setup, variant, f"{what}, compiles the rules, JSON to a file")


def test_engine_only(benchmark, request, setup: Setup) -> None:
    scanner = Scanner(Rules.compile(setup.sources), threads=all_threads())
    results = benchmark.pedantic(
        # Built as the CLI builds it for archives of distinct projects (`shares_contents`): no content cache.
        lambda: Scanner(scanner.rules, threads=all_threads(), content_cache=False).scan_many(
            [(Path(p).name, p, None) for p in setup.paths]
        ),
        rounds=e2e_rounds(),
        iterations=1,
        warmup_rounds=0,
    )
    agree(
        "engine-only",
        {p: (r.score, sorted(r.rules_matched)) for p, r in zip(setup.paths, results, strict=True)},
    )
    record(
        benchmark,
        request,
        setup,
        "engine-only",
        "in process: scan_many only (rules compiled before, no content cache)",
    )


@pytest.mark.parametrize("variant", ["startup-python", "startup-version", "startup-scan-file"])
def test_startup(benchmark, request, setup: Setup, variant: str, tmp_path: Path) -> None:
    """A fresh process doing next to nothing: the interpreter alone, ``--version``, ``scan`` of one small
    file with the bundled rules (their compiled form cached, as after a first scan)."""
    small = tmp_path / "setup.py"
    small.write_text("from setuptools import setup\n\nsetup(name='small')\n")
    commands = {
        "startup-python": ([sys.executable, "-c", "pass"], (0,)),
        "startup-version": ([sys.executable, "-m", "dragonfly_hybrid.cli", "--version"], (0,)),
        "startup-scan-file": (
            [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "--format", "json", "--quiet", str(small)],
            (0,),
        ),
    }
    command, expected = commands[variant]
    run(command, setup.env, expected)  # fills the compiled-rules cache (untimed)
    rounds = max(STARTUP_ROUNDS, e2e_rounds())
    benchmark.pedantic(lambda: run(command, setup.env, expected), rounds=rounds, iterations=1)
    record(benchmark, request, setup, variant, "fresh process: start-up, then exit", rounds)


def test_startup_node_once(benchmark, request, setup: Setup, tmp_path: Path) -> None:
    """A fresh node that finds no job: start-up, log-in, its rules from a warm cache, an empty claim, exit."""
    variant, what = "startup-node-once", "fresh process: start-up, log-in, an empty claim, exit"
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "node", "--once"]
    with FakeMainframe() as fake:
        env = node_environment(setup.env, fake, tmp_path)
        run(command, env, (0,))  # fills the rules cache (untimed)
        rounds = max(STARTUP_ROUNDS, e2e_rounds())
        benchmark.pedantic(lambda: run(command, env, (0,)), rounds=rounds, iterations=1)
        assert not fake.results  # nothing was queued: nothing was submitted
    record(benchmark, request, setup, variant, what, rounds)
