"""Conformance pass 33: the node's results against the wire contract (``/work/shared/dragonfly-api.md``,
"Scanning semantics" and the ``PUT /package`` bodies), the reference node (vipyrsec/dragonfly-client-rs)
and the live server's model (vipyrsec/dragonfly-mainframe: ``PackageScanResult | PackageScanResultFail``,
``score`` a PostgreSQL ``integer``, a ``Rule`` row created per name of ``rules_matched``). Real archives
built here, real rule sources, the public API, the node in process against the fake mainframe on 127.0.0.1
and a standalone node as a real process against the fake index. The tests of a fix fail on the code before
it; the others pin what held:

* a score past the server's ``integer`` (a rule weighted 2**31 or more) was refused with a 500 at every try,
  so the release was never recorded: it is sent as the nearest bound (``node/sinks.py``);
* a standalone run's JSON line redacted its ``inspector_url`` whatever it held: a member named
  ``run;x=1.py`` linked to ``run;x=<redacted>``, not to the file the mainframe's body names. It is redacted
  only when a file URL of the job has something to hide (``node/sinks.py``);
* ``scan``'s top file (SARIF message, HTML rows) took the *first* of equally scoring distributions, the
  ``inspector_url`` beside it the last (``report.TargetResult.top_distribution``);
* in the engine (Rust): weights summing past i64 wrapped to a negative score (they saturate); a
  ``filetype`` written with an escape (YARA-X hands it over as bytes) was ignored, the rule counting for
  every file; ``/setup.py`` did not fit a wheel's root ``setup.py``, which the reference node's absolute
  path does; a weight-0 match lost its link to a clean distribution after it, which won the tie.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid.report import TargetResult
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tests.fakes.mainframe import FakeMainframe
from tests.fakes.pypi import FakeIndex, sdist, tar_gz_bytes, wheel
from tests.test_node import run_node, settings_for
from tests.test_node_pass29 import clean_env

I64_MAX = 2**63 - 1
HOST = "https://files.pythonhosted.org/packages/ab/cd/ef"


def rule(name: str, meta: str, text: str = "EVIL", kind: str = "") -> str:
    return f'{kind} rule {name} {{ meta: {meta} strings: $a = "{text}" condition: $a }}\n'


def scanner(sources: dict[str, str] | str, *, route: bool = True) -> dh.Scanner:
    if isinstance(sources, str):
        sources = {"rules.yar": sources}
    return dh.Scanner(dh.Rules.compile(sources, route_by_filetype=route), threads=2)


def release(
    scan: dh.Scanner, dists: list[tuple[str, bytes]], name: str = "p", version: str = "1.0"
) -> dh.ReleaseResult:
    """``name==version`` of the archives ``(filename, bytes)``, each at a PyPI-shaped URL."""
    return scan.scan_release(name, version, [(fn, data, f"{HOST}/{fn}") for fn, data in dists])


# --- rule metadata: weight ---------------------------------------------------------------------------------

WEIGHTS = [
    ("weight = 5", 5),
    ("weight = 0x10", 16),
    ("weight = 0", 0),
    ("weight = -3", -3),  # an integer: it counts, as the reference node's i64 does
    (f"weight = {I64_MAX}", I64_MAX),
    ('weight = "5"', 0),  # "a non-integer counts as 0"
    ("weight = 5.0", 0),
    ("weight = 2.5", 0),
    ("weight = true", 0),
    ('author = "x"', 0),  # absent: 0
    ("weight = 4 weight = 9", 4),  # repeated: the first, as the reference node's `find`
]


@pytest.mark.parametrize(("meta", "score"), WEIGHTS)
def test_weight_is_an_integer_else_0_and_a_match_counts_whatever_its_weight(meta: str, score: int) -> None:
    rel = release(scanner(rule("r", meta)), [wheel("p", "1.0", {"p/m.py": b"EVIL"})])
    assert (rel.score, rel.rules_matched, rel.verdict) == (score, ["r"], "findings")
    assert rel.inspector_url is not None and rel.inspector_url.endswith("/p/m.py")


@pytest.mark.parametrize("meta", [f"weight = {I64_MAX + 1}", f"weight = -{I64_MAX + 2}"])
def test_a_weight_past_i64_does_not_compile(meta: str) -> None:
    with pytest.raises(dh.RuleCompileError, match="out of the valid range"):
        dh.Rules.compile({"r.yar": rule("r", meta)})


def test_private_rules_count_nowhere_global_ones_everywhere_and_sources_share_one_namespace() -> None:
    sources = {
        "a.yar": rule("hidden", "weight = 50", kind="private")
        + "rule uses { meta: weight = 2 condition: hidden }",
        "b.yar": "global rule everywhere { meta: weight = 7 condition: true }\n"
        + rule("other", "weight = 1"),
    }
    rel = release(scanner(sources), [wheel("p", "1.0", {"p/m.py": b"EVIL"})])
    # As libyara, a private rule is never reported, so its weight never counts.
    assert (rel.score, rel.rules_matched) == (10, ["everywhere", "other", "uses"])
    with pytest.raises(dh.RuleCompileError, match="duplicate rule `uses`"):
        dh.Rules.compile({**sources, "c.yar": rule("uses", "weight = 1")})


def test_distinct_rules_count_once_per_distribution_and_the_release_takes_the_max() -> None:
    """The contract's example: dist A matches weights {5, 7} (5 in two files) -> 12, dist B {2, 9} -> 11."""
    scan = scanner("".join(rule(f"w{w}", f"weight = {w}", f"W{w}W") for w in (5, 7, 2, 9)))
    a = sdist("p", "1.0", {"setup.py": b"W5W W7W", "p/x.py": b"W5W"})
    b = wheel("p", "1.0", {"p/m.py": b"W2W W9W", "p/n.py": b"W9W"})
    for dists in ([a, b], [b, a]):
        rel = release(scan, dists)
        assert [d.score for d in rel.distributions] == [12 if d is a else 11 for d in dists]
        assert (rel.score, rel.rules_matched) == (12, ["w2", "w5", "w7", "w9"])  # sorted, each once
        assert (
            rel.inspector_url
            == f"https://inspector.pypi.io/project/p/1.0/packages/ab/cd/ef/{a[0]}/p-1.0/setup.py"
        )


