//! dragonfly-core: the attacker-facing hot path of dragonfly-hybrid, free of Python.
//!
//! Detects a distribution's format from its bytes, walks tarballs and zips in memory under
//! hostile-input [`Limits`], scans every regular file with YARA-X in parallel, and scores the
//! results as the Dragonfly mainframe expects.

mod cache;
mod codec;
mod control;
mod crc;
mod engine;
mod format;
mod issue;
mod json;
mod limits;
mod membuf;
mod report;
mod routing;
mod rules;
mod sarif;
mod service;
mod walk;
mod zipdir;

pub use cache::CacheEntryError;
pub use control::ScanControl;
pub use engine::{
    default_threads, never, DistInput, Engine, EngineError, Input, Interrupted, MAX_THREADS, POLL_INTERVAL,
};
pub use format::{detect, interpretations, Container, Format};
pub use issue::{Issue, IssueKind};
pub use json::{ascii_backslashed, utf8_backslashed, write_distributions, Layout};
pub use limits::{Limits, RATIO_GRACE_BYTES};
pub use report::{
    inspector_url, DistributionReport, FileReport, PatternHit, ReleaseReport, RuleHit, Tally, Verdict,
    MATCHES_PER_PATTERN, MATCH_DATA_BYTES,
};
pub use rules::{
    Diagnostic, Meta, RuleInfo, RuleSet, RulesError, COMPILED_MAGIC, COMPILED_PREFIX, COMPILED_ROUTED_MAGIC,
};
pub use sarif::{
    prefetch_findings, rank as rank_findings, write_result as write_sarif_result, FindingRef, ResultContext,
};
pub use service::{CacheStats, Digests, CACHE_ENTRIES};
pub use walk::MAX_NESTING_DEPTH;

/// Entry points for the fuzz targets under `rust/core/fuzz`; not a stable interface.
#[doc(hidden)]
pub mod fuzzing {
    use crate::{Container, DistributionReport, Engine};

    /// Walk `data` as `container`, bypassing format detection, on the engine's pool.
    pub fn walk_as(engine: &Engine, container: Container, data: &[u8]) -> DistributionReport {
        engine.walk_as(container, data)
    }

    /// The entries of a plain tarball as the header parser reads them: `(name, size, data
    /// offset, next header offset)`, and why it stopped.
    pub fn tar_entries(data: &[u8]) -> (Vec<crate::walk::tarfile::EntryOffsets>, String) {
        crate::walk::tarfile::entries(data)
    }
}
