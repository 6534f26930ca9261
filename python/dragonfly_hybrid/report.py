"""Scan reports: the data model of a scanned target and its table, JSON, NDJSON and SARIF renderings.

Verdicts and exit codes
-----------------------
A target's verdict is ``findings`` when at least one rule matched anywhere in it (even if part of it could
not be scanned: a malicious signal is never dropped), else ``incomplete`` when anything was left unscanned
or the target could not be fetched at all (``error`` says why), else ``clean``. The run's exit code follows
the same order: 1 if any target has findings, else 3 if any is incomplete, else 0 (2 is reserved for
usage and configuration errors, which never reach a report).

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
                         "patterns": [{"identifier": str, "offset": int, "length": int}]}]
          }]
        }]
      }],
      "summary": {"targets": int, "distributions": int, "files_scanned": int, "bytes_scanned": int,
                  "findings": int, "incomplete": int,     # number of targets with that verdict
                  "verdict": "clean" | "findings" | "incomplete", "exit_code": 0 | 1 | 3}
    }

Rule metadata values keep their JSON type; a ``bytes`` value (a metadata string that is not valid UTF-8)
is rendered as an ASCII string in which every non-ASCII byte is written ``\\xNN``; a non-finite float is
rendered as its ``repr`` string (JSON has no NaN).

NDJSON (``--format ndjson``): one line per target, each the target object exactly as in ``targets`` above.

SARIF (``--format sarif``): SARIF 2.1.0, one run. ``tool.driver.rules`` lists every rule that matched
(``id`` = rule identifier, ``shortDescription`` from its ``description`` metadata, ``properties`` with
``weight``, ``tags`` and ``namespace``). One result per (file, matching rule): ``level`` is ``error`` for
weight >= 5 and ``warning`` below; the location URI is ``<distribution name>/<member path>``
percent-encoded (``pkg-0.1.tar.gz/pkg-0.1/setup.py``); ``region`` holds ``byteOffset``/``byteLength`` of the
rule's first pattern match, when it has one; ``properties`` hold the target, distribution, file score and
sha256. Scan issues and target errors are ``invocations[0].toolExecutionNotifications`` (``error`` when
content was left unscanned or the target failed, ``warning`` otherwise); ``executionSuccessful`` is false
when any target is incomplete.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dragonfly_hybrid import __version__
from dragonfly_hybrid._core import DistributionResult, FileResult, ReleaseResult, RuleMatch, Rules, ScanIssue
from dragonfly_hybrid.closed_pipe import ClosedPipeConsole

if TYPE_CHECKING:
    from dragonfly_hybrid._core import Verdict  # the engine's verdicts (a type only)

TOOL_NAME = "dragonfly-hybrid"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SARIF_ERROR_WEIGHT = 5
"""Matches of rules with at least this weight are SARIF ``error`` results; lighter ones are ``warning``."""

FILE_TABLE_WIDTH = 160
"""Width of the table report when it is written to a file or a pipe rather than to a terminal."""

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3

TargetKind = Literal["archive", "file", "directory", "release"]
ReportFormat = Literal["table", "json", "ndjson", "sarif"]

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
        """The highest-scoring distribution that matched something."""
        matched = [d for d in self.distributions if d.rules_matched]
        return max(matched, key=lambda d: d.score, default=None)

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


def member_label(dist: DistributionResult, path: str) -> str:
    """``<distribution name>/<member path>``; a plain file is just its distribution name."""
    if not path or (dist.format == "file" and path == dist.name):
        return dist.name
    return f"{dist.name}/{path}"


def exit_code(targets: Sequence[TargetResult]) -> int:
    """1 if any target has findings (findings win), else 3 if any is incomplete, else 0."""
    verdicts = {t.verdict for t in targets}
    if "findings" in verdicts:
        return EXIT_FINDINGS
    return EXIT_INCOMPLETE if "incomplete" in verdicts else EXIT_CLEAN


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


def _match_json(match: RuleMatch) -> JSON:
    return {
        "rule": match.identifier,
        "namespace": match.namespace,
        "tags": list(match.tags),
        "weight": match.weight,
        "metadata": {key: meta_value(value) for key, value in match.metadata.items()},
        "patterns": [
            {"identifier": p.identifier, "offset": p.offset, "length": p.length} for p in match.patterns
        ],
    }


def _file_json(file: FileResult) -> JSON:
    return {
        "path": file.path,
        "size": file.size,
        "sha256": file.sha256,
        "score": file.score,
        "matches": [_match_json(m) for m in file.matches],
    }


def _issue_json(issue: ScanIssue) -> JSON:
    return {"path": issue.path, "kind": issue.kind, "message": issue.message, "unscanned": issue.unscanned}


def distribution_json(dist: DistributionResult) -> JSON:
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
        "issues": [_issue_json(i) for i in dist.issues],
        "files": [_file_json(f) for f in dist.files],
    }


def target_json(target: TargetResult) -> JSON:
    """The object of one target, as in the document's ``targets`` and as one NDJSON line."""
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
        "distributions": [distribution_json(d) for d in target.distributions],
    }


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


