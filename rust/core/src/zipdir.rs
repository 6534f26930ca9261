//! A zip reader that sees what pip sees. pip installs wheels (and unpacks zip sdists) with
//! CPython's `zipfile`, so this follows its rules: the end-of-central-directory record is the last
//! one in the final 64 KiB, offsets are corrected for prepended data, the central directory is read
//! by its declared *size* (not its entry count), and every record is a member, duplicates included
//! (the `zip` crate keeps only one member per name, which would hide the others from the rules).
//!
//! It also reports what `zipfile` does not: which byte ranges no entry accounts for (data hidden
//! before the first entry, between entries, in the comment or after the end record) and which
//! entries share bytes (the "overlapping entries" zip bomb). Nothing here trusts a size: every range
//! is clamped to the data, and members are inflated by the walker under its limits.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem;

use crate::crc::{self, Crc32};

const LOCAL_SIG: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_SIG: &[u8; 4] = b"PK\x01\x02";
const END_SIG: &[u8; 4] = b"PK\x05\x06";
const ZIP64_LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";
const ZIP64_END_SIG: &[u8; 4] = b"PK\x06\x06";
const DESCRIPTOR_SIG: &[u8; 4] = b"PK\x07\x08";

const END_LEN: usize = 22;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_END_LEN: usize = 56;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
/// The end record may be followed by a comment of at most this many bytes.
const MAX_COMMENT: usize = 0xffff;

pub(crate) const FLAG_ENCRYPTED: u16 = 0x0001;
pub(crate) const FLAG_LZMA_EOS: u16 = 0x0002;
const FLAG_DESCRIPTOR: u16 = 0x0008;
pub(crate) const FLAG_STRONG_ENCRYPTION: u16 = 0x0040;
pub(crate) const FLAG_UTF8: u16 = 0x0800;

/// Why a zip archive could not be opened at all (as `zipfile` would refuse it too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ZipError {
    #[error("no end-of-central-directory record in the last 64 KiB")]
    NoEndRecord,
    #[error("the archive spans several disks")]
    MultiDisk,
    #[error("the central directory offset points before the start of the data")]
    BadDirectoryOffset,
    #[error("the central directory is truncated at record {0}")]
    TruncatedDirectory(usize),
    #[error("central directory record {0} has a bad signature")]
    BadDirectorySignature(usize),
}

/// Where reading the central directory stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordsLeft {
    /// Records read before the limit (every one a member).
    pub read: usize,
}

/// Why one member's local header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LocalError {
    #[error("its local header at offset {0} lies outside the archive")]
    OutOfRange(u64),
    #[error("its local header at offset {0} has a bad signature")]
    BadSignature(u64),
}

/// One central-directory record.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The name's bytes, as a range of the archive data (names are never copied).
    pub name: Range<usize>,
    pub flags: u16,
    pub method: u16,
    pub crc: u32,
    pub compressed_size: u64,
    pub size: u64,
    /// Absolute offset of the local header (corrected for prepended data); may be out of range.
    pub header_offset: u64,
    /// The "version made by" host system (3: Unix).
    pub system: u8,
    pub external_attr: u32,
    /// A zip64 extra field supplied at least one of the sizes or the offset.
    pub zip64: bool,
    /// The Info-ZIP Unicode Path extra field (0x7075): the name CPython 3.12 and later use when
    /// its CRC matches the raw name's (UTF-8 bytes, a range of the archive data).
    pub unicode_name: Option<Range<usize>>,
    /// A malformed extra field was ignored.
    pub bad_extra: bool,
}

impl Entry {
    /// The name as `zipfile` decodes it: UTF-8 when flagged (lossy here), CP437 otherwise, cut at
    /// the first NUL byte. Returns the name and whether it was not valid UTF-8.
    pub fn decoded_name(&self, data: &[u8]) -> (String, bool) {
        decode_name(&data[self.name.clone()], self.flags)
    }

    pub fn raw_name<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.name.clone()]
    }

    /// The name CPython 3.12 and later give the entry, when it differs from the raw name's.
    pub fn unicode_name(&self, data: &[u8]) -> Option<String> {
        let raw = &data[self.unicode_name.clone()?];
        let name = std::str::from_utf8(raw).ok()?;
        let name = name.split('\0').next().unwrap_or(name);
        (!name.is_empty() && name != self.decoded_name(data).0).then(|| name.to_owned())
    }

    /// A directory under every name the entry has (pip skips directories), the name cut at its
    /// first NUL as `zipfile` cuts it.
    pub fn is_dir(&self, data: &[u8]) -> bool {
        self.raw_name(data).split(|&b| b == 0).next().and_then(|name| name.last()) == Some(&b'/')
            && self.unicode_name(data).is_none_or(|name| name.ends_with('/'))
    }

    pub fn is_symlink(&self) -> bool {
        self.system == 3 && (self.external_attr >> 16) & 0o170000 == 0o120000
    }
}

/// Where a member's compressed bytes are.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    /// Compressed data, clamped to the archive.
    pub data: Range<usize>,
    /// The data runs past the end of the archive (so it was cut short).
    pub truncated: bool,
    /// The local header's own name, when it differs from the central directory's.
    pub other_name: Option<String>,
}

