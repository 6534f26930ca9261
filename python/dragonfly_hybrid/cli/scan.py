"""``dragonfly-hybrid scan``: the command, its progress display, and keeping its results in a store."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Annotated

import typer

from dragonfly_hybrid._core import Limits, Rules, Scanner, ScanProgress
from dragonfly_hybrid.bounds import DEFAULT_MAX_DOWNLOAD_SIZE, available_cores
from dragonfly_hybrid.cli.base import choice_option, int_option
from dragonfly_hybrid.cli.common import (
    DEFAULT_LIMITS,
    MaxDownloadSizeOption,
    PythonVersionOption,
    ThreadsOption,
    extra_index_url_option,
    fail,
    finish,
    limit_options,
    load_rules_or_exit,
    open_store,
)
from dragonfly_hybrid.cli.output import output_file
from dragonfly_hybrid.http_client import NetworkSettingsError
from dragonfly_hybrid.redaction import redact_text
from dragonfly_hybrid.report import (
    EXIT_CLEAN,
    EXIT_INCOMPLETE,
    REPORT_DIGESTS,
    Digests,
    Origin,
    ReportFormat,
    TargetResult,
    exit_code,
    printable,
    render,
    write_ndjson_line,
)
from dragonfly_hybrid.rules_loader import rule_source_files
from dragonfly_hybrid.store import STORE_ENV
from dragonfly_hybrid.targets import (
    INDEX_PREFIX,
    FetchedCallback,
    NoHooks,
    PathTarget,
    ReleaseTarget,
    Resolved,
    Target,
    TargetError,
    TargetScanner,
    index_settings,
    open_index,
    parse_target,
    run_in_worker,
    stream_identity,
)

if TYPE_CHECKING:
    # Imported where they are used: a scan of local files without a store or -R never needs the index
    # client, pip's settings, the requirements reader or the store (~9 ms of start-up).
    from packaging.version import Version

    from dragonfly_hybrid.cli.scan_progress import RichHooks
    from dragonfly_hybrid.pypi.dependencies import DependencyNotes
    from dragonfly_hybrid.pypi.index import DistributionFile, PyPIClient, Release
    from dragonfly_hybrid.pypi.pipconfig import PipSettings
    from dragonfly_hybrid.pypi.requirements import Pins
    from dragonfly_hybrid.store.content_cache import StoreContentCache
    from dragonfly_hybrid.store.db import Store

EXIT_CODES_HELP = """\
**Exit codes** (a stable contract, for CI):

* **0**: every target was scanned completely and no rule matched.
* **1**: at least one rule matched (in a target scoring at least `--min-score`). Findings win over
  incomplete scans: a malicious signal is never lost.
* **2**: usage or configuration error: a bad option, rules that cannot be read, do not compile or define
  no rule, a path that does not exist and is not a PyPI name, a project or version the index does not have.
* **3**: could not scan: some target was left incomplete (a download failed or did not match its hash,
  an archive member was over a limit or corrupt), or -R entries that are not index releases were skipped
  (unless --allow-skipped), and no rule matched anywhere (or only in targets below `--min-score`); or the
  report could not be written (a full disk).
* **130** (143 for SIGTERM): stopped by Ctrl-C (SIGINT) or SIGTERM, within a second at any stage, after one
  `stopping…` line; no report is written (an `--output` file is left as it was; one bind-mounted and
  already being written over is finished first).
* **141**: stdout was closed before the output was written (`... | head`), as for a shell's SIGPIPE.
"""

# ---------------------------------------------------------------------------------------------- progress


@contextmanager
def _hooks(show: bool, total: int) -> Iterator[RichHooks | NoHooks]:
    if not show:
        yield NoHooks()
        return
    from dragonfly_hybrid.cli.scan_progress import progress_display  # rich: only for the display

    with progress_display(total) as hooks:
        yield hooks


# ------------------------------------------------------------------------------------------------- scan


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the scan was cancelled and the command exits ``128 + signum``. Not an
    ``Exception``, so that no handler of errors takes it for one."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


@contextmanager
def _stop_on_signals(progress: ScanProgress) -> Iterator[None]:
    """SIGINT and SIGTERM cancel ``progress`` (so the engine stops within milliseconds), print one
    ``stopping…`` line and raise :class:`Interrupted` in the main thread, wherever it is waiting (on the
    index, a download or a scan: those run on worker threads it waits for in short steps); the command
    then exits ``128 + signum``."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if progress.cancelled:  # a second signal while the first one unwinds: stop at once
            os._exit(128 + signum)
        progress.cancel()
        print("stopping…", file=sys.stderr, flush=True)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except Interrupted as stop:
        raise typer.Exit(stop.exit_code) from None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@limit_options
