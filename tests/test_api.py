"""The public Python API over real archives built in the tests."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
import zipfile
from pathlib import Path

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid import _core
from dragonfly_hybrid.errors import RuleCompileError, RulesFormatError, ScanCancelled

from tests.fakes.pypi import SLOW_RULE, slow_tarball, tar_gz_bytes, zip_bytes

RULES = {
    "markers.yar": """
rule evil_marker {
    meta: weight = 5 description = "marker" author = "tests" ratio = 1.5 flag = true
    strings: $a = "EVIL_MARKER"
    condition: $a
}
rule py_only {
    meta: weight = 3 filetype = ".py"
    strings: $a = "PY_ONLY"
    condition: $a
}
"""
}
URL = "https://files.pythonhosted.org/packages/ab/cd/ef"


@pytest.fixture(scope="module")
def rules() -> dh.Rules:
    return dh.Rules.compile(RULES)


@pytest.fixture(scope="module")
def scanner(rules: dh.Rules) -> dh.Scanner:
    return dh.Scanner(rules, threads=2)


def test_rules_properties_and_round_trip(rules: dh.Rules) -> None:
    assert rules.count == len(rules) == 2
    assert rules.identifiers == ["evil_marker", "py_only"]
    assert len(rules.hash) == 64
    blob = rules.serialize()
    assert blob.startswith(_core.COMPILED_RULES_MAGIC)
    again = dh.Rules.deserialize(blob)
    assert again.hash == rules.hash and again.identifiers == rules.identifiers


def test_compile_error_names_file_line_and_column() -> None:
    with pytest.raises(RuleCompileError) as info:
        dh.Rules.compile(
            {"ok.yar": "rule ok { condition: true }", "broken.yar": "rule x {\n  condition: $nope\n}"}
        )
    assert str(info.value).startswith("broken.yar:2:14: ")
    assert info.value.diagnostics[0][:3] == ("broken.yar", 2, 14)
    assert isinstance(info.value, ValueError)


def test_bad_blob_and_bad_arguments() -> None:
    with pytest.raises(RulesFormatError):
        dh.Rules.deserialize(b"not rules")
    with pytest.raises(TypeError):
        dh.Rules.compile({"a.yar": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="max_ratio"):
        dh.Limits(max_ratio=0)
    with pytest.raises(ValueError, match="timeout"):
        dh.Limits(timeout=float("nan"))
    with pytest.raises(ValueError, match="threads"):
        dh.Scanner(dh.Rules.compile(RULES), threads=0)


def test_scan_bytes_result_objects(scanner: dh.Scanner) -> None:
    data = tar_gz_bytes(
        {"p-1/setup.py": b"x = 'EVIL_MARKER PY_ONLY'", "p-1/notes.txt": b"PY_ONLY", "p-1/a.py": b"ok"}
    )
    result = scanner.scan_bytes(data, "p-1.tar.gz", url=f"{URL}/p-1.tar.gz")
    assert (result.name, result.url, result.format) == ("p-1.tar.gz", f"{URL}/p-1.tar.gz", "tar.gz")
    assert result.size == len(data) and len(result.sha256) == 64
    assert result.files_scanned == 3
    assert result.score == 8 and result.rules_matched == ["evil_marker", "py_only"]
    assert result.verdict == "findings" and result.complete and result.issues == []
    assert result.top_file == "p-1/setup.py"
    [file] = result.files
    assert (file.path, file.size, file.score) == ("p-1/setup.py", 25, 8)
    evil = next(m for m in file.matches if m.identifier == "evil_marker")
    assert evil.namespace == "default" and evil.weight == 5 and evil.tags == []
    assert evil.metadata == {
        "weight": 5,
        "description": "marker",
        "author": "tests",
        "ratio": 1.5,
        "flag": True,
    }
    [pattern] = evil.patterns
    assert (pattern.identifier, pattern.offset, pattern.length, pattern.data) == ("$a", 5, 11, b"EVIL_MARKER")
    assert (pattern.line, pattern.column, pattern.snippet, pattern.snippet_offset) == (
        1,
        6,
        b"x = 'EVIL_MARKER PY_ONLY'",
        5,
    )
    assert file.is_text


def test_matches_carry_line_column_and_a_bounded_snippet(scanner: dh.Scanner) -> None:
    long_line = b"A" * 300 + b"EVIL_MARKER" + b"B" * 300
    text = b"first\r\nsecond\n  call('EVIL_MARKER')\r\n" + long_line + b"\n"
    binary = b"\x00\x01EVIL_MARKER\n\x00"
    # The same content under two names: the second comes from the content cache, located the same.
    data = tar_gz_bytes({"p-1/a.py": text, "p-1/b.py": text, "p-1/blob.bin": binary})
    result = scanner.scan_bytes(data, "p-1.tar.gz")
    by_path = {f.path: f for f in result.files}
    for path in ("p-1/a.py", "p-1/b.py"):
        [match] = [m for m in by_path[path].matches if m.identifier == "evil_marker"]
        first, second = match.patterns
        assert (first.line, first.column, first.snippet) == (3, 9, b"  call('EVIL_MARKER')")
        assert first.snippet[first.snippet_offset :].startswith(b"EVIL_MARKER")
        assert (second.line, second.column) == (4, 301)
        assert len(second.snippet) == 120 and second.snippet[second.snippet_offset :].startswith(
            b"EVIL_MARKER"
        )
        assert by_path[path].is_text
    blob = by_path["p-1/blob.bin"]
    assert not blob.is_text
    [pattern] = blob.matches[0].patterns
    assert (pattern.line, pattern.column, pattern.snippet_offset) == (1, 3, 2)


def python_snippet_parts(pattern: _core.PatternMatch) -> tuple[str, str, str]:
    """What ``PatternMatch.snippet_parts`` must equal: the snippet sliced at the match, each part
    decoded by Python's own UTF-8 decoder with ``backslashreplace``."""
    snippet, start = pattern.snippet, pattern.snippet_offset
    end = min(len(snippet), start + pattern.length)
    return (
        snippet[:start].decode("utf-8", "backslashreplace"),
        snippet[start:end].decode("utf-8", "backslashreplace"),
        snippet[end:].decode("utf-8", "backslashreplace"),
    )


