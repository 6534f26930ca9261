//! A deterministic generator of hostile archives. Nothing here materialises an archive's inflated
//! size: bombs are built by compressing one small unit once and repeating its compressed bytes
//! (each repetition is a self-contained run of deflate blocks), with the CRC and size of the
//! whole computed by combining the unit's. A 4 GiB gzip bomb is built in milliseconds from a few
//! MB of output. Every builder is a pure function of its arguments (no randomness, no clock).
#![allow(dead_code)]

use std::io::Write;

use crc32fast::Hasher as Crc;
use flate2::Compression;

/// Compressed, non-final deflate blocks for `data`, from a fresh compressor (so they refer to
/// nothing before them and may be repeated or concatenated freely), ending byte-aligned.
pub fn deflate_blocks(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).unwrap();
    // A sync flush ends the blocks on a byte boundary without the final-block bit.
    encoder.flush().unwrap();
    // Dropping the encoder finishes its own copy; the blocks taken here stay non-final.
    encoder.get_ref().clone()
}

/// The last, empty, final block that ends a deflate stream.
pub const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// Builds a deflate stream (and its CRC-32 and length) from parts, streaming: repeated parts are
/// compressed once.
#[derive(Default)]
pub struct DeflateStream {
    pub blocks: Vec<u8>,
    pub crc: Crc,
    pub len: u64,
}

impl DeflateStream {
    pub fn new() -> Self {
        Self { blocks: Vec::new(), crc: Crc::new(), len: 0 }
    }

    pub fn part(mut self, data: &[u8]) -> Self {
        self.blocks.extend_from_slice(&deflate_blocks(data));
        self.crc.update(data);
        self.len += data.len() as u64;
        self
    }

    /// `unit` repeated `count` times; only one copy is ever compressed.
    pub fn repeat(mut self, unit: &[u8], count: u64) -> Self {
        let blocks = deflate_blocks(unit);
        let mut unit_crc = Crc::new();
        unit_crc.update(unit);
        for _ in 0..count {
            self.blocks.extend_from_slice(&blocks);
            self.crc.combine(&unit_crc);
        }
        self.len += unit.len() as u64 * count;
        self
    }

    /// `len` zero bytes, in 1 MiB units (plus a remainder).
    pub fn zeros(self, len: u64) -> Self {
        const UNIT: u64 = 1 << 20;
        let zeros = vec![0u8; UNIT as usize];
        let rest = (len % UNIT) as usize;
        self.repeat(&zeros, len / UNIT).part(&zeros[..rest])
    }

    /// The raw deflate stream.
    pub fn deflate(mut self) -> Vec<u8> {
        self.blocks.extend_from_slice(&DEFLATE_END);
        self.blocks
    }

    /// The stream as one gzip member.
    pub fn gzip(self) -> Vec<u8> {
        let (crc, len) = (self.crc.clone().finalize(), self.len);
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        out.extend_from_slice(&self.deflate());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out
    }
}

/// Mostly zeros with a few bytes from a fixed sequence: compresses a few hundred to one, under
/// the default 1000:1 ratio limit, so it exercises the size limits rather than the ratio one.
pub fn low_ratio_unit(len: usize) -> Vec<u8> {
    let mut unit = vec![0u8; len];
    let mut x: u32 = 0x9e37_79b9;
    for i in (0..len).step_by(512) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        unit[i] = (x & 0xff) as u8 | 1;
        unit[i + 1] = (x >> 8) as u8;
    }
    unit
}

/// A tar header block. `size` is written in octal when it fits in 11 digits, else base-256.
pub fn tar_header(name: &str, size: u64, kind: u8) -> [u8; 512] {
    tar_header_raw(name.as_bytes(), size, kind, b"")
}

pub fn tar_header_raw(name: &[u8], size: u64, kind: u8, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0001750");
    h[116..123].copy_from_slice(b"0001750");
    set_tar_size(&mut h, size);
    h[136..147].copy_from_slice(b"14712345670");
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    tar_checksum(&mut h);
    h
}