/// A parsed zip archive: its members and the byte ranges its structures account for.
#[derive(Debug)]
pub(crate) struct Directory {
    pub entries: Vec<Entry>,
    /// Bytes of the central directory (absolute, clamped).
    pub central: Range<usize>,
    /// The end records: the zip64 record and locator when present, then the classic record.
    pub end: Range<usize>,
    /// The archive comment.
    pub comment: Range<usize>,
    /// The central directory (offset, size) that Python 3.14's `zipfile` reads instead, when its
    /// zip64 locator leads there (see [`locator_directory`]) and older Pythons read another.
    pub locator_reading: Option<(u64, u64)>,
    /// The central directory (offset, size) that `zipimport` before Python 3.13 reads instead, when a
    /// zip64 record was taken and the classic end record names another one (see [`classic_directory`]).
    pub classic_reading: Option<(u64, u64)>,
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("eight bytes"))
}

fn clamp(start: u64, len: u64, max: usize) -> Range<usize> {
    let start = start.min(max as u64) as usize;
    let end = (start as u64).saturating_add(len).min(max as u64) as usize;
    start..end
}

/// CP437 as `zipfile` decodes names without the UTF-8 flag (the upper half; the lower is ASCII).
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn decode_name(raw: &[u8], flags: u16) -> (String, bool) {
    let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
    if raw.is_ascii() {
        return (String::from_utf8(raw.to_vec()).expect("ASCII is UTF-8"), false);
    }
    if flags & FLAG_UTF8 != 0 {
        return match std::str::from_utf8(raw) {
            Ok(name) => (name.to_owned(), false),
            Err(_) => (String::from_utf8_lossy(raw).into_owned(), true),
        };
    }
    let high: Vec<char> = CP437_HIGH.chars().collect();
    (raw.iter().map(|&b| if b < 0x80 { b as char } else { high[(b - 0x80) as usize] }).collect(), false)
}

/// Find the end record as `zipfile._EndRecData` does: at the very end with no comment, else the
/// last signature in the final 64 KiB + 22 bytes.
fn find_end(data: &[u8]) -> Option<usize> {
    let n = data.len();
    if n < END_LEN {
        return None;
    }
    let tail = n - END_LEN;
    if &data[tail..tail + 4] == END_SIG && data[n - 2..] == [0, 0] {
        return Some(tail);
    }
    let from = n.saturating_sub(MAX_COMMENT + 1 + END_LEN);
    // memmem's forward search is vectorised and its reverse search is not (this runs over the
    // tail of every member, looking for nested zips). The signature cannot overlap itself, so
    // the last forward hit is the last occurrence.
    static END_FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(END_SIG));
    let at = END_FINDER.find_iter(&data[from..]).last()? + from;
    (at + END_LEN <= n).then_some(at)
}

/// Whether `data` is a zip archive whatever comes before it (an executable stub, a script, a
/// gzip stream or a tarball prepended to it). pip unzips any file `zipfile.is_zipfile` accepts,
/// whatever its name, and `zipfile` finds an archive from its end: such files must not pass for
/// plain files (or only for the tarball in front) whose compressed members nobody looks into.
/// An archive counts when its central directory parses up to a record whose local header is where
/// the directory says, however many records come before it: pip never reads the local headers of
/// what it takes for directories (names ending in `/` or `\\`, or cut there by a NUL), and reads
/// duplicated names by their last record, so records without one prove nothing either way. And an
/// archive counts when `zipimport` reads a central directory in it ([`classic_directory`]), which
/// takes an end record at the very end whatever its comment length says: Python imports code from
/// such a zip on `sys.path` (an sdist's `backend-path`) where `zipfile` may refuse it.
pub(crate) fn is_prefixed_zip(data: &[u8]) -> bool {
    let Some(tail) = data.len().checked_sub(END_LEN) else { return false };
    let at_tail = &data[tail..tail + 4] == END_SIG;
    let Some(end) = find_end(data) else {
        return at_tail && classic_directory(data, tail).is_some();
    };
    Directory::parse_kept(data, 1, |e| local_header(data, e).is_ok())
        .is_ok_and(|(dir, _)| !dir.entries.is_empty())
        || classic_directory(data, if at_tail { tail } else { end }).is_some()
}

/// Read a member's local header as `zipfile.ZipFile.open` does.
fn local_header(data: &[u8], entry: &Entry) -> Result<Local, LocalError> {
    let at = entry.header_offset;
    let start = usize::try_from(at).ok().filter(|&s| s.saturating_add(LOCAL_LEN) <= data.len());
    let start = start.ok_or(LocalError::OutOfRange(at))?;
    let header = &data[start..start + LOCAL_LEN];
    if &header[..4] != LOCAL_SIG {
        return Err(LocalError::BadSignature(at));
    }
    let flags = u16_at(header, 6);
    let name_len = u16_at(header, 26) as u64;
    let extra_len = u16_at(header, 28) as u64;
    let name = clamp((start + LOCAL_LEN) as u64, name_len, data.len());
    let local_raw = &data[name];
    // A name decodes from its bytes and UTF-8 flag alone: the same bytes under the same flag need
    // no decoding (this runs three times per entry of a 50,000-file wheel).
    let same_name = local_raw == entry.raw_name(data) && (flags ^ entry.flags) & FLAG_UTF8 == 0;
    let other_name = if same_name {
        None
    } else {
        let (local_name, _) = decode_name(local_raw, flags);
        (local_name != entry.decoded_name(data).0).then_some(local_name)
    };
    let data_start = (start + LOCAL_LEN) as u64 + name_len + extra_len;
    let range = clamp(data_start, entry.compressed_size, data.len());
    let truncated = data_start.saturating_add(entry.compressed_size) > data.len() as u64;
    Ok(Local { data: range, truncated, other_name })
}

