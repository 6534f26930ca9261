//! Decompressed streams under the stream limits: gzip members read as CPython's `gzip` reads them,
//! bzip2 and xz streams, and the guard that stops any of them past the total-size or ratio limit.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::crc::Crc32;
use crate::format::Container;
use crate::issue::{Issue, IssueKind};
use crate::limits::Limits;

/// Largest LZMA dictionary an xz, `.lzma` or lzip stream may ask for (KiB); real packages use at
/// most 64 MiB.
pub(crate) const LZMA_MEMORY_LIMIT_KB: u32 = 256 * 1024;
/// Nothing recorded yet (no trailing bytes).
const NOWHERE: u64 = u64::MAX;

/// Why a compressed stream was cut off by its guard.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Trip {
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

/// The members of a gzip stream one after the other, as CPython's `gzip` (and so `tarfile`)
/// reads them: each header as `gzip._read_gzip_header` reads it (its optional CRC-16 and its
/// reserved flag bits ignored, which flate2's own gzip reader refuses), zero bytes between or
/// after members skipped, and the next member read whatever came before. Unlike a multi-member
/// decoder it knows exactly where the last member ends, so bytes after it are found and scanned
/// instead of failing the stream. A trailer whose CRC-32 or size does not match is recorded and
/// the next member read: the content came out whole, only its checksum is wrong.
struct GzipMembers<'a> {
    state: GzipState<'a>,
    len: usize,
    guard: Guard,
}

enum GzipState<'a> {
    /// At the start of a member (its magic bytes already seen).
    Header(&'a [u8]),
    /// Inflating a member's deflate data: the CRC-32 and size of what came out so far.
    Body(flate2::bufread::DeflateDecoder<&'a [u8]>, Crc32),
    Done,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

fn gzip_truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "a gzip member ends before its end-of-stream marker")
}

