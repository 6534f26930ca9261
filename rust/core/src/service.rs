//! The file-scanning service the walker calls for every file: one shared compiled rule set, one
//! YARA-X scanner per worker thread (and per compiled part), the per-file timeout, and a
//! content-hash cache so that identical file contents are scanned once per rule set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::issue::IssueKind;
use crate::report::{
    PatternHit, RuleHit, MATCHES_PER_PATTERN, MATCH_DATA_BYTES, SNIPPET_BYTES, SNIPPET_LEAD,
};
use crate::rules::{hex, Inner, Route, RuleSet};

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

/// Which SHA-256 digests a scan's reports carry (the others are left empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digests {
    /// None: for callers that never read them (the node).
    None,
    /// The files that matched, not the distributions (SARIF shows only those).
    Files,
    /// Every distribution's and every matched file's.
    All,
}

/// Scans files' bytes: see the module documentation.
pub(crate) struct FileScanner {
    pub(crate) rules: RuleSet,
    timeout: Duration,
    pub(crate) fast_scan: bool,
    /// Whether contents are hashed and looked up in (and added to) the cache before scanning.
    pub(crate) caching: bool,
    /// False for rules whose answers depend on the time of the scan ([`RuleSet::reads_the_clock`]):
    /// nothing is looked up in or added to the cache, whatever `caching` says.
    pub(crate) answers_keep: bool,
    /// Which SHA-256 digests reports carry.
    pub(crate) digests: Digests,
    cache: Mutex<HashMap<ContentHash, Arc<[RawHit]>>>,
    /// Contents scanned since the last [`FileScanner::take_journal`], when journaling is on.
    pub(crate) journal: Option<Mutex<Vec<CacheEntry>>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl FileScanner {
    pub(crate) fn new(rules: RuleSet, timeout: Duration) -> Self {
        Self {
            answers_keep: !rules.reads_the_clock(),
            rules,
            timeout,
            fast_scan: false,
            caching: true,
            digests: Digests::All,
            cache: Mutex::new(HashMap::new()),
            journal: None,
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.cache.lock().expect("cache lock").len(),
            hits: self.cache_hits.load(Ordering::Relaxed),
            misses: self.cache_misses.load(Ordering::Relaxed),
        }
    }

    /// The contents scanned since the last call (`None` when not journaling).
    pub(crate) fn take_journal(&self) -> Option<Vec<CacheEntry>> {
        let journal = self.journal.as_ref()?;
        Some(std::mem::take(&mut *journal.lock().expect("journal lock")))
    }

    /// Hold `hits` for the content keyed `key`; false when the cache is full.
    pub(crate) fn insert(&self, key: ContentHash, hits: Arc<[RawHit]>) -> bool {
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHE_ENTRIES {
            return false;
        }
        cache.insert(key, hits);
        true
    }

    /// Scan one file's bytes with the rules of `route` (before `filetype` filtering), using the
    /// cache under `key` (see [`Route::cache_key`]).
    /// Without a key (the cache is off) the bytes are scanned and nothing is kept.
    pub(crate) fn scan_content(
        &self,
        key: Option<&ContentHash>,
        route: &Route<'_>,
        data: &[u8],
    ) -> ScanOutcome {
        let Some(key) = key else {
            self.cache_misses.fetch_add(1, Ordering::Relaxed);
            return match self.run_yara(route, data) {
                Ok(hits) => ScanOutcome::Hits(hits.into()),
                Err((kind, message)) => ScanOutcome::Failed(kind, message),
            };
        };
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
                    let left = self.timeout.saturating_sub(started.elapsed());
                    scanner.set_timeout(left.max(MIN_TIMEOUT));
                    scanner.fast_scan(self.fast_scan);
                    let results = scanner.scan(data).map_err(|err| match err {
                        yara_x::ScanError::Timeout => (
                            IssueKind::ScanTimeout,
                            format!("YARA-X scan did not finish within {:?}", self.timeout),
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
                                        line: 0,
                                        column: 0,
                                        snippet: Vec::new(),
                                        snippet_offset: 0,
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
        locate(&mut hits, data);
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

/// Fill in each match's line, column and snippet: one pass over the bytes up to the last match.
fn locate(hits: &mut [RawHit], data: &[u8]) {
    let mut starts: Vec<(usize, usize, usize)> = hits
        .iter()
        .enumerate()
        .flat_map(|(h, hit)| hit.patterns.iter().enumerate().map(move |(p, m)| (m.offset as usize, h, p)))
        .collect();
    starts.sort_unstable();
    let (mut line, mut line_start, mut seen) = (1u64, 0usize, 0usize);
    for (offset, h, p) in starts {
        let offset = offset.min(data.len());
        let passed = &data[seen..offset];
        line += memchr::memchr_iter(b'\n', passed).count() as u64;
        if let Some(newline) = memchr::memrchr(b'\n', passed) {
            line_start = seen + newline + 1;
        }
        seen = offset;
        let line_end = memchr::memchr(b'\n', &data[offset..]).map_or(data.len(), |i| offset + i);
        let line_end =
            if line_end > line_start && data[line_end - 1] == b'\r' { line_end - 1 } else { line_end };
        let start = line_start.max(offset.saturating_sub(SNIPPET_LEAD));
        let end = line_end.min(start + SNIPPET_BYTES).max(start);
        let hit = &mut hits[h].patterns[p];
        hit.line = line;
        hit.column = (offset - line_start + 1) as u64;
        hit.snippet = data[start..end].to_vec();
        hit.snippet_offset = (offset - start) as u64;
    }
}

/// Bytes looked at to tell text from binary.
const TEXT_PROBE_BYTES: usize = 8192;

/// Whether `data` looks like text: no NUL in its first bytes, which are UTF-8 (a character cut
/// at the probe's end is fine).
pub(crate) fn looks_like_text(data: &[u8]) -> bool {
    let probe = &data[..data.len().min(TEXT_PROBE_BYTES)];
    if memchr::memchr(0, probe).is_some() {
        return false;
    }
    match std::str::from_utf8(probe) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none() && probe.len() == TEXT_PROBE_BYTES,
    }
}

pub(crate) fn sha256(data: &[u8]) -> ContentHash {
    Sha256::digest(data).into()
}

/// The hashes of one content, each taken when first needed and kept for its other names.
#[derive(Default)]
pub(crate) struct ContentHashes {
    key: Option<ContentHash>,
    sha256: Option<ContentHash>,
}

impl ContentHashes {
    /// The content's key in the cache (before routing, see `Route::cache_key`): its BLAKE3 hash.
    pub(crate) fn key(&mut self, data: &[u8]) -> &ContentHash {
        self.key.get_or_insert_with(|| *blake3::hash(data).as_bytes())
    }

    /// The content's SHA-256, as reports give it.
    pub(crate) fn sha256(&mut self, data: &[u8]) -> &ContentHash {
        self.sha256.get_or_insert_with(|| sha256(data))
    }
}

pub(crate) fn sha256_hex(hash: &ContentHash) -> String {
    hex(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_keys_are_blake3_and_report_digests_sha256() {
        // Known answers for "abc" (SHA-256's from FIPS 180-2): a change of either breaks stored
        // caches (the store migrates its schema for a new key) or the reports' digests.
        let mut hashes = ContentHashes::default();
        assert_eq!(
            hex(hashes.key(b"abc")),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(
            hex(hashes.sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Taken once and kept: a `ContentHashes` belongs to one content, whatever names it is scanned under.
        assert_eq!(
            hex(hashes.key(b"other")),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    fn hit_at(offsets: &[u64]) -> RawHit {
        let patterns = offsets
            .iter()
            .map(|&offset| PatternHit {
                identifier: "$a".into(),
                offset,
                length: 1,
                data: vec![],
                line: 0,
                column: 0,
                snippet: vec![],
                snippet_offset: 0,
            })
            .collect();
        RawHit { rule: 0, patterns }
    }

    #[test]
    fn matches_are_located_by_line_and_column_whatever_their_order() {
        let data = b"ab\r\ncd\n\nxyz";
        let mut hits = [hit_at(&[9, 0]), hit_at(&[5])];
        locate(&mut hits, data);
        let got: Vec<_> = hits
            .iter()
            .flat_map(|h| &h.patterns)
            .map(|p| (p.line, p.column, p.snippet.clone(), p.snippet_offset))
            .collect();
        assert_eq!(got, [(4, 2, b"xyz".to_vec(), 1), (1, 1, b"ab".to_vec(), 0), (2, 2, b"cd".to_vec(), 1)]);
    }

    #[test]
    fn a_match_at_the_end_of_the_data_has_an_empty_snippet() {
        let mut hits = [hit_at(&[3])];
        locate(&mut hits, b"ab\n");
        assert_eq!((hits[0].patterns[0].line, hits[0].patterns[0].column), (2, 1));
        assert!(hits[0].patterns[0].snippet.is_empty());
    }

    #[test]
    fn text_is_nul_free_utf8_even_when_the_probe_cuts_a_character() {
        assert!(looks_like_text(b"print('hi')\n"));
        assert!(!looks_like_text(b"MZ\x00\x01"));
        assert!(!looks_like_text(b"caf\xe9"));
        let mut cut = vec![b'a'; TEXT_PROBE_BYTES - 1];
        cut.extend_from_slice("é".as_bytes());
        assert!(looks_like_text(&cut));
    }
}
