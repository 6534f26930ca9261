"""Scan reports: the data model of a scanned target and its table, JSON, NDJSON and SARIF renderings
(markdown: ``report_markdown.py``).

Verdicts and exit codes
-----------------------
A target's verdict is ``findings`` when at least one rule matched anywhere in it (even if part of it could
not be scanned: a malicious signal is never dropped), else ``incomplete`` when anything was left unscanned
or the target could not be fetched at all (``error`` says why), else ``clean``. The run's exit code follows
the same order: 1 if any target has findings (scoring at least ``--min-score``), else 3 if any is
incomplete, else 0 (2 is reserved for usage and configuration errors, which never reach a report).

JSON document (``--format json``)
---------------------------------
One object, keys always present (``null`` when a value does not apply)::

    {
      "tool": {"name": "dragonfly-hybrid", "version": str},
      "rules": {"hash": str, "count": int},
      "targets": [{
        "target": str,            # the argument as given on the command line
        "kind": "archive" | "file" | "directory" | "release",
        "name": str, "version": str | null,
        "verdict": "clean" | "findings" | "incomplete",
        "score": int,             # max distribution score (Dragonfly's package score)
        "rules_matched": [str],
        "inspector_url": str | null,
        "error": str | null,      # why the target could not be (completely) scanned
        "origin": {"path": str, "line": int} | null,  # the requirements-file line that asked for it
        "distributions": [{
          "name": str, "url": str | null, "format": str, "size": int, "sha256": str,
          "files_scanned": int, "bytes_scanned": int, "score": int, "rules_matched": [str],
          "top_file": str | null, "verdict": str, "complete": bool,
          "issues": [{"path": str, "kind": str, "message": str, "unscanned": bool}],
          "files": [{                # only files that matched at least one rule
            "path": str, "size": int, "sha256": str, "score": int,
            "matches": [{"rule": str, "namespace": str, "tags": [str], "weight": int,
                         "metadata": {str: int | float | bool | str},
                         "patterns": [{"identifier": str, "offset": int, "length": int,
                                       "line": int, "column": int, "data": str, "snippet": str}]}]
          }]
        }]
      }],
      "summary": {"targets": int, "distributions": int, "files_scanned": int, "bytes_scanned": int,
                  "findings": int, "incomplete": int,     # number of targets with that verdict
                  "verdict": "clean" | "findings" | "incomplete", "exit_code": 0 | 1 | 3}
    }

A pattern match gives its byte ``offset`` and ``length`` in the file, the 1-based ``line`` and ``column``
(in bytes) of its first byte, ``data`` (the first 64 matched bytes) and ``snippet`` (its line around it,
without the line ending, at most 120 bytes); ``data`` and ``snippet`` are the bytes decoded as UTF-8 with
every byte that is not valid UTF-8 written ``\\xNN`` (as the results store keeps them), so a cut multi-byte
character at the end shows as ``\\xNN`` escapes. At most 16 matches are listed per pattern. The
``distributions`` (the bulk of a report) are written by the engine, with no Python object per file or match.
The document is indented two spaces per level, except that each item of ``files`` and ``issues`` takes one
line (``{"path": ..., "matches": [...]}``, as ``json.dumps(item)`` writes it).

Rule metadata values keep their JSON type; a ``bytes`` value (a metadata string that is not valid UTF-8)
is rendered as an ASCII string in which every non-ASCII byte is written ``\\xNN``; a non-finite float is
rendered as its ``repr`` string (JSON has no NaN).

NDJSON (``--format ndjson``): one line per target, each the target object exactly as in ``targets`` above.

SARIF (``--format sarif``): SARIF 2.1.0, one run, made to be uploaded to GitHub code scanning (checked in
the tests against the official schema and GitHub's documented upload limits).

- ``tool.driver.rules``: every rule among the results. ``id``/``name`` = rule identifier;
  ``shortDescription`` = its ``description`` metadata; ``fullDescription`` and ``help`` (``text`` and
  ``markdown``) add the weight, namespace, tags and author; ``helpUri`` = its ``reference``,
  ``references``, ``url`` or ``link`` metadata when that is an http(s) URL; ``properties``: ``weight``,
  ``namespace``, ``tags`` (``security`` first, at most 10), ``security-severity`` = the weight capped at
  10.0 (GitHub: 9.0+ critical, 7.0+ high, 4.0+ medium), ``precision`` ``medium``.
- One result per (file, matching rule): ``level`` ``error`` for weight >= 5, ``warning`` below, ``note``
  when the target scores below ``--min-score`` (``properties.belowMinScore``). The location URI is
  ``<distribution name>/<member path>`` percent-encoded (``pkg-0.1.tar.gz/pkg-0.1/setup.py``); ``region``
  holds ``byteOffset``/``byteLength`` of the rule's earliest pattern match, ``startLine`` (GitHub requires
  it; in a binary file it counts newline bytes) and, in a text file, ``startColumn``/``endColumn``
  (UTF-16 code units, ``run.columnKind``; a column only when it is known exactly, the end only when the
  match is on one line) and ``snippet.text`` (the matched line, at most 120 bytes around the match).
  ``properties``: target, distribution, file score, sha256.
- ``partialFingerprints["dragonflyFinding/v1"]``: SHA-256 of rule identifier, project name (normalised,
  from the distribution file name), member path with the version taken out of the directories named after
  the release (``demo-0.1/``, ``demo-0.1.dist-info/``), and the SHA-256 of the matched bytes (the first
  64). It does not change between runs, nor when a new version of the package keeps the same content
  (wherever it moves in the file), so GitHub keeps one alert per finding across releases.
- A target asked for by a requirements or lock file line (``origin``): each of its results has a
  ``relatedLocations`` entry at that file and line; and, when it has findings, one more result of rule
  ``flagged-dependency`` is located on the line itself (the one place GitHub can show in the repository),
  naming the release, its score and rules, with its (at most 10) heaviest findings as related locations;
  fingerprint: rule, requirements file, project. The file's URI is relative to the working directory (run
  the scan from the repository root), or an absolute ``file:`` URI when it lies outside.
- At most 5,000 results (GitHub keeps no more): the heaviest rules first; how many were left out is a
  warning notification. Scan issues and target errors are ``invocations[0].toolExecutionNotifications``
  (``error`` when content was left unscanned or the target failed, ``warning`` otherwise);
  ``executionSuccessful`` is false when any target is incomplete; ``exitCode`` is the run's.

Table and markdown (``--format table``, ``--format markdown``): per finding the rule, its weight and
description, ``<distribution>/<member>:<line>`` (``(byte N)`` in a binary file) and the matched line from
shortly before the match (at most 60 characters); at most 10 findings (the heaviest) and 10 issues per
target, then ``… and K more; use -f json for all``. Sizes are decimal (``1.2 MB``). Everything that comes
from a package or a rule is made printable (control and format characters written as escapes). A terminal
gets the table from rich (colour, its width); a file or a pipe gets :func:`plain_table`: the same columns
as plain aligned text, ``FILE_TABLE_WIDTH`` columns wide, without colour codes and without importing rich.

``--min-score N``: a target with findings scoring below N does not set exit code 1 (it is reported,
marked below the threshold, and counts as clean or incomplete for the exit code); ``summary.exit_code``
of the JSON document is the run's exit code with the threshold applied.

HTML (``--format html``): one self-contained page, described in :mod:`dragonfly_hybrid.html_report`.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote

from dragonfly_hybrid import __version__, _core
from dragonfly_hybrid._core import (
    DistributionResult,
    FileResult,
    PatternMatch,
    ReleaseResult,
    RuleMatch,
    Rules,
    SarifFindings,
    ScanIssue,
    distributions_json,
)

if TYPE_CHECKING:
    # The table's rich is imported where the table is built: the other formats never need it.
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from dragonfly_hybrid._core import Verdict  # the engine's verdicts (a type only)

TOOL_NAME = "dragonfly-hybrid"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SARIF_ERROR_WEIGHT = 5
"""Matches of rules with at least this weight are SARIF ``error`` results; lighter ones are ``warning``
(the engine's SARIF writer, ``rust/core/src/sarif.rs``, has it too; ``tests/test_sarif_results.py`` holds
them together, as the fingerprint key)."""

SARIF_MAX_RESULTS = 5000
"""Most results in the SARIF run (the heaviest rules first): GitHub code scanning keeps only 5,000."""
SARIF_MAX_TAGS = 10
"""Most tags on a SARIF rule: GitHub shows at most 10 (and rejects more than 20)."""
SARIF_RELATED_FINDINGS = 10
"""Most member locations a flagged-dependency result points at."""
SARIF_FINGERPRINT_KEY = "dragonflyFinding/v1"
FLAGGED_DEPENDENCY_RULE = "flagged-dependency"
"""The rule of the result placed on a requirements-file line (never a YARA identifier: it has a dash)."""
_REFERENCE_KEYS = ("reference", "references", "url", "link")

FILE_TABLE_WIDTH = 160
"""Width of the table report when it is written to a file or a pipe rather than to a terminal."""
TABLE_WIDE_COLUMNS = 120
"""From this width on, the findings table has separate file, description and snippet columns."""
TABLE_MAX_FINDINGS = 10
"""Findings shown per target in the table and the markdown report (the heaviest rules first)."""
TABLE_MAX_ISSUES = 10
"""Issues shown per target in the table."""
SNIPPET_CHARS = 60
SNIPPET_CONTEXT_BYTES = 16
"""How much of the matched line before the match a table or markdown snippet shows."""
DESCRIPTION_CHARS = 200

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3

TargetKind = Literal["archive", "file", "directory", "release"]
ReportFormat = Literal["table", "json", "ndjson", "sarif", "markdown", "html"]
Digests = bool | Literal["files"]
REPORT_DIGESTS: dict[ReportFormat, Digests] = {
    "table": False,
    "json": True,
    "ndjson": True,
    "sarif": "files",
    "markdown": False,
    "html": False,
}
"""The SHA-256 digests each format shows, which are all that a scan reported in it takes
(``Scanner(digests=...)``): JSON shows the distributions' and the matched files', SARIF the matched files'
only, the others none. On the big wheel benchmark the wheel's own digest costs the engine more time than its
matched files' (one thread hashes its 103 MB while the other scans)."""

