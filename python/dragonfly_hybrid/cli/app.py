"""The ``dragonfly-hybrid`` command line: the typer app, and where each command lives.

* ``scan``: :mod:`.scan`
* ``rules check``, ``rules compile``, ``rules test`` (the ``rules`` sub-app): :mod:`.rules`
* ``node``, ``config``: :mod:`.node`
* ``watch``, ``report``, ``diff`` (the results store): :mod:`.store`
* options and helpers they share: :mod:`.common`

:func:`main` builds the app with the one command its first argument names (:func:`build_app`), importing
that command's module only: building a command makes typer build its options, so a ``scan`` pays neither
for the imports nor for the options of ``node``, ``watch`` or ``rules``. Anything else (no argument, an
option first, ``--help``, an unknown command) gets the whole app, so help and errors read the same.

Exit codes are a public contract (see :data:`~dragonfly_hybrid.cli.scan.EXIT_CODES_HELP`): 0 clean,
1 findings, 2 usage or configuration error, 3 could not scan completely.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TextIO, cast

import typer

from dragonfly_hybrid.cli import version_line
from dragonfly_hybrid.cli.base import DragonflyCommand, DragonflyGroup
from dragonfly_hybrid.closed_pipe import discard_stdout, exit_closed_pipe
from dragonfly_hybrid.report import EXIT_INCOMPLETE, printable

app: typer.Typer
"""The app with every command: built on first use (module ``__getattr__``), as tests and the help need it."""


def version() -> None:
    """Print the version."""
    print(version_line())


def _print_version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit(0)


def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Fast, hardened YARA-X malware scanner for PyPI packages."""


def _add_scan(group: typer.Typer) -> None:
    from dragonfly_hybrid.cli.scan import EXIT_CODES_HELP, scan_command

    group.command("scan", epilog=EXIT_CODES_HELP, cls=DragonflyCommand)(scan_command)


def _add_version(group: typer.Typer) -> None:
    group.command("version", cls=DragonflyCommand)(version)


def _add_node(group: typer.Typer) -> None:
    from dragonfly_hybrid.cli.node import NODE_EXIT_CODES_HELP, node_command

    group.command("node", epilog=NODE_EXIT_CODES_HELP, cls=DragonflyCommand)(node_command)


def _add_config(group: typer.Typer) -> None:
    from dragonfly_hybrid.cli.node import config_command

    group.command("config", cls=DragonflyCommand)(config_command)


def _add_watch(group: typer.Typer) -> None:
    from dragonfly_hybrid.cli.store import WATCH_EXIT_CODES_HELP, watch_command

    group.command("watch", epilog=WATCH_EXIT_CODES_HELP, cls=DragonflyCommand)(watch_command)


def _add_report(group: typer.Typer) -> None:
    from dragonfly_hybrid.cli.store import REPORT_EXIT_CODES_HELP, report_command

    group.command("report", epilog=REPORT_EXIT_CODES_HELP, cls=DragonflyCommand)(report_command)


def _add_diff(group: typer.Typer) -> None:
    from dragonfly_hybrid.cli.store import DIFF_EXIT_CODES_HELP, diff_command

    group.command("diff", epilog=DIFF_EXIT_CODES_HELP, cls=DragonflyCommand)(diff_command)


def _add_rules(group: typer.Typer) -> None:
    from dragonfly_hybrid.cli.rules import rules_app

    group.add_typer(rules_app, name="rules")


COMMANDS: dict[str, Callable[[typer.Typer], None]] = {
    "scan": _add_scan,
    "version": _add_version,
    "node": _add_node,
    "config": _add_config,
    "watch": _add_watch,
    "report": _add_report,
    "diff": _add_diff,
    "rules": _add_rules,
}
"""Every top-level command, in the order the help lists them, and how to add it to an app."""


def build_app(command: str | None = None) -> typer.Typer:
    """The app with every command, or with ``command`` (a key of :data:`COMMANDS`) alone."""
    epilog = None
    if command is None:
        # The root's help (the only place its epilog shows) lists scan's exit codes.
        from dragonfly_hybrid.cli.scan import EXIT_CODES_HELP

        epilog = EXIT_CODES_HELP
    built = typer.Typer(
        name="dragonfly-hybrid",
        help="Fast, hardened YARA-X malware scanner for PyPI packages.",
        epilog=epilog,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode="markdown",
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
        cls=DragonflyGroup,
    )
    built.callback()(_root)
    for name in COMMANDS if command is None else [command]:
        COMMANDS[name](built)
    return built