def scan_command(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to scan: an archive (sdist, wheel, zip, egg; the format is detected from the bytes), "
            "a loose file, a directory (every file under it, recursively), `name==version` (that release "
            "on the index: every sdist and wheel) or `name` (the release pip would install: its latest final "
            "one, by pip's settings).",
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
            "(each dependency is a target). Repeatable. For requirements files not in pip's hash-checking "
            "mode, the dependencies the releases declare that no -R file pins (or that pip takes from a URL) "
            "are named in a note, one level deep; an sdist pip would build has unknown ones (its build "
            "decides).",
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
        ReportFormat,
        choice_option(
            ReportFormat,
            "--format",
            "-f",
            help_text="Report format: markdown is for CI summaries, html one self-contained page.",
        ),
    ] = "table",
    min_score: Annotated[
        int,
        int_option(
            "Targets scoring below N do not set exit code 1 (their findings are still reported, marked "
            "below the threshold). 0: any match fails.",
            low=0,
        ),
    ] = 0,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the report to FILE instead of stdout (`-` also means stdout), renamed into place "
            "once whole; never a file the scan reads (a target, a file under a target directory, a -R file, "
            "a rule source, the store).",
            metavar="FILE",
        ),
    ] = None,
    threads: ThreadsOption = None,
    limits: Limits = DEFAULT_LIMITS,
    max_download_size: MaxDownloadSizeOption = DEFAULT_MAX_DOWNLOAD_SIZE,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="Simple repository API (PEP 691) to resolve `name` and `name==version` on; an --index-url "
            "line of a -R file wins over it, as in pip. Default: PIP_INDEX_URL, else pip's configured "
            "index-url, else PyPI (pypi.org/simple/). pip's other settings apply too (extra indexes, "
            "find-links, cert, client-cert, trusted-host, proxy, pre, all-releases, only-final, "
            "uploaded-prior-to, no-binary, only-binary, prefer-binary, ignore-requires-python, "
            "require-hashes, no-require-hashes, constraint (read as a -c line); no-index and requirement are "
            "refused: see the README).",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    extra_index_url: Annotated[list[str] | None, extra_index_url_option("those of the -R files, ")] = None,
    python_version: PythonVersionOption = None,
    allow_skipped: Annotated[
        bool,
        typer.Option(
            "--allow-skipped",
            help="Exit 0 (not 3) when -R entries that are not index releases (URLs, paths, VCS, editables) "
            "were skipped and everything else is clean.",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress display and no summary line.")
    ] = False,
) -> None:
    """Scan archives, files, directories and PyPI releases with YARA-X rules.

    Archives are inflated in memory (nothing is extracted to disk) and every member is scanned in
    parallel; hostile-input limits apply to every archive, and anything left unscanned is reported as an
    issue (never as clean). Sizes accept plain integers and K/M/G (x1000) or KiB/MiB/GiB (x1024) suffixes.
    """
    live = ScanProgress()
    with _stop_on_signals(live):
        _refuse_requirements_as_rules(rules or [])  # first: `scan -r requirements.txt` has no TARGET either
        if not targets and not requirements:
            fail("nothing to scan: give at least one TARGET or --requirements FILE")
        try:
            parsed: list[Target] = [parse_target(raw) for raw in targets or []]
        except TargetError as err:
            fail(str(err))
        for target in parsed:
            if isinstance(target, PathTarget) and target.shadows_name:
                kind = "directory" if target.is_directory else "file"
                print(
                    f"note: scanning the local {kind} {target.raw}; "
                    f"for the project on the index, write {INDEX_PREFIX}{target.raw}",
                    file=sys.stderr,
                )
        pins = read_requirements(requirements or [], python_version)
        parsed += requirement_targets(pins)
        results_store = open_scan_store(store)  # a bad store is a usage error, before anything is scanned
        ruleset = run_in_worker(lambda: load_rules_or_exit(rules or []))  # compiling takes a while
        engine, cache = new_scanner(
            ruleset, limits, threads, results_store, parsed, digests=REPORT_DIGESTS[fmt]
        )
        show_progress = not quiet and sys.stderr.isatty()
        # pip's settings matter (and are checked) only when something is fetched from an index; the index
        # client (httpx, its TLS context: ~0.1 s) too.
        needs_index = any(isinstance(t, ReleaseTarget) for t in parsed)
        pypi = None
        lookup_errors: tuple[type[Exception], ...] = ()
        if needs_index:
            from dragonfly_hybrid.pypi.index import ProjectNotFound, VersionNotFound

            lookup_errors = (ProjectNotFound, VersionNotFound)
            pypi = open_index_or_exit(
                index_url,
                extra_index_url or [],
                pins.settings if pins else None,
                pins.pip if pins else None,
                python_version=python_version,
                max_download_size=max_download_size,
                # A lock file's entries take none of pip's settings: pip's constraint and requirement files
                # do not matter.
                reads_pip=any(isinstance(t, ReleaseTarget) and t.find_links for t in parsed),
            )
            if pins is not None:  # the -R files' lines turn pip's hash-checking mode on, or keep it off
                pypi.hash_mode = pins.hash_mode or (None if pins.no_require_hashes else pypi.hash_mode)
        # The report never replaces what the scan reads: a file scanned (given or under a directory), -R
        # files, the rule sources, the store it keeps the results in.
        inputs = [
            (t.path, f"in the scanned directory {t.raw}" if t.is_directory else f"the scanned file {t.raw}")
            for t in parsed
            if isinstance(t, PathTarget)
        ] + [(path, f"the requirements file {path}") for path in requirements or []]
        if rules:
            inputs += [(path, f"the rule source {path}") for path in rule_source_files(rules).values()]
        if results_store is not None:
            inputs.append((results_store.path, "the store it keeps the results in"))
        dependencies, on_fetched = _dependency_notes(requirements or [], pins, pypi)
        with pypi or nullcontext(), output_file(output, inputs=inputs, unwritten=EXIT_INCOMPLETE) as out:
            # NDJSON lines are written as targets finish, except to a terminal showing the progress display.
            stream = out if fmt == "ndjson" and not (show_progress and out.isatty()) else None
            try:
                with _hooks(show_progress, len(parsed)) as hooks:
                    # The -o file being written (new, under a scanned directory) holds the report's bytes
                    # only: it is not scanned. (Not stdout's file: `>> log` keeps what was there.)
                    own = stream_identity(out) if out is not sys.stdout else frozenset()
                    scanner = TargetScanner(
                        engine, pypi, hooks, note=_note, progress=live, own_output=own, on_fetched=on_fetched
                    )
                    resolved = [scanner.resolve(t) for t in parsed]  # usage errors surface before any scan
                    results = _scan_all(scanner, resolved, hooks, stream)
            except lookup_errors as err:
                fail(str(err))
            if stream is None:
                render(results, ruleset, fmt, out, quiet=quiet, min_score=min_score)
        for line in dependencies.lines() if dependencies is not None else ():
            _note(line)  # a note, not a verdict: exit codes are unchanged
        code = exit_code(results, min_score)
        if pins is not None and pins.skipped and code == EXIT_CLEAN and not allow_skipped:
            print(
                f"error: {len(pins.skipped)} -R entr{'y was' if len(pins.skipped) == 1 else 'ies were'} not "
                "scanned (not index releases; listed above): exit 3, or pass --allow-skipped to accept that",
                file=sys.stderr,
            )
            code = EXIT_INCOMPLETE
        stored = store_scan_results(
            results_store, results, ruleset, code, scanner=engine, cache=cache, quiet=quiet
        )
    finish(stored)


