"""The commands around the results store: ``watch``, ``report``, ``diff``."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dragonfly_hybrid._core import Limits, Rules
from dragonfly_hybrid.bounds import MAX_BYTES, MAX_LEASE, available_cores
from dragonfly_hybrid.cli.base import choice_option, int_option
from dragonfly_hybrid.cli.common import (
    DEFAULT_LIMITS,
    MaxDownloadSizeOption,
    PythonVersionOption,
    ThreadsOption,
    extra_index_url_option,
    fail,
    limit_options,
    load_rules_or_exit,
    open_store,
    run_service,
    seconds_option,
    size_option,
)
from dragonfly_hybrid.cli.output import output_file
from dragonfly_hybrid.cli.scan import open_index_or_exit
from dragonfly_hybrid.closed_pipe_console import ClosedPipeConsole
from dragonfly_hybrid.logs import LogFormat, setup_logging
from dragonfly_hybrid.members import MemberListing, list_members, list_tree
from dragonfly_hybrid.pypi.index import (
    DEFAULT_INDEX_URL,
    DEFAULT_MAX_DOWNLOAD_SIZE,
    DistributionFile,
    PyPIError,
    Release,
    normalize_name,
)
from dragonfly_hybrid.redaction import redact_text
from dragonfly_hybrid.report import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    FILE_TABLE_WIDTH,
    SARIF_ERROR_WEIGHT,
    TargetResult,
    printable,
)
from dragonfly_hybrid.store.content_cache import cached_scanner
from dragonfly_hybrid.store.db import (
    STORE_ENV,
    Finding,
    ListedScan,
    Store,
    StoredScan,
    StoreError,
    default_store_path,
    findings_of,
    is_default_location,
)
from dragonfly_hybrid.targets import (
    PathTarget,
    ReleaseTarget,
    Resolved,
    Target,
    TargetError,
    TargetScanner,
    directory_files,
    parse_target,
)

WATCH_EXIT_CODES_HELP = """\
**Exit codes**: **0** stopped normally (SIGTERM/SIGINT after finishing in-flight releases, `--once` done,
`--max-jobs` reached); **2** usage or configuration error (bad option, rules, an unusable store, an index
that does not serve the PEP 691 JSON project list with `_last-serial`);
**3** could not run (with `--once`: the index could not be polled), or the store failed while watching
(corrupt pages, a full disk, a lock held past the busy timeout).
"""
REPORT_EXIT_CODES_HELP = """\
**Exit codes**: **0** the report was written (with findings in it or not); **2** no store, a store not
migrated yet (the next `scan --store` or `watch` migrates it), a bad option or `--since`, a release the store
does not have, an `--html` FILE that cannot be written, or a store that cannot be read (corrupt pages);
**141** stdout was closed early (`report | head`).
"""
DIFF_EXIT_CODES_HELP = """\
**Exit codes**: **1** NEW has findings OLD does not (a new rule, or a rule matching a new file), even when
the store failed; **0** nothing new; **3** nothing new, but a side could not be scanned or its files listed
completely, or the store failed (a release it had to scan could not be stored); **2**
usage error (a bad target, rules, a project or version the index does not have, a pip setting that cannot
be honoured such as no-index); **141** stdout closed.
"""

Fmt = Literal["table", "json"]

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help=f"The results store (SQLite). Default: ${STORE_ENV}, else "
        "$XDG_DATA_HOME/dragonfly-hybrid/store.db (~/.local/share/...).",
        metavar="PATH",
        show_default=False,
    ),
]
RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        "-r",
        help="Rule set (directory, YARA file or compiled blob). Repeatable. Default: the bundled rules.",
        metavar="PATH",
        show_default=False,
    ),
]
FormatOption = Annotated[Fmt, choice_option(Fmt, "--format", "-f", help_text="Output format.")]


class _TextConsole(ClosedPipeConsole):
    """What the store holds came from packages and indexes: every string (a table cell, a printed line) is
    shown as the text it is, never as rich markup (``[link=...]``, ``[/bold]``, which also raised on a
    closing tag without its opening one) or ``:emoji:`` codes, with control and format characters (terminal
    escapes, ``\\r``, bidi overrides) written as escapes (:func:`~dragonfly_hybrid.report.printable`).
    ``Text`` objects are made from printable text where they are built."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **kwargs)


def _console() -> Console:
    return _TextConsole(
        width=None if sys.stdout.isatty() else FILE_TABLE_WIDTH, highlight=False, markup=False, emoji=False
    )


def _print_json(document: object) -> None:
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


