//! Walking a zip archive as `zipfile` (and so pip) reads it: every central-directory record is a
//! member, read in parallel under the limits and the archive-wide inflation budget; each member
//! scanned under every name a Python version gives it; hidden bytes scanned and opened.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use super::names::{self, display_name, LeadingDir};
use super::stream::Guard;
use super::{DistScan, Member, MemberRead, Order, READ_CHUNK, ZIPIMPORT_READING};
use crate::crc::{self, Crc32};
use crate::issue::{Issue, IssueKind};
use crate::limits::RATIO_GRACE_BYTES;
use crate::service::ContentHashes;
use crate::zipdir::{self, Directory};

/// The zip-wide inflation budget: entries that share compressed bytes (or repeat them) cannot
/// inflate more than `max_ratio` times the archive's own size, whatever each entry's ratio.
pub(super) struct ArchiveBudget {
    pub(super) inflated: AtomicU64,
    pub(super) limit: u64,
    pub(super) size: u64,
    pub(super) tripped: AtomicBool,
}

/// Zip members smaller than this (by the size the directory claims) are scanned after the others, in the
/// order of their data in the archive, which the caches and the page tables follow: in size order they
/// were read all over the file, and the big wheel's 50,000 modules took 6-7% longer to scan. The real
/// corpus's wheels took 1-2% longer with every member under 256 KiB in archive order, and the same time
/// with those under 16 KiB.
const IN_ARCHIVE_ORDER_UNDER: u64 = 16 * 1024;

/// How a zip's member names are read: `prefix` (the archive's own path, for a nested one) before
/// each, and whether pip strips the archive's leading directory from them (see `strips_leading_dir`).
#[derive(Clone, Copy)]
struct MemberNames<'a> {
    prefix: &'a str,
    strips_leading: bool,
}

/// Whether pip, unzipping this archive as an sdist, strips a leading directory that changes where
/// a member lands (`has_leading_dir`): asked only when some name holds a `\`, which is when it does.
fn strips_leading_dir(dir: &Directory, data: &[u8]) -> bool {
    if !dir.entries.iter().any(|entry| entry.raw_name(data).contains(&b'\\')) {
        return false;
    }
    let mut leading = LeadingDir::default();
    for entry in &dir.entries {
        leading.add(entry.decoded_name(data).0.as_bytes());
    }
    leading.stripped()
}