/// The central directory (offset, size) that Python 3.14's `zipfile` reads (and the October 2025
/// security releases before it), given the zip64 locator at `loc`: it looks for the zip64 end record
/// at the offset the locator names, then (for an archive with data prepended) right before the
/// locator, where older Pythons look only; the directory ends where the record it took starts. `None`
/// when those Pythons refuse the archive (pip then installs nothing from it).
fn locator_directory(data: &[u8], loc: usize) -> Option<(u64, u64)> {
    let before = loc.checked_sub(ZIP64_END_LEN)? as u64;
    let named = u64_at(data, loc + 8);
    if named > before {
        return None;
    }
    let record_at = |at: u64| {
        let at = at as usize;
        Some(&data[at..at + ZIP64_END_LEN]).filter(|record| &record[..4] == ZIP64_END_SIG)
    };
    let (record, extensible) = match record_at(named) {
        Some(record) => (record, before - named),
        None if named != before => (record_at(before)?, 0),
        None => return None,
    };
    let (record_size, size, offset) = (u64_at(record, 4), u64_at(record, 40), u64_at(record, 48));
    if offset.checked_add(size)? != named || record_size.checked_add(12)? != ZIP64_END_LEN as u64 + extensible
    {
        return None;
    }
    let location = before - extensible;
    Some((location.checked_sub(size)?, size))
}

/// Where `zipimport` (before Python 3.13 it knows no zip64) looks for the central directory of an
/// archive whose classic end record is at `at`: the record's size back from it (`_read_directory`),
/// read until a signature that is not a central record's. `None` when its fields are saturated (it then
/// fails, importing nothing) or no central record starts there.
fn classic_directory(data: &[u8], at: usize) -> Option<(u64, u64)> {
    let (size, offset) = (u32_at(data, at + 12), u32_at(data, at + 16));
    if size == u32::MAX || offset == u32::MAX || (size as usize) > at || offset as usize > at - size as usize
    {
        return None;
    }
    let start = at - size as usize;
    (data.get(start..start + 4) == Some(&CENTRAL_SIG[..])).then_some((start as u64, u64::from(size)))
}

impl Directory {
    /// Read the central directory, at most `max_records` records of it (each one a member, kept
    /// in memory: the limit comes before the allocation). `Some` when records were left unread.
    pub fn parse(data: &[u8], max_records: u64) -> Result<(Directory, Option<RecordsLeft>), ZipError> {
        Self::parse_kept(data, max_records, |_| true)
    }

    /// [`Directory::parse`] keeping only the records `keep` accepts: the others are read (they must
    /// parse) but neither stored nor counted against `max_records`.
    fn parse_kept(
        data: &[u8],
        max_records: u64,
        keep: impl Fn(&Entry) -> bool,
    ) -> Result<(Directory, Option<RecordsLeft>), ZipError> {
        let n = data.len();
        let at = find_end(data).ok_or(ZipError::NoEndRecord)?;
        let comment_len = u16_at(data, at + 20) as usize;
        let comment = (at + END_LEN)..(at + END_LEN + comment_len).min(n);
        let mut size = u64::from(u32_at(data, at + 12));
        let mut offset = u64::from(u32_at(data, at + 16));
        let mut end_start = at;
        let mut zip64 = false;
        let mut locator = None;
        if at >= ZIP64_LOCATOR_LEN
            && &data[at - ZIP64_LOCATOR_LEN..at - ZIP64_LOCATOR_LEN + 4] == ZIP64_LOCATOR_SIG
        {
            let loc = at - ZIP64_LOCATOR_LEN;
            locator = Some(loc);
            if u32_at(data, loc + 4) != 0 || u32_at(data, loc + 16) > 1 {
                return Err(ZipError::MultiDisk);
            }
            // Like zipfile, look for the zip64 record right before the locator (its own offset
            // field is not trusted).
            if loc >= ZIP64_END_LEN && &data[loc - ZIP64_END_LEN..loc - ZIP64_END_LEN + 4] == ZIP64_END_SIG {
                let rec = loc - ZIP64_END_LEN;
                size = u64_at(data, rec + 40);
                offset = u64_at(data, rec + 48);
                end_start = rec;
                zip64 = true;
            }
        }
        // Bytes prepended to the archive shift every offset: `zipfile` corrects them by where the
        // central directory actually ends.
        let location = if zip64 { end_start } else { at } as i128;
        let concat = location - i128::from(size) - i128::from(offset);
        let start = i128::from(offset) + concat;
        if start < 0 {
            return Err(ZipError::BadDirectoryOffset);
        }
        let locator_reading = locator
            .and_then(|loc| locator_directory(data, loc))
            .filter(|&reading| reading != (start as u64, size));
        let classic_reading = zip64
            .then(|| classic_directory(data, at))
            .flatten()
            .filter(|&(offset, _)| offset != start as u64);
        let central = clamp(start as u64, size, n);
        let dir = &data[central.clone()];
        let mut entries = Vec::new();
        let mut pos = 0usize;
        let mut left = None;
        let mut index = 0usize;
        while (pos as u64) < size {
            if entries.len() as u64 >= max_records {
                left = Some(RecordsLeft { read: entries.len() });
                break;
            }
            if pos + CENTRAL_LEN > dir.len() {
                return Err(ZipError::TruncatedDirectory(index));
            }
            let rec = &dir[pos..];
            if &rec[..4] != CENTRAL_SIG {
                return Err(ZipError::BadDirectorySignature(index));
            }
            index += 1;
            let name_len = u16_at(rec, 28) as usize;
            let extra_len = u16_at(rec, 30) as usize;
            let comment_len = u16_at(rec, 32) as usize;
            let base = central.start + pos;
            let name = clamp((base + CENTRAL_LEN) as u64, name_len as u64, central.end);
            let extra = clamp(name.end as u64, extra_len as u64, central.end);
            let mut entry = Entry {
                name,
                flags: u16_at(rec, 8),
                method: u16_at(rec, 10),
                crc: u32_at(rec, 16),
                compressed_size: u64::from(u32_at(rec, 20)),
                size: u64::from(u32_at(rec, 24)),
                header_offset: u64::from(u32_at(rec, 42)),
                system: rec[5],
                external_attr: u32_at(rec, 38),
                zip64: false,
                unicode_name: None,
                bad_extra: false,
            };
            decode_extra(data, extra, &mut entry);
            let header = i128::from(entry.header_offset) + concat;
            entry.header_offset = u64::try_from(header).unwrap_or(u64::MAX);
            if keep(&entry) {
                entries.push(entry);
            }
            pos += CENTRAL_LEN + name_len + extra_len + comment_len;
        }
        let end = end_start..(at + END_LEN);
        Ok((Directory { entries, central, end, comment, locator_reading, classic_reading }, left))
    }

