"""``TargetScanner.scan_all``: every local path target in one engine call, results in target order, each
target keeping its own errors and verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from dragonfly_hybrid import Limits, Rules, Scanner, ScanProgress
from dragonfly_hybrid.pypi.index import ProgressCallback
from dragonfly_hybrid.targets import NoHooks, Resolved, TargetScanner, parse_target

from tests.fakes.pypi import LIGHT_MARKER, LIGHT_RULE, MARKER, MARKER_RULE, sdist, wheel, write

TOTAL_LIMIT = 4096


class RecordingHooks(NoHooks):
    """Records the size of every engine call."""

    def __init__(self) -> None:
        self.engine_calls: list[int] = []

    def scanning(self, progress: ScanProgress, distributions: int) -> None:
        self.engine_calls.append(distributions)

    def download(self, filename: str, size: int | None) -> ProgressCallback:
        raise AssertionError("local targets download nothing")


@pytest.fixture
def scanner() -> Scanner:
    rules = Rules.compile({"marker.yar": MARKER_RULE, "light.yar": LIGHT_RULE})
    return Scanner(rules, Limits(max_total_size=TOTAL_LIMIT), threads=2)


def test_local_targets_are_scanned_in_one_engine_call_in_order(scanner: Scanner, tmp_path: Path) -> None:
    heavy_name, heavy_data = sdist("heavy", "1.0", {"heavy-1.0/m.py": MARKER})
    heavy = write(tmp_path / heavy_name, heavy_data)
    light_name, light_data = wheel("light", "2.0", {"light/m.py": LIGHT_MARKER})
    light = write(tmp_path / light_name, light_data)
    clean = write(tmp_path / "clean.py", b"print('hello')\n")
    too_big = write(tmp_path / "big.py", b"#" * (TOTAL_LIMIT + 1))
    tree = tmp_path / "tree"
    write(tree / "a.py", MARKER)
    write(tree / "sub" / "b.py", b"x = 1\n")
    gone = write(tmp_path / "gone.py", MARKER)
    empty = tmp_path / "empty"
    empty.mkdir()
    raws = [str(p) for p in (too_big, heavy, gone, tree, clean, empty, light)]
    resolved = [Resolved(parse_target(raw)) for raw in raws]
    gone.unlink()  # after parsing: gone by the time it is scanned

    hooks = RecordingHooks()
    results = list(TargetScanner(scanner, None, hooks).scan_all(resolved))

    # One call for the 4 files and the 2 members of tree; gone.py is left to ``scan_path`` (which names
    # the problem), the empty directory needs no scan.
    assert hooks.engine_calls == [6, 1]
    assert [r.target for r in results] == raws
    assert [r.verdict for r in results] == [
        "incomplete", "findings", "incomplete", "findings", "clean", "incomplete", "findings",
    ]  # fmt: skip
    big, heavy_result, gone_result, tree_result, clean_result, empty_result, light_result = results
    assert big.kind == "file" and big.error is None
    assert [i.kind for i in big.distributions[0].issues] == ["total-size-exceeded"]
    assert heavy_result.kind == "archive" and heavy_result.rules_matched == ["test_marker"]
    assert heavy_result.name == heavy.name and heavy_result.distributions[0].name == heavy.name
    assert gone_result.kind == "file" and gone_result.distributions == []
    assert gone_result.error == f"cannot read {gone}: no such file: {gone}"
    assert tree_result.kind == "directory" and tree_result.name == "tree"
    assert [d.name for d in tree_result.distributions] == ["a.py", "sub/b.py"]
    assert clean_result.kind == "file" and clean_result.score == 0
    assert empty_result.error == f"no regular files under {empty}"
    assert light_result.rules_matched == ["light_marker"] and light_result.score == 1


def test_batched_results_equal_one_by_one_scans(scanner: Scanner, tmp_path: Path) -> None:
    names_and_data = [
        sdist("one", "1.0", {"one-1.0/a.py": MARKER + b"\n" + LIGHT_MARKER}),
        wheel("two", "1.0", {"two/a.py": LIGHT_MARKER}),
        ("three.py", b"# " + MARKER),
    ]
    paths = [write(tmp_path / name, data) for name, data in names_and_data]
    resolved = [Resolved(parse_target(str(p))) for p in paths]
    targets = TargetScanner(scanner, None)
    batched = list(targets.scan_all(resolved))
    alone = [targets.scan(item) for item in resolved]
    for together, single in zip(batched, alone, strict=True):
        assert (together.kind, together.name, together.score, together.verdict, together.rules_matched) == (
            single.kind, single.name, single.score, single.verdict, single.rules_matched,
        )  # fmt: skip
        assert [(d.name, d.format, d.files_scanned) for d in together.distributions] == [
            (d.name, d.format, d.files_scanned) for d in single.distributions
        ]
