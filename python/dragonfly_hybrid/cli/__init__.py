"""The `dragonfly-hybrid` command line: one typer app (`app.py`), a module per group of commands.

`main` answers `--version` alone without loading the app (typer and every command's module): the one
invocation that needs nothing else starts in the time of the interpreter. `app` is loaded on first use.
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
    _load_app()
    from dragonfly_hybrid.cli.app import main as run_app

    run_app()


def _load_app() -> Any:
    from dragonfly_hybrid.cli.app import app

    # Importing the submodule bound its name, `app`, on this package: the name means the typer app.
    globals()["app"] = app
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