    /// Read a member's local header as `zipfile.ZipFile.open` does.
    pub fn local(&self, data: &[u8], entry: &Entry) -> Result<Local, LocalError> {
        local_header(data, entry)
    }

    /// The bytes an entry occupies: local header, data and data descriptor (unclamped end).
    fn span(&self, data: &[u8], entry: &Entry) -> Option<Range<u64>> {
        let local = self.local(data, entry).ok()?;
        let data_end = (local.data.start as u64).saturating_add(entry.compressed_size);
        let mut end = data_end;
        if entry.flags & FLAG_DESCRIPTOR != 0 && !local.truncated {
            // The descriptor: an optional signature, the CRC, then 4- or 8-byte sizes. Only
            // counted when it is really there, so that it cannot hide anything.
            let at = data_end as usize;
            let sig = data.get(at..at + 4) == Some(&DESCRIPTOR_SIG[..]);
            let crc_at = at + if sig { 4 } else { 0 };
            if sig || data.get(crc_at..crc_at + 4) == Some(&entry.crc.to_le_bytes()[..]) {
                end = (crc_at + 4 + if entry.zip64 { 16 } else { 8 }) as u64;
            }
        }
        Some(entry.header_offset..end)
    }

    /// Pairs `(entry, other)` where `entry` shares bytes with an earlier-starting `other`, and
    /// entries whose bytes run into the central directory (`other` = `None`).
    pub fn overlaps(&self, data: &[u8]) -> Vec<(usize, Option<usize>)> {
        let mut spans: Vec<(Range<u64>, usize)> =
            self.entries.iter().enumerate().filter_map(|(i, e)| self.span(data, e).map(|s| (s, i))).collect();
        spans.sort_by_key(|(s, i)| (s.start, s.end, *i));
        let central = self.central.start as u64;
        let mut found = Vec::new();
        let mut widest: Option<(u64, usize)> = None;
        for (span, index) in &spans {
            match widest {
                Some((end, other)) if span.start < end => found.push((*index, Some(other))),
                _ if span.start < central && span.end > central => found.push((*index, None)),
                _ => {}
            }
            if widest.is_none_or(|(end, _)| span.end > end) {
                widest = Some((span.end, *index));
            }
        }
        found.sort_unstable();
        found
    }

    /// Byte ranges that no structure accounts for and that hold something other than zeros,
    /// with a description of where they are. The comment is reported apart.
    pub fn hidden(&self, data: &[u8]) -> Vec<(Range<usize>, &'static str)> {
        let n = data.len() as u64;
        let mut covered: Vec<Range<u64>> = self
            .entries
            .iter()
            .filter_map(|e| self.span(data, e))
            .map(|s| s.start.min(n)..s.end.min(n))
            .collect();
        covered.push(self.central.start as u64..self.central.end as u64);
        covered.push(self.end.start as u64..self.end.end as u64);
        covered.push(self.comment.start as u64..self.comment.end as u64);
        covered.sort_by_key(|r| (r.start, r.end));
        let first = covered.iter().map(|r| r.start).min().unwrap_or(n);
        let mut gaps = Vec::new();
        let mut cursor = 0u64;
        for range in &covered {
            if range.start > cursor {
                gaps.push(cursor..range.start);
            }
            cursor = cursor.max(range.end);
        }
        if cursor < n {
            gaps.push(cursor..n);
        }
        gaps.into_iter()
            .map(|g| g.start as usize..g.end as usize)
            .filter(|g| data[g.clone()].iter().any(|&b| b != 0))
            .map(|g| {
                let place = if g.start == 0 && g.end as u64 <= first {
                    "before the first zip entry"
                } else if g.start >= self.comment.end {
                    "after the end of the zip archive"
                } else {
                    "between zip entries"
                };
                (g, place)
            })
            .collect()
    }
}