JSON = dict[str, Any]


def _verdict(rules_matched: Sequence[str], complete: bool) -> Verdict:
    if rules_matched:
        return "findings"
    return "clean" if complete else "incomplete"


def _union(lists: Iterable[Sequence[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        seen.update(dict.fromkeys(items))
    return list(seen)


@dataclass(frozen=True)
class Origin:
    """Where a target was asked for: a line of a requirements or lock file (``-R``)."""

    path: str
    line: int


DOWNLOAD_FAILED_ISSUE = "download-failed"
"""The issue kind of a release's file whose download failed, or whose bytes did not have the digest
listed for it (:class:`NotDownloaded`)."""


@dataclass(frozen=True)
class NotDownloaded:
    """A file of a release whose bytes were not scanned because they were not fetched: its download failed
    (``kind`` :data:`DOWNLOAD_FAILED_ISSUE`), or ``watch --max-size`` kept it out.

    The store keeps it as a distribution that scanned nothing (``verdict`` incomplete, ``complete`` false,
    ``size`` the listed one, 0 when unknown, no sha256) with one unscanned issue of ``kind`` on the whole
    file: reports show what was not scanned and why, until a scan reads that very file."""

    filename: str
    url: str | None
    size: int
    kind: str
    message: str
    sha256: str | None = None
    """The sha256 the index (or the lock file) lists for the file; None when it lists none."""


@dataclass(frozen=True)
class TargetResult:
    """One scanned target: a path, a directory or a PyPI release, with every distribution it held."""

    target: str
    kind: TargetKind
    name: str
    version: str | None
    distributions: list[DistributionResult] = field(default_factory=list)
    score: int = 0
    rules_matched: list[str] = field(default_factory=list)
    inspector_url: str | None = None
    verdict: Verdict = "incomplete"
    error: str | None = None
    origin: Origin | None = None
    not_downloaded: tuple[NotDownloaded, ...] = ()
    """The release's files that were not scanned because they were not fetched, each named (``error``
    says why too)."""
    error_per_file: bool = False
    """Whether every part of ``error`` is about one file: one of ``not_downloaded``, or a distribution left
    incomplete. False, the default, also when not known: the store then settles the error by its rule for
    an error about the whole release (:class:`~dragonfly_hybrid.store.db.StoredRelease`)."""

    @classmethod
    def from_release(cls, target: str, result: ReleaseResult, error: str | None = None) -> TargetResult:
        """A release from ``Scanner.scan_release``; ``error`` tells which files could not be fetched."""
        reasons = [r for r in (error, result.failure_reason) if r]
        return cls(
            target=target,
            kind="release",
            name=result.name,
            version=result.version,
            distributions=list(result.distributions),
            score=result.score,
            rules_matched=list(result.rules_matched),
            inspector_url=result.inspector_url,
            verdict=_verdict(result.rules_matched, result.verdict != "incomplete" and error is None),
            error="; ".join(reasons) or None,
        )

    @classmethod
    def from_distributions(
        cls,
        target: str,
        kind: TargetKind,
        name: str,
        distributions: Sequence[DistributionResult],
        error: str | None = None,
    ) -> TargetResult:
        """A path or a directory: score is the maximum distribution score, as for a release."""
        rules = _union(d.rules_matched for d in distributions)
        complete = error is None and all(d.complete for d in distributions)
        return cls(
            target=target,
            kind=kind,
            name=name,
            version=None,
            distributions=list(distributions),
            score=max((d.score for d in distributions), default=0),
            rules_matched=rules,
            verdict=_verdict(rules, complete),
            error=error,
        )

    @classmethod
    def failed(
        cls, target: str, kind: TargetKind, name: str, version: str | None, error: str
    ) -> TargetResult:
        """A target that could not be scanned at all."""
        return cls(target=target, kind=kind, name=name, version=version, error=error)

    @property
    def top_distribution(self) -> DistributionResult | None:
        """The distribution ``inspector_url`` links to, picked as the engine (and the reference node) does:
        the highest score; among equals one that matched something, then the last. ``None`` when that one
        matched nothing: a clean distribution outscores one whose matches weigh less than 0."""
        top = max(reversed(self.distributions), key=lambda d: (d.score, bool(d.rules_matched)), default=None)
        return top if top is not None and top.rules_matched else None

    @property
    def top_file(self) -> str | None:
        """``<distribution>/<member>`` of the top-scoring file, when anything matched."""
        top = self.top_distribution
        if top is None or top.top_file is None:
            return None
        return member_label(top, top.top_file)

    @property
    def issues(self) -> list[tuple[DistributionResult, ScanIssue]]:
        return [(d, issue) for d in self.distributions for issue in d.issues]

    @property
    def complete(self) -> bool:
        """Everything was fetched and scanned (whether or not anything matched)."""
        if self.verdict != "findings":  # the verdict already says it
            return self.verdict == "clean"
        return self.error is None and all(d.complete for d in self.distributions)

    @cached_property
    def findings(self) -> tuple[Finding, ...]:
        """Every (distribution, file, rule) that matched, in scan order; built once, as each access to the
        engine's result lists converts them anew. The reports ask for ``match_count`` and
        :func:`top_findings` instead: a target may have 50,000."""
        return tuple(
            Finding(dist, file, match)
            for dist in self.distributions
            for file in dist.files
            for match in file.matches
        )

    @property
    def match_count(self) -> int:
        """``len(findings)``, without building them."""
        return sum(d.match_count for d in self.distributions)

    def fails(self, min_score: int = 0) -> bool:
        """Findings that set exit code 1: something matched and the score reaches ``min_score``."""
        return self.verdict == "findings" and self.score >= min_score


def member_label(dist: DistributionResult, path: str) -> str:
    """``<distribution name>/<member path>``; a plain file is just its distribution name."""
    if not path or (dist.format == "file" and path == dist.name):
        return dist.name
    return f"{dist.name}/{path}"


def exit_code(targets: Sequence[TargetResult], min_score: int = 0) -> int:
    """1 if any target has findings scoring at least ``min_score`` (findings win), else 3 if any is
    incomplete, else 0."""
    if any(t.fails(min_score) for t in targets):
        return EXIT_FINDINGS
    return EXIT_INCOMPLETE if any(not t.complete for t in targets) else EXIT_CLEAN


def overall_verdict(targets: Sequence[TargetResult]) -> Verdict:
    return {EXIT_FINDINGS: "findings", EXIT_INCOMPLETE: "incomplete"}.get(exit_code(targets), "clean")  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- JSON


def meta_value(value: object) -> int | float | bool | str:
    """A rule metadata value as JSON can carry it (see the module docstring)."""
    if isinstance(value, bytes):
        return value.decode("ascii", "backslashreplace")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int | float | str):
        return value
    return str(value)


def _target_fields(target: TargetResult) -> JSON:
    return {
        "target": target.target,
        "kind": target.kind,
        "name": target.name,
        "version": target.version,
        "verdict": target.verdict,
        "score": target.score,
        "rules_matched": list(target.rules_matched),
        "inspector_url": target.inspector_url,
        "error": target.error,
        "origin": None if target.origin is None else {"path": target.origin.path, "line": target.origin.line},
    }


def _indented(value: object, level: int) -> str:
    """``value`` as ``json.dump(indent=2)`` writes it ``level`` levels deep in a document."""
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * level)


def _target_parts(target: TargetResult, level: int | None) -> tuple[str, str]:
    """The JSON text of one target around its distributions (the bulk: files, matches), which
    :func:`_write_distributions` writes."""
    fields = _target_fields(target)
    if level is None:
        line = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        return f'{line[:-1]},"distributions":', "}"
    newline = "\n" + "  " * level
    head = _indented(fields, level)[: -len(newline) - 1]  # without its closing newline and brace
    return f'{head},{newline}  "distributions": ', f"{newline}}}"


def _write_target(target: TargetResult, level: int | None, out: IO[str]) -> None:
    head, tail = _target_parts(target, level)
    out.write(head)
    _write_distributions(target.distributions, level if level is None else level + 1, out)
    out.write(tail)


def _write_distributions(
    distributions: Sequence[DistributionResult], level: int | None, out: IO[str]
) -> None:
    """The distributions' JSON, written by the engine straight to ``out``'s file when it has one that takes
    UTF-8 (tens of MB are then never a Python string), else through ``out``. The bytes bypass ``out``'s
    newline translation: the streams ``scan`` writes to (its ``-o`` file, stdout, on POSIX) have none."""
    fd = _utf8_file_descriptor(out)
    if fd is None:
        out.write(distributions_json(distributions, level))
        return
    out.flush()
    _core.write_distributions_json(distributions, fd, level)


def _utf8_file_descriptor(out: IO[str]) -> int | None:
    if not hasattr(_core, "write_distributions_json"):  # not on POSIX
        return None
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if encoding != "utf8":
        return None
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None


def target_json_text(target: TargetResult, level: int | None = None) -> str:
    """The JSON of one target: one line when ``level`` is None (NDJSON), else laid out as in the document
    (``write_json_document``), ``level`` levels deep. Its distributions (the bulk: files, matches) are
    written by the engine (``distributions_json``), with no Python object per file or match."""
    out = io.StringIO()
    _write_target(target, level, out)
    return out.getvalue()


def target_json(target: TargetResult) -> JSON:
    """The object of one target, as in the document's ``targets`` and as one NDJSON line."""
    parsed: JSON = json.loads(target_json_text(target))
    return parsed


def summary_json(targets: Sequence[TargetResult]) -> JSON:
    dists = [d for t in targets for d in t.distributions]
    return {
        "targets": len(targets),
        "distributions": len(dists),
        "files_scanned": sum(d.files_scanned for d in dists),
        "bytes_scanned": sum(d.bytes_scanned for d in dists),
        "findings": sum(t.verdict == "findings" for t in targets),
        "incomplete": sum(t.verdict == "incomplete" for t in targets),
        "verdict": overall_verdict(targets),
        "exit_code": exit_code(targets),
    }


def write_json_document(
    targets: Sequence[TargetResult], rules: Rules, out: IO[str], min_score: int = 0
) -> None:
    """Write the JSON document of ``targets`` to ``out``, target by target, laid out as
    ``json.dump(indent=2)`` lays it out, except that each matched file and each issue of a distribution takes
    one line (as ``json.dumps(item)`` writes it): the report of 25,000 matched files is then half the size,
    and a line per file."""
    summary = summary_json(targets)
    summary["exit_code"] = exit_code(targets, min_score)
    out.write('{\n  "tool": ' + _indented({"name": TOOL_NAME, "version": __version__}, 1))
    out.write(',\n  "rules": ' + _indented({"hash": rules.hash, "count": rules.count}, 1))
    out.write(',\n  "targets": [')
    for index, target in enumerate(targets):
        out.write("," if index else "")
        out.write("\n    ")
        _write_target(target, 2, out)
    out.write("\n  ]" if targets else "]")
    out.write(',\n  "summary": ' + _indented(summary, 1) + "\n}\n")


def json_document(targets: Sequence[TargetResult], rules: Rules) -> JSON:
    """The JSON document of ``targets`` as Python objects (what ``write_json_document`` writes)."""
    out = io.StringIO()
    write_json_document(targets, rules, out)
    document: JSON = json.loads(out.getvalue())
    return document


def ndjson_line(target: TargetResult) -> str:
    return target_json_text(target)


def write_ndjson_line(target: TargetResult, out: IO[str]) -> None:
    """Write ``ndjson_line(target)`` and a newline to ``out``; its distributions straight to ``out``'s file
    when it has one (``_write_distributions``)."""
    _write_target(target, None, out)
    out.write("\n")


# --------------------------------------------------------------------------------- findings as shown


def human_size(size: int) -> str:
    """A byte count in decimal units, as the size options read them: ``512 B``, ``1.2 kB``, ``3.4 MB``."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in _SIZE_UNITS:
        value /= 1000
        if round(value, 1) < 1000 or unit == _SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable: the last unit always returns")


_SIZE_UNITS = ("kB", "MB", "GB", "TB", "PB")
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped_char(char: str) -> str:
    if char in _CONTROL_ESCAPES:
        return _CONTROL_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe for a terminal or a markdown cell: control, format (bidi overrides, zero-width) and
    line-separator characters written as escapes; clipped to ``limit`` characters with ``…``."""
    clipped = limit is not None and len(text) > limit
    kept = text[:limit] if clipped else text
    # str.isprintable() is False exactly for the C* and Z* characters other than the space.
    shown = (
        kept
        if kept.isprintable()
        else "".join(_escaped_char(c) if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in kept)
    )
    if limit is not None and (clipped or len(shown) > limit):
        shown = shown[: limit - 1] + "…"
    return shown


def rule_description(match: RuleMatch) -> str | None:
    """The rule's ``description`` metadata, as text."""
    description = match.metadata.get("description")
    return None if description is None else str(meta_value(description))


def snippet_parts(pattern: PatternMatch) -> list[str]:
    """The pattern's line split as ``[before, match, after]`` (undecodable bytes written ``\\xNN``)."""
    return list(pattern.snippet_parts())


def first_pattern(match: RuleMatch) -> PatternMatch | None:
    """The match's earliest pattern match: where a report points."""
    return min(match.patterns, key=lambda p: p.offset, default=None)


class Finding(NamedTuple):
    """One rule that matched one file of one distribution of a target (a tuple: a report may make
    50,000 of them)."""

    dist: DistributionResult
    file: FileResult
    match: RuleMatch

    @property
    def location(self) -> str:
        """``<distribution>/<member>:<line>`` in a text file, ``<distribution>/<member> (byte <offset>)``
        in a binary one, the member alone for a rule that matched without a pattern."""
        return _location(self, first_pattern(self.match))

    def snippet(self, limit: int = SNIPPET_CHARS) -> str | None:
        """Printable, at most ``limit`` characters: in a text file the matched line from a little before
        the match (``…`` where it is cut), in a binary file the first matched bytes."""
        pattern = first_pattern(self.match)
        if pattern is None:
            return None
        if not self.file.is_text:
            return printable(pattern.data.decode("utf-8", "backslashreplace"), limit)
        start = max(0, pattern.snippet_offset - SNIPPET_CONTEXT_BYTES)
        shown = pattern.snippet[start:].decode("utf-8", "replace").strip()
        cut = start > 0 or pattern.column - 1 > pattern.snippet_offset
        return printable(f"…{shown}" if cut else shown, limit)


def _location(finding: Finding, pattern: PatternMatch | None) -> str:
    """:attr:`Finding.location`, given the finding's :func:`first_pattern`."""
    label = member_label(finding.dist, finding.file.path)
    if pattern is None:
        return label
    return f"{label}:{pattern.line}" if finding.file.is_text else f"{label} (byte {pattern.offset})"


def _rank(finding: Finding) -> tuple[int, str, str, str]:
    return (-finding.match.weight, finding.dist.name, finding.file.path, finding.match.identifier)


def top_findings(target: TargetResult, limit: int) -> list[Finding]:
    """At most ``limit`` findings, heaviest rule first (then distribution, path, rule, scan order).
    Only each distribution's ``limit`` heaviest are built: a target may have 50,000."""
    if len(target.distributions) == 1:  # the engine's order is this one within a distribution
        [dist] = target.distributions
        return [Finding(dist, file, match) for file, match in dist.top_findings(limit)]
    candidates = (
        Finding(dist, file, match)
        for dist in target.distributions
        for file, match in dist.top_findings(limit)
    )
    return heapq.nsmallest(limit, candidates, key=_rank)


def heaviest_findings(targets: Sequence[TargetResult], limit: int) -> list[tuple[TargetResult, Finding]]:
    """At most ``limit`` findings of all ``targets`` with their target: heaviest rule first, then target
    order, then as :func:`top_findings` orders them."""
    if len(targets) == 1:
        [target] = targets
        return [(target, f) for f in top_findings(target, limit)]
    ranked = heapq.nsmallest(
        limit,
        ((i, t, f) for i, t in enumerate(targets) for f in top_findings(t, limit)),
        key=lambda item: (_rank(item[2])[0], item[0], *_rank(item[2])[1:]),
    )
    return [(t, f) for _, t, f in ranked]


# ------------------------------------------------------------------------------------ markdown text

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~&])")


