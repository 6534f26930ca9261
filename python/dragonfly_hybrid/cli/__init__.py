"""The `dragonfly-hybrid` command line: one typer app (`app.py`), a module per group of commands.

`main` answers `--version` alone without loading the app (typer and every command's module): the one
invocation that needs nothing else starts in the time of the interpreter. `app` is loaded on first use.
For a `scan`, `main` starts loading its rules (the bundled set, or the paths `--rules` names) from the rules
cache before anything else is imported (`rules_loader.prefetch_rules`): the load overlaps the imports and
option parsing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dragonfly_hybrid.cli.app import app

__all__ = ["app", "exit_at_once", "main", "rules_arguments", "run", "version_line"]

exit_at_once = False
"""True when the process is the program (:func:`run`): a finished ``scan`` then ends it at once
(``common.finish``). In process (tests, embedding) it stays False and commands raise ``SystemExit``."""


def version_line() -> str:
    """What `--version` and `version` print."""
    from dragonfly_hybrid import __version__

    return f"dragonfly-hybrid {__version__}"


def main() -> None:
    """Console-script entry point: :func:`dragonfly_hybrid.cli.app.main`, or the version line at once."""
    _fill_standard_descriptors()
    if sys.argv[1:] == ["--version"]:
        try:
            print(version_line(), flush=True)
        except BrokenPipeError:  # `... --version | true`: 141 quietly, as every command (closed_pipe)
            from dragonfly_hybrid.closed_pipe import exit_closed_pipe

            exit_closed_pipe()
        except OSError as err:  # `--version >full-disk/file`: one line and 3, as every command (app.main)
            from dragonfly_hybrid.cli.app import exit_not_written

            exit_not_written(err)
        return
    rules = rules_arguments(sys.argv[2:]) if sys.argv[1:2] == ["scan"] else None
    if rules is not None:
        from dragonfly_hybrid.rules_loader import prefetch_rules

        prefetch_rules(rules)
    from dragonfly_hybrid.cli.app import main as run_app

    run_app()


def _fill_standard_descriptors() -> None:
    """Open ``/dev/null`` on a standard descriptor the process was started without (``<&-``, ``>&-``,
    ``2>&-``): else the next file opened (the report being written, the rules cache) took its number, and
    what writes to that descriptor directly (a panic message of the engine on 2) wrote into that file."""
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` itself
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def run() -> None:
    """The program: the `dragonfly-hybrid` script and `python -m dragonfly_hybrid.cli`. :func:`main`, as the
    process's own (see :data:`exit_at_once`)."""
    global exit_at_once
    exit_at_once = True
    main()


def rules_arguments(args: list[str]) -> list[str] | None:
    """The values of ``scan``'s ``--rules``/``-r`` options in ``args`` (empty: the bundled set), read ahead of
    the parser; None when that cannot be told for sure (a short-option cluster holding an ``r``, a missing
    value): then nothing is loaded ahead. A wrong guess only costs the load: the prefetched set is used only
    by a ``load_rules`` of the same paths."""
    values: list[str] = []
    remaining = iter(args)
    for arg in remaining:
        if arg == "--":
            break
        if arg in ("-r", "--rules"):
            value = next(remaining, None)
            if value is None:
                return None
            values.append(value)
        elif arg.startswith("--rules="):
            values.append(arg.partition("=")[2])
        elif arg.startswith("-r"):
            values.append(arg[2:])
        elif arg.startswith("-") and not arg.startswith("--") and "r" in arg:
            return None
    return values


def _load_app() -> Any:
    from dragonfly_hybrid.cli.app import app

    # Importing the submodule bound its name, `app`, on this package: the name means the typer app.
    globals()["app"] = app
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
