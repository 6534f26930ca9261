//! The scanning engine: one shared compiled rule set, one YARA-X scanner per worker thread, a
//! rayon pool for parallelism inside and across distributions, and a content-hash cache so that
//! identical file contents are scanned once per rule set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cache::{self, CacheEntryError};
use crate::issue::{Issue, IssueKind};
use crate::limits::Limits;
use crate::report::{
    DistributionReport, PatternHit, ReleaseReport, RuleHit, MATCHES_PER_PATTERN, MATCH_DATA_BYTES,
};
use crate::rules::{hex, Inner, Route, RuleSet};
use crate::walk::DistScan;

/// Bytes of one distribution to scan.
pub enum Input<'a> {
    Bytes(&'a [u8]),
    Owned(Vec<u8>),
    Path(PathBuf),
}

impl Input<'_> {
    /// Size in bytes when known without reading (for scheduling only).
    fn size_hint(&self) -> u64 {
        match self {
            Input::Bytes(bytes) => bytes.len() as u64,
            Input::Owned(bytes) => bytes.len() as u64,
            Input::Path(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
        }
    }
}

/// One distribution to scan: a display name (normally the file name), its download URL if any,
/// and its bytes.
pub struct DistInput<'a> {
    pub name: String,
    pub url: Option<String>,
    pub input: Input<'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start {threads} scanning threads: {message}")]
    ThreadPool { threads: usize, message: String },
    #[error("{0} scanning threads asked for; at most {MAX_THREADS}")]
    TooManyThreads(usize),
}

/// Most scanning threads an engine starts: each holds its own YARA-X scanners and buffers, and
/// far past the cores they add memory, not speed (100 000 asked for once started hundreds and hung).
pub const MAX_THREADS: usize = 1024;

/// A rule match before `filetype` filtering, as cached per content hash.
#[derive(Debug, Clone)]
pub(crate) struct RawHit {
    pub rule: usize,
    pub patterns: Vec<PatternHit>,
}

pub(crate) type ContentHash = [u8; 32];
/// A content's hash and its matches, as the cache holds them.
type CacheEntry = (ContentHash, Arc<[RawHit]>);

/// Entries kept in the content cache before it is emptied; a full-size entry is small (most
/// contents match nothing), so this bounds it to a few tens of MB.
pub const CACHE_ENTRIES: usize = 500_000;

/// The shortest YARA-X timeout applied, whatever the limits say (a positive timeout can round
/// down to zero on its way from seconds as a float).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

self_cell::self_cell!(
    /// A rule set together with YARA-X scanners for its compiled parts, made on first use.
    struct OwnedScanners {
        owner: Arc<Inner>,
        #[not_covariant]
        dependent: Scanners,
    }
);
type Scanners<'a> = Vec<Option<yara_x::Scanner<'a>>>;

thread_local! {
    // YARA-X scanners are not Send; each worker thread keeps its own for the last rule set it used.
    static THREAD_SCANNERS: RefCell<Option<OwnedScanners>> = const { RefCell::new(None) };
}

/// The outcome of scanning one file's bytes.
pub(crate) enum ScanOutcome {
    Hits(Arc<[RawHit]>),
    Failed(IssueKind, String),
}

/// Content-cache counters since the engine was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Distinct contents whose results are held now.
    pub entries: usize,
    /// Files whose results came from the cache instead of YARA-X.
    pub hits: u64,
    /// Files scanned by YARA-X.
    pub misses: u64,
}

