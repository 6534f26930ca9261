"""Exceptions of the public API (raised by the Rust extension too)."""

from __future__ import annotations


class RuleCompileError(ValueError):
    """Rule sources did not compile.

    ``str(error)`` lists every diagnostic as ``origin:line:column: message``; ``diagnostics`` holds
    them as ``(origin, line, column, message)`` tuples (1-based line and column, 0 when unknown).
    """

    def __init__(self, message: str, diagnostics: list[tuple[str, int, int, str]]) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


class RulesFormatError(ValueError):
    """A blob is not a compiled rule set written by this version of dragonfly-hybrid."""
