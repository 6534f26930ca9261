"""README walk, pass 44: "Rules commands", "Scoring", "The bundled rules", "Python API", "Hostile input",
"Performance" and "Development", run as written (real archives, a fake index on 127.0.0.1, real CLI runs).

Fixes pinned here (each test named so fails on the code before it):

* ``dragonfly-hybrid --help`` and ``rules --help`` described ``rules`` as "check and compile" only, not
  ``rules test``; ``rules test``'s exit codes left out rules that define no rule (exit 2, as the README now
  says too);
* lines of those README sections ran past 108 columns.

The rest pins what the README promises and no other test checked: ``fetch_and_scan``'s ``PipConfigError``
and ``NetworkSettingsError``, a ``rules test`` row of a rule that matched nothing (``null`` / ``-``), every
bundled rule weighing 5 or more (each flags a release alone), and the "Python API" block as written.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.http_client import NetworkSettingsError
from dragonfly_hybrid.pypi.pipconfig import PipConfigError
from dragonfly_hybrid.report import TargetResult
from typer.testing import CliRunner, Result

from tests.fakes.pypi import FakeIndex, sdist, write

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DEMO = REPO / "examples" / "evil-demo-0.1.tar.gz"
RULE_FIXTURES = REPO / "tests" / "fixtures" / "rules"
EVIL_RULE = 'rule x { meta: weight = 5 strings: $a = "evil" condition: $a }'
RULES = """
rule strong { meta: weight = 7 strings: $a = "STRONG_MARKER" condition: $a }
rule unused { meta: weight = 6 strings: $a = "NEVER_PRESENT_MARKER" condition: $a }
"""
SECTIONS = ("### Rules commands", "## Scoring", "## The bundled rules", "## Python API", "## Hostile input",
            "## Performance", "## Development")  # fmt: skip


def run(*args: object, columns: int = 200) -> Result:
    """A CLI run in process, its help as wide as ``columns`` (so that no sentence is cut by the box)."""
    return CliRunner().invoke(
        app, [str(a) for a in args], env={"COLUMNS": str(columns)}, catch_exceptions=False
    )


def flat(text: str) -> str:
    """Help text without the box drawing and line breaks, for matching sentences."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def section(heading: str) -> list[str]:
    """The README lines from ``heading`` to the next heading of its level or higher."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    level = len(heading.split()[0])
    fenced = False  # a code block's `# comment` is no heading
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            return lines[start:end]
    return lines[start:]


# ------------------------------------------------------------------------------ fixes


def test_rules_help_says_the_group_also_measures_rules() -> None:
    """The ``rules`` group runs ``test`` too: both help pages say so, not only check and compile."""
    top = flat(run("--help").stdout)
    assert re.search(r"rules Check rule sets, compile them to a blob .*, or measure them on releases\.", top)
    group = flat(run("rules", "--help").stdout)
    assert "or measure them on releases." in group
    assert "test Measure rules on malicious and benign releases" in group


def test_rules_test_exit_2_for_rules_that_define_no_rule_is_documented(tmp_path: Path) -> None:
    """Rules of no rule are a usage error (exit 2), and the exit codes of ``--help`` say so."""
    write(tmp_path / "none" / "empty.yar", b"// only a comment\n")
    write(tmp_path / "ok" / "a.py", b"print(1)\n")
    result = run("rules", "test", tmp_path / "none", "--benign", tmp_path / "ok")
    assert result.exit_code == 2
    assert "no rule defined" in result.stderr
    assert "rules that do not compile or define no rule)" in flat(run("rules", "test", "--help").stdout)


@pytest.mark.parametrize("heading", SECTIONS)
def test_readme_lines_fit_108_columns(heading: str) -> None:
    """Prose and code of the section fit 108 columns; a table row cannot wrap and may not."""
    long = [line for line in section(heading) if len(line) > 108 and not line.startswith("|")]
    assert long == []


# ------------------------------------------------------------------------------ pins


def test_fetch_and_scan_raises_for_pip_settings_it_cannot_honour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``no-index`` is ``PipConfigError``, a CA bundle that does not load ``NetworkSettingsError`` (both
    ``ValueError``): raised before any download, never an incomplete result."""
    rules = dh.Rules.compile({"a.yar": EVIL_RULE})
    with FakeIndex() as index:
        index.add("pkg", sdist("pkg", "1.0", {"pkg/x.py": b"evil\n"}))
        assert dh.fetch_and_scan("pkg==1.0", rules=rules, index_url=index.url).verdict == "findings"

        monkeypatch.setenv("PIP_NO_INDEX", "1")
        with pytest.raises(PipConfigError, match="no-index"):
            dh.fetch_and_scan("pkg==1.0", rules=rules, index_url=index.url)
        monkeypatch.delenv("PIP_NO_INDEX")

        bad = write(tmp_path / "bad.pem", b"not a certificate\n")
        monkeypatch.setenv("PIP_CERT", str(bad))
        with pytest.raises(NetworkSettingsError, match=r"bad\.pem"):
            dh.fetch_and_scan("pkg==1.0", rules=rules, index_url=index.url)
    assert issubclass(PipConfigError, ValueError) and issubclass(NetworkSettingsError, ValueError)