/// The length of the member header at the start of `data`, as `gzip._read_gzip_header` reads it.
fn gzip_header_len(data: &[u8]) -> io::Result<usize> {
    let fixed = data.get(..10).ok_or_else(gzip_truncated)?;
    if fixed[2] != 8 {
        let message = format!("a gzip member uses compression method {}, not deflate", fixed[2]);
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    }
    let flags = fixed[3];
    let mut at = 10usize;
    if flags & FEXTRA != 0 {
        let len = data.get(at..at + 2).ok_or_else(gzip_truncated)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
        if at > data.len() {
            return Err(gzip_truncated());
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flag & flags != 0 {
            // Up to a NUL byte, or to the end of the data (where `gzip` stops looking too).
            at = data[at..].iter().position(|&b| b == 0).map_or(data.len(), |nul| at + nul + 1);
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
        if at > data.len() {
            return Err(gzip_truncated());
        }
    }
    Ok(at)
}

impl<'a> GzipMembers<'a> {
    fn new(data: &'a [u8], guard: Guard) -> Self {
        Self { state: GzipState::Header(data), len: data.len(), guard }
    }

    /// After a member's deflate data: check its trailer, then go to the next member, if any.
    fn end_member(&mut self, rest: &'a [u8], crc: &Crc32) -> io::Result<()> {
        let trailer = rest.get(..8).ok_or_else(gzip_truncated)?;
        let stored_crc = u32::from_le_bytes(trailer[..4].try_into().expect("four bytes"));
        let stored_size = u32::from_le_bytes(trailer[4..].try_into().expect("four bytes"));
        if stored_crc != crc.sum() || stored_size != crc.amount() {
            self.guard.bad_checksum.store(true, Ordering::Relaxed);
        }
        let rest = &rest[8..];
        let zeros = rest.iter().take_while(|&&b| b == 0).count();
        let next = &rest[zeros..];
        self.guard.consumed.store((self.len - next.len()) as u64, Ordering::Relaxed);
        if next.starts_with(&GZIP_MAGIC) {
            self.state = GzipState::Header(next);
        } else if !next.is_empty() {
            // CPython stops there too (it would fail on them if it read that far).
            self.guard.trailing.store((self.len - next.len()) as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Read for GzipMembers<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match std::mem::replace(&mut self.state, GzipState::Done) {
                GzipState::Done => return Ok(0),
                GzipState::Header(data) => {
                    let body = &data[gzip_header_len(data)?..];
                    self.state = GzipState::Body(flate2::bufread::DeflateDecoder::new(body), Crc32::new());
                }
                GzipState::Body(mut decoder, mut crc) => {
                    let n = decoder.read(buf)?;
                    let rest = *decoder.get_ref();
                    self.guard.consumed.store((self.len - rest.len()) as u64, Ordering::Relaxed);
                    if n > 0 || buf.is_empty() {
                        crc.update(&buf[..n]);
                        self.state = GzipState::Body(decoder, crc);
                        return Ok(n);
                    }
                    self.end_member(rest, &crc)?;
                }
            }
        }
    }
}

/// Stops a decompressing stream once it inflates past the total-size limit or the ratio limit,
/// whoever reads it.
struct GuardedReader<R> {
    inner: R,
    inflated: u64,
    guard: Guard,
    limits: Limits,
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.guard.tripped() != Trip::None {
            // Stopped for good: read on, a stream whose ratio fell back under the limit would go on
            // after a gap (the bytes of the read that tripped were never handed out).
            return Err(io::Error::other("stream limit reached"));
        }
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let trip = if self.inflated > self.limits.max_total_size {
            Trip::Total
        } else if self.limits.ratio_exceeded(self.inflated, self.guard.consumed.load(Ordering::Relaxed)) {
            Trip::Ratio
        } else {
            return Ok(n);
        };
        self.guard.trip.store(trip as u8, Ordering::Relaxed);
        Err(io::Error::other("stream limit reached"))
    }
}

/// What a stream's guard saw: compressed bytes consumed and why it tripped, if it did.
#[derive(Clone)]
pub(super) struct Guard {
    trip: Arc<AtomicU8>,
    pub(super) consumed: Arc<AtomicU64>,
    /// Where non-zero bytes after the last gzip member start (`NOWHERE`: nowhere).
    trailing: Arc<AtomicU64>,
    /// A gzip member's CRC did not match (its content was read whole).
    pub(super) bad_checksum: Arc<AtomicBool>,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            trip: Arc::default(),
            consumed: Arc::default(),
            trailing: Arc::new(AtomicU64::new(NOWHERE)),
            bad_checksum: Arc::default(),
        }
    }
}

impl Guard {
    pub(super) fn tripped(&self) -> Trip {
        match self.trip.load(Ordering::Relaxed) {
            1 => Trip::Total,
            2 => Trip::Ratio,
            _ => Trip::None,
        }
    }

    /// Bytes hidden after the last gzip member, if any.
    pub(super) fn trailing_offset(&self) -> Option<usize> {
        let at = self.trailing.load(Ordering::Relaxed);
        (at != NOWHERE).then_some(at as usize)
    }
}

/// A decompressed stream (`Send`, so a reader thread can own it), its guard and its source.
pub(super) struct Stream<'a> {
    pub(super) reader: Box<dyn Read + Send + 'a>,
    pub(super) guard: Guard,
    pub(super) container: Container,
    pub(super) source: &'a [u8],
}

pub(super) fn open_stream<'a>(container: Container, data: &'a [u8], limits: &Limits) -> Stream<'a> {
    let guard = Guard::default();
    let input = CountingReader { inner: data, consumed: Arc::clone(&guard.consumed) };
    let decoder: Box<dyn Read + Send + 'a> = match container {
        Container::Gzip => Box::new(GzipMembers::new(data, guard.clone())),
        // Concatenated streams are one stream, as bzip2(1), xz(1) and Python read them.
        Container::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        Container::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(input, true, LZMA_MEMORY_LIMIT_KB)),
        Container::Lzma => Box::new(LzmaStreams::new(data, guard.clone())),
        Container::Lzip => lzip_reader(input),
        Container::Zstd => Box::new(ZstdFrames::new(data, guard.clone())),
        Container::Zip | Container::Tar | Container::Plain => Box::new(input),
    };
    let reader =
        Box::new(GuardedReader { inner: decoder, inflated: 0, guard: guard.clone(), limits: limits.clone() });
    Stream { reader, guard, container, source: data }
}

