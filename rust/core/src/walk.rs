//! Walking one distribution: open the container found by its magic bytes, read every member in
//! memory under the limits, hand each regular file to the engine, and open nested archives to a
//! bounded depth. Nothing is written to disk and no archive path is ever used on the host.
//!
//! What bounds what (see docs/security.md): inflated bytes by the member, total and ratio limits,
//! enforced while streaming (declared sizes are never trusted); tar metadata (GNU long names, PAX
//! records, sparse maps) by [`TAR_METADATA_LIMIT`]; members waiting to be scanned by
//! [`QUEUE_BYTES`]; the issue list by [`ISSUES_PER_KIND`] and [`PATH_DISPLAY_LIMIT`].

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::{self, Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use crate::engine::{sha256, sha256_hex, Engine, ScanOutcome};
use crate::format::{detect, is_tar_header, Container, Format, TAR_BLOCK};
use crate::issue::{Issue, IssueKind};
use crate::limits::Limits;
use crate::report::{DistributionReport, FileReport};
use crate::zipdir::{self, Directory};

/// Position of a member in archive order; nested members extend their container's position.
type Order = Vec<u32>;

const READ_CHUNK: usize = 256 * 1024;
/// First read past a member's declared size (normally it just finds the end).
const PROBE_READ: usize = 8 * 1024;
/// Largest LZMA dictionary an xz stream may ask for (KiB); real packages use at most 64 MiB.
const XZ_MEMORY_LIMIT_KB: u32 = 256 * 1024;
/// Most bytes of tar metadata (GNU long name/link, PAX records, sparse maps) read for one entry.
/// The tar crate reads these whole into memory; real ones are a few hundred bytes.
pub const TAR_METADATA_LIMIT: u64 = 1 << 20;
/// Bytes of tar members waiting for a scanner; past this the thread reading the tarball scans them itself.
/// Hundreds of typical members: enough to keep every thread busy, small next to one large member.
/// (Measured on the benchmark corpus, 2 threads: 2 MiB scans as fast as 8 MiB, with 6-9 MB less peak RSS.)
pub const QUEUE_BYTES: u64 = 2 << 20;
/// Issues of one kind kept per distribution; the rest are counted in one summary issue.
pub const ISSUES_PER_KIND: u64 = 1000;
/// Longest member path kept in a report (bytes); longer names are cut and flagged.
pub const PATH_DISPLAY_LIMIT: usize = 4096;
/// Nested archives are never opened deeper than this, whatever `max_depth` says: each level
/// recurses on a worker's stack, and thousands of levels (cheap to build) would overflow it.
pub const MAX_NESTING_DEPTH: u32 = 32;

/// A regular file read from an archive, on its way to be scanned.
struct Member {
    order: Order,
    path: String,
    data: Vec<u8>,
    depth: u32,
}

/// Why a compressed stream was cut off by its guard.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Trip {
    None = 0,
    Total = 1,
    Ratio = 2,
    Metadata = 3,
}

/// No metadata budget in force (member content is being read).
const UNLIMITED: u64 = u64::MAX;

/// Counts compressed bytes consumed by a decoder.
struct CountingReader<'a> {
    inner: &'a [u8],
    consumed: Arc<AtomicU64>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The members of a gzip stream one after the other, as gzip(1) and Python's tarfile read
/// concatenated members. Unlike a multi-member decoder it knows exactly where the last member
/// ends, so bytes after it are found and scanned instead of failing the stream.
/// A CRC mismatch in a member's trailer is recorded and the next member read: the content
/// came out whole, only its checksum is wrong.
struct GzipMembers<'a> {
    decoder: Option<flate2::bufread::GzDecoder<&'a [u8]>>,
    len: usize,
    guard: Guard,
}

impl<'a> GzipMembers<'a> {
    fn new(data: &'a [u8], guard: Guard) -> Self {
        Self { decoder: Some(flate2::bufread::GzDecoder::new(data)), len: data.len(), guard }
    }
}

impl Read for GzipMembers<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else { return Ok(0) };
            let n = match decoder.read(buf) {
                Ok(n) => n,
                // The trailer is read only after the member's last byte: nothing is lost.
                Err(err) if is_checksum_error(&err) => {
                    self.guard.bad_checksum.store(true, Ordering::Relaxed);
                    0
                }
                Err(err) => return Err(err),
            };
            self.guard.consumed.store((self.len - decoder.get_ref().len()) as u64, Ordering::Relaxed);
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let rest = self.decoder.take().map(|d| d.into_inner()).unwrap_or_default();
            if rest.starts_with(&[0x1f, 0x8b]) {
                self.decoder = Some(flate2::bufread::GzDecoder::new(rest));
            } else if rest.iter().any(|&b| b != 0) {
                // gzip(1) and Python ignore zero padding after the last member, nothing else.
                self.guard.trailing.store((self.len - rest.len()) as u64, Ordering::Relaxed);
                return Ok(0);
            } else {
                return Ok(0);
            }
        }
    }
}

/// Stops a decompressing stream once it inflates past the total-size limit or the ratio limit,
/// whoever reads it (the tar crate also inflates data it skips), and caps what the tar crate
/// reads between two entries (its headers and metadata) while a metadata budget is set.
struct GuardedReader<R> {
    inner: R,
    inflated: u64,
    guard: Guard,
    limits: Limits,
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let budget = self.guard.metadata.load(Ordering::Relaxed);
        let trip = if self.inflated > self.limits.max_total_size {
            Trip::Total
        } else if self.limits.ratio_exceeded(self.inflated, self.guard.consumed.load(Ordering::Relaxed)) {
            Trip::Ratio
        } else if budget != UNLIMITED && n as u64 > budget {
            Trip::Metadata
        } else {
            if budget != UNLIMITED {
                self.guard.metadata.store(budget - n as u64, Ordering::Relaxed);
            }
            return Ok(n);
        };
        self.guard.trip.store(trip as u8, Ordering::Relaxed);
        Err(io::Error::other("stream limit reached"))
    }
}