pub fn set_tar_size(h: &mut [u8; 512], size: u64) {
    if size < 8u64.pow(11) {
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[135] = 0;
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
}

pub fn tar_checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// A member's header and content, padded to whole blocks.
pub fn tar_member(name: &str, content: &[u8]) -> Vec<u8> {
    let mut out = tar_header(name, content.len() as u64, b'0').to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The two zero blocks that end a tar archive.
pub const TAR_END: [u8; 1024] = [0; 1024];

/// A PAX extended header ('x') with the given records, then the member it describes.
pub fn pax_member(records: &[(&str, &str)], header: [u8; 512], content: &[u8]) -> Vec<u8> {
    let mut body = String::new();
    for (key, value) in records {
        // The length counts itself: find the fixed point.
        let rest = format!(" {key}={value}\n");
        let mut len = rest.len() + 1;
        while format!("{len}{rest}").len() != len {
            len += 1;
        }
        body.push_str(&format!("{len}{rest}"));
    }
    let mut out = tar_header("PaxHeaders/x", body.len() as u64, b'x').to_vec();
    out.extend_from_slice(body.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&header);
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// An old-GNU sparse member ('S'): `real_size` bytes, all holes but `chunks` (offset, data).
pub fn gnu_sparse_member(name: &str, real_size: u64, chunks: &[(u64, &[u8])]) -> Vec<u8> {
    assert!(chunks.len() <= 3);
    let stored: u64 = chunks.iter().map(|(_, d)| d.len().div_ceil(512) as u64 * 512).sum();
    let mut h = tar_header(name, stored, b'S');
    // Old GNU layout: magic "ustar  \0", sparse map at 386, real size at 483.
    h[257..265].copy_from_slice(b"ustar  \0");
    for (i, (offset, data)) in chunks.iter().enumerate() {
        let at = 386 + i * 24;
        let padded = data.len().div_ceil(512) as u64 * 512;
        h[at..at + 11].copy_from_slice(format!("{offset:011o}").as_bytes());
        h[at + 12..at + 23].copy_from_slice(format!("{padded:011o}").as_bytes());
    }
    // A trailing hole is an empty block at the real size.
    let at = 386 + chunks.len() * 24;
    h[at..at + 11].copy_from_slice(format!("{real_size:011o}").as_bytes());
    h[at + 12..at + 23].copy_from_slice(b"00000000000");
    h[483..494].copy_from_slice(format!("{real_size:011o}").as_bytes());
    tar_checksum(&mut h);
    let mut out = h.to_vec();
    for (_, data) in chunks {
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out
}

/// One zip member, written exactly as described (lies included).
#[derive(Clone)]
pub struct ZipMember {
    pub name: Vec<u8>,
    /// Name in the local header when it should differ from the central directory's.
    pub local_name: Option<Vec<u8>>,
    pub method: u16,
    pub flags: u16,
    pub crc: u32,
    /// Compressed bytes.
    pub data: Vec<u8>,
    /// Uncompressed size written in the headers.
    pub size: u64,
    /// Compressed size written in the headers (default: the data's length).
    pub compressed_size: Option<u64>,
    /// Write the sizes in a zip64 extra field.
    pub zip64: bool,
    pub system: u8,
    pub external_attr: u32,
}

impl ZipMember {
    pub fn stored(name: &str, content: &[u8]) -> Self {
        let mut crc = Crc::new();
        crc.update(content);
        Self {
            name: name.as_bytes().to_vec(),
            local_name: None,
            method: 0,
            flags: 0,
            crc: crc.finalize(),
            data: content.to_vec(),
            size: content.len() as u64,
            compressed_size: None,
            zip64: false,
            system: 3,
            external_attr: 0o100644 << 16,
        }
    }

    pub fn deflated(name: &str, content: &[u8]) -> Self {
        let stream = DeflateStream::new().part(content);
        Self::from_stream(name, stream)
    }

    pub fn from_stream(name: &str, stream: DeflateStream) -> Self {
        let (crc, size) = (stream.crc.clone().finalize(), stream.len);
        Self { method: 8, crc, size, data: stream.deflate(), ..Self::stored(name, b"") }
    }
}

/// One member per compression method the reader supports besides stored and deflated: deflate64
/// (a zlib stream without long runs is valid deflate64), bzip2, xz and zstd (two members, which a
/// thread's decoder context may both serve), each holding `content`.
pub fn zip_methods(content: &[u8]) -> Vec<ZipMember> {
    let deflated = ZipMember::deflated("m/deflate64.py", content);
    vec![
        ZipMember { method: 9, ..deflated },
        ZipMember {
            method: 12,
            data: crate::common::bzip2(content),
            ..ZipMember::stored("m/bzip2.py", content)
        },
        ZipMember { method: 95, data: crate::common::xz(content), ..ZipMember::stored("m/xz.py", content) },
        ZipMember {
            method: 93,
            data: crate::common::zstd(content),
            ..ZipMember::stored("m/zstd.py", content)
        },
        ZipMember {
            method: 93,
            data: crate::common::zstd(content),
            ..ZipMember::stored("m/zstd2.py", content)
        },
    ]
}

/// Extra bytes placed around a zip's structures.
#[derive(Default, Clone)]
pub struct ZipLayout {
    /// Before the first local header (offsets are written relative to the zip itself).
    pub prefix: Vec<u8>,
    /// After the data of the member with this index.
    pub gaps: Vec<(usize, Vec<u8>)>,
    pub comment: Vec<u8>,
    /// After the end-of-central-directory record and comment.
    pub suffix: Vec<u8>,
    /// Central directory records that point at the local header of another member (by index):
    /// (name, target member).
    pub aliases: Vec<(String, usize)>,
}

fn zip64_extra(size: u64, compressed: u64) -> Vec<u8> {
    let mut extra = vec![1, 0, 16, 0];
    extra.extend_from_slice(&size.to_le_bytes());
    extra.extend_from_slice(&compressed.to_le_bytes());
    extra
}

/// A zip archive exactly as described, including whatever lies the members carry.
pub fn zip_raw(members: &[ZipMember], layout: &ZipLayout) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for (index, m) in members.iter().enumerate() {
        offsets.push(out.len() as u64);
        let compressed = m.compressed_size.unwrap_or(m.data.len() as u64);
        let name = m.local_name.as_ref().unwrap_or(&m.name);
        let extra = if m.zip64 { zip64_extra(m.size, compressed) } else { vec![] };
        let (size32, comp32) =
            if m.zip64 { (u32::MAX, u32::MAX) } else { (m.size as u32, compressed as u32) };
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0]);
        out.extend_from_slice(&m.flags.to_le_bytes());
        out.extend_from_slice(&m.method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&m.crc.to_le_bytes());
        out.extend_from_slice(&comp32.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&extra);
        out.extend_from_slice(&m.data);
        for (after, bytes) in &layout.gaps {
            if *after == index {
                out.extend_from_slice(bytes);
            }
        }
    }
    let central_start = out.len() as u64;
    let mut records = 0u64;
    let mut record = |out: &mut Vec<u8>, name: &[u8], m: &ZipMember, offset: u64| {
        let compressed = m.compressed_size.unwrap_or(m.data.len() as u64);
        let extra = if m.zip64 { zip64_extra(m.size, compressed) } else { vec![] };
        let (size32, comp32) =
            if m.zip64 { (u32::MAX, u32::MAX) } else { (m.size as u32, compressed as u32) };
        out.extend_from_slice(b"PK\x01\x02");
        out.extend_from_slice(&[20, m.system, 20, 0]);
        out.extend_from_slice(&m.flags.to_le_bytes());
        out.extend_from_slice(&m.method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&m.crc.to_le_bytes());
        out.extend_from_slice(&comp32.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&m.external_attr.to_le_bytes());
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&extra);
        records += 1;
    };
    for (m, offset) in members.iter().zip(&offsets) {
        record(&mut out, &m.name, m, *offset);
    }
    for (name, target) in &layout.aliases {
        record(&mut out, name.as_bytes(), &members[*target], offsets[*target]);
    }
    let central_size = out.len() as u64 - central_start;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0, 0, 0, 0]);
    let count = records.min(0xffff) as u16;
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central_size as u32).to_le_bytes());
    out.extend_from_slice(&(central_start as u32).to_le_bytes());
    out.extend_from_slice(&(layout.comment.len() as u16).to_le_bytes());
    out.extend_from_slice(&layout.comment);
    out.extend_from_slice(&layout.suffix);
    let mut whole = layout.prefix.clone();
    whole.extend_from_slice(&out);
    whole
}