/// The largest zstd window (log2 bytes) a frame may ask for: libzstd's default limit for
/// decompression, which Python's `compression.zstd` keeps (frames past it fail there too).
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// zstd frames one after the other, as Python's `ZstdFile` (so `tarfile` in Python 3.14) reads
/// them: skippable frames passed over, and reading stopped where what follows a frame is no frame
/// (Python ignores such bytes). Like [`GzipMembers`], it knows where the last frame ends, so those
/// bytes are found and scanned. One decoder context serves every frame: a new one per frame cost
/// ~7 us, so a file of empty frames took a second per MB.
struct ZstdFrames<'a> {
    data: &'a [u8],
    /// Where the compressed input goes on.
    at: usize,
    decoder: Result<zstd::stream::raw::Decoder<'static>, Option<io::Error>>,
    in_frame: bool,
    guard: Guard,
}

impl<'a> ZstdFrames<'a> {
    fn new(data: &'a [u8], guard: Guard) -> Self {
        let decoder = zstd::stream::raw::Decoder::new().and_then(|mut decoder| {
            decoder.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))?;
            Ok(decoder)
        });
        Self { data, at: 0, decoder: decoder.map_err(Some), in_frame: false, guard }
    }
}

impl Read for ZstdFrames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let decoder = match &mut self.decoder {
            Ok(decoder) => decoder,
            Err(err) => return err.take().map_or(Ok(0), Err),
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let rest = &self.data[self.at..];
            if !self.in_frame {
                if rest.is_empty() {
                    return Ok(0);
                }
                if !crate::format::is_zstd_frame(rest) && crate::format::zstd_skippable_len(rest).is_none() {
                    self.guard.trailing.store(self.at as u64, Ordering::Relaxed);
                    self.at = self.data.len();
                    return Ok(0);
                }
                decoder.reinit()?;
                self.in_frame = true;
            }
            let mut input = InBuffer::around(rest);
            let mut output = OutBuffer::around(buf);
            // 0: the frame is done and flushed; anything else: more to read or to flush.
            let left = decoder.run(&mut input, &mut output)?;
            self.at += input.pos();
            self.guard.consumed.store(self.at as u64, Ordering::Relaxed);
            self.in_frame = left != 0;
            let written = output.pos();
            if written > 0 {
                return Ok(written);
            }
            if self.in_frame && input.pos() == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a zstd frame is cut short"));
            }
        }
    }
}

/// An lzip stream's decoder, or the reason it cannot start.
fn lzip_reader<'a>(input: CountingReader<'a>) -> Box<dyn Read + Send + 'a> {
    match lzip_dictionary(input.inner) {
        Some(size) if size <= u64::from(LZMA_MEMORY_LIMIT_KB) * 1024 => {
            Box::new(lzma_rust2::LzipReader::new(input))
        }
        Some(size) => Box::new(Failing(Some(io::Error::other(format!(
            "the lzip stream asks for a {size}-byte dictionary, over the {LZMA_MEMORY_LIMIT_KB} KiB limit"
        ))))),
        None => Box::new(Failing(Some(io::Error::other("not a valid lzip header")))),
    }
}

/// A legacy `.lzma` stream and the streams after it, read as Python's `lzma` reads a file: one
/// stream after another, each of any format its decoder recognises (`.lzma`, xz, lzip), until the
/// data ends; what follows a stream and starts none this reader opens fails the read (see
/// `next_stream`).
struct LzmaStreams<'a> {
    data: &'a [u8],
    state: LzmaState<'a>,
    guard: Guard,
}