/// What a stream's guard saw: compressed bytes consumed and why it tripped, if it did.
#[derive(Clone)]
struct Guard {
    trip: Arc<AtomicU8>,
    consumed: Arc<AtomicU64>,
    /// Bytes the tar crate may still read before the next entry is handed over.
    metadata: Arc<AtomicU64>,
    /// Where non-zero bytes after the last gzip member start (`UNLIMITED`: nowhere).
    trailing: Arc<AtomicU64>,
    /// A gzip member's CRC did not match (its content was read whole).
    bad_checksum: Arc<AtomicBool>,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            trip: Arc::default(),
            consumed: Arc::default(),
            metadata: Arc::new(AtomicU64::new(UNLIMITED)),
            trailing: Arc::new(AtomicU64::new(UNLIMITED)),
            bad_checksum: Arc::default(),
        }
    }
}

impl Guard {
    fn tripped(&self) -> Trip {
        match self.trip.load(Ordering::Relaxed) {
            1 => Trip::Total,
            2 => Trip::Ratio,
            3 => Trip::Metadata,
            _ => Trip::None,
        }
    }

    /// Bytes hidden after the last gzip member, if any.
    fn trailing_offset(&self) -> Option<usize> {
        let at = self.trailing.load(Ordering::Relaxed);
        (at != UNLIMITED).then_some(at as usize)
    }
}

/// A decompressed stream (`Send`, so a reader thread can own it), its guard and its source.
struct Stream<'a> {
    reader: Box<dyn Read + Send + 'a>,
    guard: Guard,
    source: &'a [u8],
}

fn open_stream<'a>(container: Container, data: &'a [u8], limits: &Limits) -> Stream<'a> {
    let guard = Guard::default();
    let input = CountingReader { inner: data, consumed: Arc::clone(&guard.consumed) };
    let decoder: Box<dyn Read + Send + 'a> = match container {
        Container::Gzip => Box::new(GzipMembers::new(data, guard.clone())),
        // Concatenated streams are one stream, as bzip2(1), xz(1) and Python read them.
        Container::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        Container::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(input, true, XZ_MEMORY_LIMIT_KB)),
        Container::Zip | Container::Tar | Container::Plain => Box::new(input),
    };
    let reader =
        Box::new(GuardedReader { inner: decoder, inflated: 0, guard: guard.clone(), limits: limits.clone() });
    Stream { reader, guard, source: data }
}

/// Reads at most `limit` bytes, retrying on interruption; fewer only at end of stream.
fn read_up_to(reader: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit);
    reader.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A name as shown in reports: lossy UTF-8, at most [`PATH_DISPLAY_LIMIT`] bytes.
fn display_name(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(PATH_DISPLAY_LIMIT)];
    String::from_utf8_lossy(raw).into_owned()
}

/// What is wrong with a member name, if anything. Names are never used on the host; this is a
/// signal (an sdist that tries to write outside its directory is up to something).
fn name_problem(raw: &[u8], check_utf8: bool) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let parts = || text.split(['/', '\\']);
    let problem = if raw.is_empty() {
        "the name is empty".to_owned()
    } else if raw.len() > PATH_DISPLAY_LIMIT {
        format!("the name is {} bytes long; shown cut to {PATH_DISPLAY_LIMIT}", raw.len())
    } else if raw[0] == b'/' || raw[0] == b'\\' {
        "an absolute path".to_owned()
    } else if raw.len() >= 2 && raw[0].is_ascii_alphabetic() && raw[1] == b':' {
        "an absolute Windows path".to_owned()
    } else if parts().any(|p| p == "..") {
        "climbs out of the archive with '..'".to_owned()
    } else if raw.contains(&0) {
        "contains a NUL byte (extractors cut the name there)".to_owned()
    } else if raw.iter().any(|&b| b < 0x20 || b == 0x7f) {
        "contains control characters".to_owned()
    } else if check_utf8 && std::str::from_utf8(raw).is_err() {
        "is not valid UTF-8 (shown with replacement characters)".to_owned()
    } else {
        return None;
    };
    Some(problem)
}

/// The name of the single file inside a compressed, non-tar stream: `x.txt.gz` -> `x.txt`.
fn decompressed_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let lower = base.to_ascii_lowercase();
    for suffix in [".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz"] {
        if lower.ends_with(suffix) && base.len() > suffix.len() {
            let stem = &base[..base.len() - suffix.len()];
            return if suffix.starts_with(".t") { format!("{stem}.tar") } else { stem.to_owned() };
        }
    }
    format!("{base}.decompressed")
}

fn limit_issue(trip: Trip, path: &str, limits: &Limits) -> Issue {
    match trip {
        Trip::Ratio => Issue::new(
            path,
            IssueKind::CompressionRatio,
            format!("stream inflates more than {}:1; the rest was not scanned", limits.max_ratio),
        ),
        Trip::Metadata => Issue::new(
            path,
            IssueKind::MemberTooLarge,
            format!(
                "a tar header's metadata (GNU long name or link, PAX records or sparse map) is over the \
                 {TAR_METADATA_LIMIT}-byte metadata limit; the rest was not scanned"
            ),
        ),
        _ => Issue::new(
            path,
            IssueKind::TotalSizeExceeded,
            format!(
                "inflates past the total-size limit of {} bytes; the rest was not scanned",
                limits.max_total_size
            ),
        ),
    }
}

