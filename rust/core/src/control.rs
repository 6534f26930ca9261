//! A scan's live counters and its cancel switch, shared between the engine's threads and whoever
//! watches or stops the scan (a progress display, a Ctrl-C handler).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Counters {
    files: AtomicU64,
    bytes: AtomicU64,
    distributions: AtomicU64,
    cancelled: AtomicBool,
}

/// Progress counters and a cancel flag for one or more scans; clones share them.
///
/// The engine adds to the counters as files are scanned and distributions finish, and checks the
/// flag between members, between files and between chunks of every decompressed stream, so a
/// cancelled scan stops within milliseconds; only a YARA-X scan already running on one file runs
/// on, bounded by the per-file timeout (YARA-X cannot be interrupted otherwise).
#[derive(Debug, Clone, Default)]
pub struct ScanControl {
    counters: Arc<Counters>,
}

impl ScanControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask every scan using this control to stop; they end with [`crate::EngineError::Cancelled`].
    pub fn cancel(&self) {
        self.counters.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.counters.cancelled.load(Ordering::Relaxed)
    }

    /// Files scanned so far (as in the reports' `files_scanned`).
    pub fn files(&self) -> u64 {
        self.counters.files.load(Ordering::Relaxed)
    }

    /// Bytes of the files scanned so far (as in the reports' `bytes_scanned`).
    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// Distributions whose scan has finished.
    pub fn distributions(&self) -> u64 {
        self.counters.distributions.load(Ordering::Relaxed)
    }

    pub(crate) fn add_file(&self, bytes: u64) {
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_distribution(&self) {
        self.counters.distributions.fetch_add(1, Ordering::Relaxed);
    }
}
