"""Every scanning limit at its boundary, through the three front doors, on the same archives (pass 30).

For each limit: exactly at it, one byte (member, level) over it, its smallest and largest accepted values.
Each archive is scanned by the Python API (``Scanner.scan_bytes``, ``Scanner.scan_path`` and
``fetch_and_scan`` from the fake index), by ``scan`` in a subprocess (the local file and the release on
the fake index, the limit flags) and by a standalone ``node --jobs-file`` in a subprocess (the
``DRAGONFLY_MAX_*`` settings): the verdict, score, rules and unscanned issue kinds must agree, and every
expectation is checked against what pip would write (``tests/pip_oracle.py``): a file pip writes with the
marker in it is never behind a clean verdict. One scanning thread everywhere: with several, which zip
member crosses the total-size limit depends on which thread adds its bytes last.

The defects of the engine found on the way are pinned at the end of the file. Known and documented
(docs/security.md, "Limits"): ``scan_path`` (and so ``scan FILE`` and ``fetch_and_scan``) refuses a file
larger than the total-size limit, where ``scan_bytes`` (the node) scans the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import random
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid._core import ISSUE_KINDS, MAX_NESTING_DEPTH
from dragonfly_hybrid.bounds import MAX_BYTES, MAX_MEMBERS, MAX_RATIO

from tests.archive_gen import member, tar_of
from tests.fakes.pypi import LIGHT_MARKER, LIGHT_RULE, MARKER, MARKER_RULE, FakeFile, FakeIndex
from tests.pip_oracle import pip_view

RULES = {"marker.yar": MARKER_RULE, "light.yar": LIGHT_RULE}
WEIGHTS = {"test_marker": 5, "light_marker": 1}
# The limit settings by their Limits name: the scan flag and the node's variable.
FLAGS = {
    "max_member_size": ("--max-member-size", "DRAGONFLY_MAX_MEMBER_SIZE"),
    "max_total_size": ("--max-total-size", "DRAGONFLY_MAX_TOTAL_SIZE"),
    "max_members": ("--max-members", "DRAGONFLY_MAX_MEMBERS"),
    "max_ratio": ("--max-ratio", "DRAGONFLY_MAX_RATIO"),
    "max_depth": ("--max-depth", "DRAGONFLY_MAX_DEPTH"),
}


# ------------------------------------------------------------------------------------------- archives


def tgz(members: dict[str, bytes]) -> bytes:
    """An sdist-style tar.gz whose tar stream is exactly its blocks (no padding to tarfile's 10 KiB
    records): ``sum(512 + padded size) + 1024`` bytes inflated."""
    return gzip.compress(tar_of(*(member(name, data) for name, data in members.items())), mtime=0)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def filled(size: int, head: bytes = b"", tail: bytes = b"") -> bytes:
    """``size`` bytes: ``head``, filler, ``tail``."""
    assert len(head) + len(tail) <= size
    return head + b"x" * (size - len(head) - len(tail)) + tail


def deflated_size(data: bytes) -> int:
    return zipfile.ZipFile(io.BytesIO(zipped({"p/a.py": data}))).getinfo("p/a.py").compress_size


def ratio_member(head: bytes, ratio: int, over: int = 0) -> bytes:
    """``head``, 1000 random bytes, then zeros: a member of more than 1 MiB (ratios are judged past it)
    ``over`` bytes longer than ``ratio`` times its deflated size. Its ratio rises along the stream, so the
    whole member's ratio is the highest one seen while it is read."""
    start = head + random.Random(30).randbytes(1000)
    zeros = 4 << 20
    for _ in range(50):
        data = start + bytes(zeros)
        wanted = ratio * deflated_size(data) + over
        if len(data) == wanted:
            return data
        zeros += wanted - len(data) if abs(wanted - len(data)) > 1 else 1
    raise AssertionError("no member of that ratio found")


# ------------------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    verdict: str
    score: int
    rules: tuple[str, ...]
    kinds: frozenset[str]
    """Kinds of the unscanned issues (empty for a node's success: its body has no issues)."""


