"""The HTML report: one self-contained page (``scan --format html``, ``report --html FILE``).

The page needs no network and no other file: it works offline, from disk, and as a CI artifact.

Layout
------
* a summary line (releases, verdicts, rule set) and the filters: a search box, a verdict and a rule
  selector; they hide the rows of every table that do not match (shown only when JavaScript runs);
* charts drawn as inline SVG by the page's own script: hits per rule, and for a watch store scans and
  findings per day;
* tables, rendered on the server so that the page reads without JavaScript: releases (verdict, score,
  rules), findings (rule, weight, description from the rule's ``description`` metadata, ``file`` or
  ``file:line``, the matched text highlighted in its snippet), distributions (readable sizes), issues,
  and hits per rule.

Data
----
The page model (:class:`Page`, as JSON) is embedded once as ``<script type="application/json"
id="report-data">``; the charts are drawn from it, and a reader can extract it. Every string in it that
came from a package (member paths, matched text, error messages) is attacker-controlled. In the HTML
they are shown printable, as the table and markdown reports write them (control, format and separator
characters as escapes: a bidi override, a zero-width space or a carriage return cannot disguise a name or
a snippet; ``page.js`` does the same to what it draws), and escaped. The JSON blob holds them as they
are, with ``<``, ``>`` and ``&`` written ``\\u003c``, ``\\u003e``, ``\\u0026``, so no package content
can end the script element.

Content Security Policy
-----------------------
``default-src 'none'`` with the hash of the page's one inline script and one inline style sheet: the
browser refuses any request (image, font, fetch, frame, form submission) and any other script, even if
hostile content were ever to slip into the markup. Hashes rather than ``'unsafe-inline'`` for styles as
well: the page sets no ``style`` attribute, so nothing needs it.
"""

from __future__ import annotations

import binascii
import gc
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from dragonfly_hybrid import __version__
from dragonfly_hybrid._core import DistributionResult, FileResult, PatternMatch, RuleMatch, Rules
from dragonfly_hybrid.report import (
    TargetResult,
    heaviest_findings,
    human_size,
    member_label,
    meta_value,
    normalize_project,
    overall_verdict,
    printable,
)

if TYPE_CHECKING:
    # The store's pages are given an open store: a scan's page never imports it (sqlite3, ~6 ms).
    from dragonfly_hybrid.store.db import ListedScan, Store, StoredRelease, StoredScan


class _AtOffset(Protocol):
    @property
    def offset(self) -> int: ...


_T = TypeVar("_T", bound=_AtOffset)

SNIPPETS_PER_FINDING = 3
"""Matched snippets shown per (file, rule); the count of the others is shown instead."""
MAX_CHART_DAYS = 366
"""The per-day chart fills days without scans up to this span; a longer one shows only days with scans."""
SNIPPET_CHARS = 160
"""Longest snippet shown (the matched text is kept, its context clipped)."""
MAX_FINDINGS = 2000
"""Most findings a scan's page lists (the heaviest; the JSON report has them all): past a few thousand a
page is neither read nor quick to open, and one wheel can hold 50,000."""


# ------------------------------------------------------------------------------------------------ model


@dataclass
class Snippet:
    """One pattern match: where it is and the text around it, split so the matched part can be marked."""

    identifier: str
    offset: int
    before: str
    matched: str
    after: str
    line: int | None = None
    column: int | None = None


@dataclass
class FindingRow:
    """One rule that matched one file."""

    release: str
    verdict: str
    file: str
    rule: str
    weight: int
    description: str | None
    snippets: list[Snippet]
    more: int


@dataclass
class ReleaseRow:
    label: str
    verdict: str
    """The release's; on a store's list page (each row a scan), the scan's own."""
    score: int
    rules: list[str]
    top_file: str | None
    error: str | None
    scanned_at: str | None = None
    source: str | None = None
    release_verdict: str | None = None
    """On a store's list page: the verdict of the scan's release as a whole, as ``report NAME==VERSION``
    gives it (a scan may have read only some of its files); what the verdict filter and the summary go by.
    None elsewhere."""
    release_score: int | None = None
    """On a store's list page: the score of the scan's release as a whole; None elsewhere."""