def markdown_text(text: str, limit: int | None = None) -> str:
    """Plain text in markdown (a table cell too): printable, every markdown-active character
    backslash-escaped, so no emphasis, link, HTML or cell boundary can come from the text."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", printable(text, limit))


def markdown_code(text: str, limit: int | None = None, *, cell: bool = True) -> str:
    """Text as one inline code span: printable, fenced with more backticks than any run inside it; in a
    table ``cell``, ``|`` is escaped too (GitHub splits cells before it reads code spans)."""
    shown = printable(text, limit)
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    padding = " " if shown.startswith("`") or shown.endswith("`") or not shown.strip() else ""
    span = f"{fence}{padding}{shown}{padding}{fence}"
    return span.replace("|", "\\|") if cell else span


# --------------------------------------------------------------------------------------------- SARIF


def sarif_level(weight: int) -> Literal["error", "warning"]:
    return "error" if weight >= SARIF_ERROR_WEIGHT else "warning"


def security_severity(weight: int) -> str:
    """GitHub's ``security-severity`` (0.0-10.0): the rule weight, capped at 10."""
    return f"{max(0.0, min(10.0, float(weight))):.1f}"


def artifact_uri(dist: DistributionResult, path: str) -> str:
    """A relative URI reference for a member: ``<distribution>/<member>``, percent-encoded, the dots of
    a ``.`` or ``..`` segment too: a member named ``../setup.py`` must not resolve to another file."""
    segments = quote(member_label(dist, path), safe="/!", errors="backslashreplace").split("/")
    return "/".join("%2E" * len(s) if s in (".", "..") else s for s in segments)