enum LzmaState<'a> {
    Alone(Box<lzma_rust2::LzmaReader<CountingReader<'a>>>),
    /// An xz or lzip stream: its decoder reads on to the end of the data.
    Last(Box<dyn Read + Send + 'a>),
    Done,
}

impl<'a> LzmaStreams<'a> {
    fn new(data: &'a [u8], guard: Guard) -> Self {
        let mut streams = Self { data, state: LzmaState::Done, guard };
        streams.state =
            match lzma_rust2::LzmaReader::new_mem_limit(streams.input(0), LZMA_MEMORY_LIMIT_KB, None) {
                Ok(reader) => LzmaState::Alone(Box::new(reader)),
                Err(err) => LzmaState::Last(Box::new(Failing(Some(err)))),
            };
        streams
    }

    /// The data from `at`, its reads counted from there.
    fn input(&self, at: usize) -> CountingReader<'a> {
        self.guard.consumed.store(at as u64, Ordering::Relaxed);
        CountingReader { inner: &self.data[at..], consumed: Arc::clone(&self.guard.consumed) }
    }

    /// The stream that starts at `at`, if one does. Bytes there that start no stream this reader opens
    /// fail the read: Python's `lzma` may read one there (liblzma takes a dictionary size of 0 or one over
    /// our memory limit, and after a stream of known size it takes the end marker that may follow), or
    /// ignore them; either way they are not scanned, so the result must not be clean.
    fn next_stream(&self, at: usize) -> LzmaState<'a> {
        let rest = &self.data[at..];
        if rest.is_empty() {
            return LzmaState::Done;
        }
        if rest.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            let reader = lzma_rust2::XzReader::new_mem_limit(self.input(at), true, LZMA_MEMORY_LIMIT_KB);
            return LzmaState::Last(Box::new(reader));
        }
        if rest.starts_with(b"LZIP") {
            return LzmaState::Last(lzip_reader(self.input(at)));
        }
        if crate::format::is_lzma_alone_header(rest) {
            if let Ok(reader) =
                lzma_rust2::LzmaReader::new_mem_limit(self.input(at), LZMA_MEMORY_LIMIT_KB, None)
            {
                return LzmaState::Alone(Box::new(reader));
            }
        }
        LzmaState::Last(Box::new(Failing(Some(io::Error::other(format!(
            "{} bytes after an .lzma stream start no stream this reader opens (Python's lzma may read one there)",
            rest.len()
        ))))))
    }
}

impl Read for LzmaStreams<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match std::mem::replace(&mut self.state, LzmaState::Done) {
                LzmaState::Done => return Ok(0),
                LzmaState::Last(mut reader) => {
                    let n = reader.read(buf)?;
                    self.state = LzmaState::Last(reader);
                    return Ok(n);
                }
                LzmaState::Alone(mut reader) => {
                    let n = reader.read(buf)?;
                    if n > 0 || buf.is_empty() {
                        self.state = LzmaState::Alone(reader);
                        return Ok(n);
                    }
                    let (input, unused) = reader.into_parts();
                    let at = self.data.len() - input.inner.len() - unused.len();
                    self.state = self.next_stream(at);
                }
            }
        }
    }
}

/// The dictionary size an lzip header asks for (version 1 only, as lzip and liblzma read).
fn lzip_dictionary(data: &[u8]) -> Option<u64> {
    let header = data.get(..6).filter(|h| h.starts_with(b"LZIP") && h[4] == 1)?;
    let base = 1u64 << (header[5] & 0x1f);
    Some(base - base / 16 * u64::from(header[5] >> 5))
}

/// A stream whose decoder could not start: its first read is the reason.
struct Failing(Option<io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(|| io::Error::other("the stream could not be decoded")))
    }
}