@dataclass
class DistributionRow:
    release: str
    verdict: str
    name: str
    format: str
    size: int
    files_scanned: int
    bytes_scanned: int
    score: int
    dist_verdict: str
    rules: list[str]
    scan: str | None = None
    """The scan it comes from (when, by what, with which rules), on a release page whose files come from
    several scans; None otherwise."""


@dataclass
class IssueRow:
    release: str
    verdict: str
    file: str
    kind: str
    message: str
    unscanned: bool


@dataclass
class RuleCount:
    rule: str
    weight: int
    releases: int
    files: int


@dataclass
class DayCount:
    day: str
    scans: int
    findings: int


@dataclass
class Page:
    """Everything the page shows; embedded as JSON and rendered as tables."""

    title: str
    generated_at: str
    rules_hash: str | None
    rules_count: int | None
    releases: list[ReleaseRow] = field(default_factory=list)
    findings: list[FindingRow] = field(default_factory=list)
    distributions: list[DistributionRow] = field(default_factory=list)
    issues: list[IssueRow] = field(default_factory=list)
    rule_counts: list[RuleCount] = field(default_factory=list)
    days: list[DayCount] = field(default_factory=list)
    tool: str = f"dragonfly-hybrid {__version__}"
    findings_total: int | None = None
    """Every finding, when ``findings`` lists only the heaviest :data:`MAX_FINDINGS`."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _clip(text: str, limit: int, keep_end: bool) -> str:
    if len(text) <= limit:
        return text
    if limit <= 0:
        return "…"  # (text[-0:] is all of it)
    return "…" + text[-limit:] if keep_end else text[:limit] + "…"


def make_snippet(
    identifier: str,
    offset: int,
    data: str,
    parts: Sequence[str] | None = None,
    line: int | None = None,
    column: int | None = None,
) -> Snippet:
    """A snippet from the match's line split as ``parts`` (before, match, after), clipped around the
    match; from its matched ``data`` alone when the line is not known (a binary file, an older store)."""
    if parts is None or len(parts) != 3:
        return Snippet(identifier, offset, "", _clip(data, SNIPPET_CHARS, keep_end=False), "")
    before, matched, after = parts
    matched = _clip(matched, SNIPPET_CHARS, keep_end=False)
    room = max(0, (SNIPPET_CHARS - len(matched)) // 2)
    return Snippet(
        identifier,
        offset,
        _clip(before, room, keep_end=True),
        matched,
        _clip(after, room, keep_end=False),
        line,
        column,
    )


def _pattern_snippet(pattern: PatternMatch, is_text: bool) -> Snippet:
    if not is_text:
        return make_snippet(
            pattern.identifier, pattern.offset, pattern.data.decode("utf-8", "backslashreplace")
        )
    # The line's parts are shown: the matched data is not needed.
    return make_snippet(
        pattern.identifier, pattern.offset, "", pattern.snippet_parts(), pattern.line, pattern.column
    )


def _description(metadata: dict[str, Any]) -> str | None:
    value = metadata.get("description")
    return None if value is None else str(meta_value(value))


def _finding(
    release: str,
    verdict: str,
    file: str,
    rule: str,
    weight: int,
    description: str | None,
    snippets: list[Snippet],
) -> FindingRow:
    shown, more = _shown_by_offset(snippets)
    return FindingRow(release, verdict, file, rule, weight, description, shown, more)


def _shown_by_offset(matches: Sequence[_T]) -> tuple[list[_T], int]:
    """The matches a finding shows (snippets, or the pattern matches they are made of): the first
    ``SNIPPETS_PER_FINDING`` by offset, and how many more there are."""
    ordered = sorted(matches, key=lambda m: m.offset)
    return ordered[:SNIPPETS_PER_FINDING], max(0, len(ordered) - SNIPPETS_PER_FINDING)


def _rule_counts(findings: Iterable[FindingRow]) -> list[RuleCount]:
    weights: dict[str, int] = {}
    releases: dict[str, set[str]] = {}
    files_by_rule: dict[str, set[str]] = {}
    for f in findings:
        weights[f.rule] = max(weights.get(f.rule, f.weight), f.weight)
        releases.setdefault(f.rule, set()).add(f.release)
        files_by_rule.setdefault(f.rule, set()).add(f.file)
    return _sorted_counts(RuleCount(r, weights[r], len(releases[r]), len(files_by_rule[r])) for r in weights)


def _sorted_counts(counts: Iterable[RuleCount]) -> list[RuleCount]:
    return sorted(counts, key=lambda c: (-c.releases, -c.files, c.rule))


def _target_label(target: TargetResult) -> str:
    if target.kind == "release" and target.version:
        return f"{target.name}=={target.version}"
    return target.target


class _Descriptions(dict[tuple[str, str], str | None]):
    """Each rule's description, read from its metadata once per page (a page lists 2,000 findings)."""

    def of(self, match: RuleMatch) -> str | None:
        key = (match.identifier, match.namespace)
        if key not in self:
            self[key] = _description(dict(match.metadata))
        return self[key]


