"""``dragonfly-hybrid scan``: the command, its progress display, and keeping its results in a store."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dragonfly_hybrid._core import Limits, Rules, Scanner
from dragonfly_hybrid.bounds import available_cores
from dragonfly_hybrid.cli.common import (
    DEFAULT_LIMITS,
    EXIT_INTERRUPTED,
    MaxDownloadSizeOption,
    ThreadsOption,
    fail,
    limit_options,
    load_rules_or_exit,
    open_store,
)
from dragonfly_hybrid.pypi.index import (
    DEFAULT_MAX_DOWNLOAD_SIZE,
    ProgressCallback,
    ProjectNotFound,
    PyPIClient,
    VersionNotFound,
)
from dragonfly_hybrid.report import (
    EXIT_CLEAN,
    EXIT_INCOMPLETE,
    ReportFormat,
    TargetResult,
    exit_code,
    ndjson_line,
    render,
)
from dragonfly_hybrid.store.content_cache import StoreContentCache, cached_scanner
from dragonfly_hybrid.store.db import STORE_ENV, Store, StoreError
from dragonfly_hybrid.targets import (
    NoHooks,
    ReleaseTarget,
    Resolved,
    Target,
    TargetError,
    TargetScanner,
    parse_target,
)

EXIT_CODES_HELP = """\
**Exit codes** (a stable contract, for CI):

* **0**: every target was scanned completely and no rule matched.
* **1**: at least one rule matched. Findings win over incomplete scans: a malicious signal is never lost.
* **2**: usage or configuration error: a bad option, rules that cannot be read or do not compile, a path
  that does not exist and is not a PyPI name, a project or version the index does not have.
* **3**: could not scan: some target was left incomplete (a download failed, an archive member was over
  a limit or corrupt) and no rule matched anywhere.
"""

# ---------------------------------------------------------------------------------------------- progress


class RichHooks:
    """Progress display for ``scan``: one line per stage and one bar per download, on stderr."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.overall: TaskID = progress.add_task("starting", total=total)
        self.downloads: dict[str, TaskID] = {}

    def stage(self, text: str) -> None:
        self.progress.update(self.overall, description=text)

    def target_done(self) -> None:
        self.progress.advance(self.overall)

    def download(self, filename: str, size: int | None) -> ProgressCallback:
        task = self.progress.add_task(f"  {filename}", total=size, download=True)
        self.downloads[filename] = task

        def update(received: int, total: int | None) -> None:
            self.progress.update(task, completed=received, total=total or size)

        return update

    def downloaded(self, filename: str) -> None:
        task = self.downloads.pop(filename, None)
        if task is not None:
            self.progress.remove_task(task)


