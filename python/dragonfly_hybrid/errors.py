"""Exceptions of the public API. They are defined by the Rust extension, which raises them, and are
imported from here.

``RuleCompileError`` (a ``ValueError``): rule sources did not compile. ``str(error)`` lists every
diagnostic as ``origin:line:column: message``; ``diagnostics`` holds them as ``(origin, line, column,
message)`` tuples (1-based line and column, 0 when unknown).

``RulesFormatError`` (a ``ValueError``): a blob is not a compiled rule set written by this version of
dragonfly-hybrid.

``ScanCancelled``: a scan was cancelled through the ``ScanProgress`` passed to it (``progress.cancel()``).

``NoRulesError`` (a ``ValueError``, defined here): rule sources that define no rule at all (empty or
comment-only files). A scan with them would match nothing and call everything clean, so ``load_rules``
refuses them.
"""

from __future__ import annotations

from dragonfly_hybrid._core import RuleCompileError, RulesFormatError, ScanCancelled

__all__ = ["NoRulesError", "RuleCompileError", "RulesFormatError", "ScanCancelled"]


class NoRulesError(ValueError):
    """The rule sources given define no rule: a scan with them could never find anything."""