/// Apply the extra fields as `ZipInfo._decodeExtra` does. Zip64 (0x0001): each 64-bit value
/// present replaces a 32-bit field that is saturated, in the order size, compressed size, offset.
/// Unicode Path (0x7075, read by Python 3.12 and later): version 1, the CRC-32 of the raw name,
/// then the UTF-8 name that replaces it.
fn decode_extra(data: &[u8], range: Range<usize>, entry: &mut Entry) {
    let mut at = range.start;
    let mut extra = &data[range];
    while extra.len() >= 4 {
        let (kind, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
        if len + 4 > extra.len() {
            entry.bad_extra = true;
            return;
        }
        if kind == 1 {
            let mut field = &extra[4..4 + len];
            for value in [&mut entry.size, &mut entry.compressed_size, &mut entry.header_offset] {
                if *value != 0xffff_ffff {
                    continue;
                }
                if field.len() < 8 {
                    entry.bad_extra = true;
                    break;
                }
                *value = u64_at(field, 0);
                field = &field[8..];
                entry.zip64 = true;
            }
        } else if kind == 0x7075
            && len >= 5
            && extra[4] == 1
            && u32_at(extra, 5) == crc::crc32(&data[entry.name.clone()])
        {
            entry.unicode_name = Some(at + 9..at + 4 + len);
        }
        at += 4 + len;
        extra = &extra[4 + len..];
    }
}

/// Largest LZMA dictionary a zip member may ask for (KiB), as for xz streams.
pub(crate) const LZMA_MEMORY_LIMIT_KB: u32 = 256 * 1024;

/// Why a member's compressed data cannot be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MethodError {
    #[error("compression method {0} is not supported")]
    Unsupported(u16),
    #[error("AES encryption (method 99)")]
    Aes,
    #[error("bad LZMA header: {0}")]
    LzmaHeader(String),
    #[error("cannot start a zstd decoder: {0}")]
    Zstd(String),
}

/// A member's compressed bytes, counting what its decoder has consumed (the compression ratio is
/// judged on that as it goes, not on the declared compressed size at the end).
pub(crate) struct CountingSlice<'a> {
    pub data: &'a [u8],
    pub consumed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Read for CountingSlice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        self.consumed.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

impl io::BufRead for CountingSlice<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(self.data)
    }

    fn consume(&mut self, amount: usize) {
        let amount = amount.min(self.data.len());
        self.data = &self.data[amount..];
        self.consumed.fetch_add(amount as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A decoder for a member's compressed bytes.
pub(crate) fn decoder<'a>(
    method: u16,
    flags: u16,
    size: u64,
    mut raw: CountingSlice<'a>,
) -> Result<Box<dyn Read + Send + 'a>, MethodError> {
    Ok(match method {
        0 => Box::new(raw),
        8 => Box::new(Inflater::new(raw)),
        9 => Box::new(deflate64::Deflate64Decoder::with_buffer(raw)),
        12 => Box::new(bzip2::bufread::BzDecoder::new(raw)),
        14 => {
            // A 2-byte version, a 2-byte properties size (5), then the LZMA properties.
            let header = raw.data;
            if header.len() < 9 || u16_at(header, 2) != 5 {
                return Err(MethodError::LzmaHeader("truncated or unexpected properties size".into()));
            }
            let (props, dict) = (header[4], u32_at(header, 5));
            let need = lzma_rust2::lzma_get_memory_usage_by_props(dict, props)
                .map_err(|e| MethodError::LzmaHeader(e.to_string()))?;
            if need > LZMA_MEMORY_LIMIT_KB {
                return Err(MethodError::LzmaHeader(format!(
                    "needs {need} KiB of memory, over the limit of {LZMA_MEMORY_LIMIT_KB} KiB"
                )));
            }
            let size = if flags & FLAG_LZMA_EOS != 0 { u64::MAX } else { size };
            io::BufRead::consume(&mut raw, 9);
            let reader = lzma_rust2::LzmaReader::new_with_props(raw, size, props, dict, None)
                .map_err(|e| MethodError::LzmaHeader(e.to_string()))?;
            Box::new(reader)
        }
        // One frame, as `zipfile` (Python 3.14) reads a member: what follows it is not read.
        93 => Box::new(ZstdMember::new(raw).map_err(|e| MethodError::Zstd(e.to_string()))?),
        95 => Box::new(lzma_rust2::XzReader::new_mem_limit(raw, false, LZMA_MEMORY_LIMIT_KB)),
        99 => return Err(MethodError::Aes),
        other => return Err(MethodError::Unsupported(other)),
    })
}

