"""The ``dragonfly-hybrid`` command line: the typer app, and where each command lives.

* ``scan``: :mod:`.scan`
* ``rules check``, ``rules compile``, ``rules test`` (the ``rules`` sub-app): :mod:`.rules`
* ``node``, ``config``: :mod:`.node`
* ``watch``, ``report``, ``diff`` (the results store): :mod:`.store`
* options and helpers they share: :mod:`.common`

Exit codes are a public contract (see :data:`~dragonfly_hybrid.cli.scan.EXIT_CODES_HELP`): 0 clean,
1 findings, 2 usage or configuration error, 3 could not scan completely.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from dragonfly_hybrid.cli import version_line
from dragonfly_hybrid.cli.base import DragonflyCommand, DragonflyGroup
from dragonfly_hybrid.cli.common import EXIT_INTERRUPTED
from dragonfly_hybrid.cli.node import NODE_EXIT_CODES_HELP, config_command, node_command
from dragonfly_hybrid.cli.rules import rules_app
from dragonfly_hybrid.cli.scan import EXIT_CODES_HELP, scan_command
from dragonfly_hybrid.cli.store import (
    DIFF_EXIT_CODES_HELP,
    REPORT_EXIT_CODES_HELP,
    WATCH_EXIT_CODES_HELP,
    diff_command,
    report_command,
    watch_command,
)
from dragonfly_hybrid.closed_pipe import exit_closed_pipe
from dragonfly_hybrid.report import EXIT_INCOMPLETE

app = typer.Typer(
    name="dragonfly-hybrid",
    help="Fast, hardened YARA-X malware scanner for PyPI packages.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    cls=DragonflyGroup,
)


def version() -> None:
    """Print the version."""
    print(version_line())


def _print_version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Fast, hardened YARA-X malware scanner for PyPI packages."""


app.command("scan", epilog=EXIT_CODES_HELP, cls=DragonflyCommand)(scan_command)
app.command("version", cls=DragonflyCommand)(version)
app.command("node", epilog=NODE_EXIT_CODES_HELP, cls=DragonflyCommand)(node_command)
app.command("config", cls=DragonflyCommand)(config_command)
app.command("watch", epilog=WATCH_EXIT_CODES_HELP, cls=DragonflyCommand)(watch_command)
app.command("report", epilog=REPORT_EXIT_CODES_HELP, cls=DragonflyCommand)(report_command)
app.command("diff", epilog=DIFF_EXIT_CODES_HELP, cls=DragonflyCommand)(diff_command)
app.add_typer(rules_app, name="rules")


def main() -> None:
    """Console-script entry point: expected errors are one `error:` line; a crash is exit 3, never 1."""
    try:
        try:
            app(prog_name="dragonfly-hybrid")
        finally:
            sys.stdout.flush()  # here, where a closed pipe can still be told apart from findings
    except BrokenPipeError:
        exit_closed_pipe()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # a bug: show it, and never let it pass for "findings" (exit 1)
        traceback.print_exc()
        print(f"error: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(EXIT_INCOMPLETE)