# ---------------------------------------------------------------------------------------------- watch


def _check_webhook(value: str | None) -> str | None:
    """``--webhook`` is checked at start (http(s) only); the message never quotes the URL (a token)."""
    if value is None:
        return None
    from dragonfly_hybrid.watch.webhook import webhook_url_problem  # the watch package: only for watch

    problem = webhook_url_problem(value)
    if problem is not None:
        raise typer.BadParameter(problem)
    return value.strip()


@limit_options
def watch_command(
    store: StoreOption = None,
    rules: RulesOption = None,
    index_url: Annotated[
        str, typer.Option(help="PEP 691 index with PyPI's `_last-serial` project list.", metavar="URL")
    ] = DEFAULT_INDEX_URL,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="Only projects whose normalized name matches this glob. Repeatable.", metavar="GLOB"
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            help="Skip projects whose normalized name matches this glob. Repeatable.", metavar="GLOB"
        ),
    ] = None,
    max_size: Annotated[
        int | None,
        size_option("Skip files the index lists as larger than SIZE (e.g. 50M).", low=0, high=MAX_BYTES),
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            help="POST a JSON summary of each release scoring at least --webhook-min-score here "
            "(http or https).",
            metavar="URL",
            callback=_check_webhook,
        ),
    ] = None,
    webhook_min_score: Annotated[
        int, int_option("Lowest score sent to the webhook.", low=0, metavar="SCORE")
    ] = 5,
    interval: Annotated[
        float, seconds_option("Seconds between polls of the index when idle.", low=0.01, high=MAX_LEASE)
    ] = 120.0,
    lease: Annotated[
        float,
        seconds_option("Seconds a release may take before it is issued again.", low=1.0, high=MAX_LEASE),
    ] = 600.0,
    threads: ThreadsOption = None,
    limits: Limits = DEFAULT_LIMITS,
    max_download_size: MaxDownloadSizeOption = DEFAULT_MAX_DOWNLOAD_SIZE,
    once: Annotated[bool, typer.Option("--once", help="Poll once, scan what is new, then exit.")] = False,
    max_jobs: Annotated[int | None, int_option("Scan at most N releases, then exit.", low=1)] = None,
    log_format: Annotated[
        LogFormat, choice_option(LogFormat, "--log-format", help_text="Log format (stderr).")
    ] = "text",
    log_level: Annotated[str, typer.Option(help="Log level.", metavar="LEVEL")] = "INFO",
) -> None:
    """Follow new releases on PyPI, scan each one and keep the results in the store.

    The first run records the index's current serial as the baseline; later runs scan every release
    published since, resuming where the last run stopped (nothing missed, nothing scanned twice).
    """
    from dragonfly_hybrid.watch.service import WatchConfig, serve_watch
    from dragonfly_hybrid.watch.sink import StoreNotWritten
    from dragonfly_hybrid.watch.source import StoreOfAnotherIndex, UnwatchableIndex, WatchFailed, WatchFilters
    from dragonfly_hybrid.watch.webhook import Webhook

    ruleset = load_rules_or_exit(rules or [])
    path = store or default_store_path()
    with open_store(path):
        pass  # creates or migrates it now, so that a bad store is a usage error before anything runs
    config = WatchConfig(
        store_path=path,
        rules=ruleset,
        index_url=index_url,
        filters=WatchFilters(tuple(include or ()), tuple(exclude or ()), max_size),
        webhook=Webhook(webhook, webhook_min_score) if webhook else None,
        interval=interval,
        lease=lease,
        limits=limits,
        threads=threads or available_cores(),
        max_download_size=max_download_size,
        once=once,
        max_jobs=max_jobs,
    )
    setup_logging(log_format, log_level)
    try:
        summary = run_service(serve_watch(config))
    except UnwatchableIndex as err:
        fail(f"cannot watch this index: {err}")
    except StoreOfAnotherIndex as err:
        fail(str(err))
    except WatchFailed as err:
        fail(f"cannot poll the index: {err}", EXIT_INCOMPLETE)
    except StoreError as err:
        fail(f"store: {err}")
    except (StoreNotWritten, sqlite3.Error) as err:
        # The store failed while watching (corrupt pages, a full disk, a lock held past the busy timeout):
        # the watcher stops; the serial never moved past a release not stored, so the next run scans it.
        fail(
            f"the store {path} failed: {err}; the watcher stopped (releases not stored yet "
            "are scanned on the next run)",
            EXIT_INCOMPLETE,
        )
    print(
        f"watch: {summary.polls} poll(s), {summary.stored} release(s) stored in {path}, "
        f"serial {summary.serial}; content cache: {summary.cache_loaded} entries loaded, "
        f"{summary.cache_hits} file(s) answered from the cache, {summary.cache_misses} scanned with "
        f"YARA-X, {summary.cache_saved} new entries saved",
        file=sys.stderr,
    )