def _match_finding(
    label: str,
    verdict: str,
    dist: DistributionResult,
    file: FileResult,
    match: RuleMatch,
    descriptions: _Descriptions,
) -> FindingRow:
    # Only the snippets shown are built.
    patterns, more = _shown_by_offset(match.patterns)
    return FindingRow(
        label,
        verdict,
        member_label(dist, file.path),
        match.identifier,
        match.weight,
        descriptions.of(match),
        [_pattern_snippet(p, file.is_text) for p in patterns],
        more,
    )


def page_from_targets(targets: Sequence[TargetResult], rules: Rules) -> Page:
    """The page of a ``scan``: every target with its findings, distributions and issues."""
    page = Page(
        title=f"dragonfly-hybrid scan: {overall_verdict(targets)}",
        generated_at=_now(),
        rules_hash=rules.hash,
        rules_count=rules.count,
    )
    total = sum(t.match_count for t in targets)
    descriptions = _Descriptions()
    many = total > MAX_FINDINGS  # then only the heaviest are built, and listed heaviest first
    if many:
        page.findings_total = total
        page.findings = [
            _match_finding(_target_label(t), t.verdict, f.dist, f.file, f.match, descriptions)
            for t, f in heaviest_findings(targets, MAX_FINDINGS)
        ]
    for t in targets:
        label = _target_label(t)
        page.releases.append(
            ReleaseRow(label, t.verdict, t.score, list(t.rules_matched), t.top_file, t.error)
        )
        for dist in t.distributions:
            page.distributions.append(
                DistributionRow(
                    label,
                    t.verdict,
                    dist.name,
                    dist.format,
                    dist.size,
                    dist.files_scanned,
                    dist.bytes_scanned,
                    dist.score,
                    dist.verdict,
                    list(dist.rules_matched),
                )
            )
            if not many:
                page.findings.extend(
                    _match_finding(label, t.verdict, dist, file, match, descriptions)
                    for file in dist.files
                    for match in file.matches
                )
            page.issues.extend(
                IssueRow(label, t.verdict, member_label(dist, i.path), i.kind, i.message, i.unscanned)
                for i in dist.issues
            )
        if t.error:
            page.issues.append(IssueRow(label, t.verdict, label, "error", t.error, True))
    page.rule_counts = _target_rule_counts(targets)
    return page


def _target_rule_counts(targets: Sequence[TargetResult]) -> list[RuleCount]:
    """Hits per rule over every finding of ``targets``, listed or not (counted by the engine)."""
    weights: dict[str, int] = {}
    releases: dict[str, set[str]] = {}
    files: dict[str, int] = {}
    for t in targets:
        for dist in t.distributions:
            for rule, (weight, count) in dist.rule_file_counts().items():
                weights[rule] = max(weights.get(rule, weight), weight)
                releases.setdefault(rule, set()).add(_target_label(t))
                files[rule] = files.get(rule, 0) + count
    return _sorted_counts(RuleCount(r, weights[r], len(releases[r]), files[r]) for r in weights)


def _stored_label(dist_name: str, path: str) -> str:
    return dist_name if not path or path == dist_name else f"{dist_name}/{path}"


