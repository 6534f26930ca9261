"""The ``dragonfly-hybrid`` command line: ``scan``, ``rules check``, ``rules compile`` and ``version``
(``node``/``config`` come from ``cli.node``, ``watch``/``report``/``diff`` from ``cli.store``).

Exit codes are a public contract (see :data:`EXIT_CODES_HELP`): 0 clean, 1 findings, 2 usage or
configuration error, 3 could not scan completely.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Literal

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

from dragonfly_hybrid import __version__
from dragonfly_hybrid._core import Limits
from dragonfly_hybrid.cli.common import (
    DEFAULT_LIMITS,
    MaxDownloadSizeOption,
    ThreadsOption,
    fail,
    limit_options,
    load_rules_or_exit,
)
from dragonfly_hybrid.cli.node import NODE_EXIT_CODES_HELP, config_command, node_command
from dragonfly_hybrid.cli.store import (
    DIFF_EXIT_CODES_HELP,
    REPORT_EXIT_CODES_HELP,
    WATCH_EXIT_CODES_HELP,
    diff_command,
    open_scan_store,
    report_command,
    requirement_targets,
    store_scan_results,
    watch_command,
)
from dragonfly_hybrid.pypi.index import (
    DEFAULT_MAX_DOWNLOAD_SIZE,
    ProgressCallback,
    ProjectNotFound,
    PyPIClient,
    VersionNotFound,
)
from dragonfly_hybrid.report import (
    EXIT_INCOMPLETE,
    TargetResult,
    exit_code,
    ndjson_line,
    render,
)
from dragonfly_hybrid.store.content_cache import cached_scanner
from dragonfly_hybrid.targets import Resolved, Target, TargetError, TargetScanner, parse_target

EXIT_CODES_HELP = """\
**Exit codes** (a stable contract, for CI):

* **0**: every target was scanned completely and no rule matched.
* **1**: at least one rule matched. Findings win over incomplete scans: a malicious signal is never lost.
* **2**: usage or configuration error: a bad option, rules that cannot be read or do not compile, a path
  that does not exist and is not a PyPI name, a project or version the index does not have.
* **3**: could not scan: some target was left incomplete (a download failed, an archive member was over
  a limit or corrupt) and no rule matched anywhere.
"""

EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="dragonfly-hybrid",
    help="Fast, hardened YARA-X malware scanner for PyPI packages.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)
rules_app = typer.Typer(
    help="Check rule sets and compile them to a blob that loads without compiling.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(rules_app, name="rules")


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


class QuietHooks:
    def stage(self, text: str) -> None:
        pass

    def target_done(self) -> None:
        pass

    def download(self, filename: str, size: int | None) -> ProgressCallback:
        return lambda received, total: None

    def downloaded(self, filename: str) -> None:
        pass


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
def _hooks(show: bool, total: int) -> Iterator[RichHooks | QuietHooks]:
    if not show:
        yield QuietHooks()
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

Format = Literal["table", "json", "ndjson", "sarif"]


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


@app.command(epilog=EXIT_CODES_HELP)
@limit_options
def scan(
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
        Format, typer.Option("--format", "-f", help="Report format: table, json, ndjson or sarif.")
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
    engine, cache = cached_scanner(ruleset, limits, threads, results_store)
    show_progress = not quiet and sys.stderr.isatty()
    with PyPIClient(index_url, max_download_size=max_download_size) as pypi, _output(output) as out:
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
    hooks: RichHooks | QuietHooks,
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


# ------------------------------------------------------------------------------------------------ rules


RulePaths = Annotated[
    list[Path],
    typer.Argument(
        help="Directories (read recursively for .yar/.yara), YARA source files, or one compiled blob.",
        metavar="PATH",
        show_default=False,
    ),
]


@rules_app.command("check")
def rules_check(paths: RulePaths) -> None:
    """Compile rules and print their count and hash; exit 2 with `file:line:column: message` if they fail."""
    ruleset = load_rules_or_exit(paths)
    print(f"ok: {ruleset.count} rule(s), hash {ruleset.hash}")


@rules_app.command("compile")
def rules_compile(
    paths: RulePaths,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the compiled blob.", metavar="FILE")
    ],
) -> None:
    """Compile rules to a blob that `scan --rules FILE` loads without compiling again (same hash)."""
    ruleset = load_rules_or_exit(paths)
    try:
        output.write_bytes(ruleset.serialize())
    except OSError as err:
        fail(f"cannot write {output}: {err.strerror or err}")
    print(f"wrote {ruleset.count} rule(s), hash {ruleset.hash}, to {output}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------- misc


@app.command()
def version() -> None:
    """Print the version."""
    print(f"dragonfly-hybrid {__version__}")


def _print_version(value: bool) -> None:
    if value:
        print(f"dragonfly-hybrid {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Fast, hardened YARA-X malware scanner for PyPI packages."""


app.command("node", epilog=NODE_EXIT_CODES_HELP)(node_command)
app.command("config")(config_command)
app.command("watch", epilog=WATCH_EXIT_CODES_HELP)(watch_command)
app.command("report", epilog=REPORT_EXIT_CODES_HELP)(report_command)
app.command("diff", epilog=DIFF_EXIT_CODES_HELP)(diff_command)


def main() -> None:
    """Console-script entry point: expected errors are one `error:` line; a crash is exit 3, never 1."""
    try:
        app(prog_name="dragonfly-hybrid")
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # a bug: show it, and never let it pass for "findings" (exit 1)
        traceback.print_exc()
        print(f"error: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(EXIT_INCOMPLETE)
