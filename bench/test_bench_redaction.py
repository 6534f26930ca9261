"""What redacting a log line or an error costs (``redaction.redact_text``, run on every log line, error and
note), on a 1.2 MB line of a shape that made its former regular expression backtrack quadratically
(``x://a'`` repeated: a URL that ends at a quote, with no ``@`` and no space after it), beside the
baseline of one pass over the line (``str.count("://")``). Every row in the same run; the summary prints
the ratios."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from dragonfly_hybrid.redaction import redact_text

from bench.conftest import medians_printed, record_median

GROUP = "redaction"
HOSTILE = "x://a'" * 200_000
ADJACENT = 'x://u:p@a,"y:\\/\\/b"' * 50_000  # URLs one after another, escaped ones: 0.95 MB, no space
PLAIN = "downloading https://files.example/p/pkg-1.0.tar.gz?token=abc: done " * 20_000
# Credentials after a bare name and a port, holding a quote, then an "@" (read as credentials: a password
# whose "/" follows digits): 1.2 MB, each URL's authority read by the rule of redaction._starts_credentials.
CREDENTIALS = "x://a:1/b'@" * 110_000


@pytest.fixture(scope="module")
def medians(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    yield from medians_printed(request, "redaction of a 1.2 MB line", "count-separators", digits=4)


def _rounds() -> int:
    return int(os.environ.get("DFH_BENCH_ROUNDS", "5"))


@pytest.mark.benchmark(group=GROUP)
def test_count_separators(benchmark: Any, medians: dict[str, float]) -> None:
    assert benchmark.pedantic(lambda: HOSTILE.count("://"), rounds=_rounds(), iterations=1) == 200_000
    record_median(benchmark, medians, GROUP, "count-separators")


@pytest.mark.benchmark(group=GROUP)
def test_redact_hostile_line(benchmark: Any, medians: dict[str, float]) -> None:
    assert benchmark.pedantic(lambda: redact_text(HOSTILE), rounds=_rounds(), iterations=1) == HOSTILE
    record_median(benchmark, medians, GROUP, "redact-hostile")


@pytest.mark.benchmark(group=GROUP)
def test_redact_plain_lines(benchmark: Any, medians: dict[str, float]) -> None:
    shown = benchmark.pedantic(lambda: redact_text(PLAIN), rounds=_rounds(), iterations=1)
    assert "token=abc" not in shown and shown.count("token=<redacted>") == 20_000
    record_median(benchmark, medians, GROUP, "redact-plain")


@pytest.mark.benchmark(group=GROUP)
def test_redact_adjacent_urls(benchmark: Any, medians: dict[str, float]) -> None:
    """A URL starting in another's path ends it (fourteenth pass): each is cut off once, not rescanned."""
    shown = benchmark.pedantic(lambda: redact_text(ADJACENT), rounds=_rounds(), iterations=1)
    assert "u:p@" not in shown and shown.count("x://a,") == 50_000
    record_median(benchmark, medians, GROUP, "redact-adjacent")


@pytest.mark.benchmark(group=GROUP)
def test_redact_credentials_after_a_port(benchmark: Any, medians: dict[str, float]) -> None:
    """Each URL's credentials hold a quote and end at the "@" after it: every URL is dropped to its scheme."""
    shown = benchmark.pedantic(lambda: redact_text(CREDENTIALS), rounds=_rounds(), iterations=1)
    assert shown == "x://" * 109_999 + "x://a:1/b'@"
    record_median(benchmark, medians, GROUP, "redact-credentials")