@dataclass(frozen=True)
class Case:
    key: str
    """Project name on the fake index."""
    zip_format: bool
    members: dict[str, bytes]
    rules: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset()

    @property
    def filename(self) -> str:
        stem = f"{self.key.replace('-', '_')}-1.0"
        return f"{stem}-py3-none-any.whl" if self.zip_format else f"{stem}.tar.gz"

    @property
    def data(self) -> bytes:
        return zipped(self.members) if self.zip_format else tgz(self.members)

    @property
    def expected(self) -> Outcome:
        verdict = "findings" if self.rules else "incomplete" if self.kinds else "clean"
        rules = tuple(sorted(self.rules))
        return Outcome(verdict, sum(WEIGHTS[r] for r in rules), rules, self.kinds)


def case(key: str, zip_format: bool, members: dict[str, bytes], *rules: str, over: str | None = None) -> Case:
    """A case scanned as ``rules`` matching, ``over`` the kind of the unscanned issue, if any."""
    return Case(key, zip_format, members, tuple(rules), frozenset([over] if over else []))


def from_distributions(results: Sequence[dh.DistributionResult]) -> Outcome:
    rules = sorted({r for d in results for r in d.rules_matched})
    complete = all(d.complete for d in results)
    verdict = "findings" if rules else "clean" if complete else "incomplete"
    kinds = frozenset(i.kind for d in results for i in d.issues if i.unscanned)
    return Outcome(verdict, max((d.score for d in results), default=0), tuple(rules), kinds)


def exit_code_of(outcomes: Sequence[Outcome]) -> int:
    verdicts = {o.verdict for o in outcomes}
    return 1 if "findings" in verdicts else 3 if "incomplete" in verdicts else 0