def command_named(argv: list[str]) -> str | None:
    """The command ``argv`` (without the program) runs when its first argument names one; None otherwise
    (the root takes no option with a value, so a command can only come first)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""A write refused for want of room (a full disk, a quota, a file size limit): the machine's state, not a
bug, so one line and no traceback."""


class _Diagnostics:
    """``sys.stderr`` while a command runs. A diagnostic that cannot be written for want of room (stderr
    on a full disk: ``... >log 2>&1``) is dropped, and stderr discarded from then on: the exit code stays
    the command's own. Raised, the error ended every command with exit 1 (an exception escaping the
    handler that was printing it), which claims findings: a clean scan, a usage error, ``report``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _full(self, err: OSError) -> None:
        if err.errno not in _NO_ROOM:
            raise err
        try:  # what is still buffered for it would fail again at every flush, and at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # a stream without a descriptor: nothing more to do
            pass

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as err:
            self._full(err)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            self._full(err)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def exit_not_written(err: OSError) -> NoReturn:
    """Exit 3 (the output is not whole: never 0 or 1) naming what could not be written."""
    discard_stdout()  # what is still buffered for stdout would fail again at exit
    where = os.fsdecode(err.filename) if err.filename is not None else "the output"
    message = f"error: cannot write {printable(where)}: {err.strerror or err}"
    print(message, file=_diagnostics(sys.stderr), flush=True)
    sys.exit(EXIT_INCOMPLETE)


def _diagnostics(stream: TextIO | None) -> TextIO | None:
    """``stream`` (stderr) as :class:`_Diagnostics`, once; None (no stderr at all) as it is."""
    if stream is None or isinstance(stream, _Diagnostics):
        return stream
    return cast(TextIO, _Diagnostics(stream))


def _discard_missing_streams() -> None:
    """Started without fd 1 or fd 2 (``>&-``, ``2>&-``), Python leaves ``sys.stdout``/``sys.stderr`` None:
    commands crashed on them (exit 3 for a clean scan, the traceback printed to stdout by
    ``print(file=None)``). What is written to a stream the process was not given is discarded, as into
    ``/dev/null``: the exit code stays the command's own. Nothing written to it can fail
    (``backslashreplace``, as Python's own stderr): strict, a file name that is not UTF-8 (surrogate
    escapes) in an error line or a JSON report raised, and a usage error exited 1, a scan 3."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            # The process's own, never closed.
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8", errors="backslashreplace"))


def main() -> None:
    """Console-script entry point: expected errors are one `error:` line; a crash is exit 3, never 1."""
    _discard_missing_streams()
    stderr = sys.stderr
    sys.stderr = _diagnostics(stderr)  # type: ignore[assignment]  # never None here
    try:
        _main()
    finally:
        sys.stderr = stderr


def _main() -> None:
    try:
        try:
            build_app(command_named(sys.argv[1:]))(prog_name="dragonfly-hybrid")
        finally:
            sys.stdout.flush()  # here, where a closed pipe can still be told apart from findings
    except BrokenPipeError:
        exit_closed_pipe()
    except KeyboardInterrupt:
        from dragonfly_hybrid.cli.common import EXIT_INTERRUPTED

        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # a bug: show it, and never let it pass for "findings" (exit 1)
        if isinstance(err, OSError) and err.errno in _NO_ROOM:
            exit_not_written(err)
        from dragonfly_hybrid.redaction import describe_error, redact_text

        # Redacted: an unexpected error's message (and those of its causes) may quote a URL with its
        # credentials, or a secret.
        print(redact_text(traceback.format_exc()), end="", file=sys.stderr)
        print(f"error: internal error: {describe_error(err)}", file=sys.stderr)
        sys.exit(EXIT_INCOMPLETE)


def __getattr__(name: str) -> Any:
    if name == "app":
        globals()["app"] = full = build_app()
        return full
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