def origin_uri(path: str) -> str:
    """The URI of a requirements file: relative to the working directory (the repository root in CI),
    or an absolute ``file:`` URI when it lies outside."""
    origin = Path(path)
    if origin.is_absolute():
        try:
            origin = origin.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            return origin.as_uri()
    return quote(origin.as_posix(), safe="/!", errors="backslashreplace")


_DIST_SUFFIXES = (
    ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar.lzma", ".tlz", ".tar.lz", ".tar.zst",
    ".tzst", ".tar", ".zip", ".whl", ".egg",
)  # fmt: skip


def normalize_project(name: str) -> str:
    """PEP 503 normalisation: ``Demo_Pkg`` and ``demo.pkg`` are ``demo-pkg``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1024)  # called once per finding, with few distinct names
def project_and_version(dist_name: str) -> tuple[str, str | None]:
    """The normalised project and the version that a distribution file name carries
    (``Demo-0.1.tar.gz``, ``demo-0.1-py3-none-any.whl``); a name that carries none is its own project."""
    lower = dist_name.lower()
    suffix = next((s for s in _DIST_SUFFIXES if lower.endswith(s)), None)
    if suffix is None:
        return dist_name, None
    stem = dist_name[: -len(suffix)]
    if suffix in (".whl", ".egg"):
        name, _, rest = stem.partition("-")
        version = rest.partition("-")[0]
    else:
        name, _, version = stem.rpartition("-")
    if not name or not version[:1].isdigit():
        return dist_name, None
    return normalize_project(name), version


def versionless_path(path: str, project: str, version: str | None) -> str:
    """``path`` with the release's version taken out of the directories named after it (an sdist's
    ``demo-0.1/``, a wheel's ``demo-0.1.dist-info/`` and ``demo-0.1.data/``)."""
    if version is None:
        return path
    named = _versioned_directory(version)
    parts = []
    for part in path.split("/"):
        found = named.match(part)
        parts.append(
            f"{project}{found.group(2)}" if found and normalize_project(found.group(1)) == project else part
        )
    return "/".join(parts)


