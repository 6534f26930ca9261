"""Detection benchmark: the bundled rules on the malware development split and the pinned benign list.

Skipped, with the reason, when the malware split is not prepared or the benign files cannot be had
(CI is offline). See bench/README.md ("Detection") for how to prepare the data; the results of a run are
written to ``bench/results/detection-latest.json`` and summarised in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.detection import run

RESULTS = Path(__file__).parent / "results" / "detection-latest.json"


@pytest.fixture(scope="module")
def summary() -> dict[str, object]:
    try:
        data = run.measure(
            [], threads=int(os.environ["DFH_BENCH_THREADS"]) if "DFH_BENCH_THREADS" in os.environ else None
        )
    except run.DataMissing as err:
        pytest.skip(f"detection data not available: {err}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in data.items() if k != "documents"}
    RESULTS.write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
    print("\n" + run.markdown(data))
    return data


def test_recall_on_the_rule_writing_part(summary: dict[str, dict[str, float]]) -> None:
    assert summary["write"]["recall"] >= run.GOAL_RECALL


def test_recall_on_the_held_back_part(summary: dict[str, dict[str, float]]) -> None:
    assert summary["heldback"]["recall"] >= run.GOAL_RECALL


def test_benign_flagged(summary: dict[str, dict[str, float]]) -> None:
    assert summary["benign"]["flagged_rate"] <= run.GOAL_FLAGGED
