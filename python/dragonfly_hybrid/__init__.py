"""dragonfly-hybrid: a fast, hardened YARA-X scanner for PyPI packages and a Dragonfly scanning node.

The scanning engine is the Rust extension ``dragonfly_hybrid._core``; this package is its public face.
"""

import os

# The extension allocates with mimalloc, which by default keeps freed memory committed for a while and
# commits its arenas eagerly: the peak RSS of scanning the benchmark corpus on 2 threads was 172 MB with
# that and 75 MB with these (no measurable change in speed). Read once, when the extension loads;
# variables already set by the user win.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")

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
    __version__,
)
from dragonfly_hybrid.errors import RuleCompileError, RulesFormatError
from dragonfly_hybrid.scanning import bundled_rules, bundled_rules_dir, load_rules

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
    "ScanIssue",
    "Scanner",
    "__version__",
    "bundled_rules",
    "bundled_rules_dir",
    "load_rules",
]