def test_snippet_parts_decode_as_python_does() -> None:
    """Differential: invalid UTF-8 around and inside the match, a character cut by either edge of the
    match (the rule matches from a continuation byte to a lead byte), surrogates and overlong forms,
    lines clipped at 120 bytes, and a seeded run of random lines."""
    rules = dh.Rules.compile(
        {
            "cut.yar": """
rule marker { strings: $a = "MARK" condition: $a }
rule cut_character { strings: $a = { A9 4D 41 52 4B E2 } condition: $a }
rule invalid_inside { strings: $a = { 4D FF 41 } condition: $a }
"""
        }
    )
    scanner = dh.Scanner(rules, threads=2)
    pieces = [
        b"caf\xc3\xa9",
        b"\xff",
        b"\xfe\xfe",
        b"\xe2\x82",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"\xf0\x9f\x98\x80",
        b"\xf4\x90\x80\x80",
        b"\\x41",
        b" ",
        b"\t",
        b"abc",
        b"\x80",
        b"\xc3",
    ]
    lines = [
        b"caf\xc3\xa9MARK\xe2\x82\xac tail",
        b"\xff\xfeMARK\xed\xa0\x80",
        b"M\xffA" + b"\xc3" * 200,
        b"x" * 300 + b"MARK" + b"\xf0\x9f\x98" * 90,
        b"\xe2\x82" * 100 + b"MARK",
    ]
    chance = random.Random(1905)
    for _ in range(200):
        before = b"".join(chance.choice(pieces) for _ in range(chance.randrange(0, 40)))
        after = b"".join(chance.choice(pieces) for _ in range(chance.randrange(0, 40)))
        lines.append(before + b"MARK" + after)
    files = {f"p-1/f{i}.py": b"# first line\n" + line + b"\n" for i, line in enumerate(lines)}
    result = scanner.scan_bytes(tar_gz_bytes(files), "p-1.tar.gz")
    patterns = [p for f in result.files for m in f.matches for p in m.patterns]
    matched = {m.identifier for f in result.files for m in f.matches}
    assert matched == {"marker", "cut_character", "invalid_inside"}
    assert len(patterns) >= len(lines)
    for pattern in patterns:
        assert pattern.snippet_parts() == python_snippet_parts(pattern), pattern