def test_a_rule_that_matched_nothing_has_no_weight_in_rules_test(tmp_path: Path) -> None:
    """JSON ``per_rule`` gives ``null`` and the table ``-`` for the weight of a rule that matched nothing."""
    rules = write(tmp_path / "rules" / "r.yar", RULES.encode())
    write(tmp_path / "mal" / "drop.py", b"x = 'STRONG_MARKER'\n")
    result = run("rules", "test", rules, "--malicious", tmp_path / "mal", "--format", "json")
    assert result.exit_code == 0
    per_rule = {row["rule"]: row for row in json.loads(result.stdout)["per_rule"]}
    assert per_rule["strong"]["weight"] == 7 and per_rule["unused"]["weight"] is None
    missed = json.loads(result.stdout)["malicious"]["missed"]
    assert missed == []
    table = run("rules", "test", rules, "--malicious", tmp_path / "mal").stdout
    assert re.search(r"^unused\s+-\s+0\s+0\s+0$", table, re.MULTILINE), table


def test_every_bundled_rule_flags_a_release_alone(tmp_path: Path) -> None:
    """ "Every rule has weight >= 5": each rule's positive fixture, a release of its own, is flagged at the
    default ``--flag-weight``, and so is the demo package; every rule's weight is 5 or more."""
    malicious = tmp_path / "malicious"
    for rule_dir in sorted(d for d in RULE_FIXTURES.iterdir() if d.is_dir()):
        for path in (rule_dir / "positive").rglob("*"):
            if path.is_file():
                write(malicious / rule_dir.name / path.relative_to(rule_dir / "positive"), path.read_bytes())
    write(malicious / DEMO.name, DEMO.read_bytes())
    result = run("rules", "test", "--malicious", malicious, "--min-recall", "100%", "--format", "json")
    assert result.exit_code == 0, result.stdout
    document = json.loads(result.stdout)
    assert document["malicious"]["recall"] == 1.0
    assert document["rules"]["count"] == len(document["per_rule"]) == dh.load_rules().count
    assert {row["rule"]: row["weight"] >= 5 for row in document["per_rule"]} == {
        row["rule"]: True for row in document["per_rule"]
    }


