//! Decompressed streams under the stream limits: gzip members read as CPython's `gzip` reads them,
//! bzip2 and xz streams, and the guard that stops any of them past the total-size or ratio limit.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::format::Container;
use crate::issue::{Issue, IssueKind};
use crate::limits::Limits;

/// Largest LZMA dictionary an xz stream may ask for (KiB); real packages use at most 64 MiB.
const XZ_MEMORY_LIMIT_KB: u32 = 256 * 1024;
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
/// reads them: zero bytes between or after members are skipped, and the next member is read
/// whatever came before. Unlike a multi-member decoder it knows exactly where the last member
/// ends, so bytes after it are found and scanned instead of failing the stream. A CRC mismatch
/// in a member's trailer is recorded and the next member read: the content came out whole, only
/// its checksum is wrong.
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
            let zeros = rest.iter().take_while(|&&b| b == 0).count();
            let next = &rest[zeros..];
            if next.starts_with(&[0x1f, 0x8b]) {
                self.decoder = Some(flate2::bufread::GzDecoder::new(next));
            } else if !next.is_empty() {
                // CPython stops there too (it would fail on them if it read that far).
                self.guard.trailing.store((self.len - next.len()) as u64, Ordering::Relaxed);
                return Ok(0);
            } else {
                return Ok(0);
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
        Container::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(input, true, XZ_MEMORY_LIMIT_KB)),
        Container::Zip | Container::Tar | Container::Plain => Box::new(input),
    };
    let reader =
        Box::new(GuardedReader { inner: decoder, inflated: 0, guard: guard.clone(), limits: limits.clone() });
    Stream { reader, guard, container, source: data }
}

/// Reads at most `limit` bytes, retrying on interruption; fewer only at end of stream.
pub(super) fn read_up_to(reader: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit);
    reader.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
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
}