def test_weights_that_add_past_i64_do_not_wrap_to_a_negative_score() -> None:
    """The reference node wraps too (a release build), but -2 reads as benign; a saturating add would not."""
    scan = scanner(rule("a", f"weight = {I64_MAX}", "AAA") + rule("b", f"weight = {I64_MAX}", "BBB"))
    rel = release(scan, [wheel("p", "1.0", {"p/m.py": b"AAA BBB"})])
    assert rel.score == I64_MAX


# --- rule metadata: filetype -------------------------------------------------------------------------------

FILES = {
    "setup.py": b"EVIL",
    "m.PY": b"EVIL",
    "a/mysetup.py": b"EVIL",
    "a/x.pyi": b"EVIL",
    "a/t.txt": b"EVIL",
}
ALL = sorted(FILES)
# Deliberate: two spaces or a leading one make no empty suffix (the reference node's `split(' ')` made one,
# which every path ends with: the rule counted everywhere).
FILETYPES = [
    ('filetype = ".py .pyi"', ["a/mysetup.py", "a/x.pyi", "setup.py"]),
    ('filetype = ".py  .pyi"', ["a/mysetup.py", "a/x.pyi", "setup.py"]),
    ('filetype = " .txt"', ["a/t.txt"]),
    ('filetype = "py"', ["a/mysetup.py", "setup.py"]),  # a suffix, not an extension
    ('filetype = ".PY"', ["m.PY"]),  # case counts
    ('filetype = "setup.py"', ["a/mysetup.py", "setup.py"]),  # a whole name is a suffix too
    ('filetype = ""', ALL),  # no suffix: every file
    ("filetype = 5", ALL),  # not a string: every file, as the reference node
    ('filetype = ".txt" filetype = ".pyi"', ["a/t.txt"]),  # repeated: the first
]


@pytest.mark.parametrize("route", [True, False], ids=["routed", "whole"])
@pytest.mark.parametrize(("meta", "paths"), FILETYPES)
def test_filetype_applies_to_the_name_pip_writes(meta: str, paths: list[str], route: bool) -> None:
    scan = scanner(rule("r", f"weight = 1 {meta}"), route=route)
    whl = scan.scan_bytes(wheel("p", "1.0", FILES)[1], "p-1.0-py3-none-any.whl")
    tgz = scan.scan_bytes(sdist("p", "1.0", FILES)[1], "p-1.0.tar.gz")
    loose = scan.scan_bytes(b"EVIL", "setup.py")
    assert sorted(f.path for f in whl.files) == paths
    assert sorted(f.path for f in tgz.files) == [f"p-1.0/{p}" for p in paths]
    assert [f.path for f in loose.files] == (["setup.py"] if "setup.py" in paths else [])
    assert whl.score == (1 if paths else 0)