# --------------------------------------------------------------------------------------------- report

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: datetime | None = None) -> str:
    """An ISO-8601 UTC timestamp from ``30m``/``24h``/``7d``/``2w`` (ago) or an ISO date or date-time."""
    now = now or datetime.now(timezone.utc)
    match = _DURATION.match(value)
    if match:
        try:
            moment = now - timedelta(seconds=float(match.group(1)) * _SECONDS[match.group(2).lower()])
        except OverflowError:  # before year 1 (or past a float's range): everything stored is newer
            moment = datetime.min.replace(tzinfo=timezone.utc)
        return moment.isoformat()
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time (examples: 30m, 24h, 7d, 2026-01-31, 2026-01-31T12:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _spec(value: str) -> tuple[str, str]:
    try:
        target = parse_target(value) if "==" in value else None
    except TargetError as err:
        fail(str(err))
    if not isinstance(target, ReleaseTarget) or target.version is None:
        fail(f"{value!r} is not name==version")
    return target.name, target.version


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_command(
    release: Annotated[
        str | None,
        typer.Argument(help="Show this release (name==version) in detail.", metavar="[NAME==VERSION]"),
    ] = None,
    store: StoreOption = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only scans since then: 30m, 24h, 7d, or an ISO date/time (UTC).", metavar="WHEN"),
    ] = None,
    by_rule: Annotated[bool, typer.Option("--by-rule", help="Hit counts per rule.")] = False,
    all_scans: Annotated[
        bool, typer.Option("--all", help="Every scan, not only those of releases with findings.")
    ] = False,
    limit: Annotated[int, int_option("Most scans listed.", low=1)] = 50,
    fmt: FormatOption = "table",
    html_path: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write one self-contained HTML page to FILE instead: the scans listed, hits per rule and "
            "scans per day as charts, every finding with its snippet, with search and filters.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Query the results store: recent findings, hit counts per rule, or one release's details."""
    try:
        since_iso = parse_since(since) if since else None
    except ValueError as err:
        fail(str(err))
    path = store or default_store_path()
    # One read transaction: what a writer commits meanwhile is in the report whole or not at all.
    with open_store(path, readonly=True) as db, _store_read(path), db.snapshot():
        if html_path is not None:
            spec = _spec(release) if release is not None else None
            _write_html(db, html_path, since_iso, not all_scans, limit, spec)
        elif release is not None:
            _report_release(db, *_spec(release), fmt)
        elif by_rule:
            _report_rules(db, since_iso, fmt)
        else:
            _report_scans(db, since_iso, not all_scans, limit, fmt)


@contextmanager
def _store_read(path: Path) -> Iterator[None]:
    """A store that fails while it is read (pages found corrupt past its header): one ``error:`` line
    naming it, exit 2, never a traceback."""
    try:
        yield
    except (sqlite3.Error, StoreError) as err:
        fail(f"cannot read the store {path}: {err}")


def _write_html(
    db: Store, path: Path, since: str | None, findings_only: bool, limit: int, release: tuple[str, str] | None
) -> None:
    from dragonfly_hybrid.html_report import page_from_store, write_page  # only --html needs it

    try:
        page = page_from_store(db, since=since, findings_only=findings_only, limit=limit, release=release)
    except LookupError as err:
        db.check_unchanged()
        fail(str(err))
    db.check_unchanged()  # the page is written only from a read that holds
    try:
        # A page cut short never replaces the last whole one; a mistyped FILE never replaces the store.
        with output_file(path, inputs=[(db.path, "the store it reports on")]) as out:
            write_page(page, out)
    except OSError as err:
        fail(f"cannot write {path}: {err.strerror or err}")


def _verdict_cell(listed: ListedScan) -> str:
    """A listed scan's verdict, and its release's (as `report NAME==VERSION` gives it) where that differs:
    a clean scan of some files of a flagged release never reads as `clean` alone."""
    scan = listed.scan
    if (listed.release_verdict, listed.release_score) == (scan.verdict, scan.score):
        return scan.verdict
    return f"{scan.verdict} (release: {listed.release_verdict}, score {listed.release_score})"


def _report_scans(db: Store, since: str | None, findings_only: bool, limit: int, fmt: Fmt) -> None:
    listed = db.listed_scans(since=since, findings_only=findings_only, limit=limit)
    db.check_unchanged()
    if fmt == "json":
        _print_json({"scans": [s.json() for s in listed]})
        return
    title = "Recent findings" if findings_only else "Recent scans"
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for column in ("Scanned at (UTC)", "Release", "Verdict", "Score", "Rules matched", "Source"):
        table.add_column(column, justify="right" if column == "Score" else "left", overflow="fold")
    for item in listed:
        s = item.scan
        table.add_row(
            s.scanned_at[:19].replace("T", " "),
            f"{s.name}=={s.version}",
            _verdict_cell(item),
            str(s.score),
            ", ".join(s.rules_matched) or "-",
            s.source,
        )
    console = _console()
    console.print(table)
    if not listed:
        console.print("nothing stored" + (" since then" if since else ""))


def _report_rules(db: Store, since: str | None, fmt: Fmt) -> None:
    counts = db.rule_counts(since=since)
    db.check_unchanged()
    if fmt == "json":
        _print_json({"rules": counts})
        return
    table = Table(
        title="Hits per rule (each release's files as `report NAME==VERSION` shows them)",
        box=box.SIMPLE_HEAVY,
        title_justify="left",
    )
    for column in ("Rule", "Weight", "Releases", "Files", "Last seen (UTC)"):
        table.add_column(column, justify="left" if column in ("Rule", "Last seen (UTC)") else "right")
    for c in counts:
        table.add_row(
            c["rule"],
            str(c["weight"]),
            str(c["releases"]),
            str(c["files"]),
            c["last_seen"][:19].replace("T", " "),
        )
    _console().print(table)


def _scan_line(scan: StoredScan) -> str:
    """When, by what and with which rules a scan was made, and how long it took."""
    timing = " ".join(
        f"{label} {value:.2f}s"
        for label, value in (("download", scan.download_seconds), ("scan", scan.scan_seconds))
        if value is not None
    )
    return (
        f"scanned {scan.scanned_at[:19].replace('T', ' ')} UTC by {scan.source}, rules "
        f"{(scan.rules_hash or '?')[:12]}" + (f", {timing}" if timing else "")
    )


def _scan_cell(distribution: dict[str, Any]) -> str:
    """The scan a distribution of a combined release comes from, as its rows name it: one shown for its
    findings only says so (a scan under an earlier rule set, or an earlier scan under the same rules that
    read the file whole, when the newest did not)."""
    if distribution["earlier_rule_set"]:
        earlier = ", an earlier rule set"
    elif distribution["findings_only"]:
        earlier = ", an earlier scan"
    else:
        earlier = ""
    return f"scan {distribution['scan_id']}{earlier}"


def _report_release(db: Store, name: str, version: str, fmt: Fmt) -> None:
    release = db.release(name, version)
    db.check_unchanged()
    if release is None:
        fail(f"{name}=={version} is not in the store")
    details = release.distributions
    if fmt == "json":
        _print_json(release.json())
        return
    console = _console()
    console.print(
        Text(printable(f"{release.name}=={release.version}"), style="bold"),
        Text(printable(release.verdict)),
        f"score {release.score}",
    )
    several = len(release.scans) > 1
    if any(d["earlier_rule_set"] for d in details):
        also = ", and findings of earlier rule sets"
    elif any(d["findings_only"] for d in details):
        also = ", and findings of earlier scans"
    else:
        also = ""
    if several:
        # A scan reads only some files of a release: each file is shown from the newest scan that stored it.
        console.print(f"combined from {len(release.scans)} scans, the newest of each file{also}:")
        shown = {d["scan_id"] for d in details}
        for scan in release.scans:
            # A scan with no file shown is listed for its error: no later scan read more than it could.
            unshown = (
                " (no file shown; its error still counts)" if scan.error and scan.id not in shown else ""
            )
            console.print(f"  scan {scan.id}: {_scan_line(scan)}{unshown}")
    else:
        console.print(_scan_line(release.newest))
    for scan in release.scans:
        if scan.error:
            label = f"error (scan {scan.id})" if several else "error"
            console.print(Text(printable(f"{label}: {scan.error}"), style="yellow"), overflow="fold")
    dists = Table(title="Distributions", box=box.SIMPLE, title_justify="left")
    for column in (
        "File",
        "Format",
        "Size",
        "Files scanned",
        "Score",
        "Verdict",
        *(("Scan",) if several else ()),
    ):
        dists.add_column(column, justify="right" if column in ("Size", "Files scanned", "Score") else "left")
    for d in details:
        scan_cell = (_scan_cell(d),) if several else ()
        dists.add_row(
            d["name"], d["format"], str(d["size"]), str(d["files_scanned"]), str(d["score"]), d["verdict"],
            *scan_cell,
        )  # fmt: skip
    console.print(dists)
    matches = Table(title="Matches", box=box.SIMPLE, title_justify="left")
    for column in ("File", "Rule", "Weight", "Pattern", "Offset", "Length", "Matched"):
        numeric = column in ("Weight", "Offset", "Length")
        matches.add_column(column, overflow="fold", justify="right" if numeric else "left")
    for d in details:
        for f in d["files"]:
            for m in f["matches"]:
                style = "red" if m["weight"] >= SARIF_ERROR_WEIGHT else "yellow"
                patterns = sorted(m["patterns"], key=lambda p: p["offset"]) or [
                    {"identifier": "-", "offset": "-", "length": "-", "data": ""}
                ]
                for p in patterns:
                    matches.add_row(
                        f"{d['name']}/{f['path']}" + (f" ({_scan_cell(d)})" if d["findings_only"] else ""),
                        Text(printable(m["rule"]), style=style),
                        str(m["weight"]),
                        p["identifier"],
                        str(p["offset"]),
                        str(p["length"]),
                        _short(repr(p["data"])[1:-1]),
                    )
    if matches.row_count:
        console.print(matches)
    for d in details:
        if d["findings_only"]:
            continue  # an earlier scan of a file, shown for its findings: the newest scan tells what was read
        for issue in d["issues"]:
            tag = "unscanned" if issue["unscanned"] else "note"
            where = f"{d['name']}/{issue['path']}" if issue["path"] else d["name"]  # "": the whole file
            # Text, not markup: rich takes "[member-too-large]" (or brackets in a message) for style tags.
            console.print(
                Text(printable(f"{tag} [{issue['kind']}] {where}: {issue['message']}")), overflow="fold"
            )


# ----------------------------------------------------------------------------------------------- diff


@dataclass
class Side:
    """One side of a diff: its verdict and findings (from the store or a fresh scan), and its members."""

    target: str
    name: str
    version: str | None
    verdict: str
    score: int
    rules_matched: list[str]
    findings: list[Finding]
    error: str | None
    origin: Literal["store", "scan"]
    members: MemberListing
    project: str | None
    """The normalized project name, when known (a release, or an archive named like a distribution)."""
    local: bool = False
    """A path on this machine (shown as given), not a release on the index."""
    keys: dict[tuple[str, str], Finding] = field(default_factory=dict)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Comparable member label -> (label, sha256)."""

    def __post_init__(self) -> None:
        for finding in self.findings:
            self.keys.setdefault((finding.rule, self.comparable(finding.label)), finding)
        for label, digest in self.members.hashes.items():
            self.files.setdefault(self.comparable(label), (label, digest))

    def comparable(self, label: str) -> str:
        return version_free(label, self.version) if self.version else label

    @property
    def label(self) -> str:
        return self.target if self.local else f"{self.name}=={self.version}"

    def json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "name": self.name,
            "version": self.version,
            "verdict": self.verdict,
            "score": self.score,
            "rules_matched": self.rules_matched,
            "error": self.error,
            "from": self.origin,
            "files": len(self.members.hashes),
            "file_list_problems": self.members.problems,
        }


def version_free(label: str, version: str) -> str:
    """A member label with the release's version replaced by ``*``, so files compare across versions:
    ``pkg-1.0.tar.gz/pkg-1.0/setup.py`` -> ``pkg-*.tar.gz/pkg-*/setup.py``."""
    return re.sub(rf"(?<=[-_]){re.escape(version)}(?=[-./!]|$)", "*", label)


def _finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "weight": finding.weight,
        "file": finding.label,
        "patterns": finding.patterns,
    }


def project_of_file(filename: str) -> tuple[str | None, str | None]:
    """The normalized project name and version of a file named like an sdist or a wheel, else Nones."""
    try:
        if filename.lower().endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None, None
    return str(name), str(version)


def _path_side(target: PathTarget, scanner: TargetScanner) -> Side:
    result = scanner.scan(Resolved(target))
    project = version = None
    if target.is_directory:
        files, errors = directory_files(target.path)
        members = list_tree(target.path, files, DEFAULT_LIMITS)
        members.problems.extend(errors)
    else:
        members = list_members(target.path, target.path.name, DEFAULT_LIMITS)
        project, version = project_of_file(target.path.name)
    return Side(
        target.raw,
        project or result.name,
        version,
        result.verdict,
        result.score,
        list(result.rules_matched),
        findings_of(result),
        result.error,
        "scan",
        members,
        project,
        local=True,
    )


def current_files(
    fetched: Sequence[tuple[DistributionFile, Path]], release: Release
) -> dict[str, list[str | None]]:
    """Every file the index lists for ``release`` now: its name -> the SHA-256 of each copy listed under it,
    one item per copy (an index may list one name twice, with other bytes): of the downloaded bytes, else
    the one the index lists (None: not known; two such copies stay two, not one unknown file). A stored scan
    answers for the release only if it scanned exactly these: a file added to the release since, or left
    out by a scan in hash mode, is not judged by a scan that never saw it."""
    downloaded: dict[DistributionFile, str] = {}
    for file, path in fetched:
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        downloaded[file] = digest.hexdigest()
    digests: dict[str, list[str | None]] = {}
    for file in release.files:
        digests.setdefault(file.filename, []).append(downloaded.get(file, file.sha256))
    return digests


class _DiffStore:
    """The store a diff reads releases from and keeps the releases it scans in. When it fails (corrupt
    pages, a full disk, a lock held past the busy timeout) the diff goes on without it: one ``error:``
    line, the side scanned, and exit 3 unless NEW has findings, as ``scan --store`` does (a finding is
    never hidden behind the failure, and the failure never looks clean)."""

    def __init__(self, path: Path, db: Store | None, unwritable: str | None = None) -> None:
        self.path = path
        self.db = db
        self.opened = db
        self.unwritable = unwritable
        """Why the store was opened read-only (it could not be opened for writing: a full disk)."""
        self.failed = False

    def failure(self, err: Exception | str) -> None:
        print(f"error: {redact_text(f'the store {self.path} failed: {err}')}", file=sys.stderr)
        self.db = None  # not used again: it would fail again, or answer from a store gone bad
        self.failed = True

    def stored(
        self, release: Release, ruleset: Rules, fetched: Sequence[tuple[DistributionFile, Path]]
    ) -> tuple[StoredScan, list[Finding]] | None:
        """The stored scan that read exactly ``release``'s files now, with its findings (one read)."""
        if self.db is None:
            return None
        try:
            with self.db.snapshot():  # one read; a lock-free one is checked as it ends
                scan = self.db.scan_of_files(
                    release.name, release.version, ruleset.hash, current_files(fetched, release)
                )
                return None if scan is None else (scan, self.db.findings(scan.id))
        except (sqlite3.Error, StoreError) as err:
            self.failure(err)
            return None

    def record(self, result: TargetResult, ruleset: Rules) -> None:
        if self.db is None or result.version is None:
            return
        if self.unwritable is not None:
            self.failure(f"{self.unwritable} (opened read-only: {result.name}=={result.version} not stored)")
            return
        try:
            self.db.record(result, rules_hash=ruleset.hash, rules_count=ruleset.count, source="diff")
        except (sqlite3.Error, StoreError) as err:
            self.failure(err)


def _open_diff_store(path: Path, named: bool) -> _DiffStore:
    """``diff``'s store: none unless named or the default one exists; one that cannot be opened for
    writing (a full disk, a directory this user cannot write) is read, if it can be: a release it has is
    not scanned again, and one scanned is not stored (exit 3 unless NEW has findings)."""
    if not (named or path.is_file()):
        return _DiffStore(path, None)
    try:
        return _DiffStore(path, Store(path, create_parents=is_default_location(path)))
    except (StoreError, OSError) as err:
        unwritable = str(err)
    if path.is_file():
        try:
            return _DiffStore(path, Store(path, readonly=True), unwritable)
        except (StoreError, OSError) as err:
            if str(err) != unwritable:  # it says more (a store to migrate first, on a full disk)
                unwritable += f"; nor read-only: {err}"
    fail(f"cannot open the store: {unwritable}")


def _release_side(
    resolved: Resolved, db: _DiffStore, ruleset: Rules, scanner: TargetScanner, rescan: bool
) -> Side:
    target = resolved.target
    assert isinstance(target, ReleaseTarget)
    release = resolved.release
    if release is None:  # the index could not be reached
        error = resolved.error or "the index could not be reached"
        unlisted = MemberListing(problems=[error])
        return Side(
            target.raw, target.name, target.version, "incomplete", 0, [], [], error, "scan", unlisted,
            normalize_name(target.name),
        )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dragonfly-hybrid-") as tmp:
        fetched, failures = scanner.download_release(target, release, Path(tmp))
        members = MemberListing(problems=[failure.message for failure in failures])
        for file, path in fetched:
            members.merge(list_members(path, file.filename, DEFAULT_LIMITS))
        found = None if rescan else db.stored(release, ruleset, fetched)
        if found is not None:  # one that read these very files whole (an incomplete one: try again)
            stored, findings = found
            return Side(
                target.raw, stored.name, stored.version, stored.verdict, stored.score, stored.rules_matched,
                findings, stored.error, "store", members, normalize_name(stored.name),
            )  # fmt: skip
        result = scanner.scan_downloaded(target, release, fetched, failures)
    db.record(result, ruleset)
    return Side(
        target.raw, result.name, result.version or release.version, result.verdict, result.score,
        list(result.rules_matched), findings_of(result), result.error, "scan", members,
        normalize_name(result.name),
    )  # fmt: skip


@dataclass
class FileChanges:
    """Members added, removed and changed (by SHA-256) between the two sides."""

    added: list[tuple[str, str]]
    removed: list[tuple[str, str]]
    changed: list[tuple[str, str, str, str]]
    """(old label, new label, old sha256, new sha256)."""
    unchanged: int

    @classmethod
    def between(cls, before: Side, after: Side) -> FileChanges:
        old, new = before.files, after.files
        changed = [
            (old[key][0], new[key][0], old[key][1], new[key][1])
            for key in new
            if key in old and old[key][1] != new[key][1]
        ]
        return cls(
            added=sorted(new[key] for key in new if key not in old),
            removed=sorted(old[key] for key in old if key not in new),
            changed=sorted(changed, key=lambda c: c[1]),
            unchanged=sum(1 for key in new if key in old and old[key][1] == new[key][1]),
        )

    def json(self, problems: list[str]) -> dict[str, Any]:
        return {
            "added": [{"file": label, "sha256": digest} for label, digest in self.added],
            "removed": [{"file": label, "sha256": digest} for label, digest in self.removed],
            "changed": [
                {"file": new_label, "old_file": old_label, "old_sha256": old_digest, "new_sha256": new_digest}
                for old_label, new_label, old_digest, new_digest in self.changed
            ],
            "unchanged": self.unchanged,
            "problems": problems,
        }


SIDE_HELP = (
    "an archive (sdist, wheel, zip), a directory, name==version, or name (the release pip would install)"
)


def _parse_side(raw: str) -> Target:
    try:
        return parse_target(raw)
    except TargetError as err:
        fail(str(err))


def diff_command(
    old: Annotated[str, typer.Argument(help=f"What you trust: {SIDE_HELP}.", metavar="OLD")],
    new: Annotated[str, typer.Argument(help=f"What to check: {SIDE_HELP}.", metavar="NEW")],
    store: StoreOption = None,
    rules: RulesOption = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="Index to resolve and download releases on. Default: PIP_INDEX_URL, else pip's configured "
            "index-url, else PyPI (pypi.org/simple/).",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    extra_index_url: Annotated[list[str] | None, extra_index_url_option("")] = None,
    python_version: PythonVersionOption = None,
    max_download_size: MaxDownloadSizeOption = DEFAULT_MAX_DOWNLOAD_SIZE,
    rescan: Annotated[
        bool, typer.Option("--rescan", help="Scan releases again even if the store has them.")
    ] = False,
    fmt: FormatOption = "table",
) -> None:
    """Show what is new in NEW compared with OLD: rules it matches that OLD did not, findings in new
    files, and the files added, removed and changed (by SHA-256).

    Each side is anything `scan` takes; releases are looked up on the indexes, and with the network
    settings, that `scan` uses (pip's). A release's findings come from the store when a scan with the same
    rules covered exactly the files the index lists for it now (same names and SHA-256), else it is scanned
    (and stored, when a store is in use); its files are always downloaded, to compare them.
    """
    targets = (_parse_side(old), _parse_side(new))
    ruleset = load_rules_or_exit(rules or [])
    path = store or default_store_path()
    named = store is not None or not is_default_location(path)  # --store or $DRAGONFLY_STORE
    db = _open_diff_store(path, named)
    # A store opened read-only lends no content cache: it is not saved, nor loaded outside a checked read.
    engine, cache = cached_scanner(ruleset, None, available_cores(), None if db.unwritable else db.opened)
    try:
        # Only a release needs the index: two local sides never read pip's settings (as with `scan`).
        pypi = (
            open_index_or_exit(
                index_url,
                extra_index_url or [],
                python_version=python_version,
                max_download_size=max_download_size,
            )
            if any(isinstance(t, ReleaseTarget) for t in targets)
            else None
        )
        with pypi or nullcontext():
            # pip's hash-checking mode refuses what it would install: a comparison installs nothing.
            scanner = TargetScanner(engine, pypi, refuses_unhashed=False)
            try:
                resolved = [scanner.resolve(t) for t in targets]  # usage errors before any download
            except PyPIError as err:  # ProjectNotFound, VersionNotFound
                fail(str(err))
            before, after = (
                _path_side(r.target, scanner)
                if isinstance(r.target, PathTarget)
                else _release_side(r, db, ruleset, scanner, rescan)
                for r in resolved
            )
    finally:
        if db.opened is not None:
            if cache is not None and db.db is not None:  # not into a store that failed
                cache.save(engine)
            db.opened.close()
    if before.project and after.project and before.project != after.project:
        print(
            f"warning: {old} and {new} are different projects ({before.project}, {after.project}): "
            "their files and findings hardly compare",
            file=sys.stderr,
        )
    added = [f for key, f in after.keys.items() if key not in before.keys]
    removed = [f for key, f in before.keys.items() if key not in after.keys]
    new_rules = [r for r in after.rules_matched if r not in before.rules_matched]
    gone_rules = [r for r in before.rules_matched if r not in after.rules_matched]
    files = FileChanges.between(before, after)
    problems = before.members.problems + after.members.problems
    if added or new_rules:
        code = EXIT_FINDINGS
    elif "incomplete" in (before.verdict, after.verdict) or problems or db.failed:
        code = EXIT_INCOMPLETE
    else:
        code = EXIT_CLEAN
    if fmt == "json":
        _print_json(
            {
                "old": before.json(),
                "new": after.json(),
                "new_rules": new_rules,
                "removed_rules": gone_rules,
                "new_findings": [_finding_json(f) for f in added],
                "removed_findings": [_finding_json(f) for f in removed],
                "unchanged_findings": len(after.keys) - len(added),
                "files": files.json(problems),
                "exit_code": code,
            }
        )
    else:
        _render_diff(before, after, added, removed, new_rules, gone_rules)
        _render_files(after, files, problems)
    raise typer.Exit(code)


def _render_diff(
    before: Side,
    after: Side,
    added: list[Finding],
    removed: list[Finding],
    new_rules: list[str],
    gone_rules: list[str],
) -> None:
    console = _console()
    for side in (before, after):
        console.print(
            f"{side.label}: {side.verdict}, score {side.score}, rules "
            f"{', '.join(side.rules_matched) or '-'} (from {side.origin})"
        )
        if side.error:
            console.print(Text(printable(f"  error: {side.error}"), style="yellow"), overflow="fold")
    label = after.label
    if not (added or removed or new_rules):
        console.print(Text(printable(f"nothing new in {label}"), style="green"))
    if new_rules:
        console.print(Text(printable(f"new rules in {label}: {', '.join(new_rules)}"), style="bold red"))
    if gone_rules:
        console.print(f"rules no longer matched: {', '.join(gone_rules)}")
    for title, findings in ((f"New in {label}", added), (f"Gone in {label}", removed)):
        if not findings:
            continue
        table = Table(title=title, box=box.SIMPLE, title_justify="left")
        table.add_column("Rule")
        table.add_column("Weight", justify="right")
        table.add_column("File", overflow="fold")
        table.add_column("First match", overflow="fold")
        for f in findings:
            first = min(f.patterns, key=lambda p: p["offset"]) if f.patterns else None
            where = f"{first['identifier']} @ {first['offset']}" if first else "-"
            style = "red" if f.weight >= SARIF_ERROR_WEIGHT else "yellow"
            table.add_row(Text(printable(f.rule), style=style), str(f.weight), f.label, where)
        console.print(table)


def _render_files(after: Side, files: FileChanges, problems: list[str]) -> None:
    console = _console()
    console.print(
        f"files in {after.label}: {len(files.added)} added, {len(files.removed)} removed, "
        f"{len(files.changed)} changed, {files.unchanged} unchanged"
    )
    rows = (
        [("added", label) for label, _ in files.added]
        + [("removed", label) for label, _ in files.removed]
        + [("changed", new_label) for _, new_label, _, _ in files.changed]
    )
    if rows:
        table = Table(title="Files", box=box.SIMPLE, title_justify="left")
        table.add_column("Change")
        table.add_column("File", overflow="fold")
        for change, label in rows:
            table.add_row(change, label)
        console.print(table)
    for problem in problems:
        console.print(Text(printable(f"not compared: {problem}"), style="yellow"), overflow="fold")