def test_scan_path_and_errors(scanner: dh.Scanner, tmp_path: Path) -> None:
    wheel = tmp_path / "p-1-py3-none-any.whl"
    wheel.write_bytes(zip_bytes({"p/__init__.py": b"EVIL_MARKER"}))
    result = scanner.scan_path(wheel)
    assert (result.name, result.format, result.url) == ("p-1-py3-none-any.whl", "zip", None)
    assert result.rules_matched == ["evil_marker"]
    assert scanner.scan_path(str(wheel), name="renamed.whl").name == "renamed.whl"
    with pytest.raises(FileNotFoundError):
        scanner.scan_path(tmp_path / "missing.whl")
    with pytest.raises(OSError):
        scanner.scan_path(tmp_path)


def test_a_large_file_is_read_whole_by_scan_path(scanner: dh.Scanner, tmp_path: Path) -> None:
    # From 1 MiB the engine maps a file instead of reading it: a marker straddling the 8 MiB mark (where
    # reading in 8 MiB chunks would cut it), and one in the last bytes, are found as when the bytes are
    # handed over.
    name = "p/blob.py"
    content = bytearray(random.Random(5).randbytes(20 << 20))

    def stored() -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(name, bytes(content))
        return buffer.getvalue()

    start = stored().index(content[:64])  # where the member's content begins in the archive
    at = (8 << 20) - 5 - start
    content[at : at + 11] = b"EVIL_MARKER"
    content[-100:-93] = b"PY_ONLY"
    data = stored()
    assert data[8 << 20 : (8 << 20) + 6] == b"MARKER"
    wheel = tmp_path / "p-1-py3-none-any.whl"
    wheel.write_bytes(data)
    from_path, from_bytes = scanner.scan_path(wheel), scanner.scan_bytes(data, name=wheel.name)
    assert _matches(from_path) == _matches(from_bytes) == [(name, ["evil_marker", "py_only"])]
    assert (from_path.sha256, from_path.size, from_path.bytes_scanned, from_path.complete) == (
        from_bytes.sha256,
        len(data),
        len(content),
        True,
    )


def test_scan_many_keeps_order_and_reports_unreadable(scanner: dh.Scanner, tmp_path: Path) -> None:
    clean = tmp_path / "clean.py"
    clean.write_bytes(b"print('hello')")
    results = scanner.scan_many(
        [
            ("a.py", b"EVIL_MARKER", None),
            ("clean.py", str(clean), None),
            ("gone", str(tmp_path / "gone"), None),
        ]
    )
    assert [r.verdict for r in results] == ["findings", "clean", "incomplete"]
    assert results[2].issues[0].kind == "unreadable"
    assert results[2].issues[0].unscanned
    with pytest.raises(TypeError):
        scanner.scan_many([("bad", 42, None)])  # type: ignore[list-item]


def test_scan_release_scores_like_the_mainframe(scanner: dh.Scanner) -> None:
    sdist = tar_gz_bytes({"p-1/setup.py": b"EVIL_MARKER"})
    wheel = zip_bytes({"p/x.py": b"EVIL_MARKER PY_ONLY"})
    release = scanner.scan_release(
        "p", "1", [("p-1.tar.gz", sdist, f"{URL}/p-1.tar.gz"), ("p-1.whl", wheel, f"{URL}/p-1.whl")]
    )
    assert release.score == 8  # the maximum over distributions, not the sum (5 + 8)
    assert release.rules_matched == ["evil_marker", "py_only"]
    assert release.inspector_url == "https://inspector.pypi.io/project/p/1/packages/ab/cd/ef/p-1.whl/p/x.py"
    assert release.verdict == "findings" and release.failure_reason is None
    assert [d.name for d in release.distributions] == ["p-1.tar.gz", "p-1.whl"]


