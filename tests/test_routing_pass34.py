"""Red-team pass 34 of filetype routing: a rule set compiled routed (``Rules.compile``) must give exactly the
results of the same set compiled whole (``route_by_filetype=False``), from sources and from a blob, whatever
the sources do to make the routing plan (``rust/core/src/routing.rs``, its own parse) read a rule otherwise
than YARA-X does: filetype spellings (escapes, comments, repeated keys, ``filetypes``, non-strings, empty,
Unicode spaces), references (by name, nested ``for``, ``of`` tuples, ``with``, prefixes of names), private
and global rules, modules, tags, several sources, more classes than the cap, suffixes that are suffixes of
each other, slashed suffixes, ``!/`` and case, over real archives (wheel, sdist, nested archives, member
names pip normalises, hard links). Scoring is also checked against the contract read from the metadata
YARA-X gives (``RuleMatch.metadata``): a rule counts for a file whose path ends with one of its
whitespace-separated suffixes, a suffix starting with ``/`` also fitting a root file of that name.

Everything here held, except the test at the end, which failed before its fix: a member name pip normalises
(``pkg//evil.py``) was matched by its raw name, so a ``filetype`` of more than one component missed it (not a
routing fault: the same whole). A filetype is now matched against the name pip writes.
"""

from __future__ import annotations

import io
import json
import random
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner

from tests.fakes.pypi import sdist, tar_gz_bytes, wheel, zip_bytes


def rule(
    name: str, meta: str = "", cond: str = "$a", *, kind: str = "", tags: str = "", weight: int = 1
) -> str:
    body = f'meta: weight = {weight} {meta} strings: $a = "EVIL" condition: {cond}'
    return f"{kind} rule {name}{tags} {{ {body} }}\n"


# Paths at every suffix edge: root and deep, names that are suffixes of others, case, a `.py` that is not
# the last component, an archive name ending like a suffix.
FILES: dict[str, bytes] = {
    "setup.py": b"EVIL setup",
    "a.py": b"EVIL a",
    "y": b"EVIL y",
    "py": b"EVIL py",
    "mysetup.py": b"EVIL my",
    "__init__.py": b"EVIL init",
    "pkg/a.py": b"EVIL EVIL",
    "pkg/setup.py": b"EVIL deep setup",
    "pkg/__init__.py": b"EVIL deep init",
    "pkg/x.pyi": b"EVIL pyi",
    "pkg/A.PY": b"EVIL upper",
    "pkg/a.py.txt": b"EVIL not py",
    "run.sh": b"EVIL sh",
    "README.md": b"EVIL md",
    "hook.pth": b"EVIL pth",
    "data.bin": b"EVIL\x00bin",
    "p-1.0/setup.py": b"EVIL nested dir",
}


