"""The engine's JSON of distributions (``distributions_json``) against a straightforward Python rendering
of the same result objects (the oracle below), over real scans of archives built here: non-UTF-8 and
non-finite metadata, non-UTF-8 matched data, unicode and undecodable member names, issues, no files."""

from __future__ import annotations

import io
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid import Limits, Rules, Scanner
from dragonfly_hybrid._core import DistributionResult, distributions_json, write_distributions_json
from dragonfly_hybrid.report import (
    ReportFormat,
    TargetResult,
    json_document,
    ndjson_line,
    render,
    target_json,
)

from tests.archive_gen import member, tar_of
from tests.fakes.pypi import sdist, wheel, write, zip_bytes

HUGE = "9" * 400 + ".0"  # a float literal past f64: the rule's metadata holds inf
RULES = {
    "odd.yar": f"""
rule odd_meta : tagged other {{
    meta:
        weight = 3
        ratio = 1.5
        huge = {HUGE}
        tiny = -{HUGE}
        raw = "ab\\xff\\x80c"
        text = "naïve ✓"
        flag = true
        weight = 99
    strings:
        $hello = "hello"
        $bin = {{ FF FE 68 }}
    condition:
        any of them
}}
""",
    "long.yar": """
rule long_match {
    meta:
        weight = 1
        filetype = ".py"
    strings:
        $run = /xé{40,}/
        $ctl = "ctl\\x01\\t\\"q\\\\"
    condition:
        any of them
}
""",
}


def oracle_distribution(dist: DistributionResult) -> dict[str, Any]:
    """What the schema of ``dragonfly_hybrid.report`` says, rendered from the Python objects."""

    def meta(value: object) -> object:
        if isinstance(value, bytes):
            return value.decode("ascii", "backslashreplace")
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        return value

    return {
        "name": dist.name,
        "url": dist.url,
        "format": dist.format,
        "size": dist.size,
        "sha256": dist.sha256,
        "files_scanned": dist.files_scanned,
        "bytes_scanned": dist.bytes_scanned,
        "score": dist.score,
        "rules_matched": list(dist.rules_matched),
        "top_file": dist.top_file,
        "verdict": dist.verdict,
        "complete": dist.complete,
        "issues": [
            {"path": i.path, "kind": i.kind, "message": i.message, "unscanned": i.unscanned}
            for i in dist.issues
        ],
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "score": f.score,
                "matches": [
                    {
                        "rule": m.identifier,
                        "namespace": m.namespace,
                        "tags": list(m.tags),
                        "weight": m.weight,
                        "metadata": {k: meta(v) for k, v in m.metadata.items()},
                        "patterns": [
                            {
                                "identifier": p.identifier,
                                "offset": p.offset,
                                "length": p.length,
                                "line": p.line,
                                "column": p.column,
                                "data": p.data.decode("utf-8", "backslashreplace"),
                                "snippet": p.snippet.decode("utf-8", "backslashreplace"),
                            }
                            for p in m.patterns
                        ],
                    }
                    for m in f.matches
                ],
            }
            for f in dist.files
        ],
    }


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[DistributionResult]:
    tmp = tmp_path_factory.mktemp("json")
    scanner = Scanner(Rules.compile(RULES), Limits(max_member_size=4096), threads=2)
    # 64 bytes of match data end inside a two-byte character: the cut half is written \xNN.
    long_run = ("x" + "é" * 45).encode()
    tar_name, tar_data = sdist(
        "odd",
        "1.0",
        {
            "naïve_模块.py": b"say hello\n" + long_run + b"\n",
            "bin.dat": b"\x00\xff\xfeh and hello hello\n" + b"hello " * 40,
            "ctl.py": b'x = "ctl\x01\t\\"q\\\\"\n',
            "too-big.txt": b"hello" + b"\0" * 5000,
            "plain.txt": b"nothing to see\n",
        },
    )
    raw_names = tar_of(
        member(b"pkg/\xff\xfename.py", b"hello"),
        member("pkg/dup.py", b"hello"),
        member("pkg/dup.py", b"clean"),
    )
    wheel_name, wheel_data = wheel("clean", "2.0", {"clean/__init__.py": b"pass\n"})
    items: list[tuple[str, bytes | str, str | None]] = [
        (tar_name, tar_data, f"https://files.example/packages/ab/{tar_name}"),
        ("raw-names.tar", raw_names, None),
        (wheel_name, str(write(tmp / wheel_name, wheel_data)), "https://files.example/w.whl"),
        ("inner.zip", zip_bytes({"a/hello.py": b"hello"}), None),
        ("missing.tar.gz", str(tmp / "no-such-file.tar.gz"), None),
    ]
    return scanner.scan_many(items)