def test_a_scanner_without_digests_scores_the_same_and_leaves_sha256_empty(rules: dh.Rules) -> None:
    sdist = tar_gz_bytes({"p-1/setup.py": b"EVIL_MARKER", "p-1/a.py": b"ok"})
    wheel = zip_bytes({"p/x.py": b"EVIL_MARKER PY_ONLY", "p/y.py": b"clean"})
    items = [("p-1.tar.gz", sdist, f"{URL}/p-1.tar.gz"), ("p-1.whl", wheel, f"{URL}/p-1.whl")]
    digested = dh.Scanner(rules, threads=2, fast_scan=True)
    bare = dh.Scanner(rules, threads=2, fast_scan=True, digests=False)
    assert digested.digests and not bare.digests
    full, undigested = digested.scan_release("p", "1", items), bare.scan_release("p", "1", items)
    # What the node submits is the same.
    assert (undigested.score, undigested.rules_matched, undigested.inspector_url, undigested.verdict) == (
        full.score,
        full.rules_matched,
        full.inspector_url,
        full.verdict,
    )
    assert [d.sha256 for d in full.distributions] == [hashlib.sha256(d).hexdigest() for d in (sdist, wheel)]
    assert [f.sha256 for d in full.distributions for f in d.files] == [
        hashlib.sha256(b"EVIL_MARKER").hexdigest(),
        hashlib.sha256(b"EVIL_MARKER PY_ONLY").hexdigest(),
    ]
    assert [d.sha256 for d in undigested.distributions] == ["", ""]
    assert [f.sha256 for d in undigested.distributions for f in d.files] == ["", ""]
    assert [[f.path for f in d.files] for d in undigested.distributions] == [["p-1/setup.py"], ["p/x.py"]]


def test_a_scanner_with_the_files_digests_only_leaves_each_distributions_sha256_empty(
    rules: dh.Rules,
) -> None:
    sdist = tar_gz_bytes({"p-1/setup.py": b"EVIL_MARKER", "p-1/a.py": b"ok"})
    items = [("p-1.tar.gz", sdist, None)]
    files_only = dh.Scanner(rules, threads=2, digests="files")
    assert files_only.digests == "files"
    [dist] = files_only.scan_release("p", "1", items).distributions
    assert dist.sha256 == ""
    assert [f.sha256 for f in dist.files] == [hashlib.sha256(b"EVIL_MARKER").hexdigest()]
    for wrong in ("all", 1, None):
        with pytest.raises(ValueError, match=r'digests must be True, False or "files", not '):
            dh.Scanner(rules, digests=wrong)  # type: ignore[arg-type]


def test_a_bytearray_is_scanned_in_place_like_bytes(scanner: dh.Scanner) -> None:
    sdist = tar_gz_bytes({"p-1/setup.py": b"EVIL_MARKER"})
    wheel = zip_bytes({"p/x.py": b"EVIL_MARKER PY_ONLY", "p/y.py": b"clean"})
    as_bytes = scanner.scan_release("p", "1", [("p-1.tar.gz", sdist, None), ("p-1.whl", wheel, None)])
    arrays = [bytearray(sdist), bytearray(wheel)]
    items = [("p-1.tar.gz", arrays[0], None), ("p-1.whl", arrays[1], None)]
    in_place = scanner.scan_release("p", "1", items)
    assert (in_place.score, in_place.rules_matched) == (8, ["evil_marker", "py_only"])
    assert in_place.complete
    json_of = _core.distributions_json
    assert json_of(in_place.distributions) == json_of(as_bytes.distributions)
    [many] = scanner.scan_many([("p-1.whl", arrays[1], None)])
    one = scanner.scan_bytes(arrays[1], "p-1.whl")
    expected = json_of([as_bytes.distributions[1]])
    assert json_of([many]) == json_of([one]) == expected
    arrays[1] += b"more"  # the scan's hold (which forbids resizing) ends with the call
    must_be = r'the data of "p-1\.whl" must be bytes, a bytearray, a DownloadBuffer or a path'
    with pytest.raises(TypeError, match=must_be):
        scanner.scan_many([("p-1.whl", memoryview(wheel), None)])  # type: ignore[list-item]


