"""The commands around the results store: ``watch``, ``report``, ``diff``."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dragonfly_hybrid._core import Limits, Rules
from dragonfly_hybrid.bounds import MAX_BYTES, MAX_LEASE, available_cores
from dragonfly_hybrid.cli.common import (
    DEFAULT_LIMITS,
    MaxDownloadSizeOption,
    ThreadsOption,
    fail,
    limit_options,
    load_rules_or_exit,
    open_store,
    seconds_option,
    size_option,
)
from dragonfly_hybrid.logs import setup_logging
from dragonfly_hybrid.pypi.index import DEFAULT_INDEX_URL, DEFAULT_MAX_DOWNLOAD_SIZE, PyPIClient, PyPIError
from dragonfly_hybrid.report import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    FILE_TABLE_WIDTH,
    SARIF_ERROR_WEIGHT,
)
from dragonfly_hybrid.store.content_cache import cached_scanner
from dragonfly_hybrid.store.db import STORE_ENV, Finding, Store, StoreError, default_store_path, findings_of
from dragonfly_hybrid.targets import ReleaseTarget, TargetError, TargetScanner, parse_target

WATCH_EXIT_CODES_HELP = """\
**Exit codes**: **0** stopped normally (SIGTERM/SIGINT after finishing in-flight releases, `--once` done,
`--max-jobs` reached); **2** usage or configuration error (bad option, rules, an unusable store);
**3** could not run (with `--once`: the index could not be polled).
"""
REPORT_EXIT_CODES_HELP = """\
**Exit codes**: **0** the report was written; **2** no store, a bad `--since`, or a release the store
does not have.
"""
DIFF_EXIT_CODES_HELP = """\
**Exit codes**: **1** the new release has findings the old one does not (a new rule, or a rule matching a
new file); **0** nothing new; **3** nothing new, but a release could not be scanned completely; **2**
usage error (bad spec, rules, a project or version the index does not have).
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
FormatOption = Annotated[Fmt, typer.Option("--format", "-f", help="table or json.")]


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else FILE_TABLE_WIDTH, highlight=False)


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
    webhook_min_score: Annotated[int, typer.Option(help="Lowest score sent to the webhook.", min=0)] = 5,
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
    max_jobs: Annotated[
        int | None, typer.Option(help="Scan at most N releases, then exit.", min=1, metavar="N")
    ] = None,
    log_format: Annotated[Literal["text", "json"], typer.Option(help="Log format (stderr).")] = "text",
    log_level: Annotated[str, typer.Option(help="Log level.", metavar="LEVEL")] = "INFO",
) -> None:
    """Follow new releases on PyPI, scan each one and keep the results in the store.

    The first run records the index's current serial as the baseline; later runs scan every release
    published since, resuming where the last run stopped (nothing missed, nothing scanned twice).
    """
    import asyncio

    from dragonfly_hybrid.watch.service import WatchConfig, serve_watch
    from dragonfly_hybrid.watch.source import WatchFailed, WatchFilters
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
        summary = asyncio.run(serve_watch(config))
    except WatchFailed as err:
        fail(f"cannot poll the index: {err}", EXIT_INCOMPLETE)
    except StoreError as err:
        fail(f"store: {err}")
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
        moment = now - timedelta(seconds=float(match.group(1)) * _SECONDS[match.group(2).lower()])
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
        bool, typer.Option("--all", help="Every scan, not only those with findings.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Most scans listed.", min=1)] = 50,
    fmt: FormatOption = "table",
) -> None:
    """Query the results store: recent findings, hit counts per rule, or one release's details."""
    try:
        since_iso = parse_since(since) if since else None
    except ValueError as err:
        fail(str(err))
    with open_store(store or default_store_path(), readonly=True) as db:
        if release is not None:
            _report_release(db, *_spec(release), fmt)
        elif by_rule:
            _report_rules(db, since_iso, fmt)
        else:
            _report_scans(db, since_iso, not all_scans, limit, fmt)


def _report_scans(db: Store, since: str | None, findings_only: bool, limit: int, fmt: Fmt) -> None:
    scans = db.scans(since=since, findings_only=findings_only, limit=limit)
    if fmt == "json":
        _print_json({"scans": [s.json() for s in scans]})
        return
    title = "Recent findings" if findings_only else "Recent scans"
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for column in ("Scanned at (UTC)", "Release", "Verdict", "Score", "Rules matched", "Source"):
        table.add_column(column, justify="right" if column == "Score" else "left", overflow="fold")
    for s in scans:
        table.add_row(
            s.scanned_at[:19].replace("T", " "),
            f"{s.name}=={s.version}",
            s.verdict,
            str(s.score),
            ", ".join(s.rules_matched) or "-",
            s.source,
        )
    console = _console()
    console.print(table)
    if not scans:
        console.print("nothing stored" + (" since then" if since else ""))