# ---------------------------------------------------------------------------------------------- doors


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment (its rules cache, its pip settings) without the DRAGONFLY_* settings of
    the outside, and without a metrics port for the node."""
    keep = {"DRAGONFLY_RULES_CACHE_DIR"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGONFLY_") or k in keep}
    return env | {"DRAGONFLY_METRICS_PORT": "0", "DRAGONFLY_THREADS": "1"} | extra


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=child_env(), cwd=cwd, timeout=300)


def via_cli(
    targets: list[str], limits: dict[str, int], rules: Path, cwd: Path, *extra: str
) -> dict[str, Outcome]:
    flags = [text for name, value in limits.items() for text in (FLAGS[name][0], str(value))]
    args = ["scan", *targets, "--rules", str(rules), "--threads", "1", "-f", "json", *flags, *extra]
    proc = run_cli(args, cwd)
    assert "Traceback" not in proc.stderr, proc.stderr
    document = json.loads(proc.stdout)
    outcomes = {}
    for target in document["targets"]:
        kinds = frozenset(i["kind"] for d in target["distributions"] for i in d["issues"] if i["unscanned"])
        rules_matched = tuple(sorted(target["rules_matched"]))
        outcomes[target["target"]] = Outcome(target["verdict"], target["score"], rules_matched, kinds)
    expected_code = exit_code_of(list(outcomes.values()))
    assert proc.returncode == document["summary"]["exit_code"] == expected_code, proc.stderr
    return outcomes


def via_node(
    keys: list[str], limits: dict[str, int], rules: Path, index: FakeIndex, cwd: Path
) -> dict[str, Outcome]:
    jobs = cwd / "releases.txt"
    jobs.write_text("".join(f"{key}==1.0\n" for key in keys))
    env = child_env(**{FLAGS[name][1]: str(value) for name, value in limits.items()})
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "node", "--jobs-file", str(jobs), "--index-url",
               index.url, "--rules", str(rules)]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    outcomes = {}
    for text in proc.stdout.splitlines():
        line = json.loads(text)
        if line["status"] == "failure":
            # The reason names each unscanned member with its issue kind ("path: kind: message").
            kinds = frozenset(k for k in ISSUE_KINDS if f": {k}: " in line["reason"])
            outcomes[line["name"]] = Outcome("incomplete", 0, (), kinds)
        else:
            rules_matched = tuple(sorted(line["rules_matched"]))
            outcomes[line["name"]] = Outcome(
                "findings" if rules_matched else "clean", line["score"], rules_matched, frozenset()
            )
    return outcomes


def node_view(outcome: Outcome) -> Outcome:
    """What the node can say of ``outcome``: a success carries no issues."""
    return (
        outcome
        if outcome.verdict == "incomplete"
        else Outcome(outcome.verdict, outcome.score, outcome.rules, frozenset())
    )


def check_doors(
    cases: Sequence[Case], limits: dict[str, int], index: FakeIndex, tmp_path: Path, *, by_path: bool = True
) -> None:
    """Scan ``cases`` under ``limits`` through every door and compare with their expectation. ``by_path``
    False leaves out the doors that scan a file (``scan_path``; ``scan`` of a local file; ``scan`` and
    ``fetch_and_scan`` of a release, downloaded to a temporary file): they read no file larger than the
    total-size limit (see :func:`test_a_file_over_the_total_size_limit_is_scanned_as_its_bytes_are`)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name, source in RULES.items():
        (rules_dir / name).write_text(source)
    expected = {c.key: c.expected for c in cases}
    for c in cases:
        index.add(c.key, FakeFile(c.filename, c.data))
        (tmp_path / c.filename).write_bytes(c.data)
        # The expectation itself, against what pip would write: never clean when pip writes the marker;
        # a complete scan reports it exactly when pip writes it.
        view = pip_view(c.data, c.filename, marker=MARKER)
        assert not view.failed and not view.capped, view.error
        assert not (view.marked and expected[c.key].verdict == "clean"), c.key
        if view.marked and not c.kinds:
            assert "test_marker" in c.rules, c.key

    scanner = dh.Scanner(dh.Rules.compile(RULES), dh.Limits(**limits), threads=1)
    api = {c.key: from_distributions([scanner.scan_bytes(c.data, c.filename)]) for c in cases}
    assert api == expected
    if by_path:
        fetched = {}
        for c in cases:
            target = dh.fetch_and_scan(f"{c.key}==1.0", scanner=scanner, index_url=index.url)
            fetched[c.key] = from_distributions(target.distributions)
            assert target.verdict == fetched[c.key].verdict, c.key
        assert fetched == expected
        api_path = {c.key: from_distributions([scanner.scan_path(tmp_path / c.filename)]) for c in cases}
        assert api_path == expected
        local = via_cli([c.filename for c in cases], limits, rules_dir, tmp_path)
        assert local == {c.filename: expected[c.key] for c in cases}
        released = via_cli(
            [f"pypi:{c.key}==1.0" for c in cases], limits, rules_dir, tmp_path, "--index-url", index.url
        )
        assert released == {f"pypi:{c.key}==1.0": expected[c.key] for c in cases}

    node = via_node([c.key for c in cases], limits, rules_dir, index, tmp_path)
    assert node == {key: node_view(outcome) for key, outcome in expected.items()}


# ------------------------------------------------------------------------------------------ the cases

L = 1000
"""The member-size limit of the member cases."""
T = 8192
"""The total-size limit of the total cases: a zip's member bytes, a tarball's tar stream (headers, padding
and the end blocks included: 2 x (512 + 3072) + 1024 = 8192)."""

RATIO = 800
"""The ratio (inflated:deflated) of the ratio cases' members, exactly."""
RATIO_AT = ratio_member(LIGHT_MARKER, RATIO)
RATIO_CLEAN = ratio_member(b"", RATIO)


