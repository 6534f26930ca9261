"""dragonfly-hybrid: a fast, hardened YARA-X scanner for PyPI packages and a Dragonfly scanning node.

The scanning engine is the Rust extension ``dragonfly_hybrid._core``; this package is its public face.
"""

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
from dragonfly_hybrid.errors import RuleCompileError, RulesFormatError, ScanCancelled
from dragonfly_hybrid.rules_loader import bundled_rules, bundled_rules_dir, load_rules

__all__ = [
    "DistributionResult",
    "FileResult",
    "Limits",
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
    "load_rules",
]
