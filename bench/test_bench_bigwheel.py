"""Per-file and output cost on the big wheel (``bench/bigwheel.py``: 50,002 small ``.py`` files) with the
14 common-code rules (issue 19), every row in the same run:

* ``engine-2threads``: ``Scanner.scan_path`` on 2 threads (a fresh ``Scanner`` per round, built as the CLI
  builds it for one archive: no content cache), with every digest, as ``json`` needs them;
* ``engine-2threads-filedigests``: the same with the matched files' digests only (``digests="files"``), as
  ``sarif`` scans;
* ``engine-2threads-nodigests``: the same without digests (``digests=False``), as ``table``, ``markdown``
  and ``html`` scan;
* ``cli-json``, ``cli-table``, ``cli-sarif``, ``cli-markdown``, ``cli-html``: ``python -m
  dragonfly_hybrid.cli scan WHEEL -f FMT -o FILE`` in a fresh process (start-up, rule compilation, scan and
  report: what a user waits for);
* ``baseline-1proc``: the pure-Python baseline (``bench.baseline.BaselineScanner``: ``zipfile`` + the
  ``yara-x`` package), one process.

The summary prints each row's median and its ratio to ``engine-2threads``.
``DFH_BENCH_ROUNDS`` sets the rounds (default 3).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from bench.baseline import BaselineScanner
from bench.bigwheel import BigWheel, common_code_sources, ensure_bigwheel
from bench.conftest import medians_printed, record_median

REPO = Path(__file__).resolve().parents[1]
THREADS = 2
GROUP = "bigwheel"


def _rounds() -> int:
    return int(os.environ.get("DFH_BENCH_ROUNDS", "3"))


@pytest.fixture(scope="module")
def wheel() -> BigWheel:
    found = ensure_bigwheel()
    found.path.read_bytes()  # into the page cache: every row reads it from there
    print(
        f"\n[bigwheel] {found.path}: {found.files} files, {found.size / 1e6:.1f} MB, "
        f"{found.inflated / 1e6:.1f} MB inflated"
    )
    return found


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bigwheel-rules")
    for origin, source in common_code_sources().items():
        (directory / Path(origin).name).write_text(source, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def medians(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    yield from medians_printed(request, "big wheel", "engine-2threads")


ENGINE_ROWS: dict[bool | Literal["files"], str] = {
    True: "engine-2threads",
    "files": "engine-2threads-filedigests",
    False: "engine-2threads-nodigests",
}


@pytest.mark.parametrize("digests", list(ENGINE_ROWS), ids=["digests", "filedigests", "nodigests"])
@pytest.mark.benchmark(group=GROUP)
def test_engine(
    benchmark: Any, wheel: BigWheel, medians: dict[str, float], digests: bool | Literal["files"]
) -> None:
    from dragonfly_hybrid import Rules, Scanner

    rules = Rules.compile(common_code_sources())

    def fresh() -> tuple[tuple[Scanner], dict[str, Any]]:
        # As the CLI builds it for one archive: no content cache (only matching files are hashed).
        return (Scanner(rules, threads=THREADS, content_cache=False, digests=digests),), {}

    result = benchmark.pedantic(
        lambda scanner: scanner.scan_path(str(wheel.path)), setup=fresh, rounds=_rounds(), iterations=1
    )
    assert result.files_scanned == wheel.files and result.complete and result.files
    assert all(f.sha256 for f in result.files) == (digests is not False)
    assert bool(result.sha256) == (digests is True)
    record_median(benchmark, medians, GROUP, ENGINE_ROWS[digests], files_matched=len(result.files))


@pytest.mark.parametrize("fmt", ["json", "table", "sarif", "markdown", "html"])
@pytest.mark.benchmark(group=GROUP)
def test_cli(
    benchmark: Any, wheel: BigWheel, rules_dir: Path, tmp_path: Path, medians: dict[str, float], fmt: str
) -> None:
    out = tmp_path / f"report.{fmt}"
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", str(wheel.path), "-r", str(rules_dir)]
    command += ["-f", fmt, "-o", str(out), "-q", "--threads", str(THREADS)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    # An installed package has its bytecode compiled: without it every start would compile every module.
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, env=env, capture_output=True, check=False)

    done = benchmark.pedantic(run, rounds=_rounds(), iterations=1)
    assert done.returncode == 1, done.stderr.decode(errors="replace")  # findings
    record_median(benchmark, medians, GROUP, f"cli-{fmt}", report_bytes=out.stat().st_size)


@pytest.mark.benchmark(group=GROUP)
def test_baseline(benchmark: Any, wheel: BigWheel, medians: dict[str, float]) -> None:
    scanner = BaselineScanner(common_code_sources())
    outcome = benchmark.pedantic(lambda: scanner.scan_path(wheel.path), rounds=_rounds(), iterations=1)
    assert outcome.files_scanned == wheel.files and outcome.rules_matched
    record_median(benchmark, medians, GROUP, "baseline-1proc")