/// A deflated member of at most `size` bytes inflated in one call, when it inflates to exactly `size`
/// bytes; `None` otherwise (corrupt, shorter or longer than declared), and then the streaming decoder
/// reads it and words what is wrong. libdeflate inflates the small members of a wheel in about 0.75 of
/// zlib-rs's time, and members of 0.25-1 MiB in about 0.6; it needs the whole output buffer up front,
/// which the declared size gives (the walk bounds it: `DistScan::inflates_whole`).
pub(crate) fn inflate_whole(raw: &[u8], size: usize) -> Option<Vec<u8>> {
    thread_local! {
        static DECOMPRESSOR: WholeInflater = WholeInflater::new();
    }
    // Not zeroed first (a write of every byte that libdeflate then writes again): the buffer is only
    // kept when libdeflate reports having written all `size` bytes of it.
    let mut out = crate::membuf::member_buffer(size);
    let mut written = 0usize;
    // SAFETY: the decompressor is this thread's own and lives as long as the thread; `raw` is read
    // only within its length and `out` written only within its capacity (`out_nbytes_avail`), through
    // raw pointers; `written` is a valid place for the count.
    let result = DECOMPRESSOR.with(|d| unsafe {
        libdeflate_sys::libdeflate_deflate_decompress(
            d.0.as_ptr(),
            raw.as_ptr().cast(),
            raw.len(),
            out.as_mut_ptr().cast(),
            size,
            &mut written,
        )
    });
    if result != libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS || written != size {
        crate::membuf::recycle(out);
        return None;
    }
    // SAFETY: libdeflate succeeded and wrote `size` bytes from the start of the capacity (a reused
    // buffer's capacity may be larger; its length stays 0 until here).
    unsafe { out.set_len(size) };
    Some(out)
}

/// libdeflate's decompressor (its state and tables), one per thread.
struct WholeInflater(std::ptr::NonNull<libdeflate_sys::libdeflate_decompressor>);

impl WholeInflater {
    fn new() -> Self {
        // SAFETY: no arguments; a null return (out of memory) is checked.
        let decompressor = unsafe { libdeflate_sys::libdeflate_alloc_decompressor() };
        Self(std::ptr::NonNull::new(decompressor).expect("libdeflate_alloc_decompressor: out of memory"))
    }
}