impl DistScan<'_> {
    /// Walk a zip archive; false when it cannot be opened at all.
    pub(super) fn walk_zip(&self, data: &[u8], prefix: &str, depth: u32, order: &[u32]) -> bool {
        let label = prefix.strip_suffix("!/").unwrap_or(prefix);
        // Every record is a member: the member limit bounds how many are read (and held) at all.
        let room = self.limits.max_members.saturating_sub(self.members.load(Ordering::Relaxed));
        let (dir, left) = match Directory::parse(data, room.saturating_add(1)) {
            Ok(parsed) => parsed,
            Err(err) => {
                let message = format!("not a readable zip archive: {err}");
                self.issue(order.to_vec(), Issue::new(label, IssueKind::Corrupt, message));
                return false;
            }
        };
        if let Some((offset, size)) = dir.locator_reading {
            let message = format!(
                "its zip64 locator leads Python 3.14 (and the October 2025 security releases) to another central \
                 directory ({size} bytes at offset {offset}) than older Pythons read; only the older reading's \
                 members were scanned"
            );
            self.issue(order.to_vec(), Issue::new(label, IssueKind::Ambiguous, message));
        }
        if let Some((offset, size)) = dir.classic_reading {
            let message = format!(
                "its classic end record leads Python's zipimport before 3.13 (which runs code from zips on sys.path) \
                 to another central directory ({size} bytes at offset {offset}) than its zip64 record, which zipfile \
                 reads; only zipfile's members were scanned"
            );
            self.issue(order.to_vec(), Issue::new(label, IssueKind::Ambiguous, message));
        }
        let strips_leading = strips_leading_dir(&dir, data);
        let entry_order = |index: usize| -> Order { [order, &[index as u32]].concat() };
        let entry_path = |index: usize| {
            let (name, _) = dir.entries[index].decoded_name(data);
            format!("{prefix}{}", display_name(name.as_bytes()))
        };
        let allowed = self.count_members(dir.entries.len() as u64, order) as usize;
        if left.is_none() {
            for (index, other) in dir.overlaps(data) {
                let message = match other {
                    Some(other) => format!(
                        "shares bytes with the entry {:?}; both were scanned, within the archive's inflation budget",
                        entry_path(other)
                    ),
                    None => "its data runs into the central directory; scanned within the archive's inflation \
                             budget"
                        .to_owned(),
                };
                self.issue(
                    entry_order(index),
                    Issue::new(entry_path(index), IssueKind::OverlappingEntries, message),
                );
            }
            self.zip_hidden(&dir, data, prefix, depth, order);
        }
        let budget = ArchiveBudget {
            inflated: AtomicU64::new(0),
            limit: self.limits.max_ratio.saturating_mul(data.len() as u64),
            size: data.len() as u64,
            tripped: AtomicBool::new(false),
        };
        // Members of `IN_ARCHIVE_ORDER_UNDER` or more first, largest first (by the size the directory
        // claims: only the order depends on it), each thread taking the next member when it is free. A big
        // member reached last, or queued behind the other big ones on one thread, kept that thread busy
        // alone at the end: plotly's wheel (two 3.7 MB scripts at the end of its directory) took 0.20 s on
        // 2 threads for 0.29 CPU-s with the members split between the threads, and takes 0.15 s this way.
        let mut schedule: Vec<usize> = (0..allowed).collect();
        schedule.sort_by_key(|&index| {
            let entry = &dir.entries[index];
            if entry.size >= IN_ARCHIVE_ORDER_UNDER {
                (std::cmp::Reverse(entry.size), 0)
            } else {
                (std::cmp::Reverse(0), entry.header_offset)
            }
        });
        let next = AtomicUsize::new(0);
        let workers = rayon::current_num_threads().min(schedule.len());
        (0..workers).into_par_iter().for_each(|_| {
            while let Some(&index) = schedule.get(next.fetch_add(1, Ordering::Relaxed)) {
                if budget.tripped.load(Ordering::Relaxed) || self.cancelled() {
                    return;
                }
                let names = MemberNames { prefix, strips_leading };
                self.zip_member(&dir, data, index, names, depth, entry_order(index), &budget);
            }
        });
        // pip builds only the distribution itself: an sdist nested in it is not built.
        if prefix.is_empty() && !budget.tripped.load(Ordering::Relaxed) {
            self.zip_backend(&dir, data, allowed, order);
        }
        true
    }

    /// Bytes no zip structure accounts for (and the comment): each is scanned like a member, so
    /// an archive hidden there is opened too. Each counts as a member.
    fn zip_hidden(&self, dir: &Directory, data: &[u8], prefix: &str, depth: u32, order: &[u32]) {
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
        let max = self.limits.max_member_size as usize;
        let allowed = self.count_members(hidden.len() as u64, &[order, &[u32::MAX]].concat()) as usize;
        for (i, (range, path, what)) in hidden.into_iter().take(allowed).enumerate() {
            let bytes = &data[range];
            let hidden_order: Order = [order, &[u32::MAX, i as u32]].concat();
            let mut issue = Issue::new(
                &*path,
                IssueKind::HiddenData,
                format!("{what}; scanned, and opened if an archive"),
            );
            if bytes.len() > max {
                issue.message = format!("{what}; only the first {max} bytes were scanned");
            } else {
                issue.unscanned = false;
            }
            self.issue(hidden_order.clone(), issue);
            let data = bytes[..bytes.len().min(max)].to_vec();
            self.file(Member { order: hidden_order, path, data, depth });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn zip_member(
        &self,
        dir: &Directory,
        data: &[u8],
        index: usize,
        names: MemberNames<'_>,
        depth: u32,
        order: Order,
        budget: &ArchiveBudget,
    ) {
        let MemberNames { prefix, strips_leading } = names;
        let entry = &dir.entries[index];
        let (name, _) = entry.decoded_name(data);
        let path = format!("{prefix}{}", display_name(name.as_bytes()));
        if entry.is_dir(data) && entry.compressed_size == 0 {
            return;
        }
        // Without the UTF-8 flag a name is CP437, where every byte is valid.
        self.check_name(entry.raw_name(data), entry.flags & zipdir::FLAG_UTF8 != 0, &path, &order);
        self.check_duplicate(name.as_bytes(), &path, &order);
        let unicode_name = entry.unicode_name(data);
        let unicode_path =
            unicode_name.as_ref().map(|name| format!("{prefix}{}", display_name(name.as_bytes())));
        if let (Some(full), Some(other)) = (&unicode_name, &unicode_path) {
            let message = format!(
                "its Unicode Path extra field names it {other:?}, the name Python 3.12 and later install it under; \
                 its content was scanned under both names"
            );
            self.issue(order.clone(), Issue::new(&*path, IssueKind::Ambiguous, message).scanned());
            self.check_duplicate(full.as_bytes(), other, &order);
        }
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
        let compressed = &data[local.data.clone()];
        let inflated = (entry.method == 8 && self.inflates_whole(entry.size, budget))
            .then(|| zipdir::inflate_whole(compressed, entry.size as usize))
            .flatten();
        let (read, crc) = match inflated {
            Some(content) => {
                let crc = crc::crc32(&content);
                let compressed = compressed.len() as u64;
                (self.read_inflated(content, compressed, Some(entry.size), Some(budget), &path, &order), crc)
            }
            None => match self.zip_stream(entry, compressed, &path, &order, budget) {
                Some(streamed) => streamed,
                None => return,
            },
        };
        let Some(mut content) = read.data else { return };
        let beyond = (read.whole && content.len() as u64 > entry.size)
            .then(|| self.split_at_declared_size(entry, &mut content, &path, &order, depth))
            .flatten();
        let split = beyond.is_some();
        if let Some(beyond) = beyond {
            self.file(beyond);
        }
        if read.whole && !split {
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
            if crc != entry.crc {
                let message = format!(
                    "content does not match its CRC-32 (declared {:08x}, computed {crc:08x}); content scanned",
                    entry.crc
                );
                self.issue(order.clone(), Issue::new(&*path, IssueKind::BadChecksum, message));
            }
        }
        let mut hashes = ContentHashes::default();
        if let (Some(full), Some(other)) = (&unicode_name, unicode_path) {
            // The name Python 3.12 and later install it under, and the names pip makes of that one.
            let unicode_order: Order = [order.as_slice(), &[1]].concat();
            self.scan_aliases(
                full.as_bytes(),
                strips_leading,
                prefix,
                &other,
                &unicode_order,
                &content,
                &mut hashes,
            );
            self.scan_named(unicode_order, other, &content, &mut hashes);
        }
        self.scan_aliases(name.as_bytes(), strips_leading, prefix, &path, &order, &content, &mut hashes);
        self.file(Member { order, path, data: content, depth });
    }

    /// `zipfile` stops reading a member at its declared size. When the content holds more and its
    /// first bytes up to that size match the declared CRC-32, pip installs exactly those: they stay the
    /// member, and the bytes after them are returned as a member of their own, scanned apart. The whole
    /// content is scanned under the member's name too: `zipimport`, which runs code from a zip on
    /// `sys.path` (an sdist's `backend-path`, say), inflates all of it and checks no CRC-32.
    fn split_at_declared_size(
        &self,
        entry: &zipdir::Entry,
        content: &mut Vec<u8>,
        path: &str,
        order: &Order,
        depth: u32,
    ) -> Option<Member> {
        let declared = usize::try_from(entry.size).ok()?;
        if crc::crc32(&content[..declared]) != entry.crc {
            return None; // zipfile fails the CRC check: pip installs nothing, and all of it was scanned
        }
        let whole = format!("{path}{ZIPIMPORT_READING}");
        let fit = names::fit_name(path);
        self.scan_fitted(
            [order.as_slice(), &[3]].concat(),
            whole,
            Some(&fit),
            content,
            &mut ContentHashes::default(),
        );
        let beyond = content.split_off(declared);
        let message = format!(
            "holds {} bytes where it declares {declared}: zipfile extracts the first {declared} (their CRC-32 \
             matches), scanned as the file; the {} after them were scanned apart, and all of them as the \
             file too, as zipimport reads it",
            declared + beyond.len(),
            beyond.len()
        );
        self.issue(order.clone(), Issue::new(path, IssueKind::SizeMismatch, message));
        let path = format!("{path}<after its declared size>");
        Some(Member { order: [order.as_slice(), &[2]].concat(), path, data: beyond, depth })
    }

    /// Whether a deflated member declaring `size` bytes is inflated whole (libdeflate: 1.6x zlib-rs's
    /// streaming on the corpus's members) instead of streamed, which is when that ends as `read_member`
    /// would, limit for limit. Up to `READ_CHUNK` the stream reads it in one chunk too. Up to
    /// `RATIO_GRACE_BYTES` it reads it in several, and their outcome is the whole's: the ratio limit spares
    /// a member's first `RATIO_GRACE_BYTES`, a total-size trip drops the member whichever chunk trips it,
    /// and the member-size limit and the archive's budget are checked here not to trip at all (members
    /// inflated meanwhile on other threads may still trip the budget: this one is then scanned whole where
    /// the stream would have stopped at a chunk, with the same issue). Only a member that inflates to
    /// exactly `size` bytes is taken (`inflate_whole`); any other is streamed.
    fn inflates_whole(&self, size: u64, budget: &ArchiveBudget) -> bool {
        size <= READ_CHUNK as u64
            || (size <= RATIO_GRACE_BYTES
                && size <= self.limits.max_member_size
                && budget.inflated.load(Ordering::Relaxed).saturating_add(size) <= budget.limit)
    }

    /// Read a member through its streaming decoder: how the read ended and the CRC-32 of what was read;
    /// `None` (an issue recorded) when its compression method cannot be read.
    fn zip_stream(
        &self,
        entry: &zipdir::Entry,
        compressed: &[u8],
        path: &str,
        order: &Order,
        budget: &ArchiveBudget,
    ) -> Option<(MemberRead, u32)> {
        let guard = Guard::default();
        let raw = zipdir::CountingSlice { data: compressed, consumed: Arc::clone(&guard.consumed) };
        let decoder = match zipdir::decoder(entry.method, entry.flags, entry.size, raw) {
            Ok(decoder) => decoder,
            Err(err) => {
                let kind = match err {
                    zipdir::MethodError::Aes => IssueKind::Encrypted,
                    zipdir::MethodError::Unsupported(_) => IssueKind::UnsupportedCompression,
                    zipdir::MethodError::LzmaHeader(_) | zipdir::MethodError::Zstd(_) => IssueKind::Corrupt,
                };
                self.issue(order.clone(), Issue::new(path, kind, format!("cannot read member: {err}")));
                return None;
            }
        };
        let mut reader = zipdir::CrcReader { inner: decoder, crc: Crc32::new() };
        let read = self.read_member(&mut reader, &guard, path, None, Some(entry.size), Some(budget), order);
        Some((read, reader.crc.sum()))
    }
}