fn is_checksum_error(err: &io::Error) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    text.contains("checksum") || text.contains("crc")
}

/// The zip-wide inflation budget: entries that share compressed bytes (or repeat them) cannot
/// inflate more than `max_ratio` times the archive's own size, whatever each entry's ratio.
struct ArchiveBudget {
    inflated: AtomicU64,
    limit: u64,
    size: u64,
    tripped: AtomicBool,
}

/// How reading one member ended.
struct MemberRead {
    /// What was read, to be scanned; `None` when nothing useful was.
    data: Option<Vec<u8>>,
    /// The member was read to its end with no error and no limit hit.
    whole: bool,
}

/// The shared state of one distribution's scan; `Sync`, used from every worker thread.
pub(crate) struct DistScan<'e> {
    engine: &'e Engine,
    limits: &'e Limits,
    /// The distribution's own name: the path of its content when it is a plain file.
    name: &'e str,
    members: AtomicU64,
    members_exceeded: AtomicBool,
    inflated: AtomicU64,
    total_exceeded: AtomicBool,
    files_scanned: AtomicU64,
    bytes_scanned: AtomicU64,
    files: Mutex<Vec<(Order, FileReport)>>,
    issues: Mutex<Vec<(Order, Issue)>>,
    /// Issues per kind so far, and whether any dropped past the cap left content unscanned.
    issue_counts: [AtomicU64; IssueKind::ALL.len()],
    dropped_unscanned: [AtomicBool; IssueKind::ALL.len()],
    /// Hashes of the member paths seen, to flag duplicates without keeping every name.
    names: Mutex<HashSet<u64>>,
    hasher: RandomState,
}

impl<'e> DistScan<'e> {
    pub(crate) fn new(engine: &'e Engine, name: &'e str) -> Self {
        Self {
            engine,
            limits: engine.limits(),
            name,
            members: AtomicU64::new(0),
            members_exceeded: AtomicBool::new(false),
            inflated: AtomicU64::new(0),
            total_exceeded: AtomicBool::new(false),
            files_scanned: AtomicU64::new(0),
            bytes_scanned: AtomicU64::new(0),
            files: Mutex::new(Vec::new()),
            issues: Mutex::new(Vec::new()),
            issue_counts: std::array::from_fn(|_| AtomicU64::new(0)),
            dropped_unscanned: std::array::from_fn(|_| AtomicBool::new(false)),
            names: Mutex::new(HashSet::new()),
            hasher: RandomState::new(),
        }
    }