def test_incomplete_release_has_a_failure_reason(rules: dh.Rules) -> None:
    scanner = dh.Scanner(rules, limits=dh.Limits(max_member_size=10))
    release = scanner.scan_release("p", "1", [("p-1.tar.gz", tar_gz_bytes({"p-1/big.py": b"x" * 100}), None)])
    assert release.verdict == "incomplete"
    assert release.inspector_url is None
    assert release.failure_reason is not None
    assert "p-1.tar.gz: p-1/big.py: member-too-large" in release.failure_reason
    [issue] = release.distributions[0].issues
    assert issue.kind in _core.ISSUE_KINDS


def test_empty_release_is_clean(scanner: dh.Scanner) -> None:
    release = scanner.scan_release("p", "1", [])
    assert (release.verdict, release.score, release.rules_matched, release.inspector_url) == (
        "clean",
        0,
        [],
        None,
    )


def test_scanner_defaults(rules: dh.Rules) -> None:
    scanner = dh.Scanner(rules)
    assert scanner.threads >= 1
    assert scanner.limits == dh.Limits()
    assert scanner.rules.hash == rules.hash
    assert dh.Limits().timeout == 10.0 and dh.Limits().max_depth == 3


def test_limit_defaults_are_the_documented_ones() -> None:
    """The core holds the defaults; the stub's docstring and the README state them: this pins all three."""
    limits = dh.Limits()
    assert (limits.max_member_size, limits.max_total_size, limits.max_members, limits.max_ratio) == (
        256_000_000,
        2_000_000_000,
        100_000,
        1000,
    )
    assert dh.Limits(max_depth=None, timeout=None) == limits


def test_gil_is_released_during_scans(rules: dh.Rules) -> None:
    """A pure-Python thread keeps running while another thread is inside a scan."""
    scanner = dh.Scanner(rules, threads=1)
    # Many small members: a scan long enough for the other thread to get many turns if it can.
    data = zip_bytes({f"p/m{i}.txt": b"filler " * 200 for i in range(3000)})
    ticks_during_scan = []
    scanning = threading.Event()
    done = threading.Event()

    def count() -> None:
        scanning.wait()
        ticks = 0
        while not done.is_set():
            ticks += 1
        ticks_during_scan.append(ticks)

    counter = threading.Thread(target=count)
    counter.start()
    scanning.set()
    scanner.scan_bytes(data, "many.zip")
    done.set()
    counter.join()
    assert ticks_during_scan[0] > 1000


def test_python_threads_scan_concurrently_with_identical_results(scanner: dh.Scanner) -> None:
    data = tar_gz_bytes({f"p/{i}.py": (b"EVIL_MARKER" if i % 7 == 0 else b"ok") for i in range(300)})
    results: list[list[str]] = []

    def work() -> None:
        results.append([f.path for f in scanner.scan_bytes(data, "p.tar.gz").files])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert len(results[0]) == 43