@lru_cache(maxsize=1024)
def _versioned_directory(version: str) -> re.Pattern[str]:
    return re.compile(rf"^(.+)-{re.escape(version)}((?:\.dist-info|\.data|\.egg-info)?)$", re.IGNORECASE)


def finding_fingerprint(finding: Finding) -> str:
    """Stable across runs and across versions of the package (see the module docstring)."""
    return _fingerprint(finding, first_pattern(finding.match))


def _fingerprint(finding: Finding, pattern: PatternMatch | None) -> str:
    project, version = project_and_version(finding.dist.name)
    matched = hashlib.sha256(pattern.data if pattern is not None else b"").hexdigest()
    parts = (
        finding.match.identifier,
        project,
        versionless_path(finding.file.path, project, version),
        matched,
    )
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _help_uri(match: RuleMatch) -> str | None:
    for key in _REFERENCE_KEYS:
        value = match.metadata.get(key)
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            return value
    return None


def _sarif_rule(match: RuleMatch) -> JSON:
    description = rule_description(match) or f"YARA rule {match.identifier}"
    author = match.metadata.get("author")
    help_uri = _help_uri(match)
    details = [f"weight {match.weight}", f"namespace {match.namespace}"]
    if match.tags:
        details.append(f"tags {', '.join(match.tags)}")
    if author is not None:
        details.append(f"by {meta_value(author)}")
    full = f"{description} (YARA rule {match.identifier}: {'; '.join(details)})"
    markdown_lines = [
        f"**{markdown_text(description)}**",
        "",
        f"YARA rule {markdown_code(match.identifier)}: {markdown_text('; '.join(details))}.",
        "A match means the file holds content this rule looks for in malicious packages; read the matched "
        "region before trusting the package.",
    ]
    if help_uri is not None:
        markdown_lines += ["", f"Reference: <{help_uri}>"]
    rule: JSON = {
        "id": match.identifier,
        "name": match.identifier,
        "shortDescription": {"text": description},
        "fullDescription": {"text": full},
        "help": {
            "text": full + (f" Reference: {help_uri}" if help_uri else ""),
            "markdown": "\n".join(markdown_lines),
        },
        "defaultConfiguration": {"level": sarif_level(match.weight)},
        "properties": {
            "weight": match.weight,
            "tags": ["security", *match.tags][:SARIF_MAX_TAGS],
            "namespace": match.namespace,
            "security-severity": security_severity(match.weight),
            "precision": "medium",
        },
    }
    if help_uri is not None:
        rule["helpUri"] = help_uri
    return rule


def _dependency_rule(weight: int) -> JSON:
    text = (
        "A dependency pinned in a requirements or lock file matched malware rules: the release it names "
        "holds files that the rules look for in malicious packages."
    )
    return {
        "id": FLAGGED_DEPENDENCY_RULE,
        "name": "FlaggedDependency",
        "shortDescription": {"text": "A pinned dependency matched malware rules"},
        "fullDescription": {"text": text},
        "help": {
            "text": text + " The related locations are the matching files inside the release.",
            "markdown": f"{text}\n\nThe related locations are the matching files inside the release; "
            "do not install it before you have read them.",
        },
        "defaultConfiguration": {"level": sarif_level(weight)},
        "properties": {
            "tags": ["security", "supply-chain"],
            "security-severity": security_severity(weight),
            "precision": "medium",
        },
    }


def _origin_location(origin: Origin) -> JSON:
    return {
        "artifactLocation": {"uri": origin_uri(origin.path)},
        "region": {"startLine": origin.line},
    }


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _text_region(pattern: PatternMatch) -> JSON:
    """Line, columns (UTF-16 code units, the run's ``columnKind``) and the line's text of a match in a
    text file. Columns only when the snippet starts at the start of the line (a long line is clipped
    before the match: the characters before the snippet are unknown); the end column only when the
    whole match is known to lie on that line."""
    region: JSON = {"startLine": pattern.line}
    if pattern.column - 1 == pattern.snippet_offset:
        before = pattern.snippet[: pattern.snippet_offset].decode("utf-8", "replace")
        region["startColumn"] = _utf16_units(before) + 1
        if pattern.length <= len(pattern.data) and b"\n" not in pattern.data:
            matched = pattern.data.decode("utf-8", "replace")
            region["endColumn"] = region["startColumn"] + _utf16_units(matched)
    region["snippet"] = {"text": pattern.snippet.decode("utf-8", "replace")}
    return region


def _member_location(finding: Finding, pattern: PatternMatch | None) -> JSON:
    """Where ``finding`` is (``pattern``: its :func:`first_pattern`)."""
    location: JSON = {"artifactLocation": {"uri": artifact_uri(finding.dist, finding.file.path)}}
    if pattern is not None:
        # GitHub requires a start line; in a binary file it counts newline bytes, as the engine does.
        region = _text_region(pattern) if finding.file.is_text else {"startLine": pattern.line}
        location["region"] = {**region, "byteOffset": pattern.offset, "byteLength": pattern.length}
    return location


def _level(weight: int, target: TargetResult, min_score: int) -> str:
    return sarif_level(weight) if target.score >= min_score else "note"


def _sarif_result(
    target: TargetResult, finding: Finding, index: int, min_score: int, description: str | None
) -> JSON:
    """``description``: the rule's (:func:`rule_description`, worked out once per rule)."""
    match = finding.match
    pattern = first_pattern(match)  # once: the message, the location and the fingerprint all use it
    result: JSON = {
        "ruleId": match.identifier,
        "ruleIndex": index,
        "level": _level(match.weight, target, min_score),
        "message": {
            "text": f"Rule {match.identifier} (weight {match.weight}) matched "
            f"{printable(_location(finding, pattern))}" + (f": {description}" if description else "")
        },
        "locations": [{"physicalLocation": _member_location(finding, pattern)}],
        "partialFingerprints": {SARIF_FINGERPRINT_KEY: _fingerprint(finding, pattern)},
        "properties": {
            "target": target.target,
            "distribution": finding.dist.name,
            "score": finding.file.score,
            "sha256": finding.file.sha256,
        },
    }
    if target.origin is not None:
        result["relatedLocations"] = _required_here(target, target.origin)
    if target.score < min_score:
        result["properties"]["belowMinScore"] = True
    return result


def _required_here(target: TargetResult, origin: Origin) -> list[JSON]:
    """A finding's ``relatedLocations``: the requirements-file line that asked for its target."""
    return [
        {
            "id": 0,
            "physicalLocation": _origin_location(origin),
            "message": {"text": f"{_label(target)} is required here"},
        }
    ]


