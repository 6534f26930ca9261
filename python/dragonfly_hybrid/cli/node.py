"""The ``node`` and ``config`` commands of the ``dragonfly-hybrid`` CLI.

The node, its settings (pydantic) and the index client are imported when a command runs, not when the CLI
starts: every other command would pay for them (see ``tests/test_startup.py``)."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from dragonfly_hybrid.cli.base import choice_option, int_option
from dragonfly_hybrid.cli.common import fail, load_rules_or_exit, run_service
from dragonfly_hybrid.closed_pipe import discard_stdout, exit_closed_pipe
from dragonfly_hybrid.logs import LogFormat
from dragonfly_hybrid.report import EXIT_INCOMPLETE, EXIT_USAGE, printable

if TYPE_CHECKING:
    from dragonfly_hybrid.node.settings import NodeSettings

NODE_EXIT_CODES_HELP = """\
**Exit codes**: **0** stopped normally (SIGTERM/SIGINT after draining, `--once` drained, `--max-jobs`
reached, a standalone run done); **2** configuration error (the message names the variable, both of them
for a setting given two values under its two spellings), an unknown release in `--job`, unusable rules
(standalone); **3** could not start or run (login refused, mainframe
unreachable, its first rule set unusable, `--once` unable to claim jobs, standalone results that could
not be written, a crash); **130** (143 for SIGTERM) a standalone run stopped by SIGINT (SIGTERM) before
every release had its result line; **141** stdout closed (standalone).
"""

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of settings (keys are the variable names without DRAGONFLY_, lower case). "
        "Default: the path in DRAGONFLY_CONFIG, if set.",
        metavar="FILE",
        show_default=False,
    ),
]


def _settings(config: Path | None, overrides: dict[str, object]) -> NodeSettings:
    """The settings, with the flags given on the command line as overrides; exits 2 when invalid (a
    problem with a flag's value names the variable and the flag: ``DRAGONFLY_THREADS (--threads): ...``)."""
    from dragonfly_hybrid.node.settings import ConfigError, load_settings

    flags = {name: "--" + name.replace("_", "-") for name in overrides}
    try:
        return load_settings(config, overrides, flags=flags)
    except ConfigError as err:
        fail(str(err), EXIT_USAGE)


_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*(\S+))?\s*$")


def read_job_specs(jobs: Sequence[str], jobs_file: Path | None) -> list[tuple[str, str | None]]:
    """``name==version`` (or ``name``) specs from the command line and a file (one per line, # comments)."""
    lines = list(jobs)
    if jobs_file is not None:
        try:
            text = jobs_file.read_text(encoding="utf-8")
        except OSError as err:
            fail(f"cannot read {jobs_file}: {err.strerror or err}", EXIT_USAGE)
        lines += [line.split("#", 1)[0] for line in text.splitlines()]
    specs = []
    for line in lines:
        if not line.strip():
            continue
        match = _SPEC.match(line)
        if match is None:
            fail(f"{line.strip()!r} is not name==version or name", EXIT_USAGE)
        specs.append((match.group(1), match.group(2)))
    return specs


def resolve_releases(
    specs: Sequence[tuple[str, str | None]], index_url: str | None
) -> list[tuple[str, str, list[str]]]:
    """Every release's download URLs, from the index; an unknown project or version, or (without
    ``index_url``) pip settings pip refuses to run with, is a usage error."""
    from dragonfly_hybrid.pypi.index import PyPIClient, PyPIError
    from dragonfly_hybrid.pypi.pipconfig import PipConfigError

    releases: list[tuple[str, str, list[str]]] = []
    if not specs:  # an empty --jobs-file: nothing to look up, pip's settings are not read
        return releases
    try:
        pypi = PyPIClient(index_url)  # without --index-url: pip's, from its configuration files
    except PipConfigError as err:
        fail(str(err), EXIT_USAGE)
    with pypi:
        for name, version in specs:
            try:
                release = pypi.resolve(name, version)
            except PyPIError as err:
                fail(str(err), EXIT_USAGE)
            releases.append((release.name, release.version, [f.url for f in release.files]))
    return releases


def _ends_mid_line(path: Path) -> bool:
    """Whether the file ``path`` ends with a line cut short (an earlier run stopped by a full disk or a
    kill): a line appended to it would be glued to that one, and a JSON lines reader would lose both."""
    try:
        if not path.is_file():
            return False  # a pipe, a device
        with path.open("rb") as existing:
            if existing.seek(0, os.SEEK_END) == 0:
                return False
            existing.seek(-1, os.SEEK_END)
            return existing.read(1) != b"\n"
    except OSError:
        return False


@contextmanager
def _results_stream(output: Path | None) -> Iterator[IO[str]]:
    if output is None or str(output) == "-":
        yield sys.stdout
        return
    try:
        stream = output.open("a", encoding="utf-8")
    except OSError as err:
        fail(f"cannot write {output}: {err.strerror or err}", EXIT_USAGE)
    if _ends_mid_line(output):
        stream.write("\n")  # the first result is a line of its own, not the end of the cut one
    try:
        yield stream
    except BaseException:
        with suppress(OSError):  # what could not be written was said already (ResultsNotWritten)
            stream.close()
        raise
    try:
        stream.close()
    except OSError as err:
        fail(f"cannot write the results to {output}: {err.strerror or err}", EXIT_INCOMPLETE)


