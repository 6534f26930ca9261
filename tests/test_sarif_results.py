"""The SARIF results the engine writes (``SarifFindings``) against the report module's own rendering of the
same findings (``report._sarif_result``, which renders the ones the engine hands back): ranking, every
field, byte for byte, over names, versions, snippets and targets chosen to differ."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
from dragonfly_hybrid import Rules, Scanner
from dragonfly_hybrid._core import DistributionResult
from dragonfly_hybrid.report import (
    Finding,
    Origin,
    TargetResult,
    _sarif_result,
    heaviest_findings,
    rule_description,
    sarif_document,
    sarif_findings,
)

from tests.fakes.pypi import tar_gz_bytes, validate_sarif, zip_bytes

RULES = """
rule marker : test {
  meta:
    weight = 6
    description = "a \\"quoted\\" marker\\\\ with a tab\\there"
  strings:
    $a = "MARKER_X"
  condition:
    $a
}
rule light {
  meta:
    weight = 2
  strings:
    $a = "LIGHT_Y"
    $b = "y_LIGHT"
  condition:
    any of them
}
rule cut_char {
  meta:
    weight = 3
    description = ""
  strings:
    $a = { A9 20 43 55 54 }
  condition:
    $a
}
rule seven_bytes {
  meta:
    weight = 1
    description = "no pattern at all"
  condition:
    filesize == 7
}
"""

PLAIN = b"import os\nx = 'MARKER_X'  # LIGHT_Y\n"
WIDE = "s = '\U0001d518\u00fc' + 'MARKER_X'\n".encode()  # columns count UTF-16 units
SPANNING = b"y_LIGHT\nMARKER_X LIGHT_Y\n"
CUT = "caf\u00e9 CUT\n".encode()  # the hex pattern starts inside the \u00e9
BROKEN_LINE = b"ok\n" * 3000 + b"bad \xff\xfe MARKER_X\n"  # text by its first bytes, not UTF-8 later
LONG_LINE = b"z" * 200 + b" MARKER_X\n"


def sdist_members() -> dict[str, bytes]:
    return {
        "Demo_Pkg-0.1/setup.py": PLAIN,
        "Demo_Pkg-0.1/demo_pkg/wide.py": WIDE,
        "Demo_Pkg-0.1/demo_pkg/span.py": SPANNING,
        "Demo_Pkg-0.1/demo.pkg-0.1.egg-info/x.py": PLAIN,
        "Demo_Pkg-0.1/other-0.1/x.py": PLAIN,
        "Demo_Pkg-0.1/demo_pkg-0.1/DEMO_PKG-0.1.DATA/y.py": PLAIN,
        "Demo_Pkg-0.1/a b%#?&=+;,'()*@$[]{}!~.py": PLAIN,
        'Demo_Pkg-0.1/q"uote\\back.py': PLAIN,
        "Demo_Pkg-0.1/seven.txt": b"1234567",
        "Demo_Pkg-0.1/long.py": LONG_LINE,
        "Demo_Pkg-0.1/blob.bin": b"\x00\x01MARKER_X\x00",
        # Rendered by the report module: a member name that is not printable ASCII, a snippet that is not
        # UTF-8, a match that starts inside a character.
        "Demo_Pkg-0.1/\u00fcnicode.py": PLAIN,
        "Demo_Pkg-0.1/ctrl\x1b[31m.py": PLAIN,
        "Demo_Pkg-0.1/new\nline.py": PLAIN,
        "Demo_Pkg-0.1/broken.py": BROKEN_LINE,
        "Demo_Pkg-0.1/cut.py": CUT,
    }


RENDERED_BY_PYTHON = {"\u00fcnicode.py", "ctrl\x1b[31m.py", "new\nline.py", "broken.py", "cut.py"}


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.compile({"sarif.yar": RULES})


@pytest.fixture(scope="module")
def targets(rules: Rules) -> list[TargetResult]:
    scanner = Scanner(rules, threads=2)
    sdist = scanner.scan_bytes(tar_gz_bytes(sdist_members()), "Demo_Pkg-0.1.tar.gz")
    wheel = scanner.scan_bytes(
        zip_bytes(
            {
                "demo_pkg/__init__.py": PLAIN,
                "demo_pkg-0.1.dist-info/METADATA": PLAIN,
                "demo_pkg-0.1.data/scripts/run.py": SPANNING,
            }
        ),
        "demo_pkg-0.1-py3-none-any.whl",
    )
    # A version whose tail reads as a suffix: the shortest suffix that fits is the one taken.
    odd = scanner.scan_bytes(
        tar_gz_bytes({"x-1.data/a.py": PLAIN, "x-1.data.data/a.py": PLAIN, "y-1.data/a.py": PLAIN}),
        "x-1.data.tar.gz",
    )
    # Listed last, ranked first among equal weights: its name sorts first, its paths last.
    first_by_name = scanner.scan_bytes(zip_bytes({"zz/x.py": PLAIN}), "A-0.1.zip")
    loose = scanner.scan_bytes(PLAIN, "loose.py")
    release = TargetResult.from_distributions(
        "demo==0.1 caf\u00e9", "release", "demo-pkg", [wheel, sdist, first_by_name]
    )
    return [
        replace(release, origin=Origin("requirements/base.txt", 3)),
        TargetResult.from_distributions("x-1.data.tar.gz", "archive", odd.name, [odd]),
        TargetResult.from_distributions("loose.py", "file", "loose.py", [loose]),
        # An argument with undecodable bytes: its results are all rendered by the report module.
        TargetResult.from_distributions(
            "bad\udcff.py", "file", "loose.py", [scanner.scan_bytes(PLAIN, "loose.py")]
        ),
    ]


def python_rendering(
    targets: list[TargetResult],
    dists: list[DistributionResult],
    found: tuple[int, int, object, object],
    indices: dict[str, int],
    min_score: int,
) -> str:
    target_index, dist_index, file, match = found
    finding = Finding(dists[dist_index], file, match)  # type: ignore[arg-type]
    result = _sarif_result(
        targets[target_index],
        finding,
        indices[finding.match.identifier],
        min_score,
        rule_description(finding.match),
    )
    return json.dumps(result, ensure_ascii=False, separators=(", ", ": "))


@pytest.mark.parametrize("min_score", [0, 7])
def test_the_engine_writes_each_result_as_the_report_module_does(
    targets: list[TargetResult], min_score: int
) -> None:
    ranked, dists = sarif_findings(targets, 10_000, min_score)
    assert len(ranked) == sum(t.match_count for t in targets)
    indices: dict[str, int] = {}
    descriptions: dict[tuple[str, str], str | None] = {}
    for match in ranked.rules():
        indices.setdefault(match.identifier, len(indices))
        descriptions[(match.identifier, match.namespace)] = rule_description(match)
    assert set(indices) == {"marker", "light", "cut_char", "seven_bytes"}
    lines = ranked.results(descriptions, indices)
    by_python = set()
    for index, line in enumerate(lines):
        found = ranked.finding(index)
        expected = python_rendering(targets, dists, found, indices, min_score)
        member = found[2].path.rsplit("/", 1)[-1]
        if line is None:
            by_python.add((found[0], member))
        else:
            assert line == expected, (index, found[2].path)
            json.loads(line)
    plain = {(0, m) for m in ("setup.py", "wide.py", "span.py", "seven.txt", "long.py", "blob.bin")}
    assert plain.isdisjoint(by_python)
    assert {m for t, m in by_python if t == 0} == RENDERED_BY_PYTHON
    assert {t for t, _ in by_python} == {0, 3}  # and every result of the target that is not UTF-8


def test_the_engine_ranks_as_heaviest_findings(targets: list[TargetResult]) -> None:
    total = sum(t.match_count for t in targets)
    for limit in (0, 1, 3, 17, total, total + 5):
        ranked, dists = sarif_findings(targets, limit)
        got = [ranked.finding(i) for i in range(len(ranked))]
        expected = heaviest_findings(targets, limit)
        assert [(t, dists[d].name, f.path, m.identifier) for t, d, f, m in got] == [
            (targets.index(t), f.dist.name, f.file.path, f.match.identifier) for t, f in expected
        ]
        assert all(dists[d] is f.dist for (_, d, _, _), (_, f) in zip(got, expected, strict=True))


def test_the_log_with_results_from_both_is_valid_and_complete(
    targets: list[TargetResult], rules: Rules
) -> None:
    document = sarif_document(targets, rules, min_score=7)
    validate_sarif(document)
    run = document["runs"][0]
    members = [r for r in run["results"] if r["ruleId"] != "flagged-dependency"]
    assert len(members) == sum(t.match_count for t in targets)
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]][
        : len({r["ruleId"] for r in members})
    ] == list(dict.fromkeys(r["ruleId"] for r in members))
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in members}
    assert (
        "Demo_Pkg-0.1.tar.gz/Demo_Pkg-0.1/a%20b%25%23%3F%26%3D%2B%3B%2C%27%28%29%2A%40%24%5B%5D%7B%7D!~.py"
        in uris
    )
    assert "Demo_Pkg-0.1.tar.gz/Demo_Pkg-0.1/%C3%BCnicode.py" in uris


DIRECTORY_PARTS = (
    "Demo_Pkg-0.1", "demo.pkg-0.1", "DEMO-PKG-0.1.DATA", "demo_pkg-0.1.dist-info", "demo-pkg-0.1.Egg-Info",
    "demo_pkg-0.10", "demo_pkg-0.1.data.data", "other-0.1", "-0.1", "demo__pkg-0.1", "demo-0.1rc1.post2",
    "Demo-0.1RC1.POST2.dist-info", "x-1.data", "x-1.data.data", "a b", "%41", "q\"\\", "a&b=c?d#e", "~!",
    "\u00fcber-0.1", "tab\tbed", "..", ".",
)  # fmt: skip
DIST_NAMES = (
    "Demo_Pkg-0.1.tar.gz", "demo_pkg-0.1-py3-none-any.whl", "demo-0.1rc1.post2.tar.gz", "x-1.data.tar.gz",
    "Demo.Pkg-0.1.zip", "demo-0.1-py3.8.egg", "noversion.tar.gz", "demo-latest.tar.gz",
)  # fmt: skip
LINES = (
    b"x = 'MARKER_X'\n", b"\tMARKER_X LIGHT_Y y_LIGHT\n", "\u00e9\U0001d518 MARKER_X \u00fc\n".encode(),
    b"z" * 150 + b"MARKER_X\n", b"MARKER_X\r\n", b"LIGHT_Y\x80 MARKER_X\n", b"caf\xc3\xa9 CUT MARKER_X\n",
)  # fmt: skip


def test_the_engine_and_the_report_module_agree_on_generated_names_and_lines(rules: Rules) -> None:
    """Seeded: 8 distributions of 40 members each, their paths drawn from directory names with and
    without the release's version (any case, every suffix), characters URIs and JSON escape, and lines
    of several encodings; every result the engine writes must be the report module's."""
    rng = random.Random(19)
    scanner = Scanner(rules, threads=2)
    dists = []
    for dist_name in DIST_NAMES:
        members = {}
        for index in range(40):
            parts = [rng.choice(DIRECTORY_PARTS) for _ in range(rng.randint(0, 3))]
            content = b"".join(rng.choice(LINES) for _ in range(rng.randint(1, 3)))
            members["/".join([*parts, f"m{index}.py"])] = content
        archive = (
            zip_bytes(members) if dist_name.endswith((".zip", ".whl", ".egg")) else tar_gz_bytes(members)
        )
        dists.append(scanner.scan_bytes(archive, dist_name))
    targets = [
        TargetResult.from_distributions("generated", "directory", "generated", dists[:4]),
        TargetResult.from_distributions("generated 2", "directory", "generated 2", dists[4:]),
    ]
    ranked, flat = sarif_findings(targets, 10_000)
    assert len(ranked) == sum(t.match_count for t in targets) > 500
    indices: dict[str, int] = {}
    descriptions: dict[tuple[str, str], str | None] = {}
    for match in ranked.rules():
        indices.setdefault(match.identifier, len(indices))
        descriptions[(match.identifier, match.namespace)] = rule_description(match)
    lines = ranked.results(descriptions, indices)
    written = 0
    for index, line in enumerate(lines):
        if line is not None:
            assert line == python_rendering(targets, flat, ranked.finding(index), indices, 0), index
            written += 1
    assert written > len(lines) // 2  # most by the engine, the rest (not ASCII, not UTF-8) by Python


def test_dot_segments_of_member_names_do_not_climb_in_sarif_uris(rules: Rules) -> None:
    # A member `../setup.py`, as a URI reference resolved against a repository's root, must not name
    # the repository's own setup.py: the dots of `.` and `..` segments are percent-encoded.
    scanner = Scanner(rules, threads=2)
    dist = scanner.scan_bytes(
        tar_gz_bytes({"../setup.py": b"MARKER\n", "./x/../y.py": b"MARKER\n"}), "d-1.0.tar.gz"
    )
    target = TargetResult.from_distributions("d", "archive", dist.name, [dist])
    document = sarif_document([target], rules)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in document["runs"][0]["results"]
    }
    assert uris == {"d-1.0.tar.gz/%2E%2E/setup.py", "d-1.0.tar.gz/%2E/x/%2E%2E/y.py"}, uris