def member_cases() -> list[Case]:
    at, over = filled(L, tail=MARKER), filled(L + 1, LIGHT_MARKER, MARKER)
    too_large = "member-too-large"
    return [
        # At the limit: read whole, the marker in its last bytes found.
        case("size-at-zip", True, {"p/a.py": at}, "test_marker"),
        case("size-at-tgz", False, {"p/a.py": at}, "test_marker"),
        case("size-at-clean", False, {"p/a.py": filled(L)}),
        # One byte over: the first L bytes are scanned (the light marker there is reported), the marker
        # ending at byte L + 1 is not, and the scan is not complete.
        case("size-over-zip", True, {"p/a.py": over}, "light_marker", over=too_large),
        case("size-over-tgz", False, {"p/a.py": over}, "light_marker", over=too_large),
        case("size-over-clean", True, {"p/a.py": filled(L + 1)}, over=too_large),
    ]


def members_cases() -> list[Case]:
    three = {"p/a.py": LIGHT_MARKER, "p/b.py": b"b", "p/c.py": MARKER}
    four = {"p/a.py": LIGHT_MARKER, "p/b.py": b"b", "p/c.py": b"c", "p/d.py": MARKER}
    clean = {"p/a.py": b"a", "p/b.py": b"b", "p/c.py": b"c", "p/d.py": b"d"}
    return [
        case("count-at-zip", True, three, "light_marker", "test_marker"),
        case("count-at-tgz", False, three, "light_marker", "test_marker"),
        # The fourth member (the marker) is past the limit; the first's light marker is still reported.
        case("count-over-zip", True, four, "light_marker", over="too-many-members"),
        case("count-over-tgz", False, four, "light_marker", over="too-many-members"),
        case("count-over-clean", False, clean, over="too-many-members"),
    ]


def total_cases() -> list[Case]:
    half = T // 2
    first = filled(half, LIGHT_MARKER)
    zip_at = {"p/a.py": first, "p/b.py": filled(half, tail=MARKER)}
    zip_over = {"p/a.py": first, "p/b.py": filled(half + 1, tail=MARKER)}
    tar_at = {"p/a.py": filled(3072, LIGHT_MARKER), "p/b.py": filled(3072, tail=MARKER)}
    tar_over = {"p/a.py": filled(3072, LIGHT_MARKER), "p/b.py": filled(4100, tail=MARKER)}
    clean_over = {"p/a.py": filled(half), "p/b.py": filled(half + 1)}
    exceeded = "total-size-exceeded"
    return [
        case("total-at-zip", True, zip_at, "light_marker", "test_marker"),
        case("total-at-tgz", False, tar_at, "light_marker", "test_marker"),
        # The second member crosses the limit by one byte (a zip), by its last bytes (a tarball: its
        # data ends at 8196): it is not scanned, the first member's light marker is reported.
        case("total-over-zip", True, zip_over, "light_marker", over=exceeded),
        case("total-over-tgz", False, tar_over, "light_marker", over=exceeded),
        case("total-over-clean", True, clean_over, over=exceeded),
    ]


def ratio_cases() -> list[Case]:
    return [
        case("ratio-zip", True, {"p/a.py": RATIO_AT}, "light_marker"),
        case("ratio-clean", True, {"p/a.py": RATIO_CLEAN}),
    ]


def nested(marked: bool) -> dict[str, bytes]:
    """A zip in a zip in a tar.gz: the marker (if ``marked``) only in the innermost, deflated."""
    deep = zipped({"deep.py": MARKER if marked else b"clean"})
    assert MARKER not in deep  # visible only to a scan that opens it
    inner = zipped({"i/mid.py": b"mid", "i/deep.zip": deep})
    return {"p/a.py": LIGHT_MARKER if marked else b"a", "p/inner.zip": inner}


def depth_cases(depth: int) -> list[Case]:
    """At depth 2 (or more) every archive is opened; below, the one too deep is raw bytes only."""
    if depth >= 2:
        return [
            case(f"depth{depth}-tgz", False, nested(True), "light_marker", "test_marker"),
            case(f"depth{depth}-clean", False, nested(False)),
        ]
    return [
        case(f"depth{depth}-tgz", False, nested(True), "light_marker", over="nesting-too-deep"),
        case(f"depth{depth}-clean", False, nested(False), over="nesting-too-deep"),
    ]


