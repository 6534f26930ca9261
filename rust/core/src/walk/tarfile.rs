//! Tar headers read as CPython's `tarfile` reads them, because pip unpacks sdists with it.
//!
//! This follows `TarFile.next()` and `TarInfo._proc_*` step by step: numbers as `nti` and
//! Python's `int()` read them (spaces, `+`, `_`, `0o`, base-256), the ustar prefix whatever the
//! magic, v7 headers with extension types, GNU long names and links, PAX local and global records
//! applied in dictionary order (a global `size` changes what a member reads but not where the next
//! header is), GNU sparse 0.0/0.1/1.0 and old-GNU sparse, data skipped only for regular and
//! unknown types, the first zero or invalid block as the end, and the outermost extension header
//! winning. Where Python versions read a header differently and the difference moves the next
//! header, the entry carries an [`Ambiguity`] note; elsewhere the reading that yields more is
//! taken (the lenient PAX parser of Python <= 3.12.5 accepts a superset of the strict one).
//!
//! Everything is read through a [`TarStream`]: a window over the decompressed stream that keeps
//! only what a later header or member may still need, so that members whose data runs over the
//! next header (a global `size`, a sparse map) read the same bytes as CPython, and an honest
//! member is read straight into its buffer with no copy.

use std::io::{self, Read};

/// Bytes of one tar block.
pub(super) const BLOCK: u64 = 512;
/// Most bytes of tar metadata (GNU long names and links, PAX records, sparse maps) read for one
/// entry; real ones are a few hundred bytes.
pub const TAR_METADATA_LIMIT: u64 = 1 << 20;
const READ_CHUNK: u64 = 256 * 1024;

const REGTYPE: u8 = b'0';
const AREGTYPE: u8 = 0;
pub(super) const LNKTYPE: u8 = b'1';
pub(super) const SYMTYPE: u8 = b'2';
const CHRTYPE: u8 = b'3';
const BLKTYPE: u8 = b'4';
pub(super) const DIRTYPE: u8 = b'5';
const FIFOTYPE: u8 = b'6';
const CONTTYPE: u8 = b'7';
const LONGNAME: u8 = b'L';
const LONGLINK: u8 = b'K';
const SPARSE: u8 = b'S';
const XHDTYPE: u8 = b'x';
const XGLTYPE: u8 = b'g';
const SOLARIS_XHDTYPE: u8 = b'X';

/// Types whose data `tarfile` reads as file content (and skips to find the next header).
fn is_regular(kind: u8) -> bool {
    matches!(kind, REGTYPE | AREGTYPE | CONTTYPE | SPARSE)
}

fn is_supported(kind: u8) -> bool {
    is_regular(kind)
        || matches!(kind, LNKTYPE | SYMTYPE | DIRTYPE | FIFOTYPE | CHRTYPE | BLKTYPE | LONGNAME | LONGLINK)
}

/// Content that is scanned: regular files, and unknown types (older Pythons, unpacking without
/// the data filter, write them as regular files).
pub(super) fn has_content(kind: u8) -> bool {
    is_regular(kind) || !is_supported(kind)
}

/// `_block(count)`: `count` rounded up to whole blocks; `None` for a negative count (Python 3.14
/// and the 2025 security releases refuse it as an invalid header; older ones misbehave).
fn round_up(count: i128) -> Option<u64> {
    let count = u64::try_from(count).ok()?;
    Some(count.div_ceil(BLOCK).saturating_mul(BLOCK))
}

/// Python's `str.isspace()` on an ASCII byte: what `str.strip()` removes.
fn is_py_space(b: u8) -> bool {
    is_int_space(b) || (0x1c..=0x1f).contains(&b)
}

/// The ASCII bytes `int()` skips around a number: fewer than `strip()` removes (`int('\x1c1')`
/// is a `ValueError`).
fn is_int_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `text.strip()`.
fn py_strip(text: &[u8]) -> &[u8] {
    strip_by(text, is_py_space)
}

fn strip_by(mut text: &[u8], space: fn(u8) -> bool) -> &[u8] {
    while let [first, rest @ ..] = text {
        if !space(*first) {
            break;
        }
        text = rest;
    }
    while let [rest @ .., last] = text {
        if !space(*last) {
            break;
        }
        text = rest;
    }
    text
}

/// What Python's `int(text, base)` makes of some text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PyInt {
    Value(i128),
    /// `ValueError`.
    Invalid,
    /// Not ASCII: Python also reads Unicode digits and spaces; not decided here.
    NonAscii,
}

/// `int(text, base)` for base 8 or 10 (saturating at the bounds of `i128`).
pub(super) fn py_int(text: &[u8], base: u32) -> PyInt {
    if !text.is_ascii() {
        return PyInt::NonAscii;
    }
    let text = strip_by(text, is_int_space);
    let (negative, mut digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if base == 8 && digits.len() >= 2 && digits[0] == b'0' && digits[1].eq_ignore_ascii_case(&b'o') {
        digits = &digits[2..];
        // One underscore may follow the base prefix.
        if digits.first() == Some(&b'_') {
            digits = &digits[1..];
        }
    }
    if digits.is_empty() {
        return PyInt::Invalid;
    }
    let mut value: i128 = 0;
    let mut after_underscore = true;
    for &c in digits {
        if c == b'_' {
            if after_underscore {
                return PyInt::Invalid;
            }
            after_underscore = true;
            continue;
        }
        let digit = match (c as char).to_digit(base) {
            Some(d) => d,
            None => return PyInt::Invalid,
        };
        value = value.saturating_mul(i128::from(base)).saturating_add(i128::from(digit));
        after_underscore = false;
    }
    if after_underscore {
        return PyInt::Invalid;
    }
    PyInt::Value(if negative { -value } else { value })
}

/// `int(value)` of a PAX value: UTF-8 text (anything else cannot be a number).
fn pax_int(value: &[u8]) -> PyInt {
    if std::str::from_utf8(value).is_err() {
        return PyInt::Invalid;
    }
    py_int(value, 10)
}

/// `nts`: the bytes before the first NUL.
fn nts(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or(field)
}

/// `nti`: a numeric header field, octal text or base-256; `None` where `tarfile` raises
/// `InvalidHeaderError`.
fn nti(field: &[u8]) -> Option<i128> {
    if field[0] == 0o200 || field[0] == 0o377 {
        let mut n: i128 = 0;
        for &b in &field[1..] {
            n = n.saturating_mul(256).saturating_add(i128::from(b));
        }
        if field[0] == 0o377 {
            n -= 1i128 << (8 * (field.len() - 1));
        }
        return Some(n);
    }
    let text = py_strip(nts(field));
    if text.is_empty() {
        return Some(0);
    }
    match py_int(text, 8) {
        PyInt::Value(n) => Some(n),
        _ => None,
    }
}

/// Why a header block could not be read (`tarfile`'s header errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderError {
    Empty,
    Truncated,
    /// A block of zeros: the end-of-archive marker.
    Zeros,
    Invalid(&'static str),
}

impl HeaderError {
    pub(super) fn describe(self) -> &'static str {
        match self {
            HeaderError::Empty => "no header (end of data)",
            HeaderError::Truncated => "a truncated header",
            HeaderError::Zeros => "an end-of-archive block",
            HeaderError::Invalid(why) => why,
        }
    }
}