def test_a_filetype_written_with_an_escape_still_limits_the_rule() -> None:
    """YARA-X gives a meta string holding an escape as bytes (``b".py .pyi"``); the rule then counted for
    every file. libyara (the reference node) reads ``".py\\x20.pyi"`` as ``".py .pyi"``."""
    scan = scanner(rule("r", 'weight = 1 filetype = ".py\\x20.pyi"'))
    whl = scan.scan_bytes(wheel("p", "1.0", FILES)[1], "p-1.0-py3-none-any.whl")
    assert sorted(f.path for f in whl.files) == ["a/mysetup.py", "a/x.pyi", "setup.py"]


def test_a_filetype_naming_a_whole_file_with_its_slash_matches_it_at_the_wheels_root() -> None:
    """The reference node tests the extracted file's absolute path: ``/setup.py`` matches a wheel's
    root ``setup.py`` (``/tmp/x/setup.py``), not ``mysetup.py``."""
    scan = scanner(rule("r", 'weight = 1 filetype = "/setup.py"'))
    whl = scan.scan_bytes(wheel("p", "1.0", FILES)[1], "p-1.0-py3-none-any.whl")
    assert [f.path for f in whl.files] == ["setup.py"]


# --- ties, zero-weight matches, empty releases -------------------------------------------------------------


@pytest.mark.parametrize("wheel_last", [True, False])
def test_equal_distributions_link_the_last_and_scans_top_file_is_the_linked_one(wheel_last: bool) -> None:
    """Ties: the last distribution of the job (the reference node's ``max_by_key``), and the last file of it;
    ``scan``'s top file (SARIF text, HTML rows) named the first distribution."""
    scan = scanner(rule("r", "weight = 3"))
    a, b = sdist("p", "1.0", {"p/a.py": b"EVIL", "p/b.py": b"EVIL"}), wheel("p", "1.0", {"p/m.py": b"EVIL"})
    dists = [a, b] if wheel_last else [b, a]
    rel = release(scan, dists)
    last = dists[-1][0]
    member = "p/m.py" if wheel_last else "p-1.0/p/b.py"
    assert rel.inspector_url == f"https://inspector.pypi.io/project/p/1.0/packages/ab/cd/ef/{last}/{member}"
    assert TargetResult.from_release("p==1.0", rel).top_file == f"{last}/{member}"


def test_a_zero_weight_match_has_score_0_and_a_link_and_an_empty_release_neither() -> None:
    scan = scanner(rule("zero", "weight = 0"))
    rel = release(scan, [wheel("p", "1.0", {"p/m.py": b"EVIL"})])
    assert (rel.score, rel.rules_matched, rel.verdict) == (0, ["zero"], "findings")
    assert rel.inspector_url is not None and rel.inspector_url.endswith("/p/m.py")
    empty = release(scan, [])
    assert (empty.score, empty.rules_matched, empty.inspector_url, empty.verdict) == (0, [], None, "clean")
    clean = release(scan, [wheel("p", "1.0", {"p/m.py": b"fine"})])
    assert (clean.score, clean.rules_matched, clean.inspector_url) == (0, [], None)


def test_a_zero_weight_match_keeps_its_link_when_a_clean_distribution_comes_last() -> None:
    """Contract: null only "when the score is 0 and nothing matched". Both distributions score 0; the last
    (clean) one won the tie, and it has no top file."""
    scan = scanner(rule("zero", "weight = 0"))
    rel = release(scan, [wheel("p", "1.0", {"p/m.py": b"EVIL"}), sdist("p", "1.0", {"m.py": b"fine"})])
    assert rel.rules_matched == ["zero"]
    assert rel.inspector_url is not None


# --- inspector_url -----------------------------------------------------------------------------------------