def _dependency_result(target: TargetResult, origin: Origin, index: int, min_score: int) -> JSON:
    top = top_findings(target, SARIF_RELATED_FINDINGS)
    weight = max((f.match.weight for f in top), default=0)
    rules = ", ".join(target.rules_matched)
    return {
        "ruleId": FLAGGED_DEPENDENCY_RULE,
        "ruleIndex": index,
        "level": _level(weight, target, min_score),
        "message": {
            "text": f"{_label(target)} (score {target.score}) matched {len(target.rules_matched)} rule(s): "
            f"{rules}; top file {printable(target.top_file or '-')}"
        },
        "locations": [{"physicalLocation": _origin_location(origin)}],
        "relatedLocations": [
            {
                "id": i,
                "physicalLocation": _member_location(f, first_pattern(f.match)),
                "message": {"text": f"{f.match.identifier} matched {printable(f.location)}"},
            }
            for i, f in enumerate(top)
        ],
        "partialFingerprints": {
            SARIF_FINGERPRINT_KEY: hashlib.sha256(
                "\0".join(
                    (FLAGGED_DEPENDENCY_RULE, origin_uri(origin.path), normalize_project(target.name))
                ).encode()
            ).hexdigest()
        },
        "properties": {
            "target": target.target,
            "score": target.score,
            "rulesMatched": list(target.rules_matched),
        },
    }


def _notifications(target: TargetResult) -> Iterator[JSON]:
    if target.error:
        yield {
            "level": "error",
            "message": {"text": f"{target.target}: {target.error}"},
            "properties": {"target": target.target},
        }
    for dist, issue in target.issues:
        yield {
            "level": "error" if issue.unscanned else "warning",
            "message": {"text": f"{issue.kind}: {member_label(dist, issue.path)}: {issue.message}"},
            "locations": [
                {"physicalLocation": {"artifactLocation": {"uri": artifact_uri(dist, issue.path)}}}
            ],
            "properties": {"target": target.target, "kind": issue.kind, "unscanned": issue.unscanned},
        }


_ONE_LINE_ITEMS = frozenset({"results", "rules"})
"""Arrays of a SARIF log whose items are written one per line: thousands of results, each a small tree."""
_ONE_LINE_SEPARATORS = (", ", ": ")


class RawJSON(str):
    """An item of a one-line array already written as its line of JSON (by the engine):
    :func:`write_framed_json` writes it as it is."""


def write_framed_json(value: object, out: IO[str], level: int = 0, one_line_items: bool = False) -> None:
    """``value`` as ``json.dump(indent=2)`` lays it out, except that the items of an array under a key in
    ``_ONE_LINE_ITEMS`` take one line each: the same JSON, written by the C encoder (with an indent, ``json``
    encodes in pure Python, five times slower for 5,000 SARIF results)."""
    pad = "\n" + "  " * level
    if isinstance(value, dict) and value:
        for index, (key, item) in enumerate(value.items()):
            out.write(("," if index else "{") + pad + "  " + json.dumps(key, ensure_ascii=False) + ": ")
            write_framed_json(item, out, level + 1, key in _ONE_LINE_ITEMS)
        out.write(pad + "}")
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            out.write(("," if index else "[") + pad + "  ")
            if isinstance(item, RawJSON):
                out.write(item)
            elif one_line_items:
                out.write(json.dumps(item, ensure_ascii=False, separators=_ONE_LINE_SEPARATORS))
            else:
                write_framed_json(item, out, level + 1)
        out.write(pad + "]")
    else:
        out.write(json.dumps(value, ensure_ascii=False))


def write_sarif_document(
    targets: Sequence[TargetResult], rules: Rules, out: IO[str], min_score: int = 0
) -> None:
    """Write the SARIF log of ``targets`` to ``out`` (see the module docstring)."""
    write_framed_json(_sarif_log(targets, rules, min_score), out)
    out.write("\n")


def sarif_document(targets: Sequence[TargetResult], rules: Rules, min_score: int = 0) -> JSON:
    """The SARIF log of ``targets`` as Python objects: what :func:`write_sarif_document` writes, read
    back (the engine writes most results as text)."""
    out = io.StringIO()
    write_sarif_document(targets, rules, out, min_score)
    document: JSON = json.loads(out.getvalue())
    return document


def _utf8_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: an argument's undecodable bytes
        return False
    return True


def sarif_findings(
    targets: Sequence[TargetResult], limit: int, min_score: int = 0
) -> tuple[SarifFindings, list[DistributionResult]]:
    """At most ``limit`` findings of ``targets``, ranked as :func:`heaviest_findings` ranks them, for the
    engine to write their results; and the distributions of ``targets`` in order (what
    ``SarifFindings.finding`` indexes)."""
    specs = []
    dists: list[DistributionResult] = []
    for target in targets:
        target_json = json.dumps(target.target, ensure_ascii=False)
        related = (
            None
            if target.origin is None
            else json.dumps(
                _required_here(target, target.origin), ensure_ascii=False, separators=_ONE_LINE_SEPARATORS
            )
        )
        written = _utf8_text(target_json) and (related is None or _utf8_text(related))
        specs.append(
            (
                target_json if written else None,  # None: Python renders the target's results
                target.score < min_score,
                related if written else None,
                [(d, *project_and_version(d.name)) for d in target.distributions],
            )
        )
        dists.extend(target.distributions)
    return SarifFindings(specs, limit), dists


