"""Per-member cost by zip compression method (issue 19): the same 20,000 small ``.py`` modules (the big
wheel's first ones, ``bench/bigwheel.py``) zipped with each method ``zipfile`` reads and pip would install
from, every row in the same run:

* ``zip-stored``, ``zip-deflate``, ``zip-bzip2``, ``zip-lzma``, ``zip-zstd`` (method 93, which Python
  3.14's ``zipfile`` reads; written with ``backports.zstd``'s port of it on older Pythons): the engine,
  ``Scanner.scan_bytes`` on 2 threads, no content cache, the 14 common-code rules;
* ``baseline-<method>``: the pure-Python baseline (``bench.baseline.BaselineScanner``: ``zipfile`` + the
  ``yara-x`` package, one process) on the same zip, for the methods the running Python's ``zipfile``
  reads (all but zstd before 3.14).

The summary prints each engine row's median, its ratio to ``zip-deflate`` (the method of nearly every
wheel) and the baseline's time over the engine's. Guard: every engine row scans every member, complete,
with the same files and matches as ``zip-deflate``; each baseline agrees on score and rules matched.
``DFH_BENCH_ROUNDS`` sets the rounds (default 5).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from dragonfly_hybrid import DistributionResult, Rules, Scanner

from bench.baseline import BaselineScanner, outcome_of
from bench.bigwheel import SEED, _entries, common_code_sources
from bench.conftest import record_median

if sys.version_info >= (3, 14):
    import zipfile
else:
    from backports.zstd import zipfile

MEMBERS = 20_000
THREADS = 2
GROUP = "methods"
METHODS = {"stored": 0, "deflate": 8, "bzip2": 12, "lzma": 14, "zstd": 93}
BASELINE_METHODS = [name for name in METHODS if name != "zstd" or sys.version_info >= (3, 14)]


def _rounds() -> int:
    return int(os.environ.get("DFH_BENCH_ROUNDS", "5"))


def _wheel_name(method: str) -> str:
    return f"methods_{method}-1.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.compile(common_code_sources())


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    entries = [entry for entry in _entries(SEED, MEMBERS) if entry[0].endswith(".py")]
    built = {}
    for name, method in METHODS.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=method) as archive:
            for path, data in entries:
                archive.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data, method)
        built[name] = buffer.getvalue()
    inflated = sum(len(data) for _, data in entries)
    sizes = ", ".join(f"{name} {len(data) / 1e6:.1f} MB" for name, data in built.items())
    print(f"\n[methods] {len(entries)} members, {inflated / 1e6:.1f} MB inflated; zipped: {sizes}")
    return built


@pytest.fixture(scope="module")
def medians(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    """Row -> median seconds; printed when the module ends."""
    rows: dict[str, float] = {}
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not rows:
        return
    deflate = rows.get("zip-deflate")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown without -s too
        reporter.write_sep("=", "zip members by method (medians; against zip-deflate and the baseline)")
        for method in METHODS:
            engine = rows.get(f"zip-{method}")
            if engine is None:
                continue
            ratio = f"{engine / deflate:6.2f}x zip-deflate" if deflate else ""
            baseline = rows.get(f"baseline-{method}")
            slower = f"   baseline {baseline:6.3f} s ({baseline / engine:5.2f}x)" if baseline else ""
            reporter.write_line(f"zip-{method:<8} {engine:6.3f} s  {ratio}{slower}")


def _found(result: DistributionResult) -> list[tuple[str, str, list[str]]]:
    return [(f.path, f.sha256, sorted(m.identifier for m in f.matches)) for f in result.files]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.benchmark(group=GROUP)
def test_engine(
    benchmark: Any, rules: Rules, archives: dict[str, bytes], medians: dict[str, float], method: str
) -> None:
    data = archives[method]

    def fresh() -> tuple[tuple[Scanner], dict[str, Any]]:
        return (Scanner(rules, threads=THREADS, content_cache=False),), {}

    def scan(scanner: Scanner) -> DistributionResult:
        return scanner.scan_bytes(data, _wheel_name(method))

    result = benchmark.pedantic(scan, setup=fresh, rounds=_rounds(), iterations=1)
    assert result.complete and result.files_scanned == MEMBERS, [i.message for i in result.issues][:3]
    expected = Scanner(rules, threads=THREADS).scan_bytes(archives["deflate"], _wheel_name("deflate"))
    assert _found(result) == _found(expected) and result.files
    record_median(benchmark, medians, GROUP, f"zip-{method}", zip_bytes=len(data))


@pytest.mark.parametrize("method", BASELINE_METHODS)
@pytest.mark.benchmark(group=GROUP)
def test_baseline(
    benchmark: Any, rules: Rules, archives: dict[str, bytes], medians: dict[str, float], method: str
) -> None:
    data = archives[method]
    scanner = BaselineScanner(common_code_sources())
    outcome = benchmark.pedantic(
        lambda: scanner.scan_bytes(data, _wheel_name(method)), rounds=_rounds(), iterations=1
    )
    engine = Scanner(rules, threads=THREADS).scan_bytes(data, _wheel_name(method))
    assert outcome.files_scanned == MEMBERS and outcome.key() == outcome_of(engine).key()
    record_median(benchmark, medians, GROUP, f"baseline-{method}", zip_bytes=len(data))