DOWNLOADS = [
    # download URL -> the download path the link carries
    ("https://files.pythonhosted.org/packages/54/1f/h/p-1.0.tar.gz", "packages/54/1f/h/p-1.0.tar.gz"),
    ("https://files.example:8443/packages/a/p-1.0.tar.gz", "packages/a/p-1.0.tar.gz"),  # no port
    ("https://files.example/packages/a/p-1.0.tar.gz?x=1#f", "packages/a/p-1.0.tar.gz"),  # no query, fragment
    ("https://files.example/packages//a/p-1.0.tar.gz", "packages/a/p-1.0.tar.gz"),
    ("https://files.example/pack%2Bages/a%20b/p-1.0.tar.gz", "pack%2Bages/a%20b/p-1.0.tar.gz"),  # kept
]
MEMBERS = ["p-1.0/setup.py", "p-1.0/a b/x #1?.py", "p-1.0/100%.py", "p-1.0/ünï/код.py", "p-1.0/a;b=c.py"]


@pytest.mark.parametrize(("download", "path"), DOWNLOADS)
def test_the_link_is_a_valid_url_of_the_download_path_and_the_member_as_inspector_reads_it(
    download: str, path: str
) -> None:
    """Inspector (Flask) decodes the path: each piece must decode back to the name, the version, the download
    path and the member (the reference node pastes members raw: a ``#`` or ``?`` cut its link)."""
    scan = scanner(rule("r", "weight = 1"))
    for member in MEMBERS:
        data = tar_gz_bytes({member: b"EVIL"})
        url = scan.scan_release("p", "1.0+local", [("p-1.0.tar.gz", data, download)]).inspector_url
        assert url is not None and url.isascii() and url.isprintable() and " " not in url, url
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == (
            "https",
            "inspector.pypi.io",
            "",
            "",
        )
        # Each member segment: RFC 3986's pchar as it is, anything else (`%` too) as UTF-8 escapes.
        encoded = "/".join(quote(segment, safe="!$&'()*+,;=:@") for segment in member.split("/"))
        assert parts.path == f"/project/p/1.0+local/{path}/{encoded}"
        assert unquote(parts.path) == f"/project/p/1.0+local/{unquote(path)}/{member}"


# --- the bodies the mainframe gets -------------------------------------------------------------------------