def _stored_snippet(pattern: dict[str, Any]) -> Snippet:
    parts = pattern.get("snippet")
    return make_snippet(
        str(pattern.get("identifier", "")),
        int(pattern.get("offset", 0)),
        str(pattern.get("data", "")),
        [str(p) for p in parts] if isinstance(parts, list) else None,
        pattern.get("line"),
        pattern.get("column"),
    )


def _scan_label(scan: StoredScan) -> str:
    return f"{scan.scanned_at[:19].replace('T', ' ')} by {scan.source}, rules {(scan.rules_hash or '?')[:12]}"


def _distribution_scan_label(scan: StoredScan, distribution: dict[str, Any]) -> str:
    """The scan a distribution of a combined release comes from; one shown for its findings only (under an
    earlier rule set, or an earlier scan under the same rules that read the file whole) says so."""
    return f"{_shown_for_findings(distribution)}{_scan_label(scan)}"


def _shown_for_findings(distribution: dict[str, Any]) -> str:
    if distribution.get("earlier_rule_set"):
        return "an earlier rule set: "
    return "an earlier scan: " if distribution.get("findings_only") else ""


def _add_stored_release(page: Page, release: StoredRelease) -> None:
    """A release's stored files, each from the newest scan that stored it, and their combined verdict."""
    several = len(release.scans) > 1
    _add_stored(
        page,
        release.newest,
        release.distributions,
        _Summary(
            release.verdict,
            release.score,
            release.rules_matched,
            release.error,
            ", ".join(dict.fromkeys(scan.source for scan in release.scans)),
        ),
        {scan.id: scan for scan in release.scans} if several else None,
    )


def _add_stored_scan(page: Page, db: Store, listed: ListedScan) -> None:
    """A scan as ``report`` lists it: its own verdict, and its release's as a whole, which the rows of the
    scan's findings, distributions and issues are filtered by."""
    scan = listed.scan
    summary = _Summary(scan.verdict, scan.score, scan.rules_matched, scan.error, scan.source)
    _add_stored(
        page, scan, db.details(scan.id), summary, None, (listed.release_verdict, listed.release_score)
    )


class _Summary(NamedTuple):
    """What a release row shows of the stored scan(s) its distributions come from."""

    verdict: str
    score: int
    rules_matched: list[str]
    error: str | None
    source: str


def _add_stored(
    page: Page,
    scan: StoredScan,
    details: list[dict[str, Any]],
    summary: _Summary,
    scans: dict[int, StoredScan] | None,
    release: tuple[str, int] | None = None,
) -> None:
    """One release (named and dated by ``scan``, the newest) with its ``details`` (distributions); with
    ``scans``, the distributions come from several scans (each its ``scan_id``), each shown with its own.
    With ``release``, one scan of a store's list: the verdict and score of its release as a whole, which
    its rows are filtered by."""
    label = f"{scan.name}=={scan.version}"
    own_verdict, score, rules_matched, error, source = summary
    verdict = own_verdict if release is None else release[0]  # what the verdict filter matches
    top = next(
        (
            _stored_label(d["name"], d["top_file"])
            for d in sorted(details, key=lambda d: -d["score"])
            if d["top_file"]
        ),
        None,
    )
    page.releases.append(
        ReleaseRow(
            label, own_verdict, score, rules_matched, top, error, scan.scanned_at, source,
            *(release or (None, None)),
        )
    )  # fmt: skip
    for d in details:
        page.distributions.append(
            DistributionRow(
                label,
                verdict,
                d["name"],
                d["format"],
                d["size"],
                d["files_scanned"],
                d["bytes_scanned"],
                d["score"],
                d["verdict"],
                list(d["rules_matched"]),
                _distribution_scan_label(scans[d["scan_id"]], d) if scans is not None else None,
            )
        )
        for f in d["files"]:
            file = _stored_label(d["name"], f["path"])
            if d.get("findings_only"):
                file += f" ({_shown_for_findings(d)[:-2]})"
            page.findings.extend(
                _finding(
                    label,
                    verdict,
                    file,
                    m["rule"],
                    m["weight"],
                    _description(m["metadata"]),
                    [_stored_snippet(p) for p in m["patterns"]],
                )
                for m in f["matches"]
            )
        if d.get("findings_only"):
            continue  # an earlier scan of a file, shown for its findings: the newest tells what was read
        page.issues.extend(
            IssueRow(
                label,
                verdict,
                _stored_label(d["name"], i["path"]),
                i["kind"],
                i["message"],
                i["unscanned"],
            )
            for i in d["issues"]
        )
    if error:
        page.issues.append(IssueRow(label, verdict, label, "error", error, True))