def _scan_all(
    scanner: TargetScanner,
    resolved: Sequence[Resolved],
    hooks: RichHooks | NoHooks,
    stream: IO[str] | None,
) -> list[TargetResult]:
    """Scan every target in order (the local paths first, together); with ``stream``, write each NDJSON
    line as soon as it is known."""
    results = []
    for result in scanner.scan_all(resolved):
        results.append(result)
        hooks.target_done()
        if stream is not None:
            write_ndjson_line(result, stream)
            stream.flush()
    return results


# ------------------------------------------------------------------------------------- scan plumbing


def shares_contents(targets: Sequence[Target], store: Store | None) -> bool:
    """Whether a run can meet a content twice, and so gains from the engine's content cache: with a
    store (it keeps what it saw), a release from an index (its sdist and wheels hold the same files), a
    directory, or two archives of one project. Hashing every file for a cache nothing will read costs
    about as much as scanning them with light rules (issue 19), and distinct projects share next to
    nothing; a wrong guess either way changes the time taken, never a result."""
    if store is not None:
        return True
    projects: set[str] = set()
    for target in targets:
        if isinstance(target, ReleaseTarget) or target.is_directory:
            return True
        project = project_key(target.path.name)
        if project in projects:
            return True
        projects.add(project)
    return False


_ARCHIVE_SUFFIX = re.compile(
    r"(\.tar\.(gz|bz2|xz|lzma|lz)|\.t[gbxl]z|\.tar|\.zip|\.whl|\.egg)$", re.IGNORECASE
)
_VERSION_START = re.compile(r"-(?=v?\d)")


