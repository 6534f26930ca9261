"""dragonfly-hybrid: a fast, hardened YARA-X scanner for PyPI packages and a Dragonfly scanning node.

The scanning engine is the Rust extension ``dragonfly_hybrid._core``; this package is its public face:
:class:`Scanner` scans bytes, files and releases with :class:`Rules` (:func:`load_rules`,
:func:`bundled_rules`); :func:`fetch_and_scan` fetches a release from the index and scans it as the
``scan`` command does.
"""

from typing import TYPE_CHECKING, Any

from dragonfly_hybrid._core import (
    DistributionResult,
    FileResult,
    Limits,
    PatternMatch,
    ReleaseResult,
    RuleMatch,
    Rules,
    ScanIssue,
    Scanner,
    ScanProgress,
    __version__,
)
from dragonfly_hybrid.errors import NoRulesError, RuleCompileError, RulesFormatError, ScanCancelled
from dragonfly_hybrid.rules_loader import bundled_rules, bundled_rules_dir, load_rules

__all__ = [
    "DistributionResult",
    "FileResult",
    "Limits",
    "NoRulesError",
    "PatternMatch",
    "ReleaseResult",
    "RuleCompileError",
    "RuleMatch",
    "Rules",
    "RulesFormatError",
    "ScanCancelled",
    "ScanIssue",
    "ScanProgress",
    "Scanner",
    "__version__",
    "bundled_rules",
    "bundled_rules_dir",
    "fetch_and_scan",
    "load_rules",
]

if TYPE_CHECKING:
    from dragonfly_hybrid.api import fetch_and_scan


def __getattr__(name: str) -> Any:
    # Imported on first use: the index client and its HTTP stack are not needed to scan local files.
    if name == "fetch_and_scan":
        from dragonfly_hybrid.api import fetch_and_scan

        return fetch_and_scan
    raise AttributeError(f"module 'dragonfly_hybrid' has no attribute {name!r}")