def test_the_results_cover_what_the_oracle_must_agree_on(dists: list[DistributionResult]) -> None:
    odd, raw, clean, _, missing = dists
    matches = [m for f in odd.files for m in f.matches]
    metadata = next(m.metadata for m in matches if m.identifier == "odd_meta")
    assert metadata["raw"] == b"ab\xff\x80c" and metadata["huge"] == float("inf") and metadata["weight"] == 3
    data = [p.data for m in matches for p in m.patterns]
    assert b"\xff\xfeh" in data and any(len(d) == 64 and d.endswith(b"\xc3") for d in data)
    assert any(f.path == "odd-1.0/naïve_模块.py" for f in odd.files)
    assert any(i.unscanned for i in odd.issues) and not odd.complete
    assert any(i.kind == "duplicate-name" for i in raw.issues)
    assert clean.files == [] and clean.issues == [] and clean.verdict == "clean"
    assert missing.sha256 == "" and missing.issues and missing.url is None


def test_engine_json_equals_the_oracle(dists: list[DistributionResult]) -> None:
    expected = [oracle_distribution(d) for d in dists]
    assert json.loads(distributions_json(dists)) == expected
    for level in (0, 3):
        assert json.loads(distributions_json(dists, level)) == expected
    assert json.loads(distributions_json([])) == []


def test_engine_json_is_laid_out_as_python_writes_it(dists: list[DistributionResult]) -> None:
    expected = [oracle_distribution(d) for d in dists]
    assert distributions_json(dists) == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
    assert distributions_json(dists, 0) == python_layout(expected)
    assert distributions_json(dists, 2) == python_layout(expected, 2)
    # Each matched file and each issue on a line of its own.
    lines = distributions_json(dists, 0).splitlines()
    for dist in expected:
        for item in [*dist["files"], *dist["issues"]]:
            assert f"      {json.dumps(item, ensure_ascii=False)}" in [line.rstrip(",") for line in lines]


def python_layout(value: Any, level: int = 0) -> str:
    """``json.dumps(value, indent=2)`` shifted ``level`` levels deeper, except that each item of a ``files``
    or ``issues`` array takes one line, as ``json.dumps(item)`` writes it: the layout reports promise."""
    lines: dict[str, str] = {}

    def one_line(item: Any) -> str:
        token = f"\0{len(lines)}\0"
        lines[json.dumps(token)] = json.dumps(item, ensure_ascii=False)
        return token

    def mark(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: [one_line(item) for item in child]
                if key in ("files", "issues") and isinstance(child, list)
                else mark(child)
                for key, child in node.items()
            }
        if isinstance(node, list):
            return [mark(item) for item in node]
        return node

    text = json.dumps(mark(value), indent=2, ensure_ascii=False)
    for token, line in lines.items():
        text = text.replace(token, line, 1)
    return text.replace("\n", "\n" + "  " * level)


def oracle_target(target: TargetResult) -> dict[str, Any]:
    origin = None if target.origin is None else {"path": target.origin.path, "line": target.origin.line}
    return {
        "target": target.target,
        "kind": target.kind,
        "name": target.name,
        "version": target.version,
        "verdict": target.verdict,
        "score": target.score,
        "rules_matched": target.rules_matched,
        "inspector_url": target.inspector_url,
        "error": target.error,
        "origin": origin,
        "distributions": [oracle_distribution(d) for d in target.distributions],
    }