/// Reads at most `limit` bytes into `buf`, retrying on interruption; fewer only at end of stream. On an
/// error, `buf` keeps what was read before it.
pub(super) fn read_up_to(reader: &mut dyn Read, limit: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    reader.take(limit as u64).read_to_end(buf).map(drop)
}

pub(super) fn is_checksum_error(err: &io::Error) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    text.contains("checksum") || text.contains("crc")
}

/// The issue for a stream its guard stopped.
pub(super) fn limit_issue(trip: Trip, path: &str, limits: &Limits) -> Issue {
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

/// The issue for a stream that failed with `err` (neither limit tripped it, or one did).
pub(super) fn stream_error_issue(guard: &Guard, err: &io::Error, path: &str, limits: &Limits) -> Issue {
    match guard.tripped() {
        Trip::None if is_checksum_error(err) => Issue::new(
            path,
            IssueKind::BadChecksum,
            format!("a checksum failed: {err}; the rest of the stream was not scanned"),
        )
        .unscanned(),
        Trip::None => Issue::new(
            path,
            IssueKind::Corrupt,
            format!("the compressed stream is truncated or corrupt: {err}; the rest was not scanned"),
        ),
        trip => limit_issue(trip, path, limits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn zero_bytes_between_gzip_members_are_skipped() {
        let mut data = gzip(b"first ");
        data.extend_from_slice(&[0; 7]);
        data.extend_from_slice(&gzip(b"second"));
        data.extend_from_slice(&[0; 3]);
        let mut stream = open_stream(Container::Gzip, &data, &Limits::default());
        let mut out = Vec::new();
        stream.reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"first second");
        assert_eq!(stream.guard.trailing_offset(), None);
        drop(stream);

        data.extend_from_slice(b"tail");
        let mut stream = open_stream(Container::Gzip, &data, &Limits::default());
        out.clear();
        stream.reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"first second");
        assert_eq!(stream.guard.trailing_offset(), Some(data.len() - 4));
    }

    fn read_zstd(data: &[u8]) -> (io::Result<Vec<u8>>, Option<usize>) {
        let mut stream = open_stream(Container::Zstd, data, &Limits::default());
        let mut out = Vec::new();
        let read = stream.reader.read_to_end(&mut out).map(|_| out);
        (read, stream.guard.trailing_offset())
    }

    #[test]
    fn zstd_frames_are_read_one_after_the_other_past_skippable_frames() {
        let skippable = |len: u32| {
            [&0x184d_2a5a_u32.to_le_bytes()[..], &len.to_le_bytes(), &vec![7; len as usize]].concat()
        };
        let mut data = skippable(5);
        data.extend_from_slice(&zstd::encode_all(&b"first "[..], 3).unwrap());
        data.extend_from_slice(&skippable(0));
        data.extend_from_slice(&zstd::encode_all(&b""[..], 1).unwrap().repeat(1000));
        data.extend_from_slice(&zstd::encode_all(&b"second"[..], 19).unwrap());
        assert_eq!(read_zstd(&data).0.unwrap(), b"first second");
        assert_eq!(read_zstd(&data).1, None);

        data.extend_from_slice(b"\0\0tail");
        let (read, trailing) = read_zstd(&data);
        assert_eq!(read.unwrap(), b"first second", "Python ignores bytes after the last frame");
        assert_eq!(trailing, Some(data.len() - 6));
    }

    #[test]
    fn a_zstd_frame_cut_short_or_over_the_window_limit_fails() {
        let frame = zstd::encode_all(&vec![b'a'; 100_000][..], 1).unwrap();
        let err = read_zstd(&frame[..frame.len() - 3]).0.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");

        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder.window_log(ZSTD_WINDOW_LOG_MAX + 1).unwrap();
        encoder.write_all(&[b'b'; 1000]).unwrap();
        let wide = encoder.finish().unwrap();
        let err = read_zstd(&wide).0.unwrap_err();
        assert!(err.to_string().contains("too much memory"), "{err}");
    }
}