class _Package(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    version: str


class _Success(_Package):
    """The live server's ``PackageScanResult``."""

    commit: str
    score: int = 0
    inspector_url: str | None = None
    rules_matched: list[str] = []
    attempt: int | None = Field(default=None, ge=1)
    assignment_id: uuid.UUID | None = None


class _Failure(_Package):
    """The live server's ``PackageScanResultFail``."""

    reason: str
    attempt: int | None = Field(default=None, ge=1)
    assignment_id: uuid.UUID | None = None


LIVE_BODY: TypeAdapter[_Success | _Failure] = TypeAdapter(_Success | _Failure)
SUCCESS_KEYS = {
    "name",
    "version",
    "score",
    "inspector_url",
    "rules_matched",
    "commit",
    "attempt",
    "assignment_id",
}
FAILURE_KEYS = {"name", "version", "reason", "attempt", "assignment_id"}


def accepted_by_the_live_server(body: dict[str, object]) -> None:
    """What the live server takes: its model (FastAPI's union), a score its PostgreSQL ``integer`` column
    stores, each rule name once (it creates a ``Rule`` row per new name: a name twice breaks its unique
    index), and, from the contract, exactly the keys of one of the two bodies, with JSON integers."""
    parsed = LIVE_BODY.validate_python(body)
    if isinstance(parsed, _Success):
        assert set(body) == SUCCESS_KEYS, body
        assert type(body["score"]) is int and -(2**31) <= body["score"] < 2**31, body
        assert len(set(parsed.rules_matched)) == len(parsed.rules_matched), body
    else:
        assert set(body) == FAILURE_KEYS, body
    assert type(body["attempt"]) is int and parsed.assignment_id is not None


NODE_RULES = {
    "a.yar": rule("heavy", "weight = 5", "HEAVY") + rule("light", 'weight = 2 filetype = ".py"', "LIGHT"),
    "b.yar": rule("zero", "weight = 0", "ZERO") + rule("huge", f"weight = {2**31}", "HUGE"),
}


def test_every_body_the_node_submits_is_the_contracts_and_the_live_server_takes_it(tmp_path: Path) -> None:
    with FakeMainframe(job_timeout=30) as fake:
        fake.set_rules("c0ffee", NODE_RULES)
        fake.add_release("both", "1.0", {"m.py": b"HEAVY", "n.py": b"LIGHT", "t.txt": b"LIGHT"})
        fake.add_release("zero", "1.0", {"m.py": b"ZERO"}, sdist=False)
        fake.add_release("huge", "1.0", {"m.py": b"HUGE HEAVY"})
        fake.add_release("none", "1.0")
        gone = fake.url + "/packages/aa/bb/cc/gone-1.0.tar.gz"
        fake.add_release("part", "1.0", {"m.py": b"HEAVY"}, sdist=False, distributions=[gone])
        fake.add_release("partclean", "1.0", {"m.py": b"fine"}, sdist=False, distributions=[gone])
        run_node(settings_for(fake, tmp_path), once=True)
        assert {s.status for s in fake.submissions} == {200}
        bodies = {s.body["name"]: s.body for s in fake.results}
        for name, body in bodies.items():
            accepted_by_the_live_server(body)
            state = fake.state(name, "1.0")
            assert (body["attempt"], body["assignment_id"]) == (state.attempt, state.assignment_id)
            assert body.get("commit", "c0ffee") == "c0ffee"
    # Both distributions match {heavy, light}: the max, not the sum; `light` only in n.py (filetype).
    assert (bodies["both"]["score"], bodies["both"]["rules_matched"]) == (7, ["heavy", "light"])
    assert bodies["both"]["inspector_url"].endswith("-py3-none-any.whl/m.py")  # the wheel: last of equals
    assert (bodies["zero"]["score"], bodies["zero"]["rules_matched"]) == (0, ["zero"])
    assert bodies["zero"]["inspector_url"].endswith("/zero-1.0-py3-none-any.whl/m.py")
    assert (bodies["none"]["score"], bodies["none"]["inspector_url"], bodies["none"]["rules_matched"]) == (
        0,
        None,
        [],
    )
    # Past the server's integer: sent as its largest, which still flags the release (was 2**31 + 5: a 500).
    assert (bodies["huge"]["score"], bodies["huge"]["rules_matched"]) == (2**31 - 1, ["heavy", "huge"])
    # A file that could not be fetched: findings still go out; without findings, a failure saying why.
    assert (bodies["part"]["score"], bodies["part"]["rules_matched"]) == (5, ["heavy"])
    assert "HTTP 404" in bodies["partclean"]["reason"]


def test_a_standalone_runs_lines_are_the_bodies_with_members_links_intact(tmp_path: Path) -> None:
    """A JSON line is ``{"status", **body}``; a member named ``run;x=1.py`` (no secret: the file URLs hide
    nothing) keeps its link, as the mainframe's body has it."""
    rules = tmp_path / "r.yar"
    rules.write_text(rule("heavy", "weight = 5", "HEAVY") + rule("zero", "weight = 0", "ZERO"))
    member = "semi/run;x=1.py"
    with FakeIndex() as index:
        [semi] = index.add("semi", wheel("semi", "1.0", {member: b"HEAVY"}))
        index.add("quiet", wheel("quiet", "1.0", {"quiet/m.py": b"fine"}))
        (tmp_path / "jobs.txt").write_text("semi==1.0\nquiet==1.0\n")
        done = subprocess.run(
            [sys.executable, "-m", "dragonfly_hybrid.cli", "node", "--jobs-file", str(tmp_path / "jobs.txt"),
             "--index-url", index.url, "-r", str(rules), "--metrics-port", "0"],
            capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120,
        )  # fmt: skip
        expected = dh.Scanner(dh.Rules.compile({"r.yar": rules.read_text()})).scan_release(
            "semi", "1.0", [(semi.filename, semi.content, index.file_url("semi", semi.filename))]
        )
    assert done.returncode == 0, done.stderr
    lines = {line["name"]: line for line in map(json.loads, done.stdout.splitlines())}
    for line in lines.values():
        status = line.pop("status")
        assert status == "success"
        accepted_by_the_live_server(line)
    assert lines["semi"]["inspector_url"] == expected.inspector_url
    assert lines["semi"]["inspector_url"].endswith("/semi/run;x=1.py")
    assert (lines["quiet"]["score"], lines["quiet"]["inspector_url"], lines["quiet"]["rules_matched"]) == (
        0,
        None,
        [],
    )