@pytest.fixture(scope="module")
def targets(dists: list[DistributionResult]) -> list[TargetResult]:
    return [
        TargetResult.from_distributions("odd ✓", "archive", dists[0].name, dists[:2]),
        TargetResult.from_distributions("clean", "archive", dists[2].name, dists[2:3]),
        TargetResult.from_distributions("empty-dir", "directory", "empty-dir", []),
        TargetResult.failed("gone==1.0", "release", "gone", "1.0", "could not download gone-1.0.tar.gz"),
    ]


def test_document_and_ndjson_equal_the_oracle(targets: list[TargetResult]) -> None:
    rules = Rules.compile(RULES)
    out = io.StringIO()
    render(targets, rules, "json", out)
    document = json.loads(out.getvalue())
    assert document["targets"] == [oracle_target(t) for t in targets]
    assert json_document(targets, rules) == document
    # The streamed document is laid out exactly as the oracle lays out the same values.
    assert out.getvalue() == python_layout(document) + "\n"
    lines = io.StringIO()
    render(targets, rules, "ndjson", lines)
    compact = (",", ":")
    expected_lines = [json.dumps(oracle_target(t), ensure_ascii=False, separators=compact) for t in targets]
    assert lines.getvalue().splitlines() == expected_lines
    assert [ndjson_line(t) for t in targets] == expected_lines
    assert [target_json(t) for t in targets] == [oracle_target(t) for t in targets]


def test_an_empty_run_is_a_valid_document() -> None:
    rules = Rules.compile(RULES)
    out = io.StringIO()
    render([], rules, "json", out)
    assert json.loads(out.getvalue())["targets"] == []
    assert out.getvalue() == python_layout(json.loads(out.getvalue())) + "\n"


def test_deeply_nested_text_keeps_its_strings(dists: list[DistributionResult]) -> None:
    """Indentation goes only where the layout has a newline, never into a string."""
    text = distributions_json(dists, 5)
    assert "\n" not in json.dumps(json.loads(text))  # every newline was layout
    assert json.loads(text) == json.loads(distributions_json(dists))


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_a_file_gets_the_same_bytes_written_by_the_engine(
    targets: list[TargetResult], fmt: ReportFormat, tmp_path: Path
) -> None:
    """To a real file (the engine writes the distributions to its descriptor) and through a pipe, the report
    is byte for byte what a StringIO gets; a stream that does not take UTF-8 is written through Python."""
    rules = Rules.compile(RULES)
    expected = io.StringIO()
    render(targets, rules, fmt, expected)
    path = tmp_path / f"report.{fmt}"
    with path.open("w", encoding="utf-8") as out:
        out.write("before\n")  # what the stream buffered first stays first
        render(targets, rules, fmt, out)
        out.write("after\n")
    assert path.read_text(encoding="utf-8") == "before\n" + expected.getvalue() + "after\n"

    read_end, write_end = os.pipe()
    received: list[bytes] = []

    def drain() -> None:  # a report larger than the pipe's buffer must not block the writer
        with open(read_end, "rb") as pipe:
            received.append(pipe.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with open(write_end, "w", encoding="utf-8") as out:
        render(targets, rules, fmt, out)
    reader.join(timeout=30)
    assert b"".join(received).decode("utf-8") == expected.getvalue()

    latin = tmp_path / "latin.txt"
    with latin.open("w", encoding="latin-1", errors="replace") as out:
        render(targets, rules, fmt, out)
    assert latin.read_text(encoding="latin-1") == expected.getvalue().encode("latin-1", "replace").decode(
        "latin-1"
    )


@pytest.mark.parametrize("copies", [1, 2000])  # within the engine's write buffer, and far past it
def test_a_closed_pipe_is_a_broken_pipe_error(dists: list[DistributionResult], copies: int) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(BrokenPipeError):
            write_distributions_json(dists * copies, write_end, 2)
    finally:
        os.close(write_end)
    with pytest.raises(OSError):
        write_distributions_json(dists, 987654, 2)  # not open
