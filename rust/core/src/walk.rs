//! Walking one distribution: open the container found by its magic bytes, read every member in
//! memory under the limits, hand each regular file to the engine, and open nested archives to a
//! bounded depth. Nothing is written to disk and no archive path is ever used on the host.

use std::io::{self, Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rayon::iter::{IntoParallelIterator, ParallelBridge, ParallelIterator};

use crate::engine::{sha256, sha256_hex, Engine, ScanOutcome};
use crate::format::{detect, is_tar_header, Container, Format, TAR_BLOCK};
use crate::issue::{Issue, IssueKind};
use crate::limits::Limits;
use crate::report::{DistributionReport, FileReport};

/// Position of a member in archive order; nested members extend their container's position.
type Order = Vec<u32>;

const READ_CHUNK: usize = 256 * 1024;
/// Largest LZMA dictionary an xz stream may ask for (KiB); real packages use at most 64 MiB.
const XZ_MEMORY_LIMIT_KB: u32 = 256 * 1024;

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
}

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

/// Stops a decompressing stream once it inflates past the total-size limit or the ratio limit,
/// whoever reads it (the tar crate also inflates data it skips).
struct GuardedReader<R> {
    inner: R,
    inflated: u64,
    consumed: Arc<AtomicU64>,
    limits: Limits,
    trip: Arc<AtomicU8>,
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let trip = if self.inflated > self.limits.max_total_size {
            Trip::Total
        } else if self.limits.ratio_exceeded(self.inflated, self.consumed.load(Ordering::Relaxed)) {
            Trip::Ratio
        } else {
            return Ok(n);
        };
        self.trip.store(trip as u8, Ordering::Relaxed);
        Err(io::Error::other("stream limit reached"))
    }
}

/// What a stream's guard saw: compressed bytes consumed and why it tripped, if it did.
#[derive(Clone, Default)]
struct Guard {
    trip: Arc<AtomicU8>,
    consumed: Arc<AtomicU64>,
}

impl Guard {
    fn tripped(&self) -> Trip {
        match self.trip.load(Ordering::Relaxed) {
            1 => Trip::Total,
            2 => Trip::Ratio,
            _ => Trip::None,
        }
    }
}

/// A decompressed stream (`Send`, so a reader thread can own it) and its guard.
struct Stream<'a> {
    reader: Box<dyn Read + Send + 'a>,
    guard: Guard,
}

fn open_stream<'a>(container: Container, data: &'a [u8], limits: &Limits) -> Stream<'a> {
    let guard = Guard::default();
    let input = CountingReader { inner: data, consumed: Arc::clone(&guard.consumed) };
    let decoder: Box<dyn Read + Send + 'a> = match container {
        // Concatenated members are one stream, as gzip(1) and Python's tarfile read them.
        Container::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Container::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        Container::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(input, true, XZ_MEMORY_LIMIT_KB)),
        Container::Zip | Container::Tar | Container::Plain => Box::new(input),
    };
    let reader = Box::new(GuardedReader {
        inner: decoder,
        inflated: 0,
        consumed: Arc::clone(&guard.consumed),
        limits: limits.clone(),
        trip: Arc::clone(&guard.trip),
    });
    Stream { reader, guard }
}