pub struct Engine {
    rules: RuleSet,
    limits: Limits,
    pool: rayon::ThreadPool,
    fast_scan: bool,
    cache: Mutex<HashMap<ContentHash, Arc<[RawHit]>>>,
    /// Contents scanned since the last [`Engine::take_cache_journal`], when journaling is on.
    journal: Option<Mutex<Vec<CacheEntry>>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl Engine {
    /// `threads`: worker threads; `None` or 0 means every available core.
    pub fn new(rules: RuleSet, limits: Limits, threads: Option<usize>) -> Result<Self, EngineError> {
        let threads = threads
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads > MAX_THREADS {
            return Err(EngineError::TooManyThreads(threads));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("dragonfly-scan-{i}"))
            .build()
            .map_err(|err| EngineError::ThreadPool { threads, message: err.to_string() })?;
        Ok(Self {
            rules,
            limits,
            pool,
            fast_scan: false,
            cache: Mutex::new(HashMap::new()),
            journal: None,
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        })
    }

    /// Stop looking for a pattern after its first match when the rule only asks whether it
    /// occurs. Which rules match is unchanged; reports keep only the first match of such patterns.
    /// For callers that need rule identities only, such as the node.
    pub fn with_fast_scan(mut self, yes: bool) -> Self {
        self.fast_scan = yes;
        self
    }

    /// Record every content scanned from now on, for [`Engine::take_cache_journal`].
    pub fn with_cache_journal(mut self, yes: bool) -> Self {
        self.journal = yes.then(|| Mutex::new(Vec::new()));
        self
    }

    pub fn fast_scan(&self) -> bool {
        self.fast_scan
    }

    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            entries: self.cache.lock().expect("cache lock").len(),
            hits: self.cache_hits.load(Ordering::Relaxed),
            misses: self.cache_misses.load(Ordering::Relaxed),
        }
    }

    /// The contents scanned since the last call, as (cache key, encoded matches) to persist, or
    /// `None` when the engine does not journal. At most [`CACHE_ENTRIES`] are kept between calls.
    pub fn take_cache_journal(&self) -> Option<Vec<([u8; 32], Vec<u8>)>> {
        let journal = self.journal.as_ref()?;
        let taken = std::mem::take(&mut *journal.lock().expect("journal lock"));
        Some(taken.into_iter().map(|(hash, hits)| (hash, cache::encode(&self.rules, &hits))).collect())
    }

    /// Load persisted entries (as returned by [`Engine::take_cache_journal`] of an engine with
    /// the same rule set) so that those contents are not scanned again. Stops when the cache is
    /// full. Returns how many entries were loaded; an entry that cannot be decoded for this rule
    /// set is not loaded, and the first such error is returned with the count.
    pub fn import_cache<'a, I>(&self, entries: I) -> (usize, Option<CacheEntryError>)
    where
        I: IntoIterator<Item = ([u8; 32], &'a [u8])>,
    {
        let mut cache = self.cache.lock().expect("cache lock");
        let (mut loaded, mut first_error) = (0, None);
        for (hash, data) in entries {
            if cache.len() >= CACHE_ENTRIES {
                break;
            }
            match cache::decode(&self.rules, data) {
                Ok(hits) => {
                    cache.insert(hash, hits.into());
                    loaded += 1;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        (loaded, first_error)
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Scan one distribution, in parallel inside it.
    pub fn scan(&self, dist: DistInput<'_>) -> DistributionReport {
        self.pool.install(|| self.scan_in_pool(dist))
    }

    /// Scan several distributions, in parallel across and inside them; results keep input order.
    ///
    /// One driver per thread takes the next distribution, largest first, and scans it with the
    /// whole pool helping inside it. So at most `threads` distributions are held in memory at once
    /// (a parallel iterator would let a thread waiting inside one distribution start another, and
    /// another), and the largest ones do not start last and leave one thread working alone.
    pub fn scan_many(&self, dists: Vec<DistInput<'_>>) -> Vec<DistributionReport> {
        let count = dists.len();
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(dists[i].input.size_hint()));
        let slots: Vec<Mutex<Option<DistInput<'_>>>> =
            dists.into_iter().map(|d| Mutex::new(Some(d))).collect();
        let reports: Vec<Mutex<Option<DistributionReport>>> = (0..count).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        self.pool.install(|| {
            rayon::scope(|scope| {
                for _ in 0..self.threads().min(count) {
                    scope.spawn(|_| {
                        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let dist = slots[i].lock().expect("slot lock").take().expect("taken once");
                            let report = self.scan_in_pool(dist);
                            *reports[i].lock().expect("report lock") = Some(report);
                        }
                    });
                }
            });
        });
        reports
            .into_iter()
            .map(|r| r.into_inner().expect("report lock").expect("every distribution was scanned"))
            .collect()
    }

    /// Scan every distribution of a release and score it as the Dragonfly mainframe expects.
    pub fn scan_release(&self, name: &str, version: &str, dists: Vec<DistInput<'_>>) -> ReleaseReport {
        ReleaseReport {
            name: name.to_owned(),
            version: version.to_owned(),
            distributions: self.scan_many(dists),
        }
    }

    fn scan_in_pool(&self, dist: DistInput<'_>) -> DistributionReport {
        let DistInput { name, url, input } = dist;
        let owned;
        let data: &[u8] = match input {
            Input::Bytes(bytes) => bytes,
            Input::Owned(bytes) => {
                owned = bytes;
                &owned
            }
            Input::Path(path) => match read_limited(&path, self.limits.max_total_size) {
                Ok(bytes) => {
                    owned = bytes;
                    &owned
                }
                Err(issue) => return DistributionReport::unreadable(name, url, issue),
            },
        };
        DistScan::new(self, &name).run_as(data, name.clone(), url, None)
    }

    /// Walk `data` as `container` whatever its magic bytes say (for the fuzz targets).
    pub(crate) fn walk_as(&self, container: crate::Container, data: &[u8]) -> DistributionReport {
        self.pool.install(|| DistScan::new(self, "fuzz").run_as(data, "fuzz".into(), None, Some(container)))
    }

    /// Scan one file's bytes with the rules of `route` (before `filetype` filtering), using the
    /// cache under `key` (see [`Route::cache_key`]).
    pub(crate) fn scan_content(&self, key: &ContentHash, route: &Route<'_>, data: &[u8]) -> ScanOutcome {
        if let Some(hits) = self.cache.lock().expect("cache lock").get(key) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return ScanOutcome::Hits(Arc::clone(hits));
        }
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        match self.run_yara(route, data) {
            Ok(hits) => {
                let hits: Arc<[RawHit]> = hits.into();
                {
                    let mut cache = self.cache.lock().expect("cache lock");
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(*key, Arc::clone(&hits));
                }
                if let Some(journal) = &self.journal {
                    let mut journal = journal.lock().expect("journal lock");
                    if journal.len() < CACHE_ENTRIES {
                        journal.push((*key, Arc::clone(&hits)));
                    }
                }
                ScanOutcome::Hits(hits)
            }
            Err((kind, message)) => ScanOutcome::Failed(kind, message),
        }
    }

    fn run_yara(&self, route: &Route<'_>, data: &[u8]) -> Result<Vec<RawHit>, (IssueKind, String)> {
        let inner = self.rules.inner();
        let started = Instant::now();
        let mut hits = Vec::new();
        THREAD_SCANNERS.with(|cell| {
            let mut slot = cell.borrow_mut();
            if !slot.as_ref().is_some_and(|s| Arc::ptr_eq(s.borrow_owner(), inner)) {
                *slot = Some(OwnedScanners::new(Arc::clone(inner), |inner| {
                    (0..inner.part_count()).map(|_| None).collect()
                }));
            }
            let scanners = slot.as_mut().expect("scanners were just created");
            scanners.with_dependent_mut(|inner, scanners| {
                for part in route.parts.into_iter().flatten() {
                    let scanner =
                        scanners[part].get_or_insert_with(|| yara_x::Scanner::new(inner.part(part)));
                    // The file's timeout covers all its parts; never less than a millisecond, as
                    // a zero timeout would fail every file at once.
                    let left = self.limits.timeout.saturating_sub(started.elapsed());
                    scanner.set_timeout(left.max(MIN_TIMEOUT));
                    scanner.fast_scan(self.fast_scan);
                    let results = scanner.scan(data).map_err(|err| match err {
                        yara_x::ScanError::Timeout => (
                            IssueKind::ScanTimeout,
                            format!("YARA-X scan did not finish within {:?}", self.limits.timeout),
                        ),
                        other => (IssueKind::ScanError, other.to_string()),
                    })?;
                    hits.extend(results.matching_rules().filter_map(|rule| {
                        let index = self.rules.index_of(rule.namespace(), rule.identifier())?;
                        let patterns = rule
                            .patterns()
                            .flat_map(|pattern| {
                                let identifier = pattern.identifier();
                                pattern.matches().take(MATCHES_PER_PATTERN).map(move |m| {
                                    let range = m.range();
                                    PatternHit {
                                        identifier: identifier.to_owned(),
                                        offset: range.start as u64,
                                        length: range.len() as u64,
                                        data: m.data()[..m.data().len().min(MATCH_DATA_BYTES)].to_vec(),
                                    }
                                })
                            })
                            .collect();
                        Some(RawHit { rule: index, patterns })
                    }));
                }
                Ok(())
            })
        })?;
        // Rule order, whichever parts the hits came from.
        hits.sort_by_key(|hit| hit.rule);
        Ok(hits)
    }

    /// Resolve cached hits for a file at `path`, keeping only rules whose `filetype` fits.
    pub(crate) fn hits_for_path(&self, raw: &[RawHit], path: &str) -> Vec<RuleHit> {
        let infos = self.rules.infos();
        raw.iter()
            .filter(|hit| infos[hit.rule].applies_to(path))
            .map(|hit| RuleHit { rule: Arc::clone(&infos[hit.rule]), patterns: hit.patterns.clone() })
            .collect()
    }
}

pub(crate) fn sha256(data: &[u8]) -> ContentHash {
    Sha256::digest(data).into()
}

pub(crate) fn sha256_hex(hash: &ContentHash) -> String {
    hex(hash)
}

fn read_limited(path: &PathBuf, limit: u64) -> Result<Vec<u8>, Issue> {
    let unreadable = |err: std::io::Error| {
        Issue::new("", IssueKind::Unreadable, format!("cannot read {}: {err}", path.display()))
    };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > limit {
        return Err(Issue::new(
            "",
            IssueKind::TotalSizeExceeded,
            format!("{} is {size} bytes, over the total-size limit of {limit} bytes", path.display()),
        ));
    }
    std::fs::read(path).map_err(unreadable)
}