/// An old-GNU sparse header's own map: (offset, size) structs, whether extension blocks follow,
/// and the real size.
type OldSparse = (Vec<(i128, i128)>, bool, i128);

/// One header block as `TarInfo.frombuf` reads it.
struct Header {
    name: Vec<u8>,
    linkname: Vec<u8>,
    size: i128,
    kind: u8,
    /// Old GNU sparse: the header's (offset, size) structs, whether extension blocks follow, and
    /// the real size.
    sparse: Option<OldSparse>,
    /// A v7 `AREGTYPE` named with a trailing slash, read after an extension header: Python <=
    /// 3.13 makes it a directory, Python 3.14 a file.
    v7_dir_candidate: bool,
}

/// Whether a header block's checksum field is one `TarInfo.frombuf` accepts: read as `nti` reads
/// it (octal text with Python's spaces, sign, underscores and `0o`, or base-256), equal to the
/// unsigned or the signed sum.
pub(crate) fn checksum_matches(block: &[u8]) -> bool {
    // The stored checksum first: in a block that is not a header (every archive member is asked
    // whether it is a tarball) it rarely parses, and then nothing is summed.
    let Some(stored) = nti(&block[148..156]) else {
        return false;
    };
    let (unsigned, signed) = checksums(block);
    stored == unsigned || stored == signed
}

fn checksums(block: &[u8]) -> (i128, i128) {
    // 504 bytes of at most 255 each: the sums fit an i32, where they vectorize (i128 sums did not).
    let unsigned = |part: &[u8]| part.iter().map(|&b| i32::from(b)).sum::<i32>();
    let signed = |part: &[u8]| part.iter().map(|&b| i32::from(b as i8)).sum::<i32>();
    let (head, tail) = (&block[..148], &block[156..]);
    (i128::from(256 + unsigned(head) + unsigned(tail)), i128::from(256 + signed(head) + signed(tail)))
}

fn frombuf(block: &[u8], dircheck: bool) -> Result<Header, HeaderError> {
    if block.is_empty() {
        return Err(HeaderError::Empty);
    }
    if block.len() != BLOCK as usize {
        return Err(HeaderError::Truncated);
    }
    if block.iter().all(|&b| b == 0) {
        return Err(HeaderError::Zeros);
    }
    let invalid = HeaderError::Invalid("an invalid header (bad checksum or number field)");
    nti(&block[148..156]).ok_or(invalid)?;
    if !checksum_matches(block) {
        return Err(HeaderError::Invalid("a header with a bad checksum"));
    }
    for field in [100..108, 108..116, 116..124, 136..148, 329..337, 337..345] {
        nti(&block[field]).ok_or(invalid)?;
    }
    let size = nti(&block[124..136]).ok_or(invalid)?;
    let mut kind = block[156];
    let mut name = nts(&block[..100]).to_vec();
    let linkname = nts(&block[157..257]).to_vec();
    let prefix = nts(&block[345..500]);
    let v7_dir = kind == AREGTYPE && name.ends_with(b"/");
    if dircheck && v7_dir {
        kind = DIRTYPE;
    }
    let sparse = if kind == SPARSE {
        let mut structs = Vec::new();
        for i in 0..4 {
            let at = 386 + 24 * i;
            let offset = nti(&block[at..at + 12]).ok_or(invalid)?;
            let numbytes = nti(&block[at + 12..at + 24]).ok_or(invalid)?;
            structs.push((offset, numbytes));
        }
        let real_size = nti(&block[483..495]).ok_or(invalid)?;
        Some((structs, block[482] != 0, real_size))
    } else {
        None
    };
    if kind == DIRTYPE {
        while name.last() == Some(&b'/') {
            name.pop();
        }
    }
    if !prefix.is_empty() && !matches!(kind, LONGNAME | LONGLINK | SPARSE) {
        name = [prefix, b"/", &name].concat();
    }
    Ok(Header { name, linkname, size, kind, sparse, v7_dir_candidate: !dircheck && v7_dir })
}

/// The PAX keywords that change what `tarfile` reads; the others (times, owners) do not matter.
const PAX_KEYS: [&[u8]; 9] = [
    b"path",
    b"linkpath",
    b"size",
    b"GNU.sparse.name",
    b"GNU.sparse.size",
    b"GNU.sparse.realsize",
    b"GNU.sparse.map",
    b"GNU.sparse.major",
    b"GNU.sparse.minor",
];
const PATH: usize = 0;
const LINKPATH: usize = 1;
const SIZE: usize = 2;
const SPARSE_NAME: usize = 3;
const SPARSE_SIZE: usize = 4;
const SPARSE_REALSIZE: usize = 5;
const SPARSE_MAP: usize = 6;
const SPARSE_MAJOR: usize = 7;
const SPARSE_MINOR: usize = 8;

