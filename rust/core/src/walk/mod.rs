//! Walking one distribution: open every container pip could see in its bytes, read every
//! member in memory under the limits, hand each regular file to the file scanner, and open nested
//! archives to a bounded depth. Nothing is written to disk and no archive path is ever used on
//! the host.
//!
//! The parts: [`stream`] (decompression under the stream limits), [`tarfile`] (tar headers read
//! as CPython's `tarfile` reads them) and [`tar`] (walking them), [`zip`] (zips as `zipfile`
//! reads them, over `crate::zipdir`), [`names`] (member names and links).
//!
//! What bounds what (see docs/security.md): inflated bytes by the member, total and ratio limits,
//! enforced while streaming (declared sizes are never trusted); tar metadata (GNU long names, PAX
//! records, sparse maps) by [`tarfile::TAR_METADATA_LIMIT`]; members waiting to be scanned by
//! [`QUEUE_BYTES`]; the issue list by [`ISSUES_PER_KIND`] and [`names::PATH_DISPLAY_LIMIT`].

mod build_backend;
mod names;
mod python_codecs;
mod python_reading;
mod stream;
mod tar;
pub(crate) mod tarfile;
mod zip;

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::{self, Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::control::ScanControl;
use crate::format::{detect, interpretations, is_tar_header, Container, Format, TAR_BLOCK};
use crate::issue::{Issue, IssueKind};
use crate::limits::Limits;
use crate::report::{DistributionReport, FileReport};
use crate::service::{looks_like_text, sha256, sha256_hex, ContentHashes, Digests, FileScanner, ScanOutcome};
use names::{
    archive_suffix, backslash_alias, decompressed_name, name_problem, normalized_alias, windows_alias,
};
use python_reading::PythonCode;
use stream::{is_checksum_error, limit_issue, open_stream, read_up_to, Guard, Stream, Trip};
pub(crate) use stream::{LZMA_MEMORY_LIMIT_KB, ZSTD_WINDOW_LOG_MAX};
use zip::ArchiveBudget;

/// Position of a member in archive order; nested members extend their container's position.
type Order = Vec<u32>;

pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// First read past a member's declared size (normally it just finds the end).
const PROBE_READ: usize = 8 * 1024;
/// Bytes of tar members waiting for a scanner; past this the thread reading the tarball scans them itself.
/// Hundreds of typical members: enough to keep every thread busy, small next to one large member.
/// (Measured on the benchmark corpus, 2 threads: 2 MiB scans as fast as 8 MiB, with 6-9 MB less peak RSS.)
pub const QUEUE_BYTES: u64 = 2 << 20;
/// Issues of one kind kept per distribution; the rest are counted in one summary issue.
pub const ISSUES_PER_KIND: u64 = 1000;
/// Nested archives are never opened deeper than this, whatever `max_depth` says: each level
/// recurses on a worker's stack, and thousands of levels (cheap to build) would overflow it.
pub const MAX_NESTING_DEPTH: u32 = 32;
/// Where a member's scans under the names `DistScan::scan_aliases` gives it come, after its own and
/// those its links give it.
const WINDOWS_ALIAS: u32 = u32::MAX - 2;
/// Where a module's scan as the sdist's build backend comes (see [`build_backend`]).
const BACKEND_ALIAS: u32 = u32::MAX - 3;
const NORMALIZED_ALIAS: u32 = u32::MAX - 1;
const SPLIT_ALIAS: u32 = u32::MAX;
/// Appended to the path of a file's content as `zipimport` reads it and as CPython reads a Python file.
pub(crate) const ZIPIMPORT_READING: &str = "<as zipimport reads it>";
pub(crate) use python_reading::READING as PYTHON_READING;
/// Where a Python file's reading as CPython reads it comes, after the file's other scans.
const PYTHON_READING_ORDER: u32 = u32::MAX - 16;
const PTH_LOCALE_WHY: &str = "a .pth file that is not UTF-8 and holds `import`: Python 3.13 and later, and every \
     Python on a locale that is not UTF-8 (Windows'), read it in the locale's codec, and run the lines that start \
     with `import` as they read there; it was scanned as its bytes and as UTF-8 only";
const NORMALIZED_WHY: &str =
    "pip installs it from a wheel (and current Pythons' tarfile unpacks a name with '..') under its `os.path.normpath` \
     form,";
const WINDOWS_WHY: &str =
    "pip on Windows (which drops the trailing dots and spaces of a name, reads `NAME::$DATA` as \
     `NAME`, and on whose case-blind names pip runs a `SETUP.PY` as `setup.py`) writes it as";
const SPLIT_WHY: &str =
    "pip, stripping the archive's leading directory, splits its name at the '\\' and writes it as";

/// A member's content scanned under another name pip writes it to, and why (`why` ends before the name).
fn alias_issue(path: &str, why: &str, alias: &str) -> Issue {
    let message = format!("{why} {alias:?}; its content was scanned under both names");
    Issue::new(path, IssueKind::Ambiguous, message).scanned()
}

/// A regular file read from an archive, on its way to be scanned.
struct Member {
    order: Order,
    path: String,
    data: Vec<u8>,
    depth: u32,
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
    scanner: &'e FileScanner,
    limits: &'e Limits,
    /// Threads of the pool this scan runs on (one: a tarball is walked without handing members off).
    threads: usize,
    /// The distribution's own name: the path of its content when it is a plain file.
    name: &'e str,
    /// Counts the files scanned; when cancelled, no more is read or scanned.
    control: &'e ScanControl,
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
    pub(crate) fn new(
        scanner: &'e FileScanner,
        limits: &'e Limits,
        threads: usize,
        name: &'e str,
        control: &'e ScanControl,
    ) -> Self {
        Self {
            scanner,
            limits,
            threads,
            name,
            control,
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

    /// Scan `data`; `container` forces a container instead of detecting it (fuzzing). `None`
    /// when the scan was cancelled: what was found so far is incomplete and is dropped.
    pub(crate) fn run_as(
        self,
        data: &[u8],
        name: String,
        url: Option<String>,
        container: Option<Container>,
    ) -> Option<DistributionReport> {
        // The distribution's own digest is taken while its members are walked: done after the walk,
        // it left every other thread idle (50 ms for a 100 MB wheel).
        let walk = || catch_unwind(AssertUnwindSafe(|| self.walk_top(data, container)));
        let (walked, digest) = if self.scanner.digests == Digests::All {
            let (walked, digest) = rayon::join(walk, || sha256(data));
            (walked, sha256_hex(&digest))
        } else {
            (walk(), String::new())
        };
        let format = match walked {
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
        if self.cancelled() {
            return None;
        }
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
        Some(DistributionReport {
            name,
            url,
            format,
            size: data.len() as u64,
            sha256: digest,
            files_scanned: self.files_scanned.into_inner(),
            bytes_scanned: self.bytes_scanned.into_inner(),
            files: files.into_iter().map(|(_, f)| f).collect(),
            issues,
        })
    }

    /// The scan was cancelled: stop reading and scanning (the report will be dropped).
    fn cancelled(&self) -> bool {
        self.control.is_cancelled()
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

    /// Flag a member `name` (whole: `path` may show it cut) seen before in this distribution
    /// (every copy is still scanned).
    fn check_duplicate(&self, name: &[u8], path: &str, order: &Order) {
        // Within one archive: the position without its last part names the archive.
        let hash = self.hasher.hash_one((&order[..order.len().saturating_sub(1)], name));
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

    /// Scan a member's `content` again under each other name pip may write it to: its
    /// `os.path.normpath` form (see [`normalized_alias`]), the name Windows gives it (see
    /// [`windows_alias`]) and, when pip strips the archive's leading directory (`strips_leading`), its
    /// name split at a backslash (see [`backslash_alias`]). Rules pick files by name: under its raw name
    /// alone, `pkg/evil.py/.` would be spared the `.py` rules.
    #[allow(clippy::too_many_arguments)]
    fn scan_aliases(
        &self,
        name: &[u8],
        strips_leading: bool,
        prefix: &str,
        path: &str,
        order: &Order,
        content: &[u8],
        hashes: &mut ContentHashes,
    ) {
        let normalized = normalized_alias(name).map(|alias| (alias, NORMALIZED_WHY, NORMALIZED_ALIAS));
        let windows = windows_alias(name).map(|alias| (alias, WINDOWS_WHY, WINDOWS_ALIAS));
        let split = strips_leading
            .then(|| backslash_alias(name))
            .flatten()
            .map(|alias| (alias, SPLIT_WHY, SPLIT_ALIAS));
        for (alias, why, place) in normalized.into_iter().chain(windows).chain(split) {
            let alias = format!("{prefix}{}", names::display_name(&alias));
            self.issue(order.clone(), alias_issue(path, why, &alias));
            self.scan_named([order.as_slice(), &[place]].concat(), alias, content, hashes);
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

    /// The distribution itself: every archive pip could see in it, or one plain file.
    fn walk_top(&self, data: &[u8], forced: Option<Container>) -> Format {
        let containers = match forced {
            Some(container) => vec![container],
            None => interpretations(data),
        };
        let mut format = Format::File;
        let mut opened_any = false;
        for (i, &container) in containers.iter().enumerate() {
            if container == Container::Plain {
                continue;
            }
            // A second reading of the same bytes (a zip behind a tarball, say) is walked apart,
            // with its own positions; its members keep the names pip would give them.
            let order: Vec<u32> = if i == 0 { Vec::new() } else { vec![u32::MAX - 1 - i as u32] };
            let (this, opened) = self.walk_archive(container, data, "", 0, &order, true);
            if i == 0 {
                format = this;
            } else if opened {
                let message = format!(
                    "the file is also a {} archive (pip opens it as one whatever its name: zipfile finds a zip from \
                     its end); its members were scanned too",
                    this.as_str()
                );
                self.issue(order, Issue::new("", IssueKind::HiddenData, message).scanned());
            }
            opened_any |= opened;
        }
        if !opened_any {
            // Still let the rules see the raw bytes; an issue says when that is not enough.
            self.scan_blob(vec![0], self.name.to_owned(), data);
            // A name that promises an archive, on bytes that are none (an error page saved as a
            // wheel): whatever was meant to be scanned is not there.
            let suffix = archive_suffix(self.name).filter(|_| containers == [Container::Plain]);
            if let Some(suffix) = suffix {
                let message = format!(
                    "named like a {suffix} archive but is not an archive of any kind: what pip would unpack from \
                     it is unknown; its raw bytes were scanned"
                );
                self.issue(vec![0], Issue::new("", IssueKind::Corrupt, message));
            }
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
            Container::Gzip
            | Container::Bzip2
            | Container::Xz
            | Container::Lzma
            | Container::Lzip
            | Container::Zstd => {
                let mut stream = open_stream(container, data, self.limits);
                let mut head = Vec::with_capacity(2 * TAR_BLOCK);
                if let Err(err) = read_up_to(&mut stream.reader, 2 * TAR_BLOCK, &mut head) {
                    if stream.guard.tripped() == Trip::None {
                        let message = format!("cannot decompress: {err}");
                        self.issue(order.to_vec(), Issue::new(label, IssueKind::Corrupt, message));
                        return (Format::compressed(container, false), false);
                    }
                    // A limit stopped the stream within its first two blocks: what came before it is
                    // walked as any stream its guard cut (the reader fails again where it stopped), so
                    // that the limit is named and a finding in those bytes is not lost.
                }
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
                    let member_order: Order = [order, &[0]].concat();
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
                        self.after_stream(&stream, prefix, depth, order);
                    }
                }
                (Format::compressed(container, holds_tar), true)
            }
            Container::Plain => unreachable!("plain data is a file, not an archive"),
        }
    }

    /// What a gzip or zstd stream's guard found after its last member or frame: a bad member
    /// checksum, and bytes that are not another member (scanned, and opened if they hold an archive).
    fn after_stream(&self, stream: &Stream<'_>, prefix: &str, depth: u32, order: &[u32]) {
        if stream.guard.bad_checksum.load(Ordering::Relaxed) {
            let label = prefix.strip_suffix("!/").unwrap_or(prefix);
            let message = "a gzip member's CRC-32 does not match its content; the content was scanned";
            self.issue([order, &[u32::MAX, 0]].concat(), Issue::new(label, IssueKind::BadChecksum, message));
        }
        let Some(at) = stream.guard.trailing_offset() else { return };
        let hidden = &stream.source[at.min(stream.source.len())..];
        let order: Order = [order, &[u32::MAX, 1]].concat();
        let (kind, unit) =
            if stream.container == Container::Zstd { ("zstd", "frame") } else { ("gzip", "member") };
        let path = format!("{prefix}<after end of {kind} stream>");
        let max = self.limits.max_member_size as usize;
        let message = if hidden.len() > max {
            format!(
                "{} bytes after the last {kind} {unit} (from offset {at}); only the first {max} were scanned",
                hidden.len()
            )
        } else {
            format!(
                "{} bytes after the last {kind} {unit} (from offset {at}); scanned, and opened if an archive",
                hidden.len()
            )
        };
        let mut issue = Issue::new(&*path, IssueKind::HiddenData, message);
        issue.unscanned = hidden.len() > max;
        self.issue(order.clone(), issue);
        let data = hidden[..hidden.len().min(max)].to_vec();
        self.file(Member { order, path, data, depth });
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
        if self.total_exceeded.load(Ordering::Relaxed) || self.cancelled() {
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
        let mut data = crate::membuf::member_buffer(expected + 1 + PROBE_READ);
        loop {
            // Checked per chunk: one huge member must not hold up a cancel.
            if self.cancelled() {
                return nothing;
            }
            let start = data.len();
            let want =
                if start < expected { expected - start + 1 } else { (start - expected).max(PROBE_READ) };
            let want = want.min(READ_CHUNK).min(over.saturating_sub(start as u64) as usize);
            // `read_to_end` on a `Take` zeroes the reserved capacity at most once, a piece ahead of
            // each read (our readers have no `read_buf`); a resize-then-read would zero the rest of
            // the chunk again after every short read.
            data.reserve(want);
            let n = match (&mut *reader).take(want as u64).read_to_end(&mut data) {
                Ok(n) => n,
                Err(err) => {
                    let trip = guard.tripped();
                    if trip != Trip::None {
                        data.truncate(start);
                    }
                    // What was inflated before the error is what Python's readers hand on (`zipfile`
                    // installs a deflate stream that ends before its final block, when its CRC-32
                    // matches): it is kept and scanned, within the limits, and the member stays
                    // incomplete.
                    let read = data.len();
                    let issue = match trip {
                        Trip::None if is_checksum_error(&err) => Issue::new(
                            path,
                            IssueKind::BadChecksum,
                            format!(
                                "a checksum failed after {read} bytes: {err}; the rest of the stream was not scanned"
                            ),
                        )
                        .unscanned(),
                        Trip::None => Issue::new(
                            path,
                            IssueKind::Corrupt,
                            format!("cannot inflate after {read} bytes: {err}; the rest was not scanned"),
                        ),
                        trip => limit_issue(trip, path, self.limits),
                    };
                    self.issue(order.clone(), issue);
                    if read > start {
                        let consumed = compressed.unwrap_or_else(|| guard.consumed.load(Ordering::Relaxed));
                        data = match self.account_read(
                            data,
                            read - start,
                            declared,
                            consumed,
                            budget,
                            path,
                            order,
                        ) {
                            Ok(data) => data,
                            Err(ended) => return ended,
                        };
                    }
                    return MemberRead { data: (read > 0).then_some(data), whole: false };
                }
            };
            if n == 0 {
                return MemberRead { data: Some(data), whole: true };
            }
            let consumed = compressed.unwrap_or_else(|| guard.consumed.load(Ordering::Relaxed));
            data = match self.account_read(data, n, declared, consumed, budget, path, order) {
                Ok(data) => data,
                Err(ended) => return ended,
            };
        }
    }

    /// A member inflated whole in one call (`zipdir::inflate_whole`, when `DistScan::inflates_whole` says the
    /// limits end it as they would end `read_member`'s reads), counted against them once: the same issues,
    /// the same outcome. `compressed`: the member's compressed bytes.
    fn read_inflated(
        &self,
        data: Vec<u8>,
        compressed: u64,
        declared: Option<u64>,
        budget: Option<&ArchiveBudget>,
        path: &str,
        order: &Order,
    ) -> MemberRead {
        if self.total_exceeded.load(Ordering::Relaxed) || self.cancelled() {
            return MemberRead { data: None, whole: false };
        }
        let n = data.len();
        if n == 0 {
            return MemberRead { data: Some(data), whole: true };
        }
        match self.account_read(data, n, declared, compressed, budget, path, order) {
            Ok(data) => MemberRead { data: Some(data), whole: true },
            Err(ended) => ended,
        }
    }

    /// Count the `n` bytes just read onto the end of `data` (a member's content so far, `consumed`
    /// compressed bytes) against the member, total, ratio and archive-budget limits: `Ok` to read on,
    /// `Err` with how the member's read ended when one of them was hit (its issue recorded).
    #[allow(clippy::too_many_arguments)]
    fn account_read(
        &self,
        mut data: Vec<u8>,
        n: usize,
        declared: Option<u64>,
        consumed: u64,
        budget: Option<&ArchiveBudget>,
        path: &str,
        order: &Order,
    ) -> Result<Vec<u8>, MemberRead> {
        let max = self.limits.max_member_size;
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
            return Err(MemberRead { data: Some(data), whole: false });
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
            return Err(MemberRead { data: None, whole: false });
        }
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
            return Err(MemberRead { data: Some(data), whole: false });
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
                return Err(MemberRead { data: Some(data), whole: false });
            }
        }
        Ok(data)
    }

    /// Count `bytes` more inflated bytes (not read through `read_member`, e.g. sparse holes)
    /// against the total-size limit; false past it.
    fn charge(&self, bytes: u64, path: &str, order: &Order) -> bool {
        let total = self.inflated.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total <= self.limits.max_total_size {
            return true;
        }
        if !self.total_exceeded.swap(true, Ordering::Relaxed) {
            let message = format!(
                "the distribution inflates past the total-size limit of {} bytes here; this and later members were \
                 not scanned",
                self.limits.max_total_size
            );
            self.issue(order.clone(), Issue::new(path, IssueKind::TotalSizeExceeded, message));
        }
        false
    }

    /// A regular file: scan it, then open every archive pip could see in it if depth allows.
    fn file(&self, member: Member) {
        if self.cancelled() {
            return;
        }
        let Member { order, path, data, depth } = member;
        let containers = interpretations(&data);
        if containers.iter().any(|&c| c != Container::Plain) {
            let max_depth = self.limits.max_depth.min(MAX_NESTING_DEPTH);
            if depth < max_depth {
                let prefix = format!("{path}!/");
                // Nested archives are walked inside this task: the pool is already busy with
                // the outer archive's members.
                for (i, &container) in containers.iter().enumerate() {
                    if container != Container::Plain {
                        let order: Order = if i == 0 {
                            order.clone()
                        } else {
                            [&order[..], &[u32::MAX - 1 - i as u32]].concat()
                        };
                        self.walk_archive(container, &data, &prefix, depth + 1, &order, false);
                    }
                }
            } else {
                let message = format!(
                    "archive nested deeper than the limit of {max_depth} levels; scanned only as raw bytes"
                );
                self.issue(order.clone(), Issue::new(&*path, IssueKind::NestingTooDeep, message));
            }
        }
        self.scan_blob(order, path, &data);
        crate::membuf::recycle(data);
    }

    /// One more file of `bytes` scanned, in this distribution's counts and the control's.
    fn count_scanned(&self, bytes: usize) {
        self.files_scanned.fetch_add(1, Ordering::Relaxed);
        self.bytes_scanned.fetch_add(bytes as u64, Ordering::Relaxed);
        self.control.add_file(bytes as u64);
    }

    /// Scan bytes as one file and record its matches or its failure.
    fn scan_blob(&self, order: Order, path: String, data: &[u8]) {
        self.scan_named(order, path, data, &mut ContentHashes::default());
    }

    /// Scan bytes as the file `path` (its name picks the rules that can count for it); `hashes`
    /// keeps the content's hashes once taken, for scanning the same bytes under other names.
    fn scan_named(&self, order: Order, path: String, data: &[u8], hashes: &mut ContentHashes) {
        self.scan_fitted(order, path, None, data, hashes);
    }

    /// [`Self::scan_named`], the rules that count picked by `fit_as` when given (the name pip writes the
    /// file to, where the report's `path` says more).
    fn scan_fitted(
        &self,
        order: Order,
        path: String,
        fit_as: Option<&str>,
        data: &[u8],
        hashes: &mut ContentHashes,
    ) {
        if self.cancelled() {
            return;
        }
        // A Python file is also scanned as CPython reads it (its codec, NFKC identifiers, line breaks).
        let reading = {
            let fit = fit_as.map_or_else(|| names::fit_name(&path), Cow::Borrowed);
            match python_reading::python_code(&fit) {
                Some(code) => {
                    if code == PythonCode::Pth && python_reading::pth_read_in_locale_codec(data) {
                        self.issue(order.clone(), Issue::new(&*path, IssueKind::Ambiguous, PTH_LOCALE_WHY));
                    }
                    python_reading::reading(code, data).map(|reading| (reading, fit.into_owned()))
                }
                None => None,
            }
        };
        if let Some((reading, fit)) = reading {
            let path = format!("{path}{}", python_reading::READING);
            let order = [order.as_slice(), &[PYTHON_READING_ORDER]].concat();
            self.scan_as(order, path, Some(&fit), &reading, &mut ContentHashes::default());
        }
        self.scan_as(order, path, fit_as, data, hashes);
    }

    /// Scan `data` as the file `path`, with the rules that count for `fit_as` or else its own name.
    fn scan_as(
        &self,
        order: Order,
        path: String,
        fit_as: Option<&str>,
        data: &[u8],
        hashes: &mut ContentHashes,
    ) {
        // The rules that count are picked by the name pip writes the file to.
        let fit = fit_as.map_or_else(|| names::fit_name(&path), Cow::Borrowed);
        let route = self.scanner.rules.route(&fit);
        if route.is_empty() {
            // No rule can count for this file (all have a `filetype` that does not fit): its
            // content is covered without running YARA-X.
            self.count_scanned(data.len());
            return;
        }
        // Without the cache only files that match are hashed (for their report, with digests on).
        let cached = self.scanner.caching && self.scanner.answers_keep;
        let key = cached.then(|| route.cache_key(hashes.key(data)));
        match self.scanner.scan_content(key.as_ref(), &route, data) {
            ScanOutcome::Hits(raw) => {
                self.count_scanned(data.len());
                let hits = self.scanner.hits_for_path(&raw, &fit);
                if !hits.is_empty() {
                    let report = FileReport {
                        path,
                        size: data.len() as u64,
                        sha256: if self.scanner.digests != Digests::None {
                            sha256_hex(hashes.sha256(data))
                        } else {
                            String::new()
                        },
                        is_text: looks_like_text(data),
                        hits,
                    };
                    self.files.lock().unwrap_or_else(|e| e.into_inner()).push((order, report));
                }
            }
            ScanOutcome::Failed(kind, message) => self.issue(order, Issue::new(path, kind, message)),
        }
    }
}