    /// Scan `data`; `container` forces a container instead of detecting it (fuzzing).
    pub(crate) fn run_as(
        self,
        data: &[u8],
        name: String,
        url: Option<String>,
        container: Option<Container>,
    ) -> DistributionReport {
        let format = match catch_unwind(AssertUnwindSafe(|| self.walk_top(data, container))) {
            Ok(format) => format,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                self.issue(
                    vec![u32::MAX],
                    Issue::new("", IssueKind::InternalError, format!("scanner bug: {message}")),
                );
                Format::compressed(detect(data), false)
            }
        };
        let mut files = self.files.into_inner().unwrap_or_else(|e| e.into_inner());
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut issues = self.issues.into_inner().unwrap_or_else(|e| e.into_inner());
        issues.sort_by(|a, b| a.0.cmp(&b.0));
        let mut issues: Vec<Issue> = issues.into_iter().map(|(_, i)| i).collect();
        for (i, kind) in IssueKind::ALL.iter().enumerate() {
            let count = self.issue_counts[i].load(Ordering::Relaxed);
            if count > ISSUES_PER_KIND {
                let mut summary = Issue::new(
                    "",
                    *kind,
                    format!("{} more {kind} issues were not listed", count - ISSUES_PER_KIND),
                );
                summary.unscanned = self.dropped_unscanned[i].load(Ordering::Relaxed);
                issues.push(summary);
            }
        }
        DistributionReport {
            name,
            url,
            format,
            size: data.len() as u64,
            sha256: sha256_hex(&sha256(data)),
            files_scanned: self.files_scanned.into_inner(),
            bytes_scanned: self.bytes_scanned.into_inner(),
            files: files.into_iter().map(|(_, f)| f).collect(),
            issues,
        }
    }

    /// Record an issue; past [`ISSUES_PER_KIND`] of one kind only count it (an archive of a
    /// million symlinks must not grow the report without bound).
    fn issue(&self, order: Order, issue: Issue) {
        let kind = IssueKind::ALL.iter().position(|k| *k == issue.kind).unwrap_or(0);
        if self.issue_counts[kind].fetch_add(1, Ordering::Relaxed) >= ISSUES_PER_KIND {
            if issue.unscanned {
                self.dropped_unscanned[kind].store(true, Ordering::Relaxed);
            }
            return;
        }
        self.issues.lock().unwrap_or_else(|e| e.into_inner()).push((order, issue));
    }

    /// Flag a name seen before in this distribution (every copy is still scanned).
    fn check_duplicate(&self, path: &str, order: &Order) {
        let hash = self.hasher.hash_one(path);
        if !self.names.lock().unwrap_or_else(|e| e.into_inner()).insert(hash) {
            self.issue(
                order.clone(),
                Issue::new(
                    path,
                    IssueKind::DuplicateName,
                    "another member has the same name; both were scanned (extractors keep only one)",
                ),
            );
        }
    }

    /// Flag an unsafe name (see [`name_problem`]).
    fn check_name(&self, raw: &[u8], check_utf8: bool, path: &str, order: &Order) {
        if let Some(problem) = name_problem(raw, check_utf8) {
            self.issue(
                order.clone(),
                Issue::new(path, IssueKind::UnsafePath, format!("the member name {problem}")),
            );
        }
    }

    /// The distribution itself: an archive whose members are walked, or one plain file.
    fn walk_top(&self, data: &[u8], forced: Option<Container>) -> Format {
        let container = forced.unwrap_or_else(|| detect(data));
        if container == Container::Plain {
            self.scan_blob(vec![0], self.name.to_owned(), data);
            return Format::File;
        }
        let (format, opened) = self.walk_archive(container, data, "", 0, &[], true);
        if !opened {
            // Still let the rules see the raw bytes; the issue already says it is incomplete.
            self.scan_blob(vec![0], self.name.to_owned(), data);
        }
        format
    }

    /// Walk the members of an archive found at `prefix` (empty at the top, `member!/` when
    /// nested). Returns its format and whether it could be opened at all.
    fn walk_archive(
        &self,
        container: Container,
        data: &[u8],
        prefix: &str,
        depth: u32,
        order: &[u32],
        parallel: bool,
    ) -> (Format, bool) {
        let label = prefix.strip_suffix("!/").unwrap_or(prefix);
        match container {
            Container::Zip => (Format::Zip, self.walk_zip(data, prefix, depth, order)),
            Container::Tar => {
                let stream = open_stream(Container::Tar, data, self.limits);
                self.walk_tar(stream, prefix, depth, order, parallel);
                (Format::Tar, true)
            }
            Container::Gzip | Container::Bzip2 | Container::Xz => {
                let mut stream = open_stream(container, data, self.limits);
                let head = match read_up_to(&mut stream.reader, 2 * TAR_BLOCK) {
                    Ok(head) => head,
                    Err(err) => {
                        self.issue(
                            order.to_vec(),
                            Issue::new(label, IssueKind::Corrupt, format!("cannot decompress: {err}")),
                        );
                        return (Format::compressed(container, false), false);
                    }
                };
                let holds_tar = is_tar_header(&head);
                let rest = std::mem::replace(&mut stream.reader, Box::new(io::empty()));
                stream.reader = Box::new(Cursor::new(head).chain(rest));
                if holds_tar {
                    self.walk_tar(stream, prefix, depth, order, parallel);
                } else {
                    let path = format!(
                        "{prefix}{}",
                        decompressed_name(if label.is_empty() { self.name } else { label })
                    );
                    let mut member_order = order.to_vec();
                    member_order.push(0);
                    if self.count_member(&member_order) {
                        let read = self.read_member(
                            &mut stream.reader,
                            &stream.guard,
                            &path,
                            None,
                            None,
                            None,
                            &member_order,
                        );
                        if let Some(data) = read.data {
                            self.file(Member { order: member_order, path, data, depth });
                        }
                        self.after_stream(&stream, prefix, order);
                    }
                }
                (Format::compressed(container, holds_tar), true)
            }
            Container::Plain => unreachable!("plain data is a file, not an archive"),
        }
    }

    /// Scan what follows the last gzip member, if anything does.
    fn after_stream(&self, stream: &Stream<'_>, prefix: &str, order: &[u32]) {
        if stream.guard.bad_checksum.load(Ordering::Relaxed) {
            let label = prefix.strip_suffix("!/").unwrap_or(prefix);
            let message = "a gzip member's CRC-32 does not match its content; the content was scanned";
            self.issue([order, &[u32::MAX, 0]].concat(), Issue::new(label, IssueKind::BadChecksum, message));
        }
        let Some(at) = stream.guard.trailing_offset() else { return };
        let hidden = &stream.source[at.min(stream.source.len())..];
        let order: Order = [order, &[u32::MAX, 1]].concat();
        let path = format!("{prefix}<after end of gzip stream>");
        let max = self.limits.max_member_size as usize;
        let message = if hidden.len() > max {
            format!(
                "{} bytes after the last gzip member (from offset {at}); only the first {max} were scanned",
                hidden.len()
            )
        } else {
            format!(
                "{} bytes after the last gzip member (from offset {at}); scanned as one blob",
                hidden.len()
            )
        };
        let mut issue = Issue::new(&*path, IssueKind::HiddenData, message);
        issue.unscanned = hidden.len() > max;
        self.issue(order.clone(), issue);
        self.scan_blob(order, path, &hidden[..hidden.len().min(max)]);
    }

    /// Count one more member; false (with one issue for the distribution) past `max_members`.
    fn count_member(&self, order: &[u32]) -> bool {
        self.count_members(1, order) == 1
    }

    /// Count `n` more members at once; returns how many of them fit under `max_members` (the
    /// first ones: a zip's entries are then read in parallel, but always the same ones).
    fn count_members(&self, n: u64, order: &[u32]) -> u64 {
        let before = self.members.fetch_add(n, Ordering::Relaxed);
        let allowed = self.limits.max_members.saturating_sub(before).min(n);
        if allowed < n && !self.members_exceeded.swap(true, Ordering::Relaxed) {
            let mut order = order.to_vec();
            if n > 1 {
                order.push(allowed as u32);
            }
            self.issue(
                order,
                Issue::new(
                    "",
                    IssueKind::TooManyMembers,
                    format!("more than {} members; the rest were not scanned", self.limits.max_members),
                ),
            );
        }
        allowed
    }

    /// Read one member's content under the member, total and ratio limits (and the archive's
    /// budget for zips). Headers are never trusted: `declared` only words the issue and sizes
    /// the buffer. Every shortfall is an issue.
    #[allow(clippy::too_many_arguments)]
    fn read_member(
        &self,
        reader: &mut dyn Read,
        guard: &Guard,
        path: &str,
        compressed: Option<u64>,
        declared: Option<u64>,
        budget: Option<&ArchiveBudget>,
        order: &Order,
    ) -> MemberRead {
        let nothing = MemberRead { data: None, whole: false };
        if self.total_exceeded.load(Ordering::Relaxed) {
            return nothing;
        }
        let max = self.limits.max_member_size;
        // The declared size only sizes the reads and pre-sizes the buffer (untouched capacity costs
        // no memory): an honest member is read into one allocation with no copy, and a small one
        // does not pay for zeroing a large chunk. Past the declared size, reads start small and
        // double, so a lying header costs no more than the bytes really there.
        // `max + 1` would wrap for a limit of u64::MAX (then every member would read as empty).
        let over = max.saturating_add(1);
        let expected = declared.unwrap_or(0).min(over).min(1 << 30) as usize;
        let mut data = Vec::with_capacity(expected + 1 + PROBE_READ);
        loop {
            let start = data.len();
            let want =
                if start < expected { expected - start + 1 } else { (start - expected).max(PROBE_READ) };
            let want = want.min(READ_CHUNK).min(over.saturating_sub(start as u64) as usize);
            // `read_to_end` on a `Take` fills the reserved capacity without zeroing it first (a
            // resize-then-read would zero the rest of the chunk again after every short read).
            data.reserve(want);
            let n = match (&mut *reader).take(want as u64).read_to_end(&mut data) {
                Ok(n) => n,
                Err(err) => {
                    data.truncate(start);
                    let issue = match guard.tripped() {
                        Trip::None if is_checksum_error(&err) => Issue::new(
                            path,
                            IssueKind::BadChecksum,
                            format!(
                                "a checksum failed after {start} bytes: {err}; the rest of the stream was not scanned"
                            ),
                        )
                        .unscanned(),
                        Trip::None => Issue::new(
                            path,
                            IssueKind::Corrupt,
                            format!("cannot inflate after {start} bytes: {err}; the rest was not scanned"),
                        ),
                        trip => limit_issue(trip, path, self.limits),
                    };
                    self.issue(order.clone(), issue);
                    return MemberRead { data: (start > 0).then_some(data), whole: false };
                }
            };
            if n == 0 {
                return MemberRead { data: Some(data), whole: true };
            }
            if data.len() as u64 > max {
                data.truncate(max as usize);
                let message = match declared {
                    Some(size) if size > max => format!(
                        "declares {size} bytes, over the member-size limit of {max} bytes; only the first {max} bytes were scanned"
                    ),
                    _ => format!(
                        "larger than the member-size limit of {max} bytes; only the first {max} bytes were scanned"
                    ),
                };
                self.issue(order.clone(), Issue::new(path, IssueKind::MemberTooLarge, message));
                return MemberRead { data: Some(data), whole: false };
            }
            let total = self.inflated.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            if total > self.limits.max_total_size {
                if !self.total_exceeded.swap(true, Ordering::Relaxed) {
                    self.issue(
                        order.clone(),
                        Issue::new(
                            path,
                            IssueKind::TotalSizeExceeded,
                            format!(
                                "the distribution inflates past the total-size limit of {} bytes here; this and later members were not scanned",
                                self.limits.max_total_size
                            ),
                        ),
                    );
                }
                return nothing;
            }
            let consumed = compressed.unwrap_or_else(|| guard.consumed.load(Ordering::Relaxed));
            if self.limits.ratio_exceeded(data.len() as u64, consumed) {
                self.issue(
                    order.clone(),
                    Issue::new(
                        path,
                        IssueKind::CompressionRatio,
                        format!(
                            "inflates more than {}:1 ({} compressed bytes); the rest was not scanned",
                            self.limits.max_ratio, consumed
                        ),
                    ),
                );
                return MemberRead { data: Some(data), whole: false };
            }
            if let Some(budget) = budget {
                let inflated = budget.inflated.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                if inflated > crate::limits::RATIO_GRACE_BYTES && inflated > budget.limit {
                    if !budget.tripped.swap(true, Ordering::Relaxed) {
                        let message = format!(
                            "the zip archive ({} bytes) inflates more than {}:1 in all (its entries share or \
                             repeat compressed data); this member's rest and the members not yet read were not scanned",
                            budget.size, self.limits.max_ratio
                        );
                        self.issue(order.clone(), Issue::new(path, IssueKind::CompressionRatio, message));
                    }
                    return MemberRead { data: Some(data), whole: false };
                }
            }
        }
    }

    fn walk_zip(&self, data: &[u8], prefix: &str, depth: u32, order: &[u32]) -> bool {
        let label = prefix.strip_suffix("!/").unwrap_or(prefix);
        let dir = match Directory::parse(data) {
            Ok(dir) => dir,
            Err(err) => {
                self.issue(
                    order.to_vec(),
                    Issue::new(label, IssueKind::Corrupt, format!("not a readable zip archive: {err}")),
                );
                return false;
            }
        };
        let entry_order = |index: usize| -> Order { [order, &[index as u32]].concat() };
        let entry_path = |index: usize| {
            let (name, _) = dir.entries[index].decoded_name(data);
            format!("{prefix}{}", display_name(name.as_bytes()))
        };
        for (index, other) in dir.overlaps(data) {
            let message = match other {
                Some(other) => format!(
                    "shares bytes with the entry {:?}; both were scanned, within the archive's inflation budget",
                    entry_path(other)
                ),
                None => "its data runs into the central directory; scanned within the archive's inflation budget"
                    .to_owned(),
            };
            self.issue(
                entry_order(index),
                Issue::new(entry_path(index), IssueKind::OverlappingEntries, message),
            );
        }
        let max = self.limits.max_member_size as usize;
        let mut hidden: Vec<(std::ops::Range<usize>, String, String)> = dir
            .hidden(data)
            .into_iter()
            .map(|(range, place)| {
                let what = format!("{} bytes {place} (offset {})", range.len(), range.start);
                (range.clone(), format!("{prefix}<{place} at offset {}>", range.start), what)
            })
            .collect();
        if !dir.comment.is_empty() {
            let what = format!("a {}-byte archive comment", dir.comment.len());
            hidden.push((dir.comment.clone(), format!("{prefix}<zip comment>"), what));
        }
        for (i, (range, path, what)) in hidden.into_iter().enumerate() {
            let bytes = &data[range];
            let hidden_order: Order = [order, &[u32::MAX, i as u32]].concat();
            let mut issue = Issue::new(&*path, IssueKind::HiddenData, format!("{what}; scanned as one blob"));
            if bytes.len() > max {
                issue.message = format!("{what}; only the first {max} bytes were scanned");
            } else {
                issue.unscanned = false;
            }
            self.issue(hidden_order.clone(), issue);
            self.scan_blob(hidden_order, path, &bytes[..bytes.len().min(max)]);
        }
        let budget = ArchiveBudget {
            inflated: AtomicU64::new(0),
            limit: self.limits.max_ratio.saturating_mul(data.len() as u64),
            size: data.len() as u64,
            tripped: AtomicBool::new(false),
        };
        let allowed = self.count_members(dir.entries.len() as u64, order) as usize;
        (0..allowed).into_par_iter().for_each(|index| {
            if !budget.tripped.load(Ordering::Relaxed) {
                self.zip_member(&dir, data, index, prefix, depth, entry_order(index), &budget);
            }
        });
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn zip_member(
        &self,
        dir: &Directory,
        data: &[u8],
        index: usize,
        prefix: &str,
        depth: u32,
        order: Order,
        budget: &ArchiveBudget,
    ) {
        let entry = &dir.entries[index];
        let (name, _) = entry.decoded_name(data);
        let path = format!("{prefix}{}", display_name(name.as_bytes()));
        if entry.is_dir(data) && entry.compressed_size == 0 {
            return;
        }
        // Without the UTF-8 flag a name is CP437, where every byte is valid.
        self.check_name(entry.raw_name(data), entry.flags & zipdir::FLAG_UTF8 != 0, &path, &order);
        self.check_duplicate(&path, &order);
        if entry.bad_extra {
            let message = "a malformed extra field was ignored".to_owned();
            self.issue(order.clone(), Issue::new(&*path, IssueKind::Corrupt, message).scanned());
        }
        if entry.is_symlink() {
            // pip writes a zip symlink as a regular file holding its target: scan that.
            let message = "symlink recorded, not followed; its target text was scanned";
            self.issue(order.clone(), Issue::new(&*path, IssueKind::LinkNotFollowed, message));
        }
        if entry.flags & (zipdir::FLAG_ENCRYPTED | zipdir::FLAG_STRONG_ENCRYPTION) != 0 || entry.method == 99
        {
            self.issue(order, Issue::new(path, IssueKind::Encrypted, "encrypted member cannot be read"));
            return;
        }
        let local = match dir.local(data, entry) {
            Ok(local) => local,
            Err(err) => {
                self.issue(order, Issue::new(path, IssueKind::Corrupt, format!("cannot read member: {err}")));
                return;
            }
        };
        if let Some(other) = &local.other_name {
            let message = format!(
                "its local header names it {:?} (extractors that read local headers see that name); content scanned",
                display_name(other.as_bytes())
            );
            self.issue(order.clone(), Issue::new(&*path, IssueKind::Corrupt, message).scanned());
        }
        let guard = Guard::default();
        let raw =
            zipdir::CountingSlice { data: &data[local.data.clone()], consumed: Arc::clone(&guard.consumed) };
        let decoder = match zipdir::decoder(entry.method, entry.flags, entry.size, raw) {
            Ok(decoder) => decoder,
            Err(err @ zipdir::MethodError::Aes) => {
                self.issue(
                    order,
                    Issue::new(path, IssueKind::Encrypted, format!("cannot read member: {err}")),
                );
                return;
            }
            Err(err @ zipdir::MethodError::Unsupported(_)) => {
                let message = format!("cannot read member: {err}");
                self.issue(order, Issue::new(path, IssueKind::UnsupportedCompression, message));
                return;
            }
            Err(err) => {
                self.issue(order, Issue::new(path, IssueKind::Corrupt, format!("cannot read member: {err}")));
                return;
            }
        };
        let mut reader = zipdir::CrcReader { inner: decoder, crc: flate2::Crc::new() };
        let read = self.read_member(&mut reader, &guard, &path, None, Some(entry.size), Some(budget), &order);
        let Some(content) = read.data else { return };
        if read.whole {
            let actual = content.len() as u64;
            if local.truncated {
                let message = format!(
                    "its compressed data runs past the end of the archive; the {actual} bytes present were scanned"
                );
                self.issue(order.clone(), Issue::new(&*path, IssueKind::Corrupt, message).scanned());
            } else if actual != entry.size {
                let zip64 = if entry.zip64 { " (zip64)" } else { "" };
                let message = format!(
                    "declares{zip64} {} bytes but inflates to {actual}; all of it was scanned",
                    entry.size
                );
                self.issue(order.clone(), Issue::new(&*path, IssueKind::SizeMismatch, message));
            }
            if reader.crc.sum() != entry.crc {
                let message = format!(
                    "content does not match its CRC-32 (declared {:08x}, computed {:08x}); content scanned",
                    entry.crc,
                    reader.crc.sum()
                );
                self.issue(order.clone(), Issue::new(&*path, IssueKind::BadChecksum, message));
            }
        }
        drop(reader);
        self.file(Member { order, path, data: content, depth });
    }

    /// Walk a tar stream. At the top level one thread inflates and parses while the pool scans
    /// members as they come (a tarball is one stream); nested tarballs are walked in place.
    fn walk_tar(&self, stream: Stream<'_>, prefix: &str, depth: u32, order: &[u32], parallel: bool) {
        if !parallel || self.engine.threads() == 1 {
            self.read_tar(stream, prefix, depth, order, &mut |member| self.file(member));
            return;
        }
        // A tarball is one stream: this thread inflates and parses it and hands each member to the
        // pool as a task. Nothing blocks and no thread is added: once the members waiting for a
        // scanner hold `QUEUE_BYTES`, this thread scans the next one itself, which bounds memory
        // and keeps it busy when inflating outruns scanning.
        let waiting = AtomicU64::new(0);
        rayon::scope(|scope| {
            let waiting = &waiting;
            self.read_tar(stream, prefix, depth, order, &mut |member| {
                let bytes = member.data.len() as u64;
                if waiting.load(Ordering::Relaxed) + bytes > QUEUE_BYTES {
                    self.file(member);
                    return;
                }
                waiting.fetch_add(bytes, Ordering::Relaxed);
                scope.spawn(move |_| {
                    self.file(member);
                    waiting.fetch_sub(bytes, Ordering::Relaxed);
                });
            });
        });
    }

    fn read_tar(
        &self,
        stream: Stream<'_>,
        prefix: &str,
        depth: u32,
        order: &[u32],
        emit: &mut dyn FnMut(Member),
    ) {
        let label = prefix.strip_suffix("!/").unwrap_or(prefix);
        let Stream { reader, guard, source } = stream;
        let mut archive = tar::Archive::new(reader);
        let mut entries = match archive.entries() {
            Ok(entries) => entries,
            Err(err) => {
                self.issue(
                    order.to_vec(),
                    Issue::new(label, IssueKind::Corrupt, format!("not a readable tar archive: {err}")),
                );
                return;
            }
        };
        // While the tar crate looks for the next entry it may skip the rest of the previous one
        // and must read headers and metadata (held whole in memory): cap that.
        let mut skip = 0u64;
        let mut index = 0usize;
        let stopped = loop {
            guard.metadata.store(skip.saturating_add(TAR_METADATA_LIMIT), Ordering::Relaxed);
            let next = entries.next();
            guard.metadata.store(UNLIMITED, Ordering::Relaxed);
            let mut member_order = order.to_vec();
            member_order.push(index as u32);
            index += 1;
            let mut entry = match next {
                None => break None,
                Some(Ok(entry)) => entry,
                Some(Err(err)) => {
                    let issue = match guard.tripped() {
                        Trip::None => Issue::new(
                            label,
                            IssueKind::Corrupt,
                            format!(
                                "malformed or truncated tar at entry {}: {err}; the rest was not scanned",
                                index - 1
                            ),
                        ),
                        trip => limit_issue(trip, label, self.limits),
                    };
                    self.issue(member_order, issue);
                    break Some(guard.tripped());
                }
            };
            let stream_size = entry.header().entry_size().unwrap_or(0).max(entry.size());
            skip = stream_size.saturating_add(2 * TAR_BLOCK as u64);
            if !self.count_member(&member_order) || self.total_exceeded.load(Ordering::Relaxed) {
                return;
            }
            let raw_name = entry.path_bytes().into_owned();
            let path = format!("{prefix}{}", display_name(&raw_name));
            let kind = entry.header().entry_type();
            use tar::EntryType;
            if matches!(kind, EntryType::Directory | EntryType::XGlobalHeader | EntryType::XHeader)
                || matches!(kind, EntryType::GNULongName | EntryType::GNULongLink)
            {
                continue;
            }
            self.check_name(&raw_name, true, &path, &member_order);
            self.check_duplicate(&path, &member_order);
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    let target = entry.link_name_bytes().map(|t| display_name(&t)).unwrap_or_default();
                    let what = if kind == EntryType::Symlink { "symlink" } else { "hard link" };
                    self.issue(
                        member_order,
                        Issue::new(
                            path,
                            IssueKind::LinkNotFollowed,
                            format!("{what} to {target:?} recorded, not followed"),
                        ),
                    );
                    continue;
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    self.issue(
                        member_order,
                        Issue::new(path, IssueKind::SpecialEntry, "device or FIFO entry has no content"),
                    );
                    continue;
                }
                // Regular, contiguous, sparse and unknown types: content is content, scan it.
                _ => {}
            }
            let declared = entry.size();
            // Sparse holes are not compressed data (the ratio would always trip on them); they
            // are bounded by the member and total limits, and the stream's own ratio still
            // guards the data blocks.
            let compressed = (kind == EntryType::GNUSparse).then_some(u64::MAX);
            let read =
                self.read_member(&mut entry, &guard, &path, compressed, Some(declared), None, &member_order);
            let failed = guard.tripped() != Trip::None;
            if let Some(data) = &read.data {
                if read.whole && data.len() as u64 != declared {
                    let message = format!(
                        "declares {declared} bytes but the archive ends after {}; all of it was scanned",
                        data.len()
                    );
                    self.issue(member_order.clone(), Issue::new(&*path, IssueKind::SizeMismatch, message));
                }
            }
            if let Some(data) = read.data {
                emit(Member { order: member_order, path, data, depth });
            }
            if failed {
                return;
            }
        };
        if stopped.is_some_and(|trip| trip != Trip::None) {
            return;
        }
        // Whatever follows the end-of-archive marker (or a corrupt header) is read too: a
        // truncated or corrupt compressed stream is an issue, and non-zero bytes there are
        // scanned as one blob and reported.
        let order: Order = [order, &[u32::MAX]].concat();
        let place = if stopped.is_some() { "after the corrupt tar entry" } else { "after end of archive" };
        let path = format!("{prefix}<{place}>");
        let mut reader = archive.into_inner();
        if let Some((offset, hidden)) = self.trailing_bytes(&mut reader, &guard, &path, &order) {
            if stopped.is_none() {
                let message = format!(
                    "{} bytes after the tar end-of-archive marker (from offset {offset} past it); scanned as one blob",
                    hidden.len()
                );
                self.issue(order.clone(), Issue::new(&*path, IssueKind::HiddenData, message).scanned());
            }
            self.scan_blob(order.clone(), path, &hidden);
        }
        let stream = Stream { reader, guard, source };
        self.after_stream(&stream, prefix, &order[..order.len() - 1]);
    }

    /// Read a stream to its end, keeping only what starts at its first non-zero byte (zero
    /// padding after a tar end marker is normal). Returns that offset and the bytes, if any.
    fn trailing_bytes(
        &self,
        reader: &mut dyn Read,
        guard: &Guard,
        path: &str,
        order: &Order,
    ) -> Option<(u64, Vec<u8>)> {
        let max = self.limits.max_member_size as usize;
        let mut chunk = vec![0u8; READ_CHUNK];
        let (mut offset, mut kept): (u64, Option<Vec<u8>>) = (0, None);
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    let issue = match guard.tripped() {
                        // Every member came out before the stream's final check failed.
                        Trip::None if is_checksum_error(&err) => Issue::new(
                            path,
                            IssueKind::BadChecksum,
                            format!("the compressed stream's checksum does not match: {err}; its content was scanned"),
                        ),
                        Trip::None => Issue::new(
                            path,
                            IssueKind::Corrupt,
                            format!(
                                "the compressed stream is truncated or corrupt after the last member: {err}"
                            ),
                        ),
                        trip => limit_issue(trip, path, self.limits),
                    };
                    self.issue(order.clone(), issue);
                    break;
                }
            };
            match kept.as_mut() {
                Some(kept) => kept.extend_from_slice(&chunk[..n]),
                None => match chunk[..n].iter().position(|&b| b != 0) {
                    Some(first) => {
                        offset += first as u64;
                        kept = Some(chunk[first..n].to_vec());
                    }
                    None => offset += n as u64,
                },
            }
            if kept.as_ref().is_some_and(|k| k.len() > max) {
                let message = format!(
                    "hidden data after the end marker exceeds {max} bytes; only the first {max} were scanned"
                );
                self.issue(order.clone(), Issue::new(path, IssueKind::MemberTooLarge, message));
                break;
            }
        }
        kept.map(|mut k| {
            k.truncate(max);
            (offset, k)
        })
    }

    /// A regular file: scan it, then open it as an archive if it is one and depth allows.
    fn file(&self, member: Member) {
        let Member { order, path, data, depth } = member;
        let container = detect(&data);
        if container != Container::Plain {
            let max_depth = self.limits.max_depth.min(MAX_NESTING_DEPTH);
            if depth < max_depth {
                let prefix = format!("{path}!/");
                // Nested archives are walked inside this task: the pool is already busy with
                // the outer archive's members.
                self.walk_archive(container, &data, &prefix, depth + 1, &order, false);
            } else {
                self.issue(
                    order.clone(),
                    Issue::new(
                        &*path,
                        IssueKind::NestingTooDeep,
                        format!(
                            "archive nested deeper than the limit of {max_depth} levels; scanned only as raw bytes"
                        ),
                    ),
                );
            }
        }
        self.scan_blob(order, path, &data);
    }

    /// Scan bytes as one file and record its matches or its failure.
    fn scan_blob(&self, order: Order, path: String, data: &[u8]) {
        let route = self.engine.rules().route(&path);
        if route.is_empty() {
            // No rule can count for this file (all have a `filetype` that does not fit): its
            // content is covered without running YARA-X.
            self.files_scanned.fetch_add(1, Ordering::Relaxed);
            self.bytes_scanned.fetch_add(data.len() as u64, Ordering::Relaxed);
            return;
        }
        let hash = sha256(data);
        match self.engine.scan_content(&route.cache_key(&hash), &route, data) {
            ScanOutcome::Hits(raw) => {
                self.files_scanned.fetch_add(1, Ordering::Relaxed);
                self.bytes_scanned.fetch_add(data.len() as u64, Ordering::Relaxed);
                let hits = self.engine.hits_for_path(&raw, &path);
                if !hits.is_empty() {
                    let report =
                        FileReport { path, size: data.len() as u64, sha256: sha256_hex(&hash), hits };
                    self.files.lock().unwrap_or_else(|e| e.into_inner()).push((order, report));
                }
            }
            ScanOutcome::Failed(kind, message) => self.issue(order, Issue::new(path, kind, message)),
        }
    }
}