/// The overlapping-entries zip bomb (David Fifield, "A better zip bomb", 2019): every entry's
/// compressed data starts with stored blocks that quote the next entries' local headers and ends
/// with one shared deflate "kernel". `count` entries each inflate to the kernel plus the quoted
/// headers, from an archive barely larger than the kernel.
pub fn overlapping_zip_bomb(count: usize, kernel: DeflateStream) -> Vec<u8> {
    let kernel_crc = kernel.crc.clone();
    let kernel_len = kernel.len;
    let kernel = kernel.deflate();
    let names: Vec<String> = (0..count).map(|i| format!("bomb/{i:05}.bin")).collect();
    // Build the local headers from the last to the first: each quotes the ones after it.
    let mut headers: Vec<Vec<u8>> = vec![Vec::new(); count];
    let mut crcs = vec![Crc::new(); count];
    let mut sizes = vec![0u64; count];
    let mut compressed = vec![0u64; count];
    let mut tail_crc = kernel_crc;
    let mut tail_len = kernel_len;
    let mut tail_compressed = kernel.len() as u64;
    for i in (0..count).rev() {
        crcs[i] = tail_crc.clone();
        sizes[i] = tail_len;
        compressed[i] = tail_compressed;
        let mut h = b"PK\x03\x04".to_vec();
        h.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]);
        h.extend_from_slice(&crcs[i].clone().finalize().to_le_bytes());
        h.extend_from_slice(&(compressed[i] as u32).to_le_bytes());
        h.extend_from_slice(&(sizes[i] as u32).to_le_bytes());
        h.extend_from_slice(&(names[i].len() as u16).to_le_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(names[i].as_bytes());
        // What the previous entry sees first: a stored block quoting this header.
        let mut quoted = Crc::new();
        quoted.update(&h);
        quoted.combine(&tail_crc);
        tail_crc = quoted;
        tail_len += h.len() as u64;
        tail_compressed += 5 + h.len() as u64;
        headers[i] = h;
    }
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for i in 0..count {
        offsets.push(out.len() as u64);
        out.extend_from_slice(&headers[i]);
        if i + 1 < count {
            let len = headers[i + 1].len() as u16;
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
        }
    }
    out.extend_from_slice(&kernel);
    let central_start = out.len() as u64;
    for i in 0..count {
        out.extend_from_slice(b"PK\x01\x02");
        out.extend_from_slice(&[20, 3, 20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]);
        out.extend_from_slice(&crcs[i].clone().finalize().to_le_bytes());
        out.extend_from_slice(&(compressed[i] as u32).to_le_bytes());
        out.extend_from_slice(&(sizes[i] as u32).to_le_bytes());
        out.extend_from_slice(&(names[i].len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        out.extend_from_slice(&(offsets[i] as u32).to_le_bytes());
        out.extend_from_slice(names[i].as_bytes());
    }
    let central_size = out.len() as u64 - central_start;
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&(central_size as u32).to_le_bytes());
    out.extend_from_slice(&(central_start as u32).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// A tar stream of `count` members, compressed as it is produced (the tar itself is never held).
pub fn many_members_tar_gz(count: usize, content: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    for i in 0..count {
        encoder.write_all(&tar_member(&format!("pkg/d{:03}/m{i:07}.py", i % 997), &content(i))).unwrap();
    }
    encoder.write_all(&TAR_END).unwrap();
    encoder.finish().unwrap()
}

/// Every hostile input of the corpus by name, small enough to seed the fuzzers (the bombs are a
/// few KB to a few MB compressed).
pub fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let marker = b"import os\nEVIL_MARKER = 1\n";
    let mut tar_then_junk = tar_member("p/a.py", marker);
    tar_then_junk.extend_from_slice(&TAR_END);
    tar_then_junk.extend_from_slice(b"EVIL_MARKER hidden after the end marker");
    let bomb_tar = {
        let header = tar_header("bomb/zeros.bin", 1 << 30, b'0');
        DeflateStream::new().part(&tar_member("bomb/before.py", marker)).part(&header).zeros(1 << 30).gzip()
    };
    let longname = {
        let mut t = tar_header("././@LongLink", 8 << 20, b'L').to_vec();
        t.extend_from_slice(&vec![b'a'; 8 << 20]);
        t
    };
    vec![
        ("tar_gz_bomb.tar.gz", bomb_tar),
        ("gzip_bomb.gz", DeflateStream::new().zeros(64 << 20).gzip()),
        (
            "zip_bomb.zip",
            zip_raw(
                &[ZipMember::from_stream("zeros.bin", DeflateStream::new().zeros(64 << 20))],
                &ZipLayout::default(),
            ),
        ),
        ("overlap.zip", overlapping_zip_bomb(16, DeflateStream::new().repeat(&low_ratio_unit(1 << 16), 4))),
        ("hidden_after_end.tar", tar_then_junk.clone()),
        ("hidden_after_end.tar.gz", crate::common::gzip(&tar_then_junk)),
        ("longname.tar.gz", DeflateStream::new().part(&longname).gzip()),
        (
            "pax_size.tar",
            [pax_member(&[("size", "26")], tar_header("p/pax.py", 0, b'0'), marker), TAR_END.to_vec()]
                .concat(),
        ),
        (
            "sparse.tar",
            [gnu_sparse_member("p/sparse.bin", 1 << 20, &[(4096, marker)]), TAR_END.to_vec()].concat(),
        ),
        (
            "hidden.zip",
            zip_raw(
                &[ZipMember::deflated("a.py", marker), ZipMember::stored("b.txt", b"hello")],
                &ZipLayout {
                    prefix: b"#!/bin/sh\nEVIL_MARKER\n".to_vec(),
                    gaps: vec![(0, b"EVIL_MARKER between".to_vec())],
                    comment: b"EVIL_MARKER comment".to_vec(),
                    suffix: b"EVIL_MARKER after".to_vec(),
                    aliases: vec![("alias.py".into(), 0)],
                },
            ),
        ),
        (
            "zip64_lie.zip",
            zip_raw(
                &[ZipMember { zip64: true, size: 1 << 62, ..ZipMember::deflated("big.py", marker) }],
                &ZipLayout::default(),
            ),
        ),
        ("empty.zip", zip_raw(&[], &ZipLayout::default())),
        ("methods.zip", zip_raw(&zip_methods(marker), &ZipLayout::default())),
        ("empty.tar", TAR_END.to_vec()),
        (
            "traversal.tar",
            [tar_member("../../etc/evil.py", marker), tar_member("/abs.py", marker), TAR_END.to_vec()]
                .concat(),
        ),
        (
            "duplicates.zip",
            zip_raw(
                &[ZipMember::deflated("setup.py", marker), ZipMember::deflated("setup.py", b"clean")],
                &ZipLayout::default(),
            ),
        ),
    ]
}