def _sarif_log(targets: Sequence[TargetResult], rules: Rules, min_score: int) -> JSON:
    """The SARIF log of ``targets``; at most ``SARIF_MAX_RESULTS`` results."""
    dependencies = [(t, t.origin) for t in targets if t.origin is not None and t.rules_matched]
    ranked, dists = sarif_findings(targets, max(0, SARIF_MAX_RESULTS - len(dependencies)), min_score)
    total = sum(t.match_count for t in targets)
    descriptors: dict[str, JSON] = {}
    indices: dict[str, int] = {}
    descriptions: dict[tuple[str, str], str | None] = {}  # two namespaces may each have a rule of a name
    for match in ranked.rules():
        if match.identifier not in indices:
            indices[match.identifier] = len(descriptors)
            descriptors[match.identifier] = _sarif_rule(match)
        descriptions[(match.identifier, match.namespace)] = rule_description(match)
    results: list[JSON | RawJSON] = []
    for index, line in enumerate(ranked.results(descriptions, indices)):
        if line is not None:
            results.append(RawJSON(line))
            continue
        target_index, dist_index, file, match = ranked.finding(index)
        finding = Finding(dists[dist_index], file, match)
        description = descriptions[(match.identifier, match.namespace)]
        results.append(
            _sarif_result(targets[target_index], finding, indices[match.identifier], min_score, description)
        )
    if dependencies:
        heaviest = max(f.match.weight for t, _ in dependencies for f in top_findings(t, 1))
        indices[FLAGGED_DEPENDENCY_RULE] = len(descriptors)
        descriptors[FLAGGED_DEPENDENCY_RULE] = _dependency_rule(heaviest)
        for target, origin in dependencies:
            results.append(_dependency_result(target, origin, indices[FLAGGED_DEPENDENCY_RULE], min_score))
    notifications = [n for t in targets for n in _notifications(t)]
    if len(ranked) < total:
        notifications.append(
            {
                "level": "warning",
                "message": {
                    "text": f"{total - len(ranked)} of {total} finding(s) left out (the heaviest "
                    f"{len(ranked)} are kept; GitHub keeps at most {SARIF_MAX_RESULTS} results per run); "
                    "use --format json for all"
                },
            }
        )
    driver = {
        "name": TOOL_NAME,
        "version": __version__,
        "rules": list(descriptors.values()),
    }
    invocation = {
        "executionSuccessful": all(t.verdict != "incomplete" for t in targets),
        "exitCode": exit_code(targets, min_score),
        "toolExecutionNotifications": notifications,
    }
    run = {
        "tool": {"driver": driver},
        "columnKind": "utf16CodeUnits",
        "invocations": [invocation],
        "results": results,
        "properties": {"rulesHash": rules.hash, "rulesCount": rules.count, "minScore": min_score},
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


# --------------------------------------------------------------------------------------------- table

_VERDICT_STYLE = {"clean": "green", "findings": "bold red", "incomplete": "yellow"}


def _verdict_word(target: TargetResult, min_score: int) -> str:
    if target.verdict == "findings" and target.score < min_score:
        return "findings (below --min-score)"
    return target.verdict


def _verdict_text(target: TargetResult, min_score: int) -> Text:
    from rich.text import Text

    word = _verdict_word(target, min_score)
    return Text(word, style="yellow" if word != target.verdict else _VERDICT_STYLE.get(word, ""))


def _issues_count(target: TargetResult) -> int:
    return len(target.issues) + (1 if target.error else 0)


def _label(target: TargetResult) -> str:
    if target.kind == "release" and target.version:
        return f"{target.name}=={target.version}"
    return printable(target.target)


def _size(target: TargetResult) -> str:
    return human_size(sum(d.size for d in target.distributions)) if target.distributions else "-"


def _overview(targets: Sequence[TargetResult], min_score: int) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Scan results", box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("Target", overflow="fold")
    table.add_column("Verdict")
    table.add_column("Score", justify="right")
    table.add_column("Findings", justify="right")
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Issues", justify="right")
    for t in targets:
        table.add_row(
            Text(_label(t)),  # a Text: names are never read as console markup
            _verdict_text(t, min_score),
            str(t.score),
            str(t.match_count),
            _size(t),
            str(_issues_count(t)),
        )
    return table


def _more_line(shown: int, total: int, what: str) -> str | None:
    if total <= shown:
        return None
    return f"… and {total - shown} more {what}; use -f json for all"


def _more(shown: int, total: int, what: str) -> Text | None:
    from rich.text import Text

    line = _more_line(shown, total, what)
    return None if line is None else Text(line, style="dim")


def _findings(target: TargetResult, width: int) -> tuple[Table, Text | None]:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    shown = top_findings(target, TABLE_MAX_FINDINGS)
    wide = width >= TABLE_WIDE_COLUMNS
    table = Table(title=Text(f"Findings in {_label(target)}"), box=box.SIMPLE, title_justify="left")
    # Rule names are never broken: the column is as wide as the longest one; descriptions fold instead.
    table.add_column("Rule", no_wrap=True, min_width=max(len(f.match.identifier) for f in shown))
    table.add_column("Weight", justify="right")
    if wide:
        table.add_column("File", overflow="fold", ratio=3)
        table.add_column("Description", ratio=3)
        table.add_column("Snippet", overflow="fold", ratio=2)
    else:
        table.add_column("File, description, snippet", overflow="fold")
    for finding in shown:
        match = finding.match
        style = "red" if match.weight >= SARIF_ERROR_WEIGHT else "yellow"
        location = Text(printable(finding.location), style="bold")
        description = Text(printable(rule_description(match) or "-", DESCRIPTION_CHARS))
        snippet = Text(finding.snippet() or "-", style="cyan")
        cells = (
            [location, description, snippet] if wide else [Text("\n").join([location, description, snippet])]
        )
        table.add_row(Text(match.identifier, style=style), str(match.weight), *cells)
    return table, _more(len(shown), target.match_count, "finding(s)")


def _problems(target: TargetResult) -> Iterator[Text]:
    from rich.text import Text

    styles = {"error": "bold red", "unscanned": "yellow", "note": "dim"}
    for tag, rest in _problem_lines(target):
        yield Text.assemble((tag, styles[tag]), rest) if tag else Text(rest, style="dim")


def _problem_lines(target: TargetResult) -> Iterator[tuple[str, str]]:
    """The target's error and its first issues as (tag, rest of the line); the "… and K more" line has
    no tag."""
    if target.error:
        yield "error", f" {_label(target)}: {printable(target.error)}"
    issues = target.issues
    for dist, issue in issues[:TABLE_MAX_ISSUES]:
        tag = "unscanned" if issue.unscanned else "note"
        yield tag, f" [{issue.kind}] {printable(member_label(dist, issue.path))}: {printable(issue.message)}"
    more = _more_line(min(len(issues), TABLE_MAX_ISSUES), len(issues), "issue(s)")
    if more is not None:
        yield "", more


def _footer(targets: Sequence[TargetResult], rules: Rules, min_score: int) -> Text:
    from rich.text import Text

    summary, verdict = _footer_parts(targets, rules, min_score)
    style = _VERDICT_STYLE.get(verdict, "yellow")  # "findings below --min-score" is not a verdict
    return Text.assemble(summary, Text(verdict, style=style))


def _footer_parts(targets: Sequence[TargetResult], rules: Rules, min_score: int) -> tuple[str, str]:
    """The run's totals (ending in ": ") and its overall verdict."""
    s = summary_json(targets)
    threshold = f"; targets scoring below --min-score {min_score} do not fail the run" if min_score else ""
    verdict: str = overall_verdict(targets)
    if verdict == "findings" and exit_code(targets, min_score) != EXIT_FINDINGS:
        verdict = "findings below --min-score"
    totals = (
        f"{s['targets']} target(s), {s['distributions']} distribution(s), {s['files_scanned']} file(s), "
        f"{human_size(s['bytes_scanned'])} scanned with {rules.count} rule(s) ({rules.hash[:12]})"
        f"{threshold}: "
    )
    return totals, verdict


def render_table(
    targets: Sequence[TargetResult], rules: Rules, console: Console, quiet: bool = False, min_score: int = 0
) -> None:
    """The human report: an overview row per target, then each target's top findings and issues (at most
    ``TABLE_MAX_FINDINGS`` and ``TABLE_MAX_ISSUES`` per target)."""
    from rich.text import Text

    console.print(_overview(targets, min_score))
    for target in targets:
        if target.rules_matched:
            table, more = _findings(target, console.width)
            console.print(table)
            if more is not None:
                console.print(more)
        problems = list(_problems(target))
        if problems:
            console.print(Text(f"Issues in {_label(target)}", style="bold"))
            for line in problems:
                console.print(line, overflow="fold")
    if not quiet:
        console.print(_footer(targets, rules, min_score))


# ------------------------------------------------------------------------------- table as plain text
# A file or a pipe gets the table laid out here, without rich: the same information and limits, no
# colour, at a small part of the cost (issue 19: importing rich and laying out its tables cost the table
# format most of its gap to JSON).

_RULE_CHAR = "─"


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(_char_cells(c) for c in text)


def _char_cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _fold(text: str, width: int) -> list[str]:
    """``text`` cut into lines of at most ``width`` columns, anywhere (paths, snippets)."""
    if _cells(text) <= width:
        return [text]
    if text.isascii():
        return [text[i : i + width] for i in range(0, len(text), width)]
    lines, line, used = [], "", 0
    for char in text:
        cells = _char_cells(char)
        if used + cells > width and line:
            lines.append(line)
            line, used = "", 0
        line += char
        used += cells
    return [*lines, line]


def _wrap(text: str, width: int) -> list[str]:
    """``text`` cut into lines of at most ``width`` columns between words; a longer word is folded."""
    if _cells(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if _cells(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        *full, line = _fold(word, width)
        lines += full
    return [*lines, line]


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - _cells(text))
    return gap + text if right else text + gap


class _Column(NamedTuple):
    header: str
    width: int
    right: bool = False
    words: bool = False
    """Cut between words (descriptions) rather than anywhere (paths, snippets)."""


def _grid(columns: Sequence[_Column], rows: Iterable[Sequence[str]]) -> list[str]:
    """A header, a rule under it and the rows, each cell cut to its column's width, indented by two."""

    def line(cells: Sequence[str]) -> str:
        return (
            "  "
            + "  ".join(_pad(c, col.width, col.right) for c, col in zip(cells, columns, strict=True)).rstrip()
        )

    lines = [line([c.header for c in columns]), line([_RULE_CHAR * c.width for c in columns])]
    for row in rows:
        cut = [
            (_wrap if col.words else _fold)(cell, col.width) for cell, col in zip(row, columns, strict=True)
        ]
        height = max(len(c) for c in cut)
        for i in range(height):
            lines.append(line([c[i] if i < len(c) else "" for c in cut]))
    return lines


def _shares(natural: Sequence[int], ratios: Sequence[int], room: int) -> list[int]:
    """Widths for columns wanting ``natural`` columns each in ``room``: all they want if it fits, else
    ``room`` shared by ``ratios``, a column needing less than its share giving the rest to the others."""
    if sum(natural) <= room:
        return list(natural)
    widths = [0] * len(natural)
    open_ = set(range(len(natural)))
    while open_:
        total = sum(ratios[i] for i in open_)
        share = {i: max(1, room * ratios[i] // total) for i in open_}
        settled = {i for i in open_ if natural[i] <= share[i]}
        if not settled:
            for i in open_:
                widths[i] = share[i]
            break
        for i in settled:
            widths[i] = natural[i]
            room -= natural[i]
        open_ -= settled
    return widths


def _width_of(texts: Iterable[str], header: str) -> int:
    return max([_cells(header), *map(_cells, texts)])


def _plain_overview(targets: Sequence[TargetResult], width: int, min_score: int) -> list[str]:
    rows = [
        [
            _label(t),
            _verdict_word(t, min_score),
            str(t.score),
            str(t.match_count),
            _size(t),
            str(_issues_count(t)),
        ]
        for t in targets
    ]
    headers = ("Target", "Verdict", "Score", "Findings", "Size", "Issues")
    natural = [_width_of((r[i] for r in rows), h) for i, h in enumerate(headers)]
    room = width - 2 - 2 * (len(headers) - 1) - sum(natural[1:])
    columns = [_Column("Target", max(10, min(natural[0], room)))]
    columns += [_Column(h, w, right=h != "Verdict") for h, w in zip(headers[1:], natural[1:], strict=True)]
    return ["Scan results", "", *_grid(columns, rows)]


def _plain_findings(target: TargetResult, width: int) -> list[str]:
    shown = top_findings(target, TABLE_MAX_FINDINGS)
    rows = [
        [
            f.match.identifier,
            str(f.match.weight),
            printable(f.location),
            printable(rule_description(f.match) or "-", DESCRIPTION_CHARS),
            f.snippet() or "-",
        ]
        for f in shown
    ]
    # Rule names are never broken: the column is as wide as the longest one; the rest is cut to fit.
    rule = _Column("Rule", _width_of((r[0] for r in rows), "Rule"))
    weight = _Column("Weight", _width_of((r[1] for r in rows), "Weight"), right=True)
    room = width - 2 - rule.width - weight.width - 2 * 2
    if width >= TABLE_WIDE_COLUMNS:
        natural = [
            _width_of((r[i] for r in rows), h) for i, h in ((2, "File"), (3, "Description"), (4, "Snippet"))
        ]
        widths = _shares(natural, (3, 3, 2), room - 2 * 2)
        file_, description = _Column("File", widths[0]), _Column("Description", widths[1], words=True)
        grid = _grid([rule, weight, file_, description, _Column("Snippet", widths[2])], rows)
    else:
        # Narrow: one column holding the file, the description and the snippet, one under the other.
        stacked = _Column("File, description, snippet", max(10, room))
        grid = _grid([rule, weight, stacked], [])
        for row in rows:
            cell = [
                *_fold(row[2], stacked.width),
                *_wrap(row[3], stacked.width),
                *_fold(row[4], stacked.width),
            ]
            grid.append(f"  {_pad(row[0], rule.width, False)}  {_pad(row[1], weight.width, True)}  {cell[0]}")
            grid += [" " * (2 + rule.width + 2 + weight.width + 2) + line for line in cell[1:]]
    more = _more_line(len(shown), target.match_count, "finding(s)")
    return [*_fold(f"Findings in {_label(target)}", width), "", *grid, *(_wrap(more, width) if more else [])]


def plain_table(
    targets: Sequence[TargetResult], rules: Rules, width: int = FILE_TABLE_WIDTH, quiet: bool = False,
    min_score: int = 0,
) -> str:  # fmt: skip
    """The table report (:func:`render_table`'s content) as plain text at most ``width`` columns wide
    (a rule name longer than the width excepted): what a file or a pipe gets."""
    lines = _plain_overview(targets, width, min_score)
    for target in targets:
        if target.rules_matched:
            lines += ["", *_plain_findings(target, width)]
        problems = list(_problem_lines(target))
        if problems:
            lines += ["", *_fold(f"Issues in {_label(target)}", width)]
            for tag, rest in problems:
                lines += _fold(tag + rest, width)
    if not quiet:
        totals, verdict = _footer_parts(targets, rules, min_score)
        lines += ["", *_wrap(totals + verdict, width)]
    return "\n".join(lines) + "\n"


def render(
    targets: Sequence[TargetResult],
    rules: Rules,
    fmt: ReportFormat,
    out: IO[str],
    quiet: bool = False,
    min_score: int = 0,
) -> None:
    """Write the report of ``targets`` to ``out`` in ``fmt`` (a whole document, or all NDJSON lines)."""
    if fmt == "table":
        if not out.isatty():  # a file or a pipe: plain text, with room for long member paths
            out.write(plain_table(targets, rules, FILE_TABLE_WIDTH, quiet=quiet, min_score=min_score))
            return
        from dragonfly_hybrid.closed_pipe_console import ClosedPipeConsole

        render_table(targets, rules, ClosedPipeConsole(file=out), quiet=quiet, min_score=min_score)
    elif fmt == "markdown":
        from dragonfly_hybrid.report_markdown import markdown_report  # it imports this module

        out.write(markdown_report(targets, rules, min_score))
    elif fmt == "html":
        from dragonfly_hybrid.html_report import write_scan_page  # only this format needs it

        write_scan_page(targets, rules, out)
    elif fmt == "ndjson":
        for target in targets:
            write_ndjson_line(target, out)
    elif fmt == "json":
        write_json_document(targets, rules, out, min_score)
    else:
        write_sarif_document(targets, rules, out, min_score)