def test_the_python_api_block_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call of the README's "Python API" block, with what its comment says it returns."""
    monkeypatch.chdir(tmp_path)
    name, data = sdist("pkg", "1.0", {"pkg/evil.py": b"evil()\n", "pkg/ok.py": b"ok\n"})
    Path(name).write_bytes(data)
    write(tmp_path / "my-rules" / "a.yar", EVIL_RULE.encode())
    (tmp_path / "x.yar").write_text('rule y { meta: weight = 1 strings: $a = "ok" condition: $a }')
    blob = write(tmp_path / "rules.bin", dh.load_rules("my-rules/").serialize())

    bundled = dh.load_rules()
    assert bundled.count > 0 and bundled.filetype_classes  # routed: the bundled rules have filetypes
    assert dh.load_rules(["my-rules/", "x.yar"]).count == 2
    assert dh.load_rules(str(blob)).hash == dh.load_rules("my-rules/").hash
    with pytest.raises(TypeError, match=r"Rules\.deserialize"):
        dh.load_rules(blob.read_bytes())  # type: ignore[arg-type]
    assert dh.Rules.deserialize(blob.read_bytes()).count == 1

    rules = dh.Rules.compile({"a.yar": 'rule x { meta: weight = 5 strings: $a = "evil" condition: $a }'})
    assert rules.filetype_classes is None  # no filetype: compiled whole
    scanner = dh.Scanner(rules, limits=dh.Limits(max_depth=2), threads=None)

    result = scanner.scan_path(name)
    assert (result.verdict, result.score, result.rules_matched, result.top_file) == (
        "findings", 5, ["x"], "pkg-1.0/pkg/evil.py"
    )  # fmt: skip
    assert scanner.scan_bytes(data, name, url=None).rules_matched == ["x"]
    assert scanner.scan_bytes(bytearray(data), name).rules_matched == ["x"]
    assert [file.path for file in result.files] == ["pkg-1.0/pkg/evil.py"]  # only files that matched
    match = result.files[0].matches[0]
    assert (match.identifier, match.weight, [(p.offset, p.length) for p in match.patterns]) == (
        "x",
        5,
        [(0, 4)],
    )
    pattern = match.patterns[0]
    assert (pattern.line, pattern.column, pattern.data, pattern.snippet) == (1, 1, b"evil", b"evil()")
    assert (pattern.snippet_offset, pattern.snippet_parts(), result.files[0].is_text) == (
        0,
        ("", "evil", "()"),
        True,
    )
    assert (result.file_count, result.match_count) == (1, 1)
    assert [(m.weight, f.path, m.identifier) for f, m in result.top_findings(10)] == [
        (5, "pkg-1.0/pkg/evil.py", "x")
    ]
    assert result.issues == []

    url = f"https://files.example/packages/{name}"
    release = scanner.scan_release("pkg", "1.0", [(name, data, url), (name, name, url)])
    assert (release.score, release.rules_matched, release.failure_reason) == (5, ["x"], None)
    assert (
        release.inspector_url
        == f"https://inspector.pypi.io/project/pkg/1.0/packages/{name}/pkg-1.0/pkg/evil.py"
    )
    results = scanner.scan_many(
        [(name, data, None), (name, Path(name), None), ("gone.tar.gz", "gone.tar.gz", None)]
    )
    assert [r.verdict for r in results] == ["findings", "findings", "incomplete"]  # unreadable: incomplete

    with FakeIndex() as index:
        index.add("requests", sdist("requests", "2.31.0", {"requests/x.py": b"evil\n"}))
        target = dh.fetch_and_scan("requests==2.31.0", rules=rules, index_url=index.url)
        assert isinstance(target, TargetResult)
        assert (target.verdict, target.score, target.error) == ("findings", 5, None)
        again = dh.fetch_and_scan(
            "requests==2.31.0", scanner=scanner, index_url=index.url, extra_index_urls=[],
            python_version="3.12", max_download_size=128_000_000,
        )  # fmt: skip
        assert again.verdict == "findings"

    assert dh.Scanner(rules, fast_scan=True).scan_path(name).rules_matched == ["x"]
    assert dh.Scanner(rules, content_cache=False).scan_path(name).rules_matched == ["x"]
    undigested = dh.Scanner(rules, digests=False).scan_path(name)
    assert undigested.sha256 == "" and {f.sha256 for f in undigested.files} == {""}
    matched_only = dh.Scanner(rules, digests="files").scan_path(name)
    assert matched_only.sha256 == "" and all(len(f.sha256) == 64 for f in matched_only.files)

    recording = dh.Scanner(rules, record_cache=True)
    recording.scan_path(name)
    entries = recording.cache_export()
    assert entries and all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in entries)
    assert recording.cache_export() == []  # only what is new since the last call
    importer = dh.Scanner(rules)
    loaded, refused = importer.cache_import(entries)
    assert (loaded, refused) == (len(entries), None)
    importer.scan_path(name)
    assert importer.cache_stats == {
        "entries": len(entries),
        "hits": len(entries),
        "misses": 0,
    }  # not scanned again
    assert set(recording.cache_stats) == {"entries", "hits", "misses"}
    with pytest.raises(TypeError, match="tuple"):
        importer.cache_import([("key", "entry")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="32 bytes"):
        importer.cache_import([(b"key", b"entry")])

    progress = dh.ScanProgress()
    worker = threading.Thread(target=scanner.scan_path, args=(name,), kwargs={"progress": progress})
    worker.start()
    worker.join()
    assert (progress.files, progress.bytes, progress.distributions) == (
        result.files_scanned, result.bytes_scanned, 1
    )  # fmt: skip
    progress.cancel()
    with pytest.raises(dh.ScanCancelled):
        scanner.scan_path(name, progress=progress)