def project_key(filename: str) -> str:
    """The project part of a distribution's file name, normalized (``Foo_Bar-1.0.tar.gz`` and
    ``foo.bar-2.0-py3-none-any.whl`` -> ``foo-bar``); the whole name when it has no version part."""
    stem = _ARCHIVE_SUFFIX.sub("", filename)
    project = _VERSION_START.split(stem, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", project).lower()


def new_scanner(
    rules: Rules,
    limits: Limits,
    threads: int | None,
    store: Store | None,
    targets: Sequence[Target],
    *,
    digests: Digests,
) -> tuple[Scanner, StoreContentCache | None]:
    """The run's Scanner; with a store, ``cached_scanner``'s, which records its content cache, loaded from
    the store. Without one, the plain Scanner ``cached_scanner`` would give, built here so that a scan
    without a store never imports the store (sqlite3); it takes only the ``digests`` its report shows. The
    store keeps every digest, so a Scanner for it always hashes."""
    if store is None:
        content_cache = shares_contents(targets, None)
        return Scanner(
            rules, limits, threads or available_cores(), content_cache=content_cache, digests=digests
        ), None
    from dragonfly_hybrid.store.content_cache import cached_scanner

    return cached_scanner(rules, limits, threads or available_cores(), store)


def scan_store_path(option: Path | None) -> Path | None:
    """Where ``scan`` stores results: ``--store``, else ``$DRAGONFLY_STORE``, else nowhere."""
    if option is not None:
        return option
    env = os.environ.get(STORE_ENV, "").strip()
    return Path(env).expanduser() if env else None


def read_requirements(paths: Sequence[Path], python_version: str | None = None) -> Pins | None:
    """The pins of requirements/lock files (None without files; constraints' markers evaluated for
    ``python_version``); exits 2 on a bad file or version. Skipped entries are listed on stderr."""
    if not paths:
        return None
    from dragonfly_hybrid.pypi.pipconfig import PipConfigError
    from dragonfly_hybrid.pypi.requirements import RequirementsError, read_pins

    try:
        pins = read_pins(list(paths), python_version=_python_version(python_version))
    except (RequirementsError, PipConfigError) as err:  # pip's require-hashes is read with the files
        # The messages quote the files' lines: a line's escape sequences must not reach the terminal.
        fail("\n".join(printable(line) for line in str(err).split("\n")))
    for skipped in pins.skipped:
        _note(f"skipped {printable(skipped)}")
    for remark in pins.notes:
        _note(printable(remark))
    if not pins.pins and not pins.skipped:
        fail(f"no requirements in {', '.join(str(p) for p in paths)}")
    return pins


def requirement_targets(pins: Pins | None) -> list[ReleaseTarget]:
    """The pinned releases as ``scan`` targets, each with its hashes and its requirements-file line."""
    if pins is None:
        return []
    return [
        ReleaseTarget(
            pin.spec,
            pin.name,
            pin.version,
            pin.hashes,
            Origin(pin.path, pin.line) if pin.line is not None else None,
            pin.files,
            pin.index_url,
            find_links=pin.line is not None,  # a lock's entry (no line) takes no find-links
        )
        for pin in pins.pins
    ]


def _dependency_notes(
    paths: Sequence[Path], pins: Pins | None, pypi: PyPIClient | None
) -> tuple[DependencyNotes | None, FetchedCallback | None]:
    """What collects the dependencies of the releases of pip requirements files that no -R file pins, and
    the ``TargetScanner`` callback feeding it (None, None when there is nothing to say: no requirements
    file, lock files only, pip's hash-checking mode)."""
    if pins is None or pypi is None:
        return None, None
    from dragonfly_hybrid.pypi.dependencies import dependency_notes, wants_notes

    if not wants_notes(pins):
        return None, None
    notes = dependency_notes(paths, pins, pypi.python_version, pypi.candidate_files)

    def on_fetched(
        target: ReleaseTarget, release: Release, fetched: Sequence[tuple[DistributionFile, Path]]
    ) -> None:
        if target.origin is not None and not target.locked:  # a line of a requirements file
            notes.add(release, fetched)

    return notes, on_fetched


def _note(text: str) -> None:
    """``note: text`` on stderr, redacted (a skipped line of a requirements file may hold a token)."""
    print(f"note: {redact_text(text)}", file=sys.stderr)


def open_index_or_exit(
    index_url: str | None,
    extra_index_urls: Sequence[str],
    from_requirements: PipSettings | None = None,
    pip: PipSettings | None = None,
    *,
    python_version: str | None = None,
    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE,
    reads_pip: bool = True,
) -> PyPIClient:
    """The index client of ``scan`` and ``diff``: pip's indexes and network settings (configuration
    files and environment, ``pip`` when read already; ``-R`` files' option lines, the command line;
    :func:`index_settings`); exits 2 on one that cannot be honoured (``reads_pip``: :func:`open_index`)
    or a bad ``--python-version``."""
    from dragonfly_hybrid.pypi.pipconfig import PipConfigError

    try:
        settings = index_settings(index_url, extra_index_urls, from_requirements, pip, reads_pip=reads_pip)
        client = open_index(
            settings,
            python_version=_python_version(python_version),
            max_download_size=max_download_size,
            reads_pip=reads_pip,
        )
    except (PipConfigError, NetworkSettingsError) as err:
        fail(str(err))
    cutoff = settings.uploaded_prior_to
    if cutoff is not None:  # why the release scanned may not be the newest
        _note(
            f"pip's uploaded-prior-to: only index files uploaded before {cutoff.isoformat()} are candidates "
            "(lock files' entries excepted)"
        )
    return client


def _python_version(text: str | None) -> Version:
    """``--python-version``: X.Y or X.Y.Z; exits 2 otherwise."""
    from dragonfly_hybrid.pypi.index import target_python

    try:
        return target_python(text)
    except ValueError as err:
        fail(f"--python-version {err}")


def _refuse_requirements_as_rules(paths: Sequence[Path]) -> None:
    """``-r requirements.txt`` out of pip's habit (here ``-r`` is ``--rules``): say so, exit 2."""
    # Only a file can be one (its reader imports the index client's helpers: only then).
    suspects = [p for p in paths if p.suffix.lower() not in (".yar", ".yara") and p.is_file()]
    if not suspects:
        return
    from dragonfly_hybrid.pypi.requirements import looks_like_requirements

    for path in suspects:
        if looks_like_requirements(path):
            fail(
                f"{path} looks like a requirements file, not YARA rules (-r is --rules here): "
                f"did you mean -R/--requirements {path}?"
            )


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
    import sqlite3

    from dragonfly_hybrid.store.db import StoreError

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
