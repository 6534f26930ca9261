"""The `dragonfly-hybrid` command line: one typer app (`app.py`), a module per group of commands.

`main` answers `--version` alone without loading the app (typer and every command's module): the one
invocation that needs nothing else starts in the time of the interpreter. `app` is loaded on first use.
For a `scan` with the bundled rules, `main` starts loading them from the rules cache before anything else
is imported (`rules_loader.prefetch_bundled_rules`): the load overlaps the imports and option parsing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dragonfly_hybrid.cli.app import app

__all__ = ["app", "main", "version_line"]


def version_line() -> str:
    """What `--version` and `version` print."""
    from dragonfly_hybrid import __version__

    return f"dragonfly-hybrid {__version__}"


def main() -> None:
    """Console-script entry point: :func:`dragonfly_hybrid.cli.app.main`, or the version line at once."""
    if sys.argv[1:] == ["--version"]:
        print(version_line())
        return
    if sys.argv[1:2] == ["scan"] and not may_name_rules(sys.argv[2:]):
        from dragonfly_hybrid.rules_loader import prefetch_bundled_rules

        prefetch_bundled_rules()
    from dragonfly_hybrid.cli.app import main as run_app

    run_app()


def may_name_rules(args: list[str]) -> bool:
    """Whether ``scan``'s arguments may give ``--rules``/``-r`` (then the bundled set is not worth loading
    ahead): any ``--rules...`` and any short-option cluster holding an ``r``, before a ``--``."""
    for arg in args:
        if arg == "--":
            return False
        if arg.startswith("--rules") or (arg.startswith("-") and not arg.startswith("--") and "r" in arg):
            return True
    return False


def _load_app() -> Any:
    from dragonfly_hybrid.cli.app import app

    # Importing the submodule bound its name, `app`, on this package: the name means the typer app.
    globals()["app"] = app
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