SETTINGS = {
    "member-size": ({"max_member_size": L}, member_cases),
    "members": ({"max_members": 3}, members_cases),
    "total-size": ({"max_total_size": T}, total_cases),
    "ratio-at": ({"max_ratio": RATIO}, ratio_cases),
    "depth-0": ({"max_depth": 0}, lambda: depth_cases(0)),
    "depth-1": ({"max_depth": 1}, lambda: depth_cases(1)),
    "depth-2": ({"max_depth": 2}, lambda: depth_cases(2)),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_each_limit_at_and_one_over_its_boundary_agrees_through_the_three_doors(
    setting: str, fake_index: FakeIndex, tmp_path: Path
) -> None:
    limits, cases = SETTINGS[setting]
    check_doors(cases(), limits, fake_index, tmp_path)


def test_one_over_the_ratio_stops_the_member_through_the_three_doors(
    fake_index: FakeIndex, tmp_path: Path
) -> None:
    """The members of ``ratio-at`` under a limit one below their ratio: over it, the rest is unscanned (the
    light marker at the start is still reported)."""
    cases = [
        case("ratio-zip", True, {"p/a.py": RATIO_AT}, "light_marker", over="compression-ratio"),
        case("ratio-clean", True, {"p/a.py": RATIO_CLEAN}, over="compression-ratio"),
    ]
    check_doors(cases, {"max_ratio": RATIO - 1}, fake_index, tmp_path)


def test_the_largest_values_of_every_limit_scan_everything(fake_index: FakeIndex, tmp_path: Path) -> None:
    limits = {
        "max_member_size": MAX_BYTES,
        "max_total_size": MAX_BYTES,
        "max_members": MAX_MEMBERS,
        "max_ratio": MAX_RATIO,
        "max_depth": MAX_NESTING_DEPTH,
    }
    cases = [
        case("max-nested", False, nested(True), "light_marker", "test_marker"),
        case("max-ratio", True, {"p/a.py": RATIO_AT}, "light_marker"),
        case("max-clean", True, {"p/a.py": filled(L), "p/b.py": RATIO_CLEAN}),
    ]
    check_doors(cases, limits, fake_index, tmp_path)


SMALLEST = {
    "member-size-1": (
        {"max_member_size": 1},
        [
            case("one-byte", True, {"p/a.py": b"a", "p/b.py": b"b"}),
            case("two-bytes", False, {"p/a.py": b"a", "p/b.py": b"bb"}, over="member-too-large"),
        ],
    ),
    "members-1": (
        {"max_members": 1},
        [
            case("one-member", True, {"p/a.py": MARKER}, "test_marker"),
            case(
                "two-members",
                False,
                {"p/a.py": LIGHT_MARKER, "p/b.py": MARKER},
                "light_marker",
                over="too-many-members",
            ),
        ],
    ),
    "total-size-1": (
        {"max_total_size": 1},
        [
            case("one-byte-total", True, {"p/a.py": b"a"}),
            case("two-bytes-total", True, {"p/a.py": b"a", "p/b.py": b"b"}, over="total-size-exceeded"),
        ],
    ),
    "ratio-1": (
        {"max_ratio": 1},
        # Under 1 MiB a ratio is never judged (tiny members compress arbitrarily well).
        [
            case("small-compressible", True, {"p/a.py": bytes(100_000) + MARKER}, "test_marker"),
            case("large-compressible", True, {"p/a.py": RATIO_CLEAN}, over="compression-ratio"),
        ],
    ),
}


@pytest.mark.parametrize("setting", list(SMALLEST))
def test_the_smallest_value_of_each_limit_agrees_through_the_three_doors(
    setting: str, fake_index: FakeIndex, tmp_path: Path
) -> None:
    limits, cases = SMALLEST[setting]
    # Every archive is larger than 1 byte: a door that scans a file does not read it at all.
    check_doors(cases, limits, fake_index, tmp_path, by_path=setting != "total-size-1")


# ------------------------------------------------------------------------------------- the download cap


def stored(members: dict[str, bytes]) -> bytes:
    """A zip of stored members: one more content byte, one more archive byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            archive.writestr(info, data)
    return buffer.getvalue()


def test_the_download_cap_at_and_one_byte_over_agrees_through_the_three_doors(
    fake_index: FakeIndex, tmp_path: Path
) -> None:
    """A file of exactly the cap is scanned, one byte more is not (the release is incomplete, naming the
    cap), whether the index lists its size or neither the index nor the server tells it; a release with a
    finding keeps it when its other file is over the cap."""
    at, over = stored({"p/a.py": filled(500, tail=MARKER)}), stored({"p/a.py": filled(501, tail=MARKER)})
    clean_at, clean_over = stored({"p/a.py": filled(500)}), stored({"p/a.py": filled(501)})
    cap = len(at)
    assert len(over) == len(clean_over) == cap + 1 and len(clean_at) == cap
    published = {
        "dl-at": [FakeFile("dl_at-1.0-py3-none-any.whl", at)],
        "dl-over": [FakeFile("dl_over-1.0-py3-none-any.whl", over)],
        "dl-unlisted-at": [FakeFile("dl_unlisted_at-1.0-py3-none-any.whl", clean_at, listed_size=-1)],
        "dl-unlisted-over": [FakeFile("dl_unlisted_over-1.0-py3-none-any.whl", clean_over, listed_size=-1)],
        "dl-mixed": [
            FakeFile("dl_mixed-1.0-py3-none-any.whl", at),
            FakeFile("dl_mixed-1.0.zip", clean_over, listed_size=-1),
        ],
    }
    for project, files in published.items():
        fake_index.add(project, *files)
        fake_index.faults.no_content_length.update(f.filename for f in files if f.listed_size == -1)
    too_large = f"exceeds the download size cap of {cap} bytes"
    # (verdict, score, the file named over the cap)
    expected = {
        "dl-at": ("findings", 5, None),
        "dl-over": ("incomplete", 0, "dl_over-1.0-py3-none-any.whl"),
        "dl-unlisted-at": ("clean", 0, None),
        "dl-unlisted-over": ("incomplete", 0, "dl_unlisted_over-1.0-py3-none-any.whl"),
        "dl-mixed": ("findings", 5, "dl_mixed-1.0.zip"),
    }
    rules = dh.Rules.compile(RULES)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name, source in RULES.items():
        (rules_dir / name).write_text(source)

    for project, (verdict, score, named) in expected.items():
        target = dh.fetch_and_scan(
            f"{project}==1.0", rules=rules, index_url=fake_index.url, max_download_size=cap
        )
        assert (target.verdict, target.score) == (verdict, score), project
        assert (target.error is not None and f"{named} {too_large}" in target.error) == (named is not None)

    args = ["scan", *(f"pypi:{p}==1.0" for p in expected), "--rules", str(rules_dir), "--index-url",
            fake_index.url, "--max-download-size", str(cap), "-f", "json"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    for target in json.loads(proc.stdout)["targets"]:
        verdict, score, named = expected[target["target"].removeprefix("pypi:").removesuffix("==1.0")]
        assert (target["verdict"], target["score"]) == (verdict, score), target["target"]
        assert (target["error"] is not None and f"{named} {too_large}" in target["error"]) == (
            named is not None
        )

    jobs = tmp_path / "releases.txt"
    jobs.write_text("".join(f"{p}==1.0\n" for p in expected))
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "node", "--jobs-file", str(jobs), "--index-url",
               fake_index.url, "--rules", str(rules_dir)]  # fmt: skip
    env = child_env(DRAGONFLY_MAX_SCAN_SIZE=str(cap))
    node = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert node.returncode == 0 and "Traceback" not in node.stderr, node.stderr
    for line in map(json.loads, node.stdout.splitlines()):
        verdict, score, named = expected[line["name"]]
        if verdict == "incomplete":
            assert line["status"] == "failure" and f"{named} {too_large}" in line["reason"]
        else:  # findings are submitted whatever else could not be scanned
            assert line["status"] == "success" and line["score"] == score, line


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (MAX_BYTES + 1, ValueError),
        (2**64, ValueError),
        (True, TypeError),
        (1.5, TypeError),
        (math.nan, TypeError),
        ("100", TypeError),
        (None, TypeError),
    ],
)
def test_fetch_and_scan_refuses_a_download_cap_the_cli_and_the_node_refuse(
    value: object, error: type[Exception], fake_index: FakeIndex
) -> None:
    """``--max-download-size`` and ``DRAGONFLY_MAX_SCAN_SIZE`` take 1 to 64 GB. ``fetch_and_scan`` took
    anything: 0 or True failed every download ("cap of True bytes"), NaN capped nothing, a str or None
    failed each download with a TypeError as its reason, and 64 GB + 1 was taken. Refused now, before any
    request."""
    fake_index.add("capped", ("capped-1.0-py3-none-any.whl", stored({"p/a.py": MARKER})))
    with pytest.raises(error, match="max_download_size"):
        dh.fetch_and_scan("capped==1.0", index_url=fake_index.url, max_download_size=value)  # type: ignore[arg-type]
    assert fake_index.requests == []


def test_fetch_and_scan_takes_the_smallest_and_largest_download_caps(fake_index: FakeIndex) -> None:
    fake_index.add("capped", ("capped-1.0-py3-none-any.whl", stored({"p/a.py": MARKER})))
    rules = dh.Rules.compile(RULES)
    smallest = dh.fetch_and_scan("capped==1.0", rules=rules, index_url=fake_index.url, max_download_size=1)
    assert smallest.verdict == "incomplete" and smallest.error is not None
    assert "exceeds the download size cap of 1 bytes" in smallest.error
    largest = dh.fetch_and_scan(
        "capped==1.0", rules=rules, index_url=fake_index.url, max_download_size=MAX_BYTES
    )
    assert (largest.verdict, largest.score, largest.error) == ("findings", 5, None)


# ------------------------------------------------------------ defects of the engine (Rust), fixed


def test_a_member_one_byte_over_the_ratio_is_stopped() -> None:
    """A member of exactly ``RATIO``:1 passes ``max_ratio=RATIO`` (``test_each_limit...[ratio-at]``); one
    inflated byte more is over ``RATIO``:1 and must be stopped, as a member one byte over the member-size
    limit is. (The engine compared the integer part of the ratio: up to ``compressed - 1`` bytes more
    passed.)"""
    bomb = zipped({"p/a.py": ratio_member(LIGHT_MARKER, RATIO, over=1)})
    result = dh.Scanner(dh.Rules.compile(RULES), dh.Limits(max_ratio=RATIO), threads=1).scan_bytes(
        bomb, "b.zip"
    )
    assert [i.kind for i in result.issues] == ["compression-ratio"]


def test_a_tar_gz_whose_first_blocks_pass_the_total_size_limit_names_that_limit() -> None:
    """The same tarball, plain and gzipped, under ``max_total_size=700``: the plain one reports the first
    member's marker (its data ends at byte 533) and ``total-size-exceeded``; the gzipped one said
    ``corrupt`` ("cannot decompress: stream limit reached"): the limit is named now. (Its marker is not
    found: the stream is read 1,024 bytes at a time and a read past the limit hands out nothing, so a
    total-size limit under 1 KiB sees no byte of a compressed stream.)"""
    tar = tar_of(member("p/a.py", MARKER), member("p/b.py", b"b" * 100))
    scanner = dh.Scanner(dh.Rules.compile(RULES), dh.Limits(max_total_size=700), threads=1)
    plain = scanner.scan_bytes(tar, "t-1.0.tar")
    assert plain.rules_matched == ["test_marker"]
    assert [i.kind for i in plain.issues] == ["total-size-exceeded"]
    compressed = scanner.scan_bytes(gzip.compress(tar), "t-1.0.tar.gz")
    assert [i.kind for i in compressed.issues] == ["total-size-exceeded"]
    assert not compressed.complete