def page_from_store(
    db: Store,
    *,
    since: str | None = None,
    findings_only: bool = True,
    limit: int | None = None,
    release: tuple[str, str] | None = None,
) -> Page:
    """The page of a results store: its recent scans (as ``report`` lists them,
    :meth:`~dragonfly_hybrid.store.db.Store.listed_scans`: each with its release's verdict as a whole),
    hits per rule and scans per day since ``since``; or, with ``release``, that release alone: each of
    its files from the newest scan that stored it (:class:`~dragonfly_hybrid.store.db.StoredRelease`).

    Raises ``LookupError`` when ``release`` is not in the store."""
    page = Page(
        title="dragonfly-hybrid results store", generated_at=_now(), rules_hash=None, rules_count=None
    )
    if release is not None:
        stored = db.release(*release)
        if stored is None:
            raise LookupError(f"{release[0]}=={release[1]} is not in the store")
        page.title = f"dragonfly-hybrid: {stored.name}=={stored.version}"
        hashes = {scan.rules_hash for scan in stored.scans}
        page.rules_hash = hashes.pop() if len(hashes) == 1 else None  # several: each file shows its own
        _add_stored_release(page, stored)
        page.rule_counts = _rule_counts(page.findings)
        return page
    for listed in db.listed_scans(since=since, findings_only=findings_only, limit=limit):
        _add_stored_scan(page, db, listed)
    page.rule_counts = [
        RuleCount(c["rule"], c["weight"], c["releases"], c["files"]) for c in db.rule_counts(since=since)
    ]
    page.days = every_day(
        [DayCount(d["day"], d["scans"], d["findings"]) for d in db.scans_per_day(since=since)]
    )
    return page


def every_day(days: list[DayCount]) -> list[DayCount]:
    """``days`` with the days between them that had no scan (as zeros), so the chart is a time line;
    unchanged when they span more than :data:`MAX_CHART_DAYS` or a day is not an ISO date."""
    try:
        first, last = (date.fromisoformat(days[i].day) for i in (0, -1)) if days else (None, None)
    except ValueError:
        return days
    if first is None or last is None or (last - first).days >= MAX_CHART_DAYS:
        return days
    known = {d.day: d for d in days}
    span = ((first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1))
    return [known.get(day, DayCount(day, 0, 0)) for day in span]


# --------------------------------------------------------------------------------------------- render


@cache
def _asset(name: str) -> str:
    # Beside this module: the package is always installed as files (it holds an extension module), and
    # importlib.resources would cost a page ~3 ms of imports.
    return Path(__file__).with_name(name).read_text(encoding="utf-8")


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + binascii.b2a_base64(digest, newline=False).decode() + "'"


def content_security_policy() -> str:
    """The page's policy: nothing may be fetched; only its own inline script and style sheet run."""
    return (
        f"default-src 'none'; script-src {_csp_hash(_asset('page.js'))}; "
        f"style-src {_csp_hash(_asset('page.css'))}; base-uri 'none'; form-action 'none'"
    )


_MODELS = frozenset({Page, ReleaseRow, FindingRow, Snippet, DistributionRow, IssueRow, RuleCount, DayCount})


def _model_fields(model: object) -> dict[str, Any]:
    """A page model's fields, for the JSON encoder: what ``dataclasses.asdict`` gives one level down,
    without its deep copy. A model's ``__dict__`` holds its fields, in order, and nothing else (no slots,
    no other attribute: a test holds the page's data to ``asdict``)."""
    if type(model) not in _MODELS:
        raise TypeError(f"not part of the page's data: {type(model).__name__}")
    return vars(model)


