"""The bundled rules on hostile floods: a 2 MB ``.py`` file made of one rule atom repeated (every byte of a
package is the attacker's), scanned by ``Scanner.scan_bytes`` on one thread, beside the baseline of the
same rules on 2 MB of benign Python (this package's own sources, repeated). Every row in the same run; the
summary prints each flood's ratio to the baseline and whether it meets the target (``TARGET``x).

A flood costs one verification per atom hit; a pattern that reads far from its atom (an unbounded run
forwards, a long class) or a condition loop over many matches multiplies that. ``_`` repeated made
``obfuscation_confusable_identifiers`` quadratic (``_{4,}\\b`` read to the end of the run from every hit):
5.8 s for 50 KB, the 10 s scan timeout from 200 KB. Fullwidth and mathematical letters also make the engine
scan the file a second time, as CPython reads its identifiers (NFKC)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dragonfly_hybrid as dh
import pytest

from bench.conftest import REPO, medians_printed, record_median

GROUP = "rules-hostile"
SIZE = 2_000_000
TARGET = 40.0  # every flood within this many times the benign file's scan time
FLOODS = (
    "_",
    "http://",
    "https://1.2.3.4/",
    "exec(",
    "eval(",
    "exec(a.get(",
    "os.system(",
    "b64decode(",
    "subprocess.",
    "requests.get(",
    "urlopen(",
    "socket.",
    "base64",
    "/tmp/",
    "chmod",
    "curl ",
    " -enc ",
    "'w',",
    "Popen(",
    "__a____ ",
    "coding: unicode_escape ",
    "\uff45\uff58\uff45\uff43(",  # fullwidth exec(
    "\U0001d41e",  # mathematical bold e
)


def fill(chunk: bytes) -> bytes:
    # Whole chunks: a flood of multi-byte characters cut in the middle is not UTF-8, which CPython (and
    # the engine's reading of Python files) does not read as code.
    return chunk * (SIZE // len(chunk))


def benign() -> bytes:
    sources = sorted((REPO / "python" / "dragonfly_hybrid").rglob("*.py"))
    text = b"\n".join(Path(p).read_bytes() for p in sources)
    return (text * (SIZE // len(text) + 1))[:SIZE]


@pytest.fixture(scope="module")
def scanner() -> dh.Scanner:
    return dh.Scanner(dh.load_rules(), threads=1)


@pytest.fixture(scope="module")
def medians(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    table = medians_printed(request, f"bundled rules on 2 MB floods (target {TARGET:.0f}x)", "benign")
    rows = next(table)
    yield rows
    next(table, None)  # prints the table; the verdict follows it
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    base = rows.get("benign") or 0.0
    if reporter is None or not base:
        return
    over = [name for name, median in rows.items() if median / base > TARGET]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        verdict = "met" if not over else f"NOT met by {len(over)}: {', '.join(over)}"
        reporter.write_line(f"target (every flood within {TARGET:.0f}x benign): {verdict}")


def _rounds() -> int:
    return int(os.environ.get("DFH_BENCH_ROUNDS", "3"))


ROUND = itertools.count()


def _fresh(scanner: dh.Scanner, data: bytes) -> tuple[tuple[dh.Scanner, bytes], dict[str, Any]]:
    """Each round's bytes differ in their first line: the scanner reuses the result of bytes it has seen."""
    return (scanner, b"#%d\n" % next(ROUND) + data), {}


def _scan(scanner: dh.Scanner, data: bytes) -> dh.DistributionResult:
    result = scanner.scan_bytes(data, "m.py")
    assert not result.issues, [str(i) for i in result.issues]  # a timeout would hide the real cost
    return result


@pytest.mark.benchmark(group=GROUP)
def test_benign(benchmark: Any, scanner: dh.Scanner, medians: dict[str, float]) -> None:
    data = benign()
    benchmark.pedantic(_scan, setup=lambda: _fresh(scanner, data), rounds=_rounds(), iterations=1)
    record_median(benchmark, medians, GROUP, "benign")


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("atom", FLOODS)
def test_flood(benchmark: Any, scanner: dh.Scanner, medians: dict[str, float], atom: str) -> None:
    data = fill(atom.encode())
    benchmark.pedantic(_scan, setup=lambda: _fresh(scanner, data), rounds=_rounds(), iterations=1)
    record_median(benchmark, medians, GROUP, repr(atom))