impl Drop for WholeInflater {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor`, freed once, here.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

/// Raw deflate states kept per thread for the next member: a fresh one allocated and zeroed its
/// state and 32 KiB window for every member (5% of scanning a wheel of 50,000 small files).
const SPARE_INFLATERS: usize = 4;

thread_local! {
    static INFLATERS: std::cell::RefCell<Vec<flate2::Decompress>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A deflated member's reader, on a reused deflate state; reads as flate2's `bufread::DeflateDecoder`
/// does, errors included.
pub(crate) struct Inflater<'a> {
    raw: CountingSlice<'a>,
    state: Option<flate2::Decompress>,
}

impl<'a> Inflater<'a> {
    fn new(raw: CountingSlice<'a>) -> Self {
        let spare = INFLATERS.with(|spares| spares.borrow_mut().pop());
        Self { raw, state: Some(spare.unwrap_or_else(|| flate2::Decompress::new(false))) }
    }
}

impl Read for Inflater<'_> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let state = self.state.as_mut().expect("held until dropped");
        loop {
            let input = self.raw.data;
            let eof = input.is_empty();
            let (before_in, before_out) = (state.total_in(), state.total_out());
            let flush = if eof { flate2::FlushDecompress::Finish } else { flate2::FlushDecompress::None };
            let status = state.decompress(input, dst, flush);
            let read = (state.total_out() - before_out) as usize;
            io::BufRead::consume(&mut self.raw, (state.total_in() - before_in) as usize);
            match status {
                // Nothing out yet but input left: ask again (0 would read as the end).
                Ok(flate2::Status::Ok | flate2::Status::BufError) if read == 0 && !eof && !dst.is_empty() => {
                }
                Ok(flate2::Status::Ok | flate2::Status::BufError) if read == 0 && eof && !dst.is_empty() => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete deflate stream"));
                }
                Ok(_) => return Ok(read),
                Err(_) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "corrupt deflate stream")),
            }
        }
    }
}

impl Drop for Inflater<'_> {
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take() {
            state.reset(false);
            INFLATERS.with(|spares| {
                let mut spares = spares.borrow_mut();
                if spares.len() < SPARE_INFLATERS {
                    spares.push(state);
                }
            });
        }
    }
}

/// zstd decoder contexts kept per thread for the next member: a new one per member cost ~7 us, half
/// the time of a zip of small members.
const SPARE_ZSTD_CONTEXTS: usize = 2;

/// A context keeps the buffers of the largest frame it decoded (up to the window limit, 128 MiB);
/// one that grew past this is freed, not kept.
const SPARE_ZSTD_CONTEXT_BYTES: usize = 4 << 20;

thread_local! {
    static ZSTD_CONTEXTS: std::cell::RefCell<Vec<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A zstd member's reader, on a reused decoder context: one frame, as `zipfile` (Python 3.14) reads
/// a member (what follows it is not read); errors worded as the `zstd` crate's reader words them.
pub(crate) struct ZstdMember<'a> {
    raw: CountingSlice<'a>,
    context: Option<zstd::zstd_safe::DCtx<'static>>,
    done: bool,
}

impl<'a> ZstdMember<'a> {
    fn new(raw: CountingSlice<'a>) -> io::Result<Self> {
        let context = match ZSTD_CONTEXTS.with(|spares| spares.borrow_mut().pop()) {
            Some(context) => context,
            None => {
                let mut context =
                    zstd::zstd_safe::DCtx::try_create().ok_or_else(|| io::Error::other("out of memory"))?;
                let limit = zstd::zstd_safe::DParameter::WindowLogMax(crate::walk::ZSTD_WINDOW_LOG_MAX);
                context.set_parameter(limit).map_err(zstd_error)?;
                context
            }
        };
        Ok(Self { raw, context: Some(context), done: false })
    }
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

impl Read for ZstdMember<'_> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        use zstd::zstd_safe::{InBuffer, OutBuffer};
        let context = self.context.as_mut().expect("held until dropped");
        if self.done || dst.is_empty() {
            return Ok(0);
        }
        loop {
            let mut input = InBuffer::around(self.raw.data);
            let mut output = OutBuffer::around(&mut *dst);
            // 0: the frame is decoded and flushed; anything else: more to read or to flush.
            let left = context.decompress_stream(&mut output, &mut input).map_err(zstd_error)?;
            let (read, written) = (input.pos(), output.pos());
            io::BufRead::consume(&mut self.raw, read);
            self.done = left == 0;
            if written > 0 || self.done {
                return Ok(written);
            }
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete frame"));
            }
        }
    }
}

impl Drop for ZstdMember<'_> {
    fn drop(&mut self) {
        let Some(mut context) = self.context.take() else { return };
        if context.sizeof() > SPARE_ZSTD_CONTEXT_BYTES
            || context.reset(zstd::zstd_safe::ResetDirective::SessionOnly).is_err()
        {
            return;
        }
        ZSTD_CONTEXTS.with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < SPARE_ZSTD_CONTEXTS {
                spares.push(context);
            }
        });
    }
}

/// Computes the CRC-32 of everything read through it.
pub(crate) struct CrcReader<R> {
    pub inner: R,
    pub crc: Crc32,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn cp437_table_is_complete() {
        assert_eq!(CP437_HIGH.chars().count(), 128);
        assert_eq!(decode_name(b"caf\x82", 0).0, "café");
        assert_eq!(decode_name("café".as_bytes(), FLAG_UTF8).0, "café");
        assert_eq!(decode_name(b"a\xffb", FLAG_UTF8), ("a\u{fffd}b".to_owned(), true));
        assert_eq!(decode_name(b"evil.py\0.txt", 0).0, "evil.py");
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Whole-member inflation agrees with the streaming decoder, or declines and leaves the member to it.
    #[test]
    fn inflate_whole_takes_only_a_member_that_inflates_to_its_declared_size() {
        let text = b"import os\nos.system('id')\n".repeat(200);
        let raw = deflated(&text);
        assert_eq!(inflate_whole(&raw, text.len()).as_deref(), Some(&text[..]));
        // Bytes after the end of the stream are not read, as the streaming decoder does not read them.
        let padded = [&raw[..], b"trailing"].concat();
        assert_eq!(inflate_whole(&padded, text.len()).as_deref(), Some(&text[..]));
        let streamed = {
            let mut out = Vec::new();
            Inflater::new(CountingSlice { data: &padded, consumed: Default::default() })
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        assert_eq!(streamed, text);
        // Declared shorter or longer than it inflates, truncated, corrupt: declined.
        assert_eq!(inflate_whole(&raw, text.len() - 1), None);
        assert_eq!(inflate_whole(&raw, text.len() + 1), None);
        assert_eq!(inflate_whole(&raw[..raw.len() / 2], text.len()), None);
        assert_eq!(inflate_whole(&[0xff; 64], text.len()), None);
        assert_eq!(inflate_whole(&deflated(b""), 0).as_deref(), Some(&b""[..]));
    }

    fn read_zstd_member(raw: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdMember::new(CountingSlice { data: raw, consumed: Default::default() })?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn spare_zstd_contexts() -> usize {
        ZSTD_CONTEXTS.with(|spares| spares.borrow().len())
    }

    /// A zstd member reads as the `zstd` crate's single-frame reader did, on a context that serves the
    /// next member whatever became of this one.
    #[test]
    fn a_zstd_member_is_its_first_frame_and_its_context_is_reused() {
        let text = b"import os\nos.system('id')\n".repeat(500);
        let frame = zstd::encode_all(&text[..], 3).unwrap();
        let two = [&frame[..], &zstd::encode_all(&b"second"[..], 1).unwrap()].concat();
        assert_eq!(read_zstd_member(&two).unwrap(), text, "the frame after the first is not read");
        assert_eq!(spare_zstd_contexts(), 1);
        let empty = zstd::encode_all(&b""[..], 1).unwrap();
        assert_eq!(read_zstd_member(&empty).unwrap(), b"");

        let err = read_zstd_member(&frame[..frame.len() - 3]).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (io::ErrorKind::UnexpectedEof, "incomplete frame")
        );
        let err = read_zstd_member(b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut corrupt = frame.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle..].fill(0xff);
        assert!(read_zstd_member(&corrupt).is_err());
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder.window_log(crate::walk::ZSTD_WINDOW_LOG_MAX + 1).unwrap();
        encoder.write_all(&[b'b'; 1000]).unwrap();
        let err = read_zstd_member(&encoder.finish().unwrap()).unwrap_err();
        assert!(err.to_string().contains("too much memory"), "{err}");

        assert_eq!(spare_zstd_contexts(), 1, "one context served every member");
        assert_eq!(read_zstd_member(&frame).unwrap(), text, "after the errors");
    }

    /// A context that grew its buffers for a large frame is freed, not kept for the next member.
    #[test]
    fn a_zstd_context_grown_past_the_spare_limit_is_not_kept() {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder.include_contentsize(false).unwrap();
        encoder.window_log(24).unwrap();
        let big: Vec<u8> = (0..SPARE_ZSTD_CONTEXT_BYTES * 3).map(|i| (i * 7 % 251) as u8).collect();
        encoder.write_all(&big).unwrap();
        let frame = encoder.finish().unwrap();
        let mut reader =
            ZstdMember::new(CountingSlice { data: &frame, consumed: Default::default() }).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert!(out == big);
        assert!(reader.context.as_ref().unwrap().sizeof() > SPARE_ZSTD_CONTEXT_BYTES);
        drop(reader);
        assert_eq!(spare_zstd_contexts(), 0);
    }

    /// A one-entry stored zip whose local header has its own flags and name bytes.
    fn one_entry(central: (&[u8], u16), local: (&[u8], u16)) -> Vec<u8> {
        let le16 = |v: usize| (v as u16).to_le_bytes();
        let mut data = LOCAL_SIG.to_vec();
        data.extend_from_slice(&[20, 0]);
        data.extend_from_slice(&local.1.to_le_bytes());
        data.extend_from_slice(&[0; 18]); // method 0, time, date, crc and sizes 0
        data.extend_from_slice(&le16(local.0.len()));
        data.extend_from_slice(&[0, 0]);
        data.extend_from_slice(local.0);
        let central_at = data.len();
        data.extend_from_slice(b"PK\x01\x02");
        data.extend_from_slice(&[20, 3, 20, 0]);
        data.extend_from_slice(&central.1.to_le_bytes());
        data.extend_from_slice(&[0; 18]);
        data.extend_from_slice(&le16(central.0.len()));
        data.extend_from_slice(&[0; 16]); // extra, comment, disk, attributes, local offset 0
        data.extend_from_slice(central.0);
        let central_len = data.len() - central_at;
        data.extend_from_slice(END_SIG);
        data.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
        data.extend_from_slice(&(central_len as u32).to_le_bytes());
        data.extend_from_slice(&(central_at as u32).to_le_bytes());
        data.extend_from_slice(&[0, 0]);
        data
    }

    #[test]
    fn local_names_differ_only_when_they_decode_differently() {
        let other = |central: (&[u8], u16), local: (&[u8], u16)| {
            let data = one_entry(central, local);
            let (dir, _) = Directory::parse(&data, 10).unwrap();
            dir.local(&data, &dir.entries[0]).unwrap().other_name
        };
        let utf8 = "café.py".as_bytes();
        assert_eq!(other((b"caf\x82.py", 0), (b"caf\x82.py", 0)), None);
        assert_eq!(other((b"a.py", 0), (b"a.py", FLAG_UTF8)), None);
        // Other bytes, same name: CP437 0x82 is the é that UTF-8 writes in two bytes.
        assert_eq!(other((b"caf\x82.py", 0), (utf8, FLAG_UTF8)), None);
        // Same bytes, other flag: the local header's reader sees another name.
        assert_eq!(other((utf8, 0), (utf8, FLAG_UTF8)), Some("café.py".to_owned()));
        assert_eq!(other((b"a.py", 0), (b"b.py", 0)), Some("b.py".to_owned()));
    }

    #[test]
    fn no_end_record() {
        assert_eq!(Directory::parse(b"PK\x03\x04 not a zip", 10).unwrap_err(), ZipError::NoEndRecord);
        assert_eq!(Directory::parse(b"", 10).unwrap_err(), ZipError::NoEndRecord);
    }

    #[test]
    fn empty_archive() {
        let mut data = END_SIG.to_vec();
        data.extend_from_slice(&[0; 18]);
        let (dir, _) = Directory::parse(&data, 10).unwrap();
        assert!(dir.entries.is_empty());
        assert!(dir.hidden(&data).is_empty());
    }

    /// What `find_end` must return, written the slow and obvious way: the end record at the very
    /// end, else the last signature in the window, found by trying every position from the end.
    fn find_end_backwards(data: &[u8]) -> Option<usize> {
        let n = data.len();
        let at_end = n
            .checked_sub(END_LEN)
            .filter(|&tail| data[tail..].starts_with(END_SIG) && data.ends_with(&[0, 0]));
        at_end.or_else(|| {
            let from = n.saturating_sub(MAX_COMMENT + 1 + END_LEN);
            let (last, _) = data.windows(4).enumerate().skip(from).rev().find(|(_, w)| w == END_SIG)?;
            (last + END_LEN <= n).then_some(last)
        })
    }

    #[test]
    fn end_record_is_the_last_signature_in_the_window() {
        // Signatures in a comment, one too close to the end, one before the 64 KiB window, and
        // half signatures, at lengths around the window's edge.
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for len in [0, 3, 21, 22, 23, 40, 1000, MAX_COMMENT + END_LEN, MAX_COMMENT + END_LEN + 9, 200_000] {
            for _ in 0..20 {
                let mut data: Vec<u8> = (0..len).map(|_| b"PK\x05\x06\0x"[next() as usize % 6]).collect();
                for _ in 0..next() % 4 {
                    if len >= 4 {
                        let at = next() as usize % (len - 3);
                        data[at..at + 4].copy_from_slice(END_SIG);
                    }
                }
                assert_eq!(find_end(&data), find_end_backwards(&data), "length {len}");
            }
        }
        let mut data = vec![b'x'; 100];
        data[10..14].copy_from_slice(END_SIG);
        data[90..94].copy_from_slice(END_SIG);
        assert_eq!(find_end(&data), None, "the last signature leaves no room for a record");
        data[90..94].copy_from_slice(b"PK\x05\x07");
        assert_eq!(find_end(&data), Some(10));
    }
}