def embedded_json(value: object) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` appears in it. Page models
    (dataclasses) are written as their fields, by the encoder as it meets them (no Python copy of the
    page's 2,000 findings first). ASCII, other characters escaped: one "…" in a clipped snippet would
    otherwise make every string the encoder joins two bytes a character (11 MB of new memory for the
    1.2 MB of a 2,000-finding page, against 7 MB)."""
    # A page's models form a tree (built here, fresh): no cycle to look for.
    text = json.dumps(value, separators=(",", ":"), default=_model_fields, check_circular=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: object) -> str:
    """``value`` as text escaped for an element or a quoted attribute, as ``html.escape`` escapes it
    (not imported: the ``html`` package loads its 2,000-entity table)."""
    text = str(value)
    # Most text (paths, rule names, code) has nothing to escape; looking costs a third of escaping.
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return text.replace('"', "&quot;").replace("'", "&#x27;")
    return text


def _shown(value: object) -> str:
    """Text from the page's data as the page shows it: printable, then escaped as :func:`_e` escapes."""
    text = str(value)
    # Most text is printable already: looking is cheaper than calling (a page shows 12,000 strings).
    return _e(text if text.isprintable() else printable(text))


@lru_cache(maxsize=1024)
def _row_attributes(release: str, verdict: str, rules: tuple[str, ...]) -> str:
    # Cached: a page's 2,000 findings share a few (release, verdict, rule) triples. The rules are the
    # rule filter's option values, which are printable as their labels are.
    shown_rules = json.dumps([printable(r) for r in rules])
    return f' data-release="{_shown(release)}" data-verdict="{_e(verdict)}" data-rules="{_e(shown_rules)}"'


def _row(cells: Iterable[str], release: str, verdict: str, rules: Sequence[str]) -> str:
    return f"<tr{_row_attributes(release, verdict, tuple(rules))}>" + "".join(cells) + "</tr>"


def _td(value: object, cls: str = "") -> str:
    text = str(value) if type(value) is int else _shown(value)  # a number needs no escaping
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _verdict_cell(verdict: str) -> str:
    return f'<td><span class="verdict v-{_e(verdict)}">{_e(verdict)}</span></td>'


def _table(table_id: str, title: str, headers: Sequence[str], rows: Sequence[str], empty: str) -> list[str]:
    """The section's markup, in parts (its rows are not joined: a page may hold megabytes of them)."""
    if not rows:
        return [f'<section id="{table_id}"><h2>{_e(title)}</h2><p class="empty">{_e(empty)}</p></section>']
    # The "Release" column of the per-file tables is hidden by the style sheet on a one-release page.
    head = "".join(
        f'<th class="release">{_e(h)}</th>' if h == "Release" else f"<th>{_e(h)}</th>" for h in headers
    )
    return [
        f'<section id="{table_id}"><h2>{_e(title)} <span class="count" data-total="{len(rows)}">'
        f"{len(rows)}</span></h2>"
        f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>',
        *rows,
        '</tbody></table><p class="none-shown" hidden>No row matches the filters.</p></section>',
    ]


def _snippet_html(s: Snippet) -> str:
    where = f"line {s.line}, column {s.column}" if s.line is not None else f"offset {s.offset}"
    return (
        f'<div class="snippet"><span class="where">{_shown(s.identifier)} · {_e(where)}</span>'
        f"<code>{_shown(s.before)}<mark>{_shown(s.matched)}</mark>{_shown(s.after)}</code></div>"
    )


@lru_cache(maxsize=1024)
def _rule_cell(rule: str, weight: int, description: str | None) -> str:
    # Cached: a page's 2,000 findings name a few rules.
    cell = f'<td><span class="rule w{min(weight, 10)}">{_shown(rule)}</span>'
    if description:
        cell += f'<div class="desc">{_shown(description)}</div>'
    return cell + "</td>"


def _finding_html(f: FindingRow) -> str:
    first_line = f.snippets[0].line if f.snippets else None
    location = f"{f.file}:{first_line}" if first_line is not None else f.file
    snippets = "".join(_snippet_html(s) for s in f.snippets)
    if f.more:
        snippets += f'<div class="more">and {f.more} more match(es)</div>'
    # One string, not cells joined by `_row`: a page has 2,000 of these.
    return (
        f"<tr{_row_attributes(f.release, f.verdict, (f.rule,))}>{_td(f.release, 'release')}"
        f"{_rule_cell(f.rule, f.weight, f.description)}{_td(f.weight, 'num')}{_td(location, 'path')}"
        f'<td class="snippets">{snippets}</td></tr>'
    )


def _release_html(r: ReleaseRow) -> str:
    verdict = _verdict_cell(r.verdict)
    if r.release_verdict is not None and (r.release_verdict, r.release_score) != (r.verdict, r.score):
        # A scan of some of its release's files: the release as a whole beside it, never `clean` alone.
        verdict = (
            f'<td><span class="verdict v-{_e(r.verdict)}">{_e(r.verdict)}</span> '
            f'<span class="verdict v-{_e(r.release_verdict)}" title="the release as a whole">release: '
            f"{_e(r.release_verdict)}, score {_e(r.release_score)}</span></td>"
        )
    cells = [
        _td(r.label, "path"),
        verdict,
        _td(r.score, "num"),
        _td(", ".join(r.rules) or "-"),
        _td(r.top_file or "-", "path"),
    ]
    if r.scanned_at is not None:
        cells += [_td(r.scanned_at[:19].replace("T", " ")), _td(r.source or "-")]
    return _row(cells, r.label, r.release_verdict or r.verdict, r.rules)


def _distribution_html(d: DistributionRow, scan_column: bool) -> str:
    cells = [
        _td(d.release, "release"),
        _td(d.name, "path"),
        _td(d.format),
        f'<td class="num" title="{d.size} bytes">{_e(human_size(d.size))}</td>',
        _td(d.files_scanned, "num"),
        f'<td class="num" title="{d.bytes_scanned} bytes">{_e(human_size(d.bytes_scanned))}</td>',
        _td(d.score, "num"),
        _verdict_cell(d.dist_verdict),
    ]
    if scan_column:
        cells.append(_td(d.scan or "-"))
    return _row(cells, d.release, d.verdict, d.rules)


def _issue_html(i: IssueRow) -> str:
    cells = [
        _td(i.release, "release"),
        _td(i.file, "path"),
        _td(i.kind),
        _td("unscanned" if i.unscanned else "note"),
        _td(i.message),
    ]
    return _row(cells, i.release, i.verdict, [])


def _rule_count_html(c: RuleCount, descriptions: dict[str, str]) -> str:
    cells = [
        _td(c.rule),
        _td(c.weight, "num"),
        _td(c.releases, "num"),
        _td(c.files, "num"),
        _td(descriptions.get(c.rule, "")),
    ]
    return _row(cells, "", "", [c.rule])


def _release_key(row: ReleaseRow) -> object:
    """What makes rows one release in the summary: on a store's list page (a row per scan), its project
    and version as PyPI tells them apart (PEP 503 and PEP 440: `Foo_Bar==1.0` is `foo-bar==1.0.0`, which
    the store counts as one release too); elsewhere, the row's label."""
    if row.release_verdict is None:
        return row.label
    from dragonfly_hybrid.store.db import version_key  # a store's page: the store is loaded already

    name, _, version = row.label.partition("==")
    return normalize_project(name), version_key(version)


def _summary(page: Page) -> str:
    # A store's list page has a row per scan, and a release scanned file by file has several: the summary
    # counts releases, each once, by the verdict of the release as a whole.
    releases = {_release_key(r): r.release_verdict or r.verdict for r in page.releases}
    verdicts = {
        v: sum(found == v for found in releases.values()) for v in ("findings", "incomplete", "clean")
    }
    counts = " ".join(f'<span class="verdict v-{v}">{n} {v}</span>' for v, n in verdicts.items() if n)
    scans = f" in {len(page.releases)} scans" if len(page.releases) > len(releases) else ""
    rules = (
        f" · rules {_e((page.rules_hash or '')[:12])}"
        + (f" ({page.rules_count})" if page.rules_count else "")
        if page.rules_hash
        else ""
    )
    return (
        f'<p class="summary">{len(releases)} release(s){scans} {counts} · {_findings_count(page)} · '
        f"{len(page.issues)} issue(s){rules} · generated {_e(page.generated_at)} by {_e(page.tool)}</p>"
    )


def _findings_count(page: Page) -> str:
    if page.findings_total is None:
        return f"{len(page.findings)} finding(s)"
    return (
        f"{page.findings_total} finding(s), the {len(page.findings)} heaviest listed "
        "(<code>--format json</code> has them all)"
    )


def _filters(page: Page) -> str:
    rules = sorted({f.rule for f in page.findings} | {c.rule for c in page.rule_counts})
    rule_options = "".join(f'<option value="{_shown(r)}">{_shown(r)}</option>' for r in rules)
    return (
        '<div id="filters" hidden>'
        '<input id="search" type="search" placeholder="Search releases, files, rules, snippets" '
        'aria-label="Search">'
        '<select id="verdict-filter" aria-label="Verdict"><option value="">every verdict</option>'
        '<option value="findings">findings</option><option value="incomplete">incomplete</option>'
        '<option value="clean">clean</option></select>'
        '<select id="rule-filter" aria-label="Rule"><option value="">every rule</option>'
        f"{rule_options}</select>"
        "</div>"
    )


def _charts(page: Page) -> str:
    parts = []
    if page.rule_counts:
        parts.append(
            '<figure><figcaption>Hits per rule (releases)</figcaption><svg id="chart-rules"></svg></figure>'
        )
    if page.days:
        parts.append(
            "<figure><figcaption>Scans and findings per day (UTC)</figcaption>"
            '<svg id="chart-days"></svg></figure>'
        )
    return f'<section id="charts" hidden>{"".join(parts)}</section>' if parts else ""


def page_parts(page: Page) -> list[str]:
    """The HTML document of ``page``, in parts to be written one after the other: joining them would
    copy the megabytes of a page with 2,000 findings two or three times more."""
    store = any(r.scanned_at is not None for r in page.releases)
    release_headers = ["Release", "Verdict", "Score", "Rules matched", "Top file"]
    if store:
        release_headers += ["Scanned at (UTC)", "Source"]
    descriptions = {f.rule: f.description for f in page.findings if f.description}
    scan_column = any(d.scan is not None for d in page.distributions)  # a release's files from several scans
    body_class = "one-release" if len(page.releases) == 1 else "releases"
    return [
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(content_security_policy())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_shown(page.title)}</title><style>{_asset('page.css')}</style></head>"
        f'<body class="{body_class}"><header><h1>{_shown(page.title)}</h1>'
        f"{_summary(page)}{_filters(page)}</header>"
        f"<main>{_charts(page)}",
        *_table("releases", "Releases", release_headers, [_release_html(r) for r in page.releases],
                "No release."),
        *_table("findings", "Findings", ["Release", "Rule", "Weight", "File", "Matched"],
                [_finding_html(f) for f in page.findings], "No rule matched."),
        *_table("issues", "Issues", ["Release", "File", "Kind", "Effect", "Message"],
                [_issue_html(i) for i in page.issues], "No issue: everything was scanned."),
        *_table("distributions", "Distributions",
                ["Release", "File", "Format", "Size", "Files scanned", "Bytes scanned", "Score", "Verdict",
                 *(["Scanned at (UTC), by, rules"] if scan_column else [])],
                [_distribution_html(d, scan_column) for d in page.distributions], "No distribution."),
        *_table("rules", "Hits per rule", ["Rule", "Weight", "Releases", "Files", "Description"],
                [_rule_count_html(c, descriptions) for c in page.rule_counts], "No rule matched."),
        '</main><script type="application/json" id="report-data">',
        embedded_json(page),
        f"</script><script>{_asset('page.js')}</script></body></html>\n",
    ]  # fmt: skip


def render_page(page: Page) -> str:
    """The whole HTML document of ``page``."""
    return "".join(page_parts(page))


def write_page(page: Page, out: IO[str]) -> None:
    """Write the HTML document of ``page`` to ``out``."""
    out.writelines(page_parts(page))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused: a page's tens of thousands of models and strings hold no
    cycle, and it would walk them again and again while they are made (3 ms of a 2,000-finding page)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def write_scan_page(targets: Sequence[TargetResult], rules: Rules, out: IO[str]) -> None:
    """``scan --format html``: the page of these scan results."""
    with _collector_paused():
        write_page(page_from_targets(targets, rules), out)
