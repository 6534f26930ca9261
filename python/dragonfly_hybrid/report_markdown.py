"""The markdown report (``--format markdown``): a short summary for a CI job page (``$GITHUB_STEP_SUMMARY``).

Layout (GitHub-flavoured markdown)::

    ## dragonfly-hybrid: <verdict>
    <totals line: targets by verdict, distributions, files, size, rules, exit code, --min-score>

    | Target | Verdict | Score | Findings | Size | Issues |      one row per target (at most 50; targets
    |---|---|---:|---:|---:|---:|                               with findings first, then incomplete, clean)

    ### Findings in <target>                                   per target with findings (at most 10 targets)
    | Rule | Weight | Description | File | Snippet |            its heaviest findings (at most 10)
    … and K more finding(s); use `-f json` for all

    ### Issues                                                 at most 20 lines in all
    - <target or member>: <message>

Every value taken from a scanned package or a rule (paths, snippets, descriptions, messages) is made
printable and escaped: names, paths and snippets as code spans, descriptions and messages as plain text in
which every markdown-active character is backslash-escaped, so nothing in a package can add a link, an
image, HTML or a table cell. The report is bounded whatever the scan's size.
"""

from __future__ import annotations

from collections.abc import Sequence

from dragonfly_hybrid._core import Rules
from dragonfly_hybrid.report import (
    DESCRIPTION_CHARS,
    EXIT_FINDINGS,
    TABLE_MAX_FINDINGS,
    TOOL_NAME,
    TargetResult,
    exit_code,
    human_size,
    markdown_code,
    markdown_text,
    member_label,
    overall_verdict,
    rule_description,
    summary_json,
    top_findings,
)

MARKDOWN_MAX_TARGETS = 50
"""Target rows in the overview table."""
MARKDOWN_MAX_FINDING_TARGETS = 10
"""Targets whose findings get a table of their own."""
MARKDOWN_MAX_ISSUES = 20
"""Issue lines in all."""
PATH_CHARS = 160

_VERDICT_ORDER = {"findings": 0, "incomplete": 1, "clean": 2}


def _label(target: TargetResult) -> str:
    if target.kind == "release" and target.version:
        return f"{target.name}=={target.version}"
    return target.target


def _verdict(target: TargetResult, min_score: int) -> str:
    if target.verdict == "findings":
        return "**findings**" if target.fails(min_score) else "findings (below \\-\\-min\\-score)"
    return target.verdict


def _more(shown: int, total: int, what: str) -> list[str]:
    return [] if total <= shown else [f"… and {total - shown} more {what}; use `-f json` for all", ""]


def _rank(target: TargetResult) -> tuple[int, int]:
    return (_VERDICT_ORDER.get(target.verdict, 3), -target.score)


def _overview(targets: Sequence[TargetResult], min_score: int) -> list[str]:
    shown = sorted(targets, key=_rank)[:MARKDOWN_MAX_TARGETS]
    lines = ["| Target | Verdict | Score | Findings | Size | Issues |", "|---|---|---:|---:|---:|---:|"]
    for t in shown:
        size = human_size(sum(d.size for d in t.distributions)) if t.distributions else "-"
        issues = len(t.issues) + (1 if t.error else 0)
        lines.append(
            f"| {markdown_code(_label(t), PATH_CHARS)} | {_verdict(t, min_score)} | {t.score} "
            f"| {t.match_count} | {size} | {issues} |"
        )
    return [*lines, "", *_more(len(shown), len(targets), "target(s)")]


def _findings(target: TargetResult) -> list[str]:
    shown = top_findings(target, TABLE_MAX_FINDINGS)
    lines = [
        f"### Findings in {markdown_code(_label(target), PATH_CHARS, cell=False)}",
        "",
        "| Rule | Weight | Description | File | Snippet |",
        "|---|---:|---|---|---|",
    ]
    for f in shown:
        description = rule_description(f.match)
        snippet = f.snippet()
        lines.append(
            f"| {markdown_code(f.match.identifier)} | {f.match.weight} "
            f"| {markdown_text(description, DESCRIPTION_CHARS) if description else '-'} "
            f"| {markdown_code(f.location, PATH_CHARS)} "
            f"| {markdown_code(snippet) if snippet is not None else '-'} |"
        )
    return [*lines, "", *_more(len(shown), target.match_count, "finding(s)")]


def _issues(targets: Sequence[TargetResult]) -> list[str]:
    lines: list[str] = []
    total = 0
    for target in targets:
        problems = [(_label(target), target.error)] if target.error else []
        problems += [
            (member_label(dist, issue.path), f"{issue.kind}: {issue.message}")
            for dist, issue in target.issues
        ]
        total += len(problems)
        for where, message in problems[: max(0, MARKDOWN_MAX_ISSUES - len(lines))]:
            where_code = markdown_code(where, PATH_CHARS, cell=False)
            lines.append(f"- {where_code}: {markdown_text(message, DESCRIPTION_CHARS)}")
    if not lines:
        return []
    return ["### Issues", "", *lines, "", *_more(len(lines), total, "issue(s)")]


def markdown_report(targets: Sequence[TargetResult], rules: Rules, min_score: int = 0) -> str:
    """The markdown summary of ``targets`` (see the module docstring)."""
    s = summary_json(targets)
    code = exit_code(targets, min_score)
    verdict = overall_verdict(targets)
    heading = (
        "findings below \\-\\-min\\-score" if verdict == "findings" and code != EXIT_FINDINGS else verdict
    )
    clean = s["targets"] - s["findings"] - s["incomplete"]
    threshold = f", \\-\\-min\\-score {min_score}" if min_score else ""
    lines = [
        f"## {TOOL_NAME}: {heading}",
        "",
        f"{s['targets']} target(s): {s['findings']} with findings, {s['incomplete']} incomplete, "
        f"{clean} clean; "
        f"{s['distributions']} distribution(s), {s['files_scanned']} file(s), "
        f"{human_size(s['bytes_scanned'])} scanned with {rules.count} rule(s) "
        f"(`{rules.hash[:12]}`){threshold}; exit code {code}.",
        "",
        *_overview(targets, min_score),
    ]
    flagged = sorted((t for t in targets if t.rules_matched), key=lambda t: -t.score)
    for target in flagged[:MARKDOWN_MAX_FINDING_TARGETS]:
        lines += _findings(target)
    lines += _more(min(len(flagged), MARKDOWN_MAX_FINDING_TARGETS), len(flagged), "target(s) with findings")
    lines += _issues(targets)
    return "\n".join(lines).rstrip("\n") + "\n"
