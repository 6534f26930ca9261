"""Pieces shared by the CLI's commands: the `error:` line and loading rules with exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import typer

from dragonfly_hybrid._core import Rules
from dragonfly_hybrid.errors import RuleCompileError, RulesFormatError
from dragonfly_hybrid.report import EXIT_USAGE
from dragonfly_hybrid.scanning import bundled_rules_dir, load_rules


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` on stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _origin_path(origin: str, paths: Sequence[Path]) -> str:
    """Map a rule origin given by ``load_rules`` back to the file it came from, when possible."""
    for path in paths:
        if path.is_dir():
            relative = origin if len(paths) == 1 else origin.removeprefix(f"{path.name}/")
            if (len(paths) == 1 or origin.startswith(f"{path.name}/")) and (path / relative).is_file():
                return str(path / relative)
        elif path.name == origin:
            return str(path)
    return origin


def _compile_diagnostics(err: RuleCompileError, paths: Sequence[Path]) -> str:
    paths = paths or [bundled_rules_dir()]
    lines = [
        f"{_origin_path(origin, paths)}:{line}:{column}: {message}"
        for origin, line, column, message in err.diagnostics
    ]
    return "\n".join(lines) if lines else str(err)


def load_rules_or_exit(paths: Sequence[Path]) -> Rules:
    """Load rules or exit 2 with a precise reason (compile diagnostics as ``file:line:column: message``)."""
    shown = ", ".join(str(p) for p in paths) or "the bundled rule set"
    try:
        return load_rules(paths)
    except RuleCompileError as err:
        count = len(err.diagnostics) or 1
        fail(f"rules do not compile ({count} error(s)):\n{_compile_diagnostics(err, paths)}")
    except RulesFormatError as err:
        fail(f"cannot load compiled rules from {shown}: {err}")
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        fail(f"cannot read rules{where}: {err.strerror or err}")
    except ValueError as err:
        fail(f"cannot load rules from {shown}: {err}")