def test_releases_scanned_from_several_threads_get_the_results_of_one_scan_each(
    scanner: dh.Scanner, tmp_path: Path
) -> None:
    # Concurrent scan_release calls share the scanner's threads through one queue of distributions;
    # each caller gets its own release back, whatever it gave (bytes, a bytearray, a path).
    releases: list[tuple[str, list[tuple[str, bytes | bytearray | str, str | None]]]] = []
    for r in range(6):
        sdist = tar_gz_bytes(
            {f"r{r}/m{i}.py": (b"EVIL_MARKER" if r % 3 == 0 and i % 5 == 0 else b"ok") for i in range(40)}
        )
        wheel = zip_bytes({f"r{r}/w{i}.py": b"print(1)" for i in range(10 + r)})
        path = tmp_path / f"r{r}-1.0.zip"
        path.write_bytes(zip_bytes({"extra.py": b"EVIL_MARKER" if r % 3 == 1 else b"clean"}))
        releases.append(
            (
                f"r{r}",
                [
                    (f"r{r}-1.0.tar.gz", sdist, None),
                    (f"r{r}-1.0.whl", bytearray(wheel), None),
                    (path.name, str(path), None),
                ],
            )
        )

    def outcome(result: dh.ReleaseResult) -> tuple[object, ...]:
        return (
            result.name,
            result.score,
            result.rules_matched,
            [(d.name, d.files_scanned, [f.path for f in d.files]) for d in result.distributions],
        )

    expected = [outcome(scanner.scan_release(name, "1.0", dists)) for name, dists in releases]
    assert any(e[1] for e in expected) and any(not e[1] for e in expected)
    got: dict[int, tuple[object, ...]] = {}

    def work(i: int) -> None:
        got[i] = outcome(scanner.scan_release(releases[i][0], "1.0", releases[i][1]))

    for _ in range(3):
        got.clear()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(releases))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [got[i] for i in range(len(releases))] == expected