def tar_gz(members: list[tuple[str, bytes, dict[str, Any]]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data, extra in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            for key, value in extra.items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _weird_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ["a.py/.", "./setup.py", "pkg/../setup.py", "pkg\\b.py", "c.py ", "d.PY", "e.py\u00a0"]:
            archive.writestr(name, b"EVIL weird")
    return buffer.getvalue()


DISTS: list[tuple[str, bytes]] = [
    wheel("p", "1.0", FILES),
    sdist("p", "1.0", FILES),
    # Nested archives: paths `outer!/inner`, a root `setup.py` inside them.
    (
        "nested-1.0.tar.gz",
        tar_gz_bytes(
            {
                "nested-1.0/inner.zip": zip_bytes(FILES),
                "nested-1.0/deep.tar.gz": tar_gz_bytes({"setup.py": b"EVIL", "q/a.py": b"EVIL"}),
            }
        ),
    ),
    ("outer.zip", zip_bytes({"in.whl": wheel("i", "2.0", {"setup.py": b"EVIL", "i/a.py": b"EVIL"})[1]})),
    # Aliases: a hard link scanned under its own name, `a.py/.` also as `a.py`.
    (
        "aliases-1.0.tar.gz",
        tar_gz(
            [
                ("aliases-1.0/x.txt", b"EVIL linked", {}),
                ("aliases-1.0/y.py", b"", {"type": tarfile.LNKTYPE, "linkname": "aliases-1.0/x.txt"}),
                ("aliases-1.0/a.py/.", b"EVIL dot", {}),
                ("aliases-1.0/./z.py", b"EVIL z", {}),
            ]
        ),
    ),
    ("weird-1.0-py3-none-any.whl", _weird_zip()),
    ("loose.py", b"EVIL loose"),
]


def canon(dist: dh.DistributionResult) -> dict[str, Any]:
    """Everything a result shows, as plain data."""
    return {
        "files": [
            (
                f.path,
                f.size,
                f.sha256,
                f.is_text,
                f.score,
                [
                    (
                        m.identifier,
                        m.namespace,
                        m.tags,
                        m.metadata,
                        m.weight,
                        [(p.identifier, p.offset, p.length, p.data) for p in m.patterns],
                    )
                    for m in f.matches
                ],
            )
            for f in dist.files
        ],
        "score": dist.score,
        "rules_matched": dist.rules_matched,
        "top_file": dist.top_file,
        "issues": [(i.path, i.kind, i.message, i.unscanned) for i in dist.issues],
        "scanned": (dist.files_scanned, dist.bytes_scanned, dist.complete, dist.verdict, dist.format),
        "counts": (dist.file_count, dist.match_count, dist.rule_file_counts()),
    }


def snapshot(rules: dh.Rules, dists: list[tuple[str, bytes]] = DISTS, **options: Any) -> tuple[Any, ...]:
    release = dh.Scanner(rules, threads=2, **options).scan_release(
        "p", "1.0", [(n, d, None) for n, d in dists]
    )
    return (release.score, release.rules_matched, release.verdict, [canon(d) for d in release.distributions])


def compiled(sources: dict[str, str] | str) -> tuple[dh.Rules, dh.Rules]:
    if isinstance(sources, str):
        sources = {"r.yar": sources}
    return dh.Rules.compile(sources), dh.Rules.compile(sources, route_by_filetype=False)


def assert_routed_is_whole(
    sources: dict[str, str] | str, routed: bool | None, dists: list[tuple[str, bytes]] = DISTS
) -> tuple[Any, ...]:
    """Routed, whole and both blobs give the same results; ``routed`` (when not None) says whether the
    plan splits the set, so that a case meant to exercise a routed set does."""
    fast, whole = compiled(sources)
    if routed is not None:
        assert (fast.filetype_classes is not None) == routed, fast.filetype_classes
    assert whole.filetype_classes is None
    assert (fast.hash, fast.identifiers, fast.count) == (whole.hash, whole.identifiers, whole.count)
    expected = snapshot(whole, dists)
    assert any(d["files"] for d in expected[3]), "the case matches something"
    for rules in (fast, dh.Rules.deserialize(fast.serialize()), dh.Rules.deserialize(whole.serialize())):
        assert snapshot(rules, dists) == expected
    return expected


ANCHOR = rule("anchor_py", 'filetype = ".py"', weight=64) + rule("anchor_md", 'filetype = ".md"', weight=128)

# (name, rule under test, whether the set is routed). Each case has two routable anchors beside it.
SPELLINGS: list[tuple[str, str, bool | None]] = [
    ("plain", rule("t", 'filetype = ".py .sh"'), True),
    ("slashed", rule("t", 'filetype = "/setup.py"') + rule("u", 'filetype = "/a.py"'), True),
    (
        "suffixes_of_suffixes",
        rule("t", 'filetype = "y"')
        + rule("u", 'filetype = "/a.py"')
        + rule("v", 'filetype = "a.py"')
        + rule("w", 'filetype = "py"')
        + rule("x", 'filetype = "setup.py"')
        + rule("z", 'filetype = "/py"'),
        True,
    ),
    (
        "nested_bang",
        rule("t", 'filetype = "!/setup.py"') + rule("u", 'filetype = "zip!/a.py .gz!/setup.py"'),
        True,
    ),
    ("double_slash", rule("t", 'filetype = "//setup.py"') + rule("u", 'filetype = "0/setup.py"'), True),
    ("bare_slash_and_bang", rule("t", 'filetype = "/ !/"'), True),
    ("case", rule("t", 'filetype = ".PY"'), True),
    (
        "comments_in_meta",
        'rule t { meta: /* a */ filetype /* b */ = /* c */ ".sh" // d\n'
        ' weight = 1 strings: $a = "EVIL" condition: $a }\n',
        True,
    ),
    ("repeated_key", rule("t", 'filetype = ".sh" filetype = ".py"'), True),
    ("filetypes_key", rule("t", 'filetypes = ".sh"'), True),
    ("filetypes_then_filetype", rule("t", 'filetypes = ".sh" filetype = ".py"'), True),
    ("filetype_then_filetypes", rule("t", 'filetype = ".sh" filetypes = ".py"'), True),
    ("int_then_string", rule("t", 'filetype = 3 filetypes = ".sh"'), True),
    ("int", rule("t", "filetype = 3"), True),
    ("negative_int", rule("t", "filetype = -3"), True),
    ("bool", rule("t", "filetype = true"), True),
    ("float", rule("t", "filetype = 1.5"), True),
    ("empty", rule("t", 'filetype = ""'), True),
    ("whitespace_only", rule("t", 'filetype = "   "'), True),
    ("literal_tab", rule("t", 'filetype = ".sh\t.pth"'), True),
    ("nbsp", rule("t", 'filetype = ".sh\u00a0.pth"'), True),
    ("em_space", rule("t", 'filetype = ".sh\u2003.pth"'), True),
    ("non_ascii_suffix", rule("t", 'filetype = ".pý"'), True),
    ("escape_x", rule("t", 'filetype = "\\x2esh"'), None),
    ("escape_space", rule("t", 'filetype = ".sh\\x20.pth"'), None),
    ("escape_quote", rule("t", 'filetype = ".sh\\" .pth"'), None),
    ("escape_backslash", rule("t", 'filetype = ".sh\\\\ .pth"'), None),
    ("escape_newline", rule("t", 'filetype = ".sh\\n.pth"'), None),
    ("escape_tab", rule("t", 'filetype = ".sh\\t.pth"'), None),
    ("escape_cr", rule("t", 'filetype = ".sh\\r.pth"'), None),
    ("escape_nul", rule("t", 'filetype = "\\x00.sh"'), None),
    ("escape_not_utf8", rule("t", 'filetype = "\\xff.sh"'), None),
    ("escape_utf8", rule("t", 'filetype = ".p\\xc3\\xbd"'), None),
    ("tags", rule("t", 'filetype = ".sh"', tags=" : filetype py"), True),
    ("filetype_as_other_key_value", rule("t", 'note = "filetype" filetype = ".sh"'), True),
]


@pytest.mark.parametrize(
    ("meta_case", "routed"), [(s, r) for _, s, r in SPELLINGS], ids=[n for n, _, _ in SPELLINGS]
)
def test_filetype_spellings_give_the_same_results_routed_and_whole(
    meta_case: str, routed: bool | None
) -> None:
    assert_routed_is_whole(ANCHOR + meta_case, routed)


# References and modifiers: every case compiles; the routed set must not lose a rule that counts.
REFERENCES: list[tuple[str, str | dict[str, str], bool | None]] = [
    ("by_name", rule("a", 'filetype = ".py"') + rule("b", 'filetype = ".sh"', "$a and a"), None),
    (
        "name_is_prefix",
        rule("ab", 'filetype = ".py"')
        + rule("a", 'filetype = ".sh"')
        + rule("abc", 'filetype = ".md"', "$a and a"),
        True,
    ),
    (
        "nested_for",
        rule("a", 'filetype = ".py"')
        + rule("b", 'filetype = ".sh"', "$a and for any i in (1..2): (for any j in (1..2): (a and i == j))"),
        None,
    ),
    (
        "of_tuple",
        rule("a", 'filetype = ".py"')
        + rule("c", 'filetype = "/setup.py"')
        + rule("b", 'filetype = ".sh"', "$a and any of (a, c)"),
        None,
    ),
    ("with", rule("a", 'filetype = ".py"') + rule("b", 'filetype = ".sh"', "$a and with x = a : (x)"), None),
    ("them", rule("a", 'filetype = ".py"') + rule("b", 'filetype = ".sh"', "any of them"), True),
    ("not_defined", rule("a", 'filetype = ".py"') + rule("b", 'filetype = ".sh"', "$a and not a"), None),
    (
        "private_referenced",
        rule("a", 'filetype = ".js"', kind="private") + rule("b", 'filetype = ".py"', "$a and a"),
        None,
    ),
    ("private_alone", rule("a", 'filetype = ".py"', kind="private") + rule("b", 'filetype = ".sh"'), True),
    ("global", rule("g", 'filetype = ".py"', "#a < 2", kind="global") + rule("b", 'filetype = ".sh"'), False),
    ("private_global", rule("g", "", "#a < 2", kind="private global") + rule("b", 'filetype = ".py"'), False),
    (
        "global_everywhere",
        rule("g", "", "#a < 2", kind="global") + rule("b", 'filetype = ".py"') + rule("c"),
        False,
    ),
    (
        "several_sources",
        {
            "1.yar": rule("a", 'filetype = ".py"'),
            "2.yar": rule("b", 'filetype = ".sh"', "$a and a") + rule("c", 'filetype = "/setup.py"'),
            "0.yar": rule("d", 'filetype = ".md"') + rule("e"),
        },
        True,
    ),
    (
        "modules",
        'import "math"\nimport "pe"\nimport "hash"\nimport "time"\n'
        + rule("a", 'filetype = ".py"', '$a and math.entropy(0, filesize) >= 0 and hash.md5(0, 1) != ""')
        + rule("b", 'filetype = ".sh"', "$a and not pe.is_pe and time.now() > 0")
        + rule("c", "", "$a and math.mean(0, filesize) > 0"),
        True,
    ),
    (
        "imports_in_other_sources",
        {
            "a.yar": 'import "math"\n' + rule("a", 'filetype = ".py"'),
            "b.yar": 'import "math"\n'
            + rule("b", 'filetype = ".sh"', "$a and math.entropy(0, filesize) >= 0"),
        },
        True,
    ),
    (
        "rule_named_like_a_key",
        rule("filetype", 'filetype = ".py"') + rule("weight", 'filetype = ".sh"'),
        True,
    ),
]


@pytest.mark.parametrize(
    ("sources", "routed"), [(s, r) for _, s, r in REFERENCES], ids=[n for n, _, _ in REFERENCES]
)
def test_references_and_modifiers_give_the_same_results_routed_and_whole(
    sources: str | dict[str, str], routed: bool | None
) -> None:
    assert_routed_is_whole(sources, routed)


@pytest.mark.parametrize("classes", [63, 64, 65, 150])
def test_as_many_classes_as_the_cap_and_more(classes: int) -> None:
    """One class per suffix, up to and past the cap (then compiled whole), each fitting a file."""
    sources = "".join(rule(f"r{i}", f'filetype = ".e{i} /f{i}"', weight=i) for i in range(classes)) + rule(
        "every"
    )
    files = {f"d/f.e{i}": b"EVIL" for i in range(classes)} | {f"f{i}": b"EVIL" for i in range(0, classes, 5)}
    assert_routed_is_whole(sources, None, [wheel("m", "1.0", files)])


def test_fast_scan_and_content_cache_give_the_same_results_routed_and_whole() -> None:
    """A pattern shared by a routed rule that only asks whether it occurs and a common one that counts it;
    the same contents under paths of different classes (the cache keys routed contents per class);
    cache entries moved between routed and whole scanners of the same hash."""
    sources = (
        rule("a", 'filetype = ".py"')
        + rule("b", "", "#a > 1")
        + rule("c", 'filetype = "/setup.py"', "#a > 1")
        + rule("d", 'filetype = ".md .sh"')
    )
    fast, whole = compiled(sources)
    assert fast.filetype_classes is not None
    expected = snapshot(whole)
    for options in ({"fast_scan": True}, {"content_cache": False}, {"digests": False}):
        assert snapshot(fast, **options) == snapshot(whole, **options)
    exported = {}
    for name, rules in (("fast", fast), ("whole", whole)):
        scanner = dh.Scanner(rules, threads=2, record_cache=True)
        scanner.scan_release("p", "1.0", [(n, d, None) for n, d in DISTS])
        exported[name] = scanner.cache_export()
    for rules in (fast, whole):
        for entries in exported.values():
            scanner = dh.Scanner(rules, threads=2)
            scanner.cache_import(entries)
            release = scanner.scan_release("p", "1.0", [(n, d, None) for n, d in DISTS])
            got = (
                release.score,
                release.rules_matched,
                release.verdict,
                [canon(d) for d in release.distributions],
            )
            assert got == expected


def _fit(path: str, suffixes: list[str]) -> bool:
    return any(path.endswith(s) or s == "/" + path for s in suffixes)


def _suffixes(metadata: dict[str, Any]) -> list[str] | None:
    """The contract's reading of the first ``filetype``/``filetypes`` entry (renamed ``o...`` here, so that
    the engine does not filter): a string, or bytes YARA-X gives for an escaped one; None: every file."""
    for key, value in metadata.items():
        if key in ("ofiletype", "ofiletypes"):
            text = value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else ""
            return text.split() or None
    return None


ORACLE_CASES = [(n, s) for n, s, _ in SPELLINGS if n != "escape_not_utf8"]


@pytest.mark.parametrize("meta_case", [s for _, s in ORACLE_CASES], ids=[n for n, _ in ORACLE_CASES])
def test_scoring_reads_filetype_as_yara_x_gives_it(meta_case: str) -> None:
    """Routed and whole, the engine keeps exactly the matches the contract keeps, read from the metadata
    YARA-X gives (a renamed key, so nothing is filtered), and reports that metadata unchanged."""
    sources = ANCHOR + meta_case
    # Only keys are renamed (not the value "filetype" of another key).
    renamed_keys = re.sub(r'(?<![\w"])filetype', "ofiletype", sources)
    unfiltered = dh.Scanner(dh.Rules.compile({"r.yar": renamed_keys}), threads=2)
    for rules in compiled(sources):
        scanner = dh.Scanner(rules, threads=2)
        for name, data in DISTS:
            everything = unfiltered.scan_bytes(data, name)
            expected = []
            weights: dict[str, int] = {}
            for f in everything.files:
                kept = []
                for m in f.matches:
                    suffixes = _suffixes(m.metadata)
                    if suffixes is None or _fit(f.path, suffixes):
                        renamed = {
                            k.removeprefix("o") if k.startswith("ofiletype") else k: v
                            for k, v in m.metadata.items()
                        }
                        kept.append((m.identifier, renamed))
                        weights[m.identifier] = m.weight
                if kept:
                    expected.append((f.path, kept))
            got = scanner.scan_bytes(data, name)
            assert [
                (f.path, [(m.identifier, m.metadata) for m in f.matches]) for f in got.files
            ] == expected, name
            assert (got.score, got.rules_matched) == (sum(weights.values()), sorted(weights)), name


def test_random_rule_sets_give_the_same_results_routed_and_whole() -> None:
    """Seeded random sets over tricky suffixes, references, private rules and several sources."""
    suffixes = [
        ".py", "py", "y", "/a.py", "a.py", "/setup.py", "setup.py", "//setup.py", "!/setup.py", ".PY", ".pyi",
        "/", "\\x2epy", ".py\\x20.sh", ".sh", "__init__.py", "/__init__.py", "0/setup.py", "\\xff.py",
        " ", "",
    ]  # fmt: skip
    rng = random.Random(34)
    routed = 0
    for _ in range(40):
        names = [f"r{i}" for i in range(rng.randint(4, 12))]
        texts = []
        for i, name in enumerate(names):
            meta = ""
            if rng.random() < 0.75:
                key = rng.choice(["filetype", "filetypes"])
                meta = f'{key} = "{" ".join(rng.sample(suffixes, rng.randint(1, 2)))}"'
            cond = rng.choice(["$a", "#a > 1", "$a and math.entropy(0, filesize) >= 0"])
            if i and rng.random() < 0.15:
                cond = f"$a and {rng.choice(names[:i])}"
            kind = "private" if rng.random() < 0.1 else ""
            texts.append(rule(name, meta, cond, kind=kind, weight=rng.randint(0, 9)))
        # Consecutive rules per source (origins compile in order): a rule names only earlier ones.
        cuts = sorted(rng.sample(range(1, len(texts)), rng.randint(0, 2)))
        chunks = [texts[a:b] for a, b in zip([0, *cuts], [*cuts, len(texts)], strict=True)]
        sources = {f"s{j}.yar": 'import "math"\n' + "".join(chunk) for j, chunk in enumerate(chunks)}
        fast, _ = compiled(sources)
        routed += fast.filetype_classes is not None
        assert_routed_is_whole(sources, None)
    assert routed >= 20, "most random sets are routed"


def test_a_blob_from_rules_compile_scans_as_its_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rules compile` writes the routed set; `scan --rules BLOB` reports what `scan --rules DIR` does, and
    the blob loads to the results of the sources compiled whole."""
    monkeypatch.setenv("DRAGONFLY_RULES_CACHE_DIR", "off")
    sources = (
        ANCHOR + rule("s", 'filetype = "/setup.py"') + rule("e", 'filetype = ".sh\\x20.pth"') + rule("every")
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yar").write_text(sources)
    archives = []
    for name, data in DISTS:
        archives.append(tmp_path / name)
        archives[-1].write_bytes(data)
    runner = CliRunner()
    blob = tmp_path / "rules.blob"
    assert runner.invoke(app, ["rules", "compile", str(tmp_path / "rules"), "-o", str(blob)]).exit_code == 0
    loaded = dh.Rules.deserialize(blob.read_bytes())
    assert loaded.filetype_classes is not None
    assert snapshot(loaded) == snapshot(dh.Rules.compile({"r.yar": sources}, route_by_filetype=False))
    reports = []
    for rules in (blob, tmp_path / "rules"):
        result = runner.invoke(app, ["scan", "--format", "json", "--rules", str(rules), *map(str, archives)])
        assert result.exit_code == 1, result.output
        document = json.loads(result.stdout)
        reports.append((document["rules"], document["targets"]))
    assert reports[0] == reports[1]


# --- a filetype fits the name pip writes (not routing: the same whole) --------------------------------------


@pytest.mark.parametrize("route", [True, False], ids=["routed", "whole"])
@pytest.mark.parametrize("member", ["pkg//evil.py", "pkg/./evil.py"])
def test_a_filetype_of_two_components_fits_a_member_pip_normalises_to_it(member: str, route: bool) -> None:
    rules = dh.Rules.compile({"r.yar": rule("r", 'filetype = "pkg/evil.py"')}, route_by_filetype=route)
    for name, data in [wheel("p", "1.0", {member: b"EVIL"}), sdist("p", "1.0", {member: b"EVIL"})]:
        assert dh.Scanner(rules, threads=1).scan_bytes(data, name).rules_matched == ["r"], name