def _report_rules(db: Store, since: str | None, fmt: Fmt) -> None:
    counts = db.rule_counts(since=since)
    if fmt == "json":
        _print_json({"rules": counts})
        return
    table = Table(
        title="Hits per rule (latest scan of each release)", box=box.SIMPLE_HEAVY, title_justify="left"
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


def _report_release(db: Store, name: str, version: str, fmt: Fmt) -> None:
    scan = db.latest_scan(name, version)
    if scan is None:
        fail(f"{name}=={version} is not in the store")
    details = db.details(scan.id)
    if fmt == "json":
        _print_json({**scan.json(), "distributions": details})
        return
    console = _console()
    console.print(
        Text(f"{scan.name}=={scan.version}", style="bold"), Text(scan.verdict), f"score {scan.score}"
    )
    timing = " ".join(
        f"{label} {value:.2f}s"
        for label, value in (("download", scan.download_seconds), ("scan", scan.scan_seconds))
        if value is not None
    )
    console.print(
        f"scanned {scan.scanned_at[:19].replace('T', ' ')} UTC by {scan.source}, rules "
        f"{(scan.rules_hash or '?')[:12]}" + (f", {timing}" if timing else "")
    )
    if scan.error:
        console.print(Text(f"error: {scan.error}", style="yellow"), overflow="fold")
    dists = Table(title="Distributions", box=box.SIMPLE, title_justify="left")
    for column in ("File", "Format", "Size", "Files scanned", "Score", "Verdict"):
        dists.add_column(column, justify="right" if column in ("Size", "Files scanned", "Score") else "left")
    for d in details:
        dists.add_row(
            d["name"], d["format"], str(d["size"]), str(d["files_scanned"]), str(d["score"]), d["verdict"]
        )
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
                        f"{d['name']}/{f['path']}",
                        Text(m["rule"], style=style),
                        str(m["weight"]),
                        p["identifier"],
                        str(p["offset"]),
                        str(p["length"]),
                        _short(repr(p["data"])[1:-1]),
                    )
    if matches.row_count:
        console.print(matches)
    for d in details:
        for issue in d["issues"]:
            tag = "unscanned" if issue["unscanned"] else "note"
            console.print(
                f"{tag} [{issue['kind']}] {d['name']}/{issue['path']}: {issue['message']}", overflow="fold"
            )


# ----------------------------------------------------------------------------------------------- diff


@dataclass
class Side:
    """One release of a diff: its verdict and findings, from the store or from a fresh scan."""

    name: str
    version: str
    verdict: str
    score: int
    rules_matched: list[str]
    findings: list[Finding]
    error: str | None
    origin: Literal["store", "scan"]
    keys: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for finding in self.findings:
            self.keys.setdefault((finding.rule, version_free(finding.label, self.version)), finding)

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "verdict": self.verdict,
            "score": self.score,
            "rules_matched": self.rules_matched,
            "error": self.error,
            "from": self.origin,
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


def _side(
    spec: tuple[str, str],
    db: Store | None,
    ruleset: Rules,
    scanner: TargetScanner,
    rescan: bool,
) -> Side:
    name, version = spec
    if db is not None and not rescan:
        scan = db.latest_scan(name, version, ruleset.hash)
        if scan is not None and scan.verdict != "incomplete":  # an incomplete one is worth another try
            return Side(
                scan.name,
                scan.version,
                scan.verdict,
                scan.score,
                scan.rules_matched,
                db.findings(scan.id),
                scan.error,
                "store",
            )
    target = ReleaseTarget(f"{name}=={version}", name, version)
    try:
        result = scanner.scan(scanner.resolve(target))
    except PyPIError as err:  # ProjectNotFound, VersionNotFound: usage errors
        fail(str(err))
    if db is not None and result.version is not None:
        db.record(result, rules_hash=ruleset.hash, rules_count=ruleset.count, source="diff")
    return Side(
        result.name,
        result.version or version,
        result.verdict,
        result.score,
        list(result.rules_matched),
        findings_of(result),
        result.error,
        "scan",
    )


def diff_command(
    old: Annotated[str, typer.Argument(help="The release you trust: name==version.", metavar="OLD")],
    new: Annotated[str, typer.Argument(help="The release to check: name==version.", metavar="NEW")],
    store: StoreOption = None,
    rules: RulesOption = None,
    index_url: Annotated[
        str | None, typer.Option(help="Index to download releases the store does not have.", metavar="URL")
    ] = None,
    rescan: Annotated[bool, typer.Option("--rescan", help="Scan both releases even if stored.")] = False,
    fmt: FormatOption = "table",
) -> None:
    """Show what is new in NEW compared with OLD: rules it matches that OLD did not, and files newly matched.

    Each release comes from the store when it was scanned completely with the same rules, else it is
    downloaded and scanned (and stored, when a store is in use).
    """
    specs = (_spec(old), _spec(new))
    ruleset = load_rules_or_exit(rules or [])
    path = store or default_store_path()
    db = open_store(path) if store is not None or path.is_file() else None
    engine, cache = cached_scanner(ruleset, None, available_cores(), db)
    try:
        with PyPIClient(index_url) as pypi:
            scanner = TargetScanner(engine, pypi)
            before, after = (_side(spec, db, ruleset, scanner, rescan) for spec in specs)
    finally:
        if db is not None:
            if cache is not None:
                cache.save(engine)
            db.close()
    added = [f for key, f in after.keys.items() if key not in before.keys]
    removed = [f for key, f in before.keys.items() if key not in after.keys]
    new_rules = [r for r in after.rules_matched if r not in before.rules_matched]
    gone_rules = [r for r in before.rules_matched if r not in after.rules_matched]
    if added or new_rules:
        code = EXIT_FINDINGS
    elif "incomplete" in (before.verdict, after.verdict):
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
                "exit_code": code,
            }
        )
    else:
        _render_diff(before, after, added, removed, new_rules, gone_rules)
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
            f"{side.name}=={side.version}: {side.verdict}, score {side.score}, rules "
            f"{', '.join(side.rules_matched) or '-'} (from {side.origin})"
        )
        if side.error:
            console.print(Text(f"  error: {side.error}", style="yellow"), overflow="fold")
    label = f"{after.name}=={after.version}"
    if not (added or removed or new_rules):
        console.print(Text(f"nothing new in {label}", style="green"))
    if new_rules:
        console.print(Text(f"new rules in {label}: {', '.join(new_rules)}", style="bold red"))
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
            table.add_row(Text(f.rule, style=style), str(f.weight), f.label, where)
        console.print(table)