def json_document(targets: Sequence[TargetResult], rules: Rules) -> JSON:
    return {
        "tool": {"name": TOOL_NAME, "version": __version__},
        "rules": {"hash": rules.hash, "count": rules.count},
        "targets": [target_json(t) for t in targets],
        "summary": summary_json(targets),
    }


def ndjson_line(target: TargetResult) -> str:
    return json.dumps(target_json(target), ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------- SARIF


def sarif_level(weight: int) -> Literal["error", "warning"]:
    return "error" if weight >= SARIF_ERROR_WEIGHT else "warning"


def artifact_uri(dist: DistributionResult, path: str) -> str:
    """A relative URI reference for a member: ``<distribution>/<member>``, percent-encoded."""
    return quote(member_label(dist, path), safe="/!", errors="backslashreplace")


def _sarif_rule(match: RuleMatch) -> JSON:
    rule: JSON = {"id": match.identifier, "name": match.identifier}
    description = match.metadata.get("description")
    if description is not None:
        rule["shortDescription"] = {"text": str(meta_value(description))}
    rule["defaultConfiguration"] = {"level": sarif_level(match.weight)}
    rule["properties"] = {"weight": match.weight, "tags": list(match.tags), "namespace": match.namespace}
    return rule


def _region(match: RuleMatch) -> JSON | None:
    if not match.patterns:
        return None
    first = min(match.patterns, key=lambda p: p.offset)
    return {"byteOffset": first.offset, "byteLength": first.length}


def _sarif_result(
    target: TargetResult, dist: DistributionResult, file: FileResult, match: RuleMatch, index: int
) -> JSON:
    location: JSON = {"artifactLocation": {"uri": artifact_uri(dist, file.path)}}
    region = _region(match)
    if region is not None:
        location["region"] = region
    return {
        "ruleId": match.identifier,
        "ruleIndex": index,
        "level": sarif_level(match.weight),
        "message": {
            "text": f"Rule {match.identifier} (weight {match.weight}) matched {member_label(dist, file.path)}"
        },
        "locations": [{"physicalLocation": location}],
        "properties": {
            "target": target.target,
            "distribution": dist.name,
            "score": file.score,
            "sha256": file.sha256,
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


def sarif_document(targets: Sequence[TargetResult], rules: Rules) -> JSON:
    descriptors: dict[str, JSON] = {}
    indices: dict[str, int] = {}
    results: list[JSON] = []
    for target in targets:
        for dist in target.distributions:
            for file in dist.files:
                for match in file.matches:
                    if match.identifier not in indices:
                        indices[match.identifier] = len(descriptors)
                        descriptors[match.identifier] = _sarif_rule(match)
                    results.append(_sarif_result(target, dist, file, match, indices[match.identifier]))
    notifications = [n for t in targets for n in _notifications(t)]
    driver = {"name": TOOL_NAME, "version": __version__, "rules": list(descriptors.values())}
    invocation = {
        "executionSuccessful": all(t.verdict != "incomplete" for t in targets),
        "exitCode": exit_code(targets),
        "toolExecutionNotifications": notifications,
    }
    run = {
        "tool": {"driver": driver},
        "invocations": [invocation],
        "results": results,
        "properties": {"rulesHash": rules.hash, "rulesCount": rules.count},
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


# --------------------------------------------------------------------------------------------- table

_VERDICT_STYLE = {"clean": "green", "findings": "bold red", "incomplete": "yellow"}


def _verdict_text(verdict: str) -> Text:
    return Text(verdict, style=_VERDICT_STYLE.get(verdict, ""))


def _label(target: TargetResult) -> str:
    if target.kind == "release" and target.version:
        return f"{target.name}=={target.version}"
    return target.target


def _overview(targets: Sequence[TargetResult]) -> Table:
    table = Table(title="Scan results", box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("Target", overflow="fold")
    table.add_column("Verdict")
    table.add_column("Score", justify="right")
    table.add_column("Rules matched", overflow="fold")
    table.add_column("Top file", overflow="fold")
    table.add_column("Issues", justify="right")
    for t in targets:
        table.add_row(
            _label(t),
            _verdict_text(t.verdict),
            str(t.score),
            ", ".join(t.rules_matched) or "-",
            t.top_file or "-",
            str(len(t.issues) + (1 if t.error else 0)),
        )
    return table


def _findings(target: TargetResult) -> Table:
    table = Table(title=f"Findings in {_label(target)}", box=box.SIMPLE, title_justify="left")
    table.add_column("Rule", overflow="fold")
    table.add_column("Weight", justify="right")
    table.add_column("File", overflow="fold")
    for dist in target.distributions:
        for file in dist.files:
            for match in file.matches:
                style = "red" if match.weight >= SARIF_ERROR_WEIGHT else "yellow"
                table.add_row(
                    Text(match.identifier, style=style), str(match.weight), member_label(dist, file.path)
                )
    return table


def _problems(target: TargetResult) -> Iterator[Text]:
    if target.error:
        yield Text.assemble(("error", "bold red"), f" {_label(target)}: {target.error}")
    for dist, issue in target.issues:
        tag = ("unscanned", "yellow") if issue.unscanned else ("note", "dim")
        yield Text.assemble(tag, f" [{issue.kind}] {member_label(dist, issue.path)}: {issue.message}")


def _footer(targets: Sequence[TargetResult], rules: Rules) -> Text:
    s = summary_json(targets)
    return Text.assemble(
        f"{s['targets']} target(s), {s['distributions']} distribution(s), {s['files_scanned']} file(s), "
        f"{s['bytes_scanned']} bytes scanned with {rules.count} rule(s) ({rules.hash[:12]}): ",
        _verdict_text(s["verdict"]),
    )


def render_table(
    targets: Sequence[TargetResult], rules: Rules, console: Console, quiet: bool = False
) -> None:
    """The human report: an overview row per target, then each target's findings and issues."""
    console.print(_overview(targets))
    for target in targets:
        if target.rules_matched:
            console.print(_findings(target))
        problems = list(_problems(target))
        if problems:
            console.print(Text(f"Issues in {_label(target)}", style="bold"))
            for line in problems:
                console.print(line, overflow="fold")
    if not quiet:
        console.print(_footer(targets, rules))


def render(
    targets: Sequence[TargetResult], rules: Rules, fmt: ReportFormat, out: IO[str], quiet: bool = False
) -> None:
    """Write the report of ``targets`` to ``out`` in ``fmt`` (a whole document, or all NDJSON lines)."""
    if fmt == "table":
        # A terminal gets its own width; a file or a pipe gets room for long member paths.
        width = None if out.isatty() else FILE_TABLE_WIDTH
        render_table(targets, rules, ClosedPipeConsole(file=out, width=width), quiet=quiet)
    elif fmt == "ndjson":
        for target in targets:
            out.write(ndjson_line(target) + "\n")
    else:
        document = json_document(targets, rules) if fmt == "json" else sarif_document(targets, rules)
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")