/// Reads at most `limit` bytes, retrying on interruption; fewer only at end of stream.
fn read_up_to(reader: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit);
    reader.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
        }
    }

    pub(crate) fn run(self, data: &[u8], name: String, url: Option<String>) -> DistributionReport {
        let format = match catch_unwind(AssertUnwindSafe(|| self.walk_top(data))) {
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
        DistributionReport {
            name,
            url,
            format,
            size: data.len() as u64,
            sha256: sha256_hex(&sha256(data)),
            files_scanned: self.files_scanned.into_inner(),
            bytes_scanned: self.bytes_scanned.into_inner(),
            files: files.into_iter().map(|(_, f)| f).collect(),
            issues: issues.into_iter().map(|(_, i)| i).collect(),
        }
    }

    fn issue(&self, order: Order, issue: Issue) {
        self.issues.lock().unwrap_or_else(|e| e.into_inner()).push((order, issue));
    }

    /// The distribution itself: an archive whose members are walked, or one plain file.
    fn walk_top(&self, data: &[u8]) -> Format {
        let container = detect(data);
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
                        if let Some(data) =
                            self.read_member(&mut stream.reader, &stream.guard, &path, None, &member_order)
                        {
                            self.file(Member { order: member_order, path, data, depth });
                        }
                    }
                }
                (Format::compressed(container, holds_tar), true)
            }
            Container::Plain => unreachable!("plain data is a file, not an archive"),
        }
    }

    /// Count one more member; false (with one issue for the distribution) past `max_members`.
    fn count_member(&self, order: &[u32]) -> bool {
        if self.members.fetch_add(1, Ordering::Relaxed) < self.limits.max_members {
            return true;
        }
        if !self.members_exceeded.swap(true, Ordering::Relaxed) {
            self.issue(
                order.to_vec(),
                Issue::new(
                    "",
                    IssueKind::TooManyMembers,
                    format!("more than {} members; the rest were not scanned", self.limits.max_members),
                ),
            );
        }
        false
    }

    /// A member whose header declares more than the member-size limit is not read at all.
    fn declared_too_large(&self, declared: u64, path: &str, order: &Order) -> bool {
        let max = self.limits.max_member_size;
        if declared > max {
            let message =
                format!("declares {declared} bytes, over the member-size limit of {max} bytes; not scanned");
            self.issue(order.clone(), Issue::new(path, IssueKind::MemberTooLarge, message));
        }
        declared > max
    }

    /// Read one member's content under the member, total and ratio limits. Returns what could be
    /// read (to be scanned) or `None` when nothing useful was read; every shortfall is an issue.
    fn read_member(
        &self,
        reader: &mut dyn Read,
        guard: &Guard,
        path: &str,
        compressed: Option<u64>,
        order: &Order,
    ) -> Option<Vec<u8>> {
        if self.total_exceeded.load(Ordering::Relaxed) {
            return None;
        }
        let max = self.limits.max_member_size;
        let mut data = Vec::new();
        loop {
            let start = data.len();
            let want = READ_CHUNK.min((max + 1).saturating_sub(start as u64) as usize);
            data.resize(start + want, 0);
            let read = reader.read(&mut data[start..]);
            let n = match read {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
                Err(err) => {
                    data.truncate(start);
                    let issue = match guard.tripped() {
                        Trip::None
                            if err.to_string().contains("checksum") || err.to_string().contains("CRC") =>
                        {
                            Issue::new(
                                path,
                                IssueKind::BadChecksum,
                                format!("content does not match its checksum: {err}"),
                            )
                        }
                        Trip::None => Issue::new(
                            path,
                            IssueKind::Corrupt,
                            format!("cannot inflate after {start} bytes: {err}; the rest was not scanned"),
                        ),
                        trip => limit_issue(trip, path, self.limits),
                    };
                    let complete = issue.kind == IssueKind::BadChecksum;
                    self.issue(order.clone(), issue);
                    return (complete || start > 0).then_some(data);
                }
            };
            data.truncate(start + n);
            if n == 0 {
                return Some(data);
            }
            if data.len() as u64 > max {
                data.truncate(max as usize);
                self.issue(
                    order.clone(),
                    Issue::new(
                        path,
                        IssueKind::MemberTooLarge,
                        format!("larger than the member-size limit of {max} bytes; only the first {max} bytes were scanned"),
                    ),
                );
                return Some(data);
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
                return None;
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
                return Some(data);
            }
        }
    }

    fn walk_zip(&self, data: &[u8], prefix: &str, depth: u32, order: &[u32]) -> bool {
        let label = prefix.strip_suffix("!/").unwrap_or(prefix);
        let archive = match zip::ZipArchive::new(Cursor::new(data)) {
            Ok(archive) => archive,
            Err(err) => {
                self.issue(
                    order.to_vec(),
                    Issue::new(label, IssueKind::Corrupt, format!("not a readable zip archive: {err}")),
                );
                return false;
            }
        };
        (0..archive.len()).into_par_iter().for_each_init(
            || archive.clone(),
            |archive, index| {
                let mut member_order = order.to_vec();
                member_order.push(index as u32);
                if self.count_member(&member_order) {
                    self.zip_member(archive, index, prefix, depth, member_order);
                }
            },
        );
        true
    }

    fn zip_member(
        &self,
        archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
        index: usize,
        prefix: &str,
        depth: u32,
        order: Order,
    ) {
        let Ok(entry) = archive.by_index_data(index) else {
            return;
        };
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_else(|_| lossy(entry.name_raw()));
        let path = format!("{prefix}{name}");
        if entry.is_dir() {
            return;
        }
        if entry.is_symlink() {
            self.issue(order, Issue::new(path, IssueKind::LinkNotFollowed, "symlink recorded, not followed"));
            return;
        }
        if entry.encrypted() {
            self.issue(order, Issue::new(path, IssueKind::Encrypted, "encrypted member cannot be read"));
            return;
        }
        let (declared, compressed) = (entry.size(), entry.compressed_size());
        if self.declared_too_large(declared, &path, &order) {
            return;
        }
        let file = match archive.by_index(index) {
            Ok(file) => file,
            Err(err) => {
                let kind = match err {
                    zip::result::ZipError::UnsupportedArchive(msg)
                        if msg == zip::result::ZipError::PASSWORD_REQUIRED =>
                    {
                        IssueKind::Encrypted
                    }
                    zip::result::ZipError::CompressionMethodNotSupported(_)
                    | zip::result::ZipError::UnsupportedArchive(_) => IssueKind::UnsupportedCompression,
                    _ => IssueKind::Corrupt,
                };
                self.issue(order, Issue::new(path, kind, format!("cannot read member: {err}")));
                return;
            }
        };
        let mut file = file;
        if let Some(data) = self.read_member(&mut file, &Guard::default(), &path, Some(compressed), &order) {
            drop(file);
            self.file(Member { order, path, data, depth });
        }
    }

    /// Walk a tar stream. At the top level one thread inflates and parses while the pool scans
    /// members as they come (a tarball is one stream); nested tarballs are walked in place.
    fn walk_tar(&self, stream: Stream<'_>, prefix: &str, depth: u32, order: &[u32], parallel: bool) {
        if !parallel || self.engine.threads() == 1 {
            self.read_tar(stream, prefix, depth, order, &mut |member| self.file(member));
            return;
        }
        // Bounded: at most this many members wait in memory for a scanner.
        let (sender, receiver) = mpsc::sync_channel::<Member>(2 * self.engine.threads());
        std::thread::scope(|scope| {
            scope.spawn(move || {
                self.read_tar(stream, prefix, depth, order, &mut |member| {
                    // The receiver only goes away if scanning panicked; the panic is reported.
                    let _ = sender.send(member);
                });
            });
            receiver.into_iter().par_bridge().for_each(|member| self.file(member));
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
        let Stream { reader, guard } = stream;
        let mut archive = tar::Archive::new(reader);
        let entries = match archive.entries() {
            Ok(entries) => entries,
            Err(err) => {
                self.issue(
                    order.to_vec(),
                    Issue::new(label, IssueKind::Corrupt, format!("not a readable tar archive: {err}")),
                );
                return;
            }
        };
        let stopped = |index: usize, err: io::Error| match guard.tripped() {
            Trip::None => Issue::new(
                label,
                IssueKind::Corrupt,
                format!("malformed or truncated tar at entry {index}: {err}; the rest was not scanned"),
            ),
            trip => limit_issue(trip, label, self.limits),
        };
        for (index, entry) in entries.enumerate() {
            let mut member_order = order.to_vec();
            member_order.push(index as u32);
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.issue(member_order, stopped(index, err));
                    return;
                }
            };
            if !self.count_member(&member_order) || self.total_exceeded.load(Ordering::Relaxed) {
                return;
            }
            let path = format!("{prefix}{}", lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            use tar::EntryType;
            match kind {
                EntryType::Directory | EntryType::XGlobalHeader | EntryType::XHeader => continue,
                EntryType::GNULongName | EntryType::GNULongLink => continue,
                EntryType::Symlink | EntryType::Link => {
                    let target = entry.link_name_bytes().map(|t| lossy(&t)).unwrap_or_default();
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
            if self.declared_too_large(entry.size(), &path, &member_order) {
                continue;
            }
            let data = self.read_member(&mut entry, &guard, &path, None, &member_order);
            let failed = guard.tripped() != Trip::None;
            if let Some(data) = data {
                emit(Member { order: member_order, path, data, depth });
            }
            if failed {
                return;
            }
        }
        // Whatever follows the end-of-archive marker is read too: a truncated or corrupt
        // compressed stream is an issue, and non-zero bytes there are scanned and reported.
        let order: Order = [order, &[u32::MAX]].concat();
        let path = format!("{prefix}<after end of archive>");
        if let Some((offset, hidden)) = self.trailing_bytes(&mut archive.into_inner(), &guard, &path, &order)
        {
            let message = format!(
                "{} bytes after the tar end-of-archive marker (from offset {offset} past it); scanned as one blob",
                hidden.len()
            );
            self.issue(order.clone(), Issue::new(&*path, IssueKind::HiddenData, message).scanned());
            self.scan_blob(order, path, &hidden);
        }
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
            if depth < self.limits.max_depth {
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
                            "archive nested deeper than the limit of {} levels; scanned only as raw bytes",
                            self.limits.max_depth
                        ),
                    ),
                );
            }
        }
        self.scan_blob(order, path, &data);
    }

    /// Scan bytes as one file and record its matches or its failure.
    fn scan_blob(&self, order: Order, path: String, data: &[u8]) {
        if !self.engine.rules().may_apply(&path) {
            // No rule can count for this file (all have a `filetype` that does not fit): its
            // content is covered without running YARA-X.
            self.files_scanned.fetch_add(1, Ordering::Relaxed);
            self.bytes_scanned.fetch_add(data.len() as u64, Ordering::Relaxed);
            return;
        }
        let hash = sha256(data);
        match self.engine.scan_content(&hash, data) {
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