class _AmountColumn(ProgressColumn):
    """Bytes for a download, ``done/total targets`` for the overall task."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("download"):
            return self._bytes.render(task)
        return Text(f"{int(task.completed)}/{int(task.total or 0)} targets", style="progress.download")


@contextmanager
def _hooks(show: bool, total: int) -> Iterator[RichHooks | NoHooks]:
    if not show:
        yield NoHooks()
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _AmountColumn(),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, redirect_stdout=False) as progress:
        yield RichHooks(progress, total)


# ------------------------------------------------------------------------------------------------- scan


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        stream = path.open("w", encoding="utf-8")
    except OSError as err:
        fail(f"cannot write {path}: {err.strerror or err}")
    with stream:
        yield stream


@limit_options
def scan_command(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to scan: an archive (sdist, wheel, zip, egg; the format is detected from the bytes), "
            "a loose file, a directory (every file under it, recursively), `name==version` (that release "
            "on the index: every sdist and wheel) or `name` (its latest release).",
            metavar="TARGET",
            show_default=False,
        ),
    ] = None,
    requirements: Annotated[
        list[Path] | None,
        typer.Option(
            "--requirements",
            "-R",
            help="Scan every pinned release in a requirements file, pylock.toml, uv.lock or poetry.lock "
            "(each dependency is a target). Repeatable.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            help="Also keep the scanned releases in this results store (SQLite). Default: $DRAGONFLY_STORE "
            "when set, else no store.",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules",
            "-r",
            help="Rule set: a directory (read recursively for .yar/.yara), a YARA source file, or a blob "
            "written by `rules compile`. Repeatable. Default: the bundled rule set.",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="Report format: table, json, ndjson or sarif.")
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to FILE instead of stdout.", metavar="FILE"),
    ] = None,
    threads: ThreadsOption = None,
    limits: Limits = DEFAULT_LIMITS,
    max_download_size: MaxDownloadSizeOption = DEFAULT_MAX_DOWNLOAD_SIZE,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="Simple repository API (PEP 691) to resolve `name` and `name==version` on. Default: "
            "PIP_INDEX_URL, else pip's configured index-url, else PyPI (pypi.org/simple/).",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress display and no summary line.")
    ] = False,
) -> None:
    """Scan archives, files, directories and PyPI releases with YARA-X rules.

    Archives are inflated in memory (nothing is extracted to disk) and every member is scanned in
    parallel; hostile-input limits apply to every archive, and anything left unscanned is reported as an
    issue (never as clean). Sizes accept plain integers and K/M/G (x1000) or KiB/MiB/GiB (x1024) suffixes.
    """
    if not targets and not requirements:
        fail("nothing to scan: give at least one TARGET or --requirements FILE")
    try:
        parsed: list[Target] = [parse_target(raw) for raw in targets or []]
    except TargetError as err:
        fail(str(err))
    parsed += requirement_targets(requirements or []) if requirements else []
    results_store = open_scan_store(store)  # a bad store is a usage error, before anything is scanned
    ruleset = load_rules_or_exit(rules or [])
    engine, cache = cached_scanner(ruleset, limits, threads or available_cores(), results_store)
    show_progress = not quiet and sys.stderr.isatty()
    with ExitStack() as stack, _output(output) as out:
        # The index client (its TLS context, ~0.1 s) only when some target is on the index.
        needs_index = any(isinstance(t, ReleaseTarget) for t in parsed)
        pypi = (
            stack.enter_context(PyPIClient(index_url, max_download_size=max_download_size))
            if needs_index
            else None
        )
        # NDJSON lines are written as targets finish, except to a terminal that shows the progress display.
        stream = out if fmt == "ndjson" and not (show_progress and out.isatty()) else None
        try:
            with _hooks(show_progress, len(parsed)) as hooks:
                scanner = TargetScanner(engine, pypi, hooks)
                resolved = [scanner.resolve(t) for t in parsed]  # usage errors surface before any scan
                results = _scan_all(scanner, resolved, hooks, stream)
        except (ProjectNotFound, VersionNotFound) as err:
            fail(str(err))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        if stream is None:
            render(results, ruleset, fmt, out, quiet=quiet)
    code = exit_code(results)
    raise typer.Exit(
        store_scan_results(results_store, results, ruleset, code, scanner=engine, cache=cache, quiet=quiet)
    )


def _scan_all(
    scanner: TargetScanner,
    resolved: Sequence[Resolved],
    hooks: RichHooks | NoHooks,
    stream: IO[str] | None,
) -> list[TargetResult]:
    """Scan every target in order; with ``stream``, write each NDJSON line as soon as it is known."""
    results = []
    for item in resolved:
        result = scanner.scan(item)
        results.append(result)
        hooks.target_done()
        if stream is not None:
            stream.write(ndjson_line(result) + "\n")
            stream.flush()
    return results


# ------------------------------------------------------------------------------------- scan plumbing


def scan_store_path(option: Path | None) -> Path | None:
    """Where ``scan`` stores results: ``--store``, else ``$DRAGONFLY_STORE``, else nowhere."""
    if option is not None:
        return option
    env = os.environ.get(STORE_ENV, "").strip()
    return Path(env).expanduser() if env else None


def requirement_targets(paths: Sequence[Path]) -> list[ReleaseTarget]:
    """The pinned releases of requirements/lock files as ``scan`` targets; exits 2 on a bad file."""
    from dragonfly_hybrid.pypi.requirements import RequirementsError, read_pins  # only with -R

    try:
        pins = read_pins(list(paths))
    except RequirementsError as err:
        fail(str(err))
    for skipped in pins.skipped:
        print(f"note: skipped {skipped}", file=sys.stderr)
    if not pins.pins and not pins.skipped:
        fail(f"no requirements in {', '.join(str(p) for p in paths)}")
    return [ReleaseTarget(pin.spec, pin.name, pin.version) for pin in pins.pins]


def open_scan_store(option: Path | None) -> Store | None:
    """The store ``scan`` keeps releases in (``--store``, else ``$DRAGONFLY_STORE``), or None; exits 2 if
    it cannot be opened."""
    path = scan_store_path(option)
    return None if path is None else open_store(path)


def store_scan_results(
    db: Store | None,
    results: Sequence[TargetResult],
    rules: Rules,
    code: int,
    *,
    scanner: Scanner | None = None,
    cache: StoreContentCache | None = None,
    quiet: bool = False,
) -> int:
    """Keep the releases among ``results`` in ``db`` and what ``scanner`` scanned in its content cache;
    the exit code of the scan (3 instead of 0 when the results could not be stored; findings stay 1)."""
    if db is None:
        return code
    with db:
        try:
            db.record_many(results, rules, source="scan")
        except (StoreError, sqlite3.Error, OSError) as err:
            print(f"error: could not store the results in {db.path}: {err}", file=sys.stderr)
            return code if code != EXIT_CLEAN else EXIT_INCOMPLETE
        if scanner is not None and cache is not None:
            cache.save(scanner)
            if not quiet:
                print(cache_summary(scanner, cache), file=sys.stderr)
    return code


def cache_summary(scanner: Scanner, cache: StoreContentCache) -> str:
    """One line: what the persisted content cache saved (the engine's own counters)."""
    stats = scanner.cache_stats
    return (
        f"content cache: {cache.loaded} entries loaded from {cache.store.path}; {stats['hits']} file(s) "
        f"answered from the cache, {stats['misses']} scanned with YARA-X, {cache.saved} new entries saved"
    )