def node_command(
    config: ConfigFile = None,
    once: Annotated[bool, typer.Option("--once", help="Drain the jobs available now, then exit.")] = False,
    max_jobs: Annotated[
        int | None, int_option("Claim at most N jobs, finish them, then exit.", low=1)
    ] = None,
    job: Annotated[
        list[str] | None,
        typer.Option(
            "--job",
            help="Standalone mode: scan this release (name==version or name) instead of claiming jobs "
            "from the mainframe. Repeatable. No account needed.",
            metavar="SPEC",
            show_default=False,
        ),
    ] = None,
    jobs_file: Annotated[
        Path | None,
        typer.Option(
            help="Standalone mode: a file of releases, one name==version (or name) per line; # comments.",
            metavar="FILE",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Standalone mode: append results as JSON lines to FILE (default stdout).",
            metavar="FILE",
        ),
    ] = None,
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules", "-r", help="Standalone mode: rule set (default: the bundled rules).", metavar="PATH"
        ),
    ] = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="Standalone mode: the index to resolve releases on. Default: PIP_INDEX_URL, else pip's "
            "configured index-url, else PyPI (pypi.org/simple/).",
            metavar="URL",
        ),
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="DRAGONFLY_BASE_URL.", metavar="URL")] = None,
    threads: Annotated[int | None, typer.Option(help="DRAGONFLY_THREADS.", metavar="N")] = None,
    bulk_size: Annotated[int | None, typer.Option(help="DRAGONFLY_BULK_SIZE.", metavar="N")] = None,
    job_timeout: Annotated[
        float | None, typer.Option(help="DRAGONFLY_JOB_TIMEOUT.", metavar="SECONDS")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="DRAGONFLY_METRICS_PORT.", metavar="PORT")] = None,
    log_format: Annotated[
        LogFormat | None, choice_option(LogFormat, "--log-format", help_text="DRAGONFLY_LOG_FORMAT.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DRAGONFLY_LOG_LEVEL.", metavar="LEVEL")] = None,
) -> None:
    """Run a Dragonfly scanning node: claim jobs, download, scan, submit, until stopped.

    Configured with the `DRAGONFLY_*` environment variables, a `.env` file or `--config FILE`; the flags
    below override them. SIGTERM/SIGINT stop claiming and finish in-flight jobs within the grace period
    (a second signal stops at once). With `--job`/`--jobs-file` the node runs standalone: releases come
    from the index and results are written as JSON lines.
    """
    from dragonfly_hybrid.errors import NoRulesError, RuleCompileError
    from dragonfly_hybrid.http_client import NetworkSettingsError
    from dragonfly_hybrid.logs import setup_logging
    from dragonfly_hybrid.node.jobs import MainframeError
    from dragonfly_hybrid.node.mainframe import AuthError
    from dragonfly_hybrid.node.service import LocalJobs, StoppedIncomplete, serve
    from dragonfly_hybrid.node.settings import ConfigError
    from dragonfly_hybrid.node.sinks import ResultsNotWritten

    overrides: dict[str, object] = {
        "base_url": base_url,
        "threads": threads,
        "bulk_size": bulk_size,
        "job_timeout": job_timeout,
        "metrics_port": metrics_port,
        "log_format": log_format,
        "log_level": log_level,
    }
    settings = _settings(config, overrides)
    setup_logging(settings.log_format, settings.log_level)
    specs = read_job_specs(job or [], jobs_file)
    try:
        if specs or jobs_file is not None:
            ruleset = load_rules_or_exit(rules or [])
            releases = resolve_releases(specs, index_url)
            with _results_stream(output) as stream:
                local = LocalJobs(releases, ruleset, stream)
                run_service(serve(settings, once=True, max_jobs=max_jobs, local=local))
        else:
            run_service(serve(settings, once=once, max_jobs=max_jobs))
    except (ConfigError, NetworkSettingsError) as err:
        fail(str(err), EXIT_USAGE)
    except AuthError as err:
        fail(f"cannot log in to the mainframe: {err}", EXIT_INCOMPLETE)
    except ResultsNotWritten as err:  # standalone: results were lost, so the run is not done
        cause = err.__cause__
        if isinstance(cause, BrokenPipeError):
            exit_closed_pipe()  # `node --job ... | head -1`: 141, as every command
        where: object = output
        if output is None or str(output) == "-":
            where = "stdout"
            discard_stdout()  # what is still buffered for it cannot be written either
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause or err
        fail(f"cannot write the results to {where}: {reason}", EXIT_INCOMPLETE)
    except StoppedIncomplete as err:  # standalone: the results file lacks releases of the list
        fail(str(err), err.exit_code)
    except MainframeError as err:
        fail(f"mainframe: {err}", EXIT_INCOMPLETE)
    except (RuleCompileError, NoRulesError) as err:
        # The mainframe's first rule set (a later unusable one keeps the last good set instead).
        fail(f"the mainframe's rules cannot be used: {printable(str(err))}", EXIT_INCOMPLETE)


def config_command(config: ConfigFile = None) -> None:
    """Show the effective node configuration (secrets masked) as JSON; exit 2 if it is invalid."""
    settings = _settings(config, {})
    print(json.dumps(settings.masked(), indent=2, default=str))