def test_load_rules_from_directory_file_and_blob(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yar").write_text("rule a { condition: true }")
    (tmp_path / "b.yara").write_text("rule b { condition: false }")
    (tmp_path / "ignored.txt").write_text("not a rule")
    from_dir = dh.load_rules([tmp_path])
    assert sorted(from_dir.identifiers) == ["a", "b"]
    # The hash does not depend on where the directory lives.
    moved = tmp_path.parent / (tmp_path.name + "-copy")
    (moved / "sub").mkdir(parents=True)
    (moved / "sub" / "a.yar").write_text("rule a { condition: true }")
    (moved / "b.yara").write_text("rule b { condition: false }")
    assert dh.load_rules([moved]).hash == from_dir.hash

    blob = tmp_path / "rules.bin"
    blob.write_bytes(from_dir.serialize())
    assert dh.load_rules([blob]).hash == from_dir.hash
    with pytest.raises(ValueError, match="compiled rule set"):
        dh.load_rules([blob, tmp_path / "b.yara"])
    with pytest.raises(FileNotFoundError):
        dh.load_rules([tmp_path / "nope.yar"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.yar"):
        dh.load_rules([empty])
    bad = tmp_path / "bad.yar"
    bad.write_text("rule {")
    with pytest.raises(RuleCompileError, match=r"bad\.yar:1:"):
        dh.load_rules([bad])


def test_bundled_rules_compile() -> None:
    rules = dh.bundled_rules()
    assert rules.count >= 15
    assert rules.hash == dh.load_rules().hash


ROUTED_RULES = {
    "routed.yar": """
rule py_word { meta: weight = 3 filetype = ".py" strings: $a = "shared" condition: $a }
rule js_word { meta: weight = 4 filetype = ".js .mjs" strings: $a = "shared" condition: $a }
rule any_word { meta: weight = 1 strings: $a = "shared" condition: $a }
"""
}


def _matches(result: dh.DistributionResult) -> list[tuple[str, list[str]]]:
    return [(f.path, [m.identifier for m in f.matches]) for f in result.files]


def test_filetype_routing_gives_the_results_of_the_whole_set(tmp_path: Path) -> None:
    routed = dh.Rules.compile(ROUTED_RULES)
    whole = dh.Rules.compile(ROUTED_RULES, route_by_filetype=False)
    assert routed.filetype_classes == 2 and whole.filetype_classes is None
    assert (routed.hash, routed.identifiers) == (whole.hash, whole.identifiers)
    back = dh.Rules.deserialize(routed.serialize())
    assert back.filetype_classes == 2 and back.hash == routed.hash
    # One content at paths of every class, and in a nested archive.
    files = {p: b"x = 'shared'" for p in ("a.py", "b.js", "c.mjs", "d.txt", "e.py", "f")}
    files["inner.zip"] = zip_bytes({"g.js": b"shared", "h.py": b"shared"})
    data = tar_gz_bytes(files)
    results = [dh.Scanner(r, threads=2).scan_bytes(data, "r-1.0.tar.gz") for r in (routed, whole, back)]
    assert _matches(results[0]) == _matches(results[1]) == _matches(results[2])
    assert dict(_matches(results[0])) == {
        "a.py": ["py_word", "any_word"],
        "b.js": ["js_word", "any_word"],
        "c.mjs": ["js_word", "any_word"],
        "d.txt": ["any_word"],
        "e.py": ["py_word", "any_word"],
        "f": ["any_word"],
        "inner.zip!/g.js": ["js_word", "any_word"],
        "inner.zip!/h.py": ["py_word", "any_word"],
    }
    assert results[0].score == results[1].score == 3 + 4 + 1


def test_rules_that_reference_each_other_are_compiled_whole() -> None:
    source = 'rule a { meta: filetype = ".py" condition: true } rule b { condition: a }'
    assert dh.Rules.compile({"r.yar": source}).filetype_classes is None
    assert dh.load_rules().filetype_classes is not None, "the bundled rules are routed"


# ------------------------------------------------------------------------------------ progress and cancel


def test_scan_progress_counts_what_every_scan_method_reports(scanner: dh.Scanner, tmp_path: Path) -> None:
    progress = dh.ScanProgress()
    assert (progress.files, progress.bytes, progress.distributions, progress.cancelled) == (0, 0, 0, False)
    sdist = tar_gz_bytes({"pkg/a.py": b"EVIL_MARKER", "pkg/b.txt": b"plain text"})
    wheel = zip_bytes({"pkg/c.py": b"PY_ONLY", "pkg/d.txt": b"x" * 5000})
    on_disk = tmp_path / "pkg.whl"
    on_disk.write_bytes(wheel)
    dists = [
        scanner.scan_bytes(sdist, "pkg.tar.gz", progress=progress),
        scanner.scan_path(on_disk, progress=progress),
        *scanner.scan_many([("one.tar.gz", sdist, None), ("two.whl", str(on_disk), None)], progress=progress),
        *scanner.scan_release("pkg", "1.0", [("pkg.tar.gz", sdist, URL)], progress=progress).distributions,
    ]
    assert progress.distributions == len(dists) == 5
    assert progress.files == sum(d.files_scanned for d in dists) == 10
    assert progress.bytes == sum(d.bytes_scanned for d in dists)
    assert not progress.cancelled


def test_cancel_from_another_thread_raises_scan_cancelled_mid_scan() -> None:
    # 200 distinct members the slow rule takes tens of milliseconds each to scan: seconds in all.
    data = slow_tarball(200)
    scanner = dh.Scanner(dh.Rules.compile({"slow.yar": SLOW_RULE}), threads=2)
    progress = dh.ScanProgress()

    def cancel_once_started() -> None:
        while progress.files < 5:
            time.sleep(0.005)
        progress.cancel()

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    with pytest.raises(dh.ScanCancelled, match="cancelled"):
        scanner.scan_bytes(data, "big.tar", progress=progress)
    canceller.join()
    assert progress.cancelled
    assert 5 <= progress.files < 200
    assert progress.distributions == 0
    assert dh.ScanCancelled is ScanCancelled and issubclass(ScanCancelled, Exception)


def test_a_cancelled_progress_stops_every_later_scan(scanner: dh.Scanner) -> None:
    progress = dh.ScanProgress()
    progress.cancel()
    with pytest.raises(ScanCancelled):
        scanner.scan_many([("a.tar.gz", tar_gz_bytes({"a.py": b"EVIL_MARKER"}), None)], progress=progress)
    assert (progress.files, progress.distributions) == (0, 0)
    assert "cancelled" in repr(progress)