/// The relevant part of a PAX header dictionary, with each key's insertion position (a Python
/// dict keeps a key where it was first inserted, and `_apply_pax_info` applies them in order).
#[derive(Clone, Default)]
struct PaxMap {
    next: u64,
    fields: [Option<(u64, Vec<u8>)>; PAX_KEYS.len()],
}

impl PaxMap {
    fn insert(&mut self, keyword: &[u8], value: &[u8]) {
        let Some(index) = PAX_KEYS.iter().position(|k| *k == keyword) else { return };
        match &mut self.fields[index] {
            Some((_, old)) => *old = value.to_vec(),
            slot => {
                *slot = Some((self.next, value.to_vec()));
                self.next += 1;
            }
        }
    }

    fn get(&self, index: usize) -> Option<&[u8]> {
        self.fields[index].as_ref().map(|(_, v)| v.as_slice())
    }

    /// The present keys in dictionary order.
    fn ordered(&self) -> Vec<(usize, &[u8])> {
        let mut present: Vec<(u64, usize, &[u8])> = self
            .fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|(at, v)| (*at, i, v.as_slice())))
            .collect();
        present.sort_unstable();
        present.into_iter().map(|(_, i, v)| (i, v)).collect()
    }
}

/// PAX records as the lenient parser of Python <= 3.12.5 (and 3.11.9, 3.10.14, 3.9.19) reads
/// them: `(\d+) ([^=]+)=` at each position, the value up to the record's last byte, stopping at
/// the first position that does not match. The strict parser of later versions raises where
/// this one stops, and ends the archive there: it never yields more. `None`: a zero length
/// (both raise).
fn pax_records(buf: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let digits = buf[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        let space = pos + digits;
        if digits == 0 || buf.get(space) != Some(&b' ') {
            break;
        }
        let keyword_start = space + 1;
        let Some(eq) = buf[keyword_start..].iter().position(|&b| b == b'=') else { break };
        if eq == 0 {
            break;
        }
        let keyword_end = keyword_start + eq;
        let length = match py_int(&buf[pos..space], 10) {
            PyInt::Value(n) => usize::try_from(n).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        if length == 0 {
            return None;
        }
        let value_end = pos.saturating_add(length - 1).min(buf.len());
        let value_start = keyword_end + 1;
        let value = if value_end > value_start { &buf[value_start..value_end] } else { &[][..] };
        records.push((buf[keyword_start..keyword_end].to_vec(), value.to_vec()));
        pos = pos.saturating_add(length);
    }
    Some(records)
}

/// A note on an entry where readers disagree; the walker turns it into an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ambiguity(pub String);

/// One member as `TarFile.next()` returns it.
pub(super) struct TarEntry {
    pub name: Vec<u8>,
    pub linkname: Vec<u8>,
    pub kind: u8,
    pub size: u64,
    pub data_offset: u64,
    /// (offset, size) chunks of a sparse member, data read one after the other from `data_offset`.
    pub sparse: Option<Vec<(i128, i128)>>,
    /// Where the next header is (`tarfile.offset`).
    pub next_header: u64,
    pub ambiguities: Vec<Ambiguity>,
}

impl TarEntry {
    /// Bytes the data occupies from `data_offset`: the size, or the sparse chunks together.
    pub(super) fn stored_len(&self) -> u64 {
        match &self.sparse {
            None => self.size,
            Some(chunks) => {
                chunks.iter().map(|(_, n)| u64::try_from(*n).unwrap_or(0)).fold(0, u64::saturating_add)
            }
        }
    }
}

/// Why reading headers stopped.
#[derive(Debug)]
pub(super) enum TarStop {
    /// Where `next()` returns `None`: the archive ends here for pip; what follows is not unpacked.
    /// `marker`: at a block of zeros, the normal end.
    End { offset: u64, what: &'static str, marker: bool },
    /// Where `tarfile` raises: pip refuses the whole archive.
    Refused { offset: u64, why: String },
    /// An entry's metadata is over [`TAR_METADATA_LIMIT`].
    Metadata,
    /// The stream itself failed (decompression error or a stream limit).
    Stream(io::Error),
}

/// A window over a decompressed stream: bytes `[base, base + window.len())` are held.
pub(super) struct TarStream<'a> {
    pub(super) reader: Box<dyn Read + Send + 'a>,
    window: Vec<u8>,
    base: u64,
    eof: bool,
}

impl<'a> TarStream<'a> {
    pub(super) fn new(reader: Box<dyn Read + Send + 'a>) -> Self {
        Self { reader, window: Vec::new(), base: 0, eof: false }
    }

    fn end(&self) -> u64 {
        self.base + self.window.len() as u64
    }

    /// Read until the window reaches `end` or the stream ends.
    fn fill(&mut self, end: u64) -> io::Result<()> {
        while self.end() < end && !self.eof {
            let want = (end - self.end()).min(READ_CHUNK) as usize;
            let old = self.window.len();
            self.window.resize(old + want, 0);
            match self.reader.read(&mut self.window[old..]) {
                Ok(n) => {
                    self.window.truncate(old + n);
                    self.eof = n == 0;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => self.window.truncate(old),
                Err(err) => {
                    self.window.truncate(old);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Up to `len` bytes from `start` (fewer at the end of the stream).
    fn bytes(&mut self, start: u64, len: u64) -> io::Result<&[u8]> {
        if start < self.base {
            // Only ever asked for bytes still held; a bug otherwise (caught as an internal error).
            return Err(io::Error::other("tar window lost bytes still needed"));
        }
        self.fill(start.saturating_add(len))?;
        let from = (start - self.base).min(self.window.len() as u64) as usize;
        let to = (start.saturating_add(len) - self.base).min(self.window.len() as u64) as usize;
        Ok(&self.window[from..to])
    }

    /// Forget what lies before `pos`: nothing will read there again.
    fn forget_before(&mut self, pos: u64) {
        let drop = pos.saturating_sub(self.base).min(self.window.len() as u64);
        self.window.drain(..drop as usize);
        self.base += drop;
    }

    /// Make `pos` the next byte to read (discarding what lies before it); false when the stream
    /// ends first.
    pub(super) fn skip_to(&mut self, pos: u64) -> io::Result<bool> {
        if pos <= self.end() {
            self.forget_before(pos);
            return Ok(true);
        }
        self.base = self.end();
        self.window.clear();
        let skipped = io::copy(&mut (&mut self.reader).take(pos - self.base), &mut io::sink())?;
        self.base += skipped;
        self.eof = self.base < pos;
        Ok(!self.eof)
    }

    /// A reader of the stream's bytes `[start, end)` (`start` at or after what is held) that
    /// keeps in the window what lies at or after `keep_from`, for the headers that follow.
    pub(super) fn range(&mut self, start: u64, end: u64, keep_from: u64) -> RangeReader<'_, 'a> {
        self.forget_before(start.min(keep_from));
        RangeReader { stream: self, pos: start, end, keep_from }
    }
}

/// See [`TarStream::range`].
pub(super) struct RangeReader<'s, 'a> {
    stream: &'s mut TarStream<'a>,
    pos: u64,
    end: u64,
    keep_from: u64,
}

impl Read for RangeReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let stream = &mut *self.stream;
        if self.pos < stream.base {
            // Only ever asked for bytes still held; a bug otherwise (caught as an internal error).
            return Err(io::Error::other("tar window lost bytes still needed"));
        }
        if self.pos < stream.end() {
            let at = (self.pos - stream.base) as usize;
            let n = want.min(stream.window.len() - at);
            buf[..n].copy_from_slice(&stream.window[at..at + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos > stream.end() && !stream.skip_to(self.pos)? {
            return Ok(0);
        }
        let n = loop {
            match stream.reader.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        };
        if n == 0 {
            stream.eof = true;
            return Ok(0);
        }
        let (from, to) = (self.pos, self.pos + n as u64);
        if to <= self.keep_from {
            stream.window.clear();
            stream.base = to;
        } else {
            let keep = from.max(self.keep_from);
            if keep > from {
                stream.window.clear();
                stream.base = keep;
            }
            stream.window.extend_from_slice(&buf[(keep - from) as usize..n]);
        }
        self.pos = to;
        Ok(n)
    }
}

/// An extension header waiting for the header it describes.
enum Extension {
    Long {
        kind: u8,
        value: Vec<u8>,
    },
    Pax {
        global: bool,
        map: Box<PaxMap>,
        records: Vec<(Vec<u8>, Vec<u8>)>,
        /// The GNU sparse 0.0 map as Python 3.12.5 and earlier find it in the raw header.
        old_sparse_00: Vec<(i128, i128)>,
        offset: u64,
    },
}

/// `TarFile`'s reading state: where the next header is, and the global PAX records so far.
pub(super) struct TarReader {
    offset: u64,
    cursor: u64,
    global: PaxMap,
}

/// An error at a depth of the header chain: at the top `next()` ends the archive, deeper it
/// raises (`SubsequentHeaderError`) and pip fails.
fn at_depth(depth: usize, offset: u64, what: &'static str) -> TarStop {
    if depth == 0 {
        TarStop::End { offset, what, marker: what == HeaderError::Zeros.describe() }
    } else {
        TarStop::Refused { offset, why: format!("{what} follows an extension header") }
    }
}

impl TarReader {
    pub(super) fn new() -> Self {
        Self { offset: 0, cursor: 0, global: PaxMap::default() }
    }

    fn read_metadata(
        &mut self,
        stream: &mut TarStream<'_>,
        len: u64,
        budget: &mut u64,
    ) -> Result<Vec<u8>, TarStop> {
        if len > *budget {
            return Err(TarStop::Metadata);
        }
        *budget -= len;
        let data = stream.bytes(self.cursor, len).map_err(TarStop::Stream)?.to_vec();
        self.cursor += data.len() as u64;
        Ok(data)
    }

    /// The next member, as `TarFile.next()` would return it, or why there is none.
    pub(super) fn next(&mut self, stream: &mut TarStream<'_>) -> Result<TarEntry, TarStop> {
        if self.offset != self.cursor {
            // `next()` seeks to the header and fails when the data ends before it (the last
            // member was cut short: its content was read as far as it goes).
            if !stream.skip_to(self.offset).map_err(TarStop::Stream)? {
                let why = "the data ends inside the previous member (truncated archive)".to_owned();
                return Err(TarStop::Refused { offset: self.offset, why });
            }
            self.cursor = self.offset;
        }
        stream.forget_before(self.offset);
        let mut chain: Vec<Extension> = Vec::new();
        let mut budget = TAR_METADATA_LIMIT;
        let mut ambiguities = Vec::new();
        // Where each header of the entry starts: the extension headers of `chain`, then its own.
        let mut header_offsets: Vec<u64> = Vec::new();
        let mut entry = loop {
            let depth = chain.len();
            let at = self.cursor;
            header_offsets.push(at);
            let block = stream.bytes(at, BLOCK).map_err(TarStop::Stream)?.to_vec();
            self.cursor += block.len() as u64;
            let header = match frombuf(&block, depth == 0) {
                Ok(header) => header,
                Err(err) => return Err(at_depth(depth, at, err.describe())),
            };
            match header.kind {
                LONGNAME | LONGLINK => {
                    let len = round_up(header.size).ok_or_else(|| at_depth(depth, at, "a negative size"))?;
                    let value = self.read_metadata(stream, len, &mut budget)?;
                    chain.push(Extension::Long { kind: header.kind, value: nts(&value).to_vec() });
                }
                XHDTYPE | XGLTYPE | SOLARIS_XHDTYPE => {
                    let len = round_up(header.size).ok_or_else(|| at_depth(depth, at, "a negative size"))?;
                    let data = self.read_metadata(stream, len, &mut budget)?;
                    let records =
                        pax_records(&data).ok_or_else(|| at_depth(depth, at, "a PAX record of length 0"))?;
                    let global = header.kind == XGLTYPE;
                    let map = if global {
                        for (keyword, value) in &records {
                            self.global.insert(keyword, value);
                        }
                        PaxMap::default()
                    } else {
                        let mut map = self.global.clone();
                        for (keyword, value) in &records {
                            map.insert(keyword, value);
                        }
                        map
                    };
                    let old_sparse_00 = regex_sparse_00(&data);
                    chain.push(Extension::Pax {
                        global,
                        map: Box::new(map),
                        records,
                        old_sparse_00,
                        offset: at,
                    });
                }
                SPARSE => {
                    let (mut structs, mut extended, real_size) = header.sparse.clone().unwrap_or_default();
                    while extended {
                        let block = self.read_metadata(stream, BLOCK, &mut budget)?;
                        if block.len() != BLOCK as usize {
                            return Err(TarStop::Refused {
                                offset: at,
                                why: "an old-GNU sparse map is cut short".into(),
                            });
                        }
                        for i in 0..21 {
                            let field = 24 * i;
                            let offset = nti(&block[field..field + 12]);
                            let numbytes = nti(&block[field + 12..field + 24]);
                            let (Some(offset), Some(numbytes)) = (offset, numbytes) else {
                                return Err(at_depth(depth, at, "an invalid old-GNU sparse map"));
                            };
                            if offset != 0 && numbytes != 0 {
                                structs.push((offset, numbytes));
                            }
                        }
                        extended = block[504] != 0;
                    }
                    let data_offset = self.cursor;
                    let stored =
                        round_up(header.size).ok_or_else(|| at_depth(depth, at, "a negative size"))?;
                    self.offset = data_offset.saturating_add(stored);
                    let size =
                        u64::try_from(real_size).map_err(|_| at_depth(depth, at, "a negative size"))?;
                    let entry = TarEntry {
                        name: header.name,
                        linkname: header.linkname,
                        kind: SPARSE,
                        size,
                        data_offset,
                        sparse: Some(structs),
                        next_header: 0,
                        ambiguities: Vec::new(),
                    };
                    break entry;
                }
                kind => {
                    let data_offset = self.cursor;
                    let skip = if has_content(kind) {
                        round_up(header.size).ok_or_else(|| at_depth(depth, at, "a negative size"))?
                    } else {
                        0
                    };
                    self.offset = data_offset.saturating_add(skip);
                    let mut entry = TarEntry {
                        name: header.name,
                        linkname: header.linkname,
                        kind,
                        size: u64::try_from(header.size).unwrap_or(0),
                        data_offset,
                        sparse: None,
                        next_header: 0,
                        ambiguities: Vec::new(),
                    };
                    apply_pax(&mut entry, &self.global, &mut ambiguities)
                        .map_err(|why| TarStop::Refused { offset: at, why })?;
                    if entry.kind == DIRTYPE {
                        while entry.name.last() == Some(&b'/') {
                            entry.name.pop();
                        }
                    }
                    if header.v7_dir_candidate {
                        // Even empty: one version makes a directory where another writes a file.
                        let data = if header.size > 0 {
                            format!(" and its {} data bytes as the next headers", header.size)
                        } else {
                            String::new()
                        };
                        ambiguities.push(Ambiguity(format!(
                            "a v7 header named with a trailing slash after an extension header: Python 3.13 and \
                             earlier read it as a directory{data}, later versions as a file; read as a file"
                        )));
                    }
                    break entry;
                }
            }
        };
        for (depth, extension) in chain.into_iter().enumerate().rev() {
            match extension {
                Extension::Long { kind, value, .. } => {
                    if kind == LONGNAME {
                        entry.name = value;
                    } else {
                        entry.linkname = value;
                    }
                    if entry.kind == DIRTYPE && entry.name.last() == Some(&b'/') {
                        entry.name.pop();
                    }
                }
                Extension::Pax { global, map, records, old_sparse_00, offset } => {
                    let map = if global { self.global.clone() } else { *map };
                    self.sparse_info(
                        stream,
                        &mut entry,
                        &map,
                        &records,
                        &mut budget,
                        offset,
                        depth,
                        &mut ambiguities,
                    )?;
                    if map.get(SPARSE_MAP).is_none()
                        && map.get(SPARSE_SIZE).is_some()
                        && entry.sparse.as_deref() != Some(old_sparse_00.as_slice())
                    {
                        ambiguities.push(Ambiguity(format!(
                            "Python 3.12.5, 3.11.9, 3.10.14, 3.9.19 and earlier find the GNU sparse 0.0 map with a \
                             pattern over the whole PAX header, which reads another map here ({} chunks against {}): \
                             they extract other bytes; the map of later versions was scanned",
                            old_sparse_00.len(),
                            entry.sparse.as_ref().map_or(0, Vec::len)
                        )));
                    }
                    if !global {
                        apply_pax(&mut entry, &map, &mut ambiguities)
                            .map_err(|why| TarStop::Refused { offset, why })?;
                        if map.get(SIZE).is_some() {
                            let skip = if has_content(entry.kind) {
                                round_up(i128::from(entry.size)).unwrap_or(0)
                            } else {
                                0
                            };
                            self.offset = entry.data_offset.saturating_add(skip);
                            // Python 3.14's `tarfile` counts this PAX header's own `size` record (not
                            // a GNU sparse size applied after it) from the header right after it:
                            // past GNU long names or links (or another PAX header) in between, or
                            // with another size, it finds the next header elsewhere.
                            let newest_skip = if !has_content(entry.kind) {
                                Some(0)
                            } else {
                                match map.get(SIZE).map(pax_int) {
                                    Some(PyInt::Value(size)) => round_up(size),
                                    Some(PyInt::Invalid) => Some(0),
                                    _ => None,
                                }
                            };
                            let following = header_offsets.get(depth + 1).copied().unwrap_or(offset);
                            let newest =
                                newest_skip.map(|skip| following.saturating_add(BLOCK).saturating_add(skip));
                            if newest != Some(self.offset) {
                                let place =
                                    newest.map_or("elsewhere".to_owned(), |at| format!("at offset {at}"));
                                ambiguities.push(Ambiguity(format!(
                                    "a PAX size Python 3.14's tarfile counts from another place: it reads the next \
                                     header {place}, earlier versions at offset {}; read as the earlier versions do",
                                    self.offset
                                )));
                            }
                        }
                    }
                }
            }
        }
        entry.next_header = self.offset;
        entry.ambiguities = ambiguities;
        Ok(entry)
    }

    /// `_proc_gnusparse_01`, `_00` and `_10`: the sparse map a PAX header gives the entry.
    #[allow(clippy::too_many_arguments)]
    fn sparse_info(
        &mut self,
        stream: &mut TarStream<'_>,
        entry: &mut TarEntry,
        map: &PaxMap,
        records: &[(Vec<u8>, Vec<u8>)],
        budget: &mut u64,
        offset: u64,
        depth: usize,
        ambiguities: &mut Vec<Ambiguity>,
    ) -> Result<(), TarStop> {
        let refuse = |why: &str| TarStop::Refused { offset, why: why.to_owned() };
        if let Some(value) = map.get(SPARSE_MAP) {
            let mut numbers = Vec::new();
            for part in value.split(|&b| b == b',') {
                match pax_int(part) {
                    PyInt::Value(n) => numbers.push(n),
                    PyInt::NonAscii => {
                        ambiguities.push(Ambiguity("a GNU.sparse.map with non-ASCII characters".into()));
                        return Err(refuse("a GNU.sparse.map entry is not a number"));
                    }
                    PyInt::Invalid => return Err(refuse("a GNU.sparse.map entry is not a number")),
                }
            }
            entry.sparse = Some(numbers.chunks_exact(2).map(|p| (p[0], p[1])).collect());
        } else if map.get(SPARSE_SIZE).is_some() {
            // Python <= 3.12.5 finds the records with a regular expression over the whole header;
            // later versions take every offset/numbytes record and refuse a non-number.
            let (mut offsets, mut sizes) = (Vec::new(), Vec::new());
            for (keyword, value) in records {
                let list = match keyword.as_slice() {
                    b"GNU.sparse.offset" => &mut offsets,
                    b"GNU.sparse.numbytes" => &mut sizes,
                    _ => continue,
                };
                if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                    ambiguities.push(Ambiguity(
                        "a GNU sparse 0.0 record that is not plain digits: Python versions read the map differently"
                            .into(),
                    ));
                }
                match pax_int(value) {
                    PyInt::Value(n) => list.push(n),
                    _ => return Err(at_depth(depth, offset, "an invalid GNU sparse 0.0 record")),
                }
            }
            entry.sparse = Some(offsets.into_iter().zip(sizes).collect());
        } else if map.get(SPARSE_MAJOR) == Some(b"1") && map.get(SPARSE_MINOR) == Some(b"0") {
            let mut buf = self.read_metadata(stream, BLOCK, budget)?;
            let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                return Err(refuse("a GNU sparse 1.0 map has no count"));
            };
            let count = match py_int(&buf[..newline], 10) {
                PyInt::Value(n) => n,
                _ => return Err(refuse("a GNU sparse 1.0 map count is not a number")),
            };
            buf.drain(..=newline);
            let mut numbers: Vec<i128> = Vec::new();
            while (numbers.len() as i128) < count.saturating_mul(2) {
                let newline = loop {
                    if let Some(at) = buf.iter().position(|&b| b == b'\n') {
                        break at;
                    }
                    let more = self.read_metadata(stream, BLOCK, budget)?;
                    if more.is_empty() {
                        return Err(refuse("a GNU sparse 1.0 map is cut short"));
                    }
                    buf.extend_from_slice(&more);
                };
                match py_int(&buf[..newline], 10) {
                    PyInt::Value(n) => numbers.push(n),
                    _ => return Err(refuse("a GNU sparse 1.0 map entry is not a number")),
                }
                buf.drain(..=newline);
            }
            entry.data_offset = self.cursor;
            entry.sparse = Some(numbers.chunks_exact(2).map(|p| (p[0], p[1])).collect());
        }
        Ok(())
    }
}

/// One entry as the header parser alone sees it: name, size, data offset, next header offset.
pub type EntryOffsets = (Vec<u8>, u64, u64, u64);

/// Every entry of a plain tarball, and why reading stopped: the header parser alone, for the fuzz
/// target that checks it always makes progress.
pub(crate) fn entries(data: &[u8]) -> (Vec<EntryOffsets>, String) {
    let mut stream = TarStream::new(Box::new(data));
    let mut reader = TarReader::new();
    let mut found = Vec::new();
    loop {
        match reader.next(&mut stream) {
            Ok(entry) => found.push((entry.name, entry.size, entry.data_offset, entry.next_header)),
            Err(stop) => return (found, format!("{stop:?}")),
        }
    }
}

/// The GNU sparse 0.0 map as Python 3.12.5 and earlier read it: `re.finditer` of
/// `\d+ GNU.sparse.offset=(\d+)\n` and of the same for `numbytes` over the raw PAX header, where
/// `.` is any byte but a newline and a match may sit inside another record's value; the two
/// lists zipped.
fn regex_sparse_00(buf: &[u8]) -> Vec<(i128, i128)> {
    let find = |keyword: &[u8]| -> Vec<i128> {
        let mut found = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            if !buf[at].is_ascii_digit() {
                at += 1;
                continue;
            }
            // Every start inside one run of digits meets the same text after the run.
            let run_end = at + buf[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            match match_sparse_record(&buf[run_end..], keyword) {
                Some((value, len)) => {
                    found.push(value);
                    at = run_end + len;
                }
                None => at = run_end,
            }
        }
        found
    };
    find(b"offset").into_iter().zip(find(b"numbytes")).collect()
}

/// ` GNU.sparse.<keyword>=(\d+)\n` at the start of `text` (`.`: any byte but `\n`): the value
/// and the length matched.
fn match_sparse_record(text: &[u8], keyword: &[u8]) -> Option<(i128, usize)> {
    let any = |b: u8| b != b'\n';
    let head = [b" GNU".as_slice(), b"?", b"sparse", b"?", keyword, b"="].concat();
    let prefix = text.get(..head.len())?;
    if !prefix.iter().zip(&head).all(|(&got, &want)| if want == b'?' { any(got) } else { got == want }) {
        return None;
    }
    let digits = text[head.len()..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || text.get(head.len() + digits) != Some(&b'\n') {
        return None;
    }
    let value = std::str::from_utf8(&text[head.len()..head.len() + digits]).ok()?.parse::<i128>().ok()?;
    Some((value, head.len() + digits + 1))
}

/// `_apply_pax_info`: the keys in dictionary order. `Err` where Python raises (pip fails).
fn apply_pax(entry: &mut TarEntry, map: &PaxMap, ambiguities: &mut Vec<Ambiguity>) -> Result<(), String> {
    for (key, value) in map.ordered() {
        match key {
            SPARSE_NAME => entry.name = value.to_vec(),
            SPARSE_SIZE | SPARSE_REALSIZE => match pax_int(value) {
                PyInt::Value(n) => entry.size = u64::try_from(n).map_err(|_| "a negative GNU sparse size")?,
                PyInt::NonAscii => {
                    ambiguities.push(Ambiguity("a GNU sparse size with non-ASCII characters".into()));
                    return Err("a GNU sparse size is not a number".into());
                }
                PyInt::Invalid => return Err("a GNU sparse size is not a number".into()),
            },
            PATH => {
                let mut name = value.to_vec();
                while name.last() == Some(&b'/') {
                    name.pop();
                }
                entry.name = name;
            }
            LINKPATH => entry.linkname = value.to_vec(),
            SIZE => {
                entry.size = match pax_int(value) {
                    PyInt::Value(n) => u64::try_from(n).map_err(|_| "a negative PAX size")?,
                    PyInt::NonAscii => {
                        ambiguities.push(Ambiguity(
                            "a PAX size with non-ASCII characters (Python reads Unicode digits); read as 0"
                                .into(),
                        ));
                        0
                    }
                    // `tarfile` replaces a size it cannot read by 0.
                    PyInt::Invalid => 0,
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a sparse map reads the same under every reader: chunks in order, not overlapping
/// (empty chunks, which old-GNU headers pad their map with, change nothing).
pub(super) fn sparse_is_plain(chunks: &[(i128, i128)]) -> bool {
    let mut end = 0i128;
    chunks.iter().filter(|(_, size)| *size != 0).all(|&(offset, size)| {
        let ok = offset >= end && size >= 0;
        end = offset.saturating_add(size);
        ok
    })
}

/// A sparse member's content as `TarFile.makefile` writes it: each chunk's bytes, read one after
/// the other from `stored`, placed at its offset, the file cut or extended to `size` (here at most
/// `cap` bytes).
pub(super) fn expand_sparse(stored: &[u8], chunks: &[(i128, i128)], size: u64, cap: u64) -> Vec<u8> {
    let len = size.min(cap) as usize;
    let mut content = vec![0u8; len];
    let mut cursor = 0usize;
    for &(offset, count) in chunks {
        let count = usize::try_from(count).unwrap_or(0);
        let source = &stored[cursor.min(stored.len())..cursor.saturating_add(count).min(stored.len())];
        cursor = cursor.saturating_add(count);
        let Ok(offset) = usize::try_from(offset) else { continue };
        if offset >= len {
            continue;
        }
        let n = source.len().min(len - offset);
        content[offset..offset + n].copy_from_slice(&source[..n]);
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_python_int() {
        assert_eq!(py_int(b" 1024", 10), PyInt::Value(1024));
        assert_eq!(py_int(b"1_024\n", 10), PyInt::Value(1024));
        assert_eq!(py_int(b"+7", 10), PyInt::Value(7));
        assert_eq!(py_int(b"-7", 10), PyInt::Value(-7));
        assert_eq!(py_int(b"007", 10), PyInt::Value(7));
        assert_eq!(py_int(b"\x0b12\x0c", 10), PyInt::Value(12));
        // `str.strip()` removes these, `int()` does not skip them.
        for bad in [&b""[..], b"_1", b"1_", b"1__0", b"0x10", b"1 2", b"+", b"12a", b"\x1c12", b"12\x1f"] {
            assert_eq!(py_int(bad, 10), PyInt::Invalid, "{bad:?}");
        }
        assert_eq!(py_int("١٢".as_bytes(), 10), PyInt::NonAscii);
        assert_eq!(py_int(b"0o17", 8), PyInt::Value(15));
        assert_eq!(py_int(b"0o_17", 8), PyInt::Value(15));
        assert_eq!(py_int(b"17", 8), PyInt::Value(15));
        assert_eq!(py_int(b"18", 8), PyInt::Invalid);
    }

    #[test]
    fn header_numbers_read_like_nti() {
        assert_eq!(nti(b"0000644\0"), Some(0o644));
        assert_eq!(nti(b"  644  \0"), Some(0o644));
        assert_eq!(nti(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(nti(b"12\09999\0"), Some(0o12));
        assert_eq!(nti(b"64x\0\0\0\0\0"), None);
        // `nti` strips before `int()`: the separators `strip()` removes are fine there.
        assert_eq!(nti(b"\x1c644\x1f\0\0\0"), Some(0o644));
        assert_eq!(nti(b"\x80\0\0\0\0\0\0\x01\0\0\0\0"), Some(1 << 32));
        assert_eq!(nti(b"\xff\xff\xff\xff\xff\xff\xff\xfe"), Some(-2));
    }

    #[test]
    fn checksums_are_tarfiles_over_every_byte_value() {
        // tarfile's calc_chksums: 256 plus the header's bytes but the checksum field's, read as
        // unsigned and as signed bytes.
        let reference = |block: &[u8]| {
            let bytes = block[..148].iter().chain(&block[156..]);
            let unsigned: i128 = 256 + bytes.clone().map(|&b| i128::from(b)).sum::<i128>();
            (unsigned, 256 + bytes.map(|&b| i128::from(b as i8)).sum::<i128>())
        };
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut blocks: Vec<[u8; 512]> = vec![[0; 512], [0xff; 512], [0x80; 512], [0x7f; 512]];
        for _ in 0..200 {
            let mut block = [0u8; 512];
            for byte in block.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            blocks.push(block);
        }
        for mut block in blocks {
            assert_eq!(checksums(&block), reference(&block));
            let (unsigned, signed) = reference(&block);
            for stored in [unsigned, signed] {
                let sign = if stored < 0 { "-" } else { "" };
                let field = format!("{:>7}\0", format!("{sign}{:o}", stored.abs()));
                block[148..156].copy_from_slice(field.as_bytes());
                assert!(checksum_matches(&block), "{field:?}");
            }
            block[148..156].copy_from_slice(b"port os\n");
            assert!(!checksum_matches(&block));
        }
    }

    #[test]
    fn pax_records_lenient_like_old_python() {
        let records = pax_records(b"12 size=100\n21 path=a/b/setup.py\n\0\0").unwrap();
        assert_eq!(records[0], (b"size".to_vec(), b"100".to_vec()));
        assert_eq!(records[1], (b"path".to_vec(), b"a/b/setup.py".to_vec()));
        // A record without its newline: the value still ends one byte before the length.
        assert_eq!(pax_records(b"13 size= 1024").unwrap()[0].1, b" 102");
        // Garbage stops parsing without an error; a zero length is an error.
        assert_eq!(pax_records(b"junk").unwrap(), vec![]);
        assert_eq!(pax_records(b"0 a=b\n"), None);
    }

    fn header(name: &[u8], size: &[u8], kind: u8) -> Vec<u8> {
        let mut block = vec![0u8; 512];
        block[..name.len()].copy_from_slice(name);
        block[124..124 + size.len()].copy_from_slice(size);
        block[156] = kind;
        block[257..263].copy_from_slice(b"ustar\0");
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    fn pax(records: &[u8], kind: u8) -> Vec<u8> {
        let mut data = header(b"PaxHeader", format!("{:o}", records.len()).as_bytes(), kind);
        data.extend_from_slice(records);
        data.resize(data.len().next_multiple_of(512), 0);
        data
    }

    #[test]
    fn headers_always_move_forward() {
        // A negative base-256 size, and one in octal text: the archive ends there.
        let mut negative = header(b"a", b"", b'0');
        negative[124] = 0xff;
        negative[125..136].fill(0xff);
        negative[148..156].copy_from_slice(b"        ");
        let sum: u32 = negative.iter().map(|&b| u32::from(b)).sum();
        negative[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        for data in [negative, header(b"b", b"-1000", b'0')] {
            let (found, stop) = entries(&data);
            assert!(found.is_empty(), "{found:?}");
            assert!(stop.contains("negative size"), "{stop}");
        }
        // A global size larger than every member: each reads past the next header, and the
        // headers still follow one another.
        let data = [
            pax(b"14 size=99999\n", b'g'),
            header(b"x", b"1", b'0'),
            vec![b'A'; 512],
            header(b"y", b"1", b'0'),
            vec![b'B'; 512],
        ]
        .concat();
        let (found, _) = entries(&data);
        assert_eq!(
            found.iter().map(|e| (e.0.as_slice(), e.1)).collect::<Vec<_>>(),
            [(&b"x"[..], 99999), (b"y", 99999)]
        );
        assert!(found[0].3 < found[1].3);
        // A sparse 1.0 map longer than the member's declared data: the next header is found
        // where the declared size puts it, inside the map (tarfile seeks back there).
        let map = b"1\n0\n5\n";
        let mut body = map.to_vec();
        body.resize(512, b'\n');
        let data =
            [pax(b"22 GNU.sparse.major=1\n22 GNU.sparse.minor=0\n", b'x'), header(b"s", b"0", b'0'), body]
                .concat();
        let (found, _) = entries(&data);
        assert_eq!(found.len(), 1);
        assert!(found[0].2 > found[0].3, "data after the map, next header before it: {found:?}");
    }

    #[test]
    fn a_pax_size_before_a_gnu_long_name_is_ambiguous() {
        let next = |data: &[u8]| {
            let mut stream = TarStream::new(Box::new(data));
            TarReader::new().next(&mut stream).unwrap()
        };
        let long = [header(b"././@LongLink", b"21", b'L'), b"pkg/setup.py".to_vec(), vec![0; 500]].concat();
        let member = [header(b"pkg/setup.py", b"1000", b'0'), vec![b'x'; 1024]].concat();
        let entry = next(&[pax(b"11 size=10\n", b'x'), long.clone(), member.clone()].concat());
        assert_eq!((entry.size, entry.next_header), (10, 3072));
        assert_eq!(entry.ambiguities.len(), 1, "Python 3.14 reads the next header at 2048");
        // The usual PAX header, right before its member: both read the next header at the same place.
        let entry = next(&[pax(b"11 size=10\n", b'x'), member.clone()].concat());
        assert!(entry.ambiguities.is_empty(), "{:?}", entry.ambiguities.first().map(|a| &a.0));
        // A GNU sparse real size applied after the PAX size: earlier versions skip that many bytes.
        let entry = next(&[pax(b"11 size=10\n28 GNU.sparse.realsize=900\n", b'x'), member].concat());
        assert_eq!((entry.size, entry.next_header), (900, 2560));
        assert_eq!(entry.ambiguities.len(), 1, "Python 3.14 reads the next header at 2048");
    }

    #[test]
    fn sparse_expansion_follows_makefile() {
        let stored = b"AAABBB";
        assert_eq!(expand_sparse(stored, &[(2, 3), (8, 3)], 12, 100), b"\0\0AAA\0\0\0BBB\0");
        // Cut to the size, and to the cap.
        assert_eq!(expand_sparse(stored, &[(0, 3), (3, 3)], 4, 100), b"AAAB");
        assert_eq!(expand_sparse(stored, &[(0, 6)], 6, 2), b"AA");
        assert!(sparse_is_plain(&[(0, 3), (3, 3), (10, 0)]));
        assert!(!sparse_is_plain(&[(5, 3), (0, 3)]));
        assert!(!sparse_is_plain(&[(0, 4), (2, 3)]));
    }
}
