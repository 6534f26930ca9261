//! Format detection from magic bytes (never from the file name: PyPI serves `.tar.gz`, `.tgz`,
//! `.tar.bz2`, `.zip`, `.egg` and `.whl`, and an attacker chooses the name anyway).

/// The outer container of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Gzip,
    Bzip2,
    Xz,
    /// The legacy `.lzma` format (LZMA-alone), which has no magic bytes.
    Lzma,
    Lzip,
    /// zstd frames (Python 3.14's `tarfile` opens them in pip's `r:*` mode, for `.tar` files).
    Zstd,
    Zip,
    Tar,
    Plain,
}

/// The format reported for a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    TarGz,
    TarBz2,
    TarXz,
    TarLzma,
    TarLz,
    TarZst,
    Tar,
    Zip,
    Gzip,
    Bzip2,
    Xz,
    Lzma,
    Lzip,
    Zstd,
    File,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TarGz => "tar.gz",
            Format::TarBz2 => "tar.bz2",
            Format::TarXz => "tar.xz",
            Format::TarLzma => "tar.lzma",
            Format::TarLz => "tar.lz",
            Format::TarZst => "tar.zst",
            Format::Tar => "tar",
            Format::Zip => "zip",
            Format::Gzip => "gzip",
            Format::Bzip2 => "bzip2",
            Format::Xz => "xz",
            Format::Lzma => "lzma",
            Format::Lzip => "lzip",
            Format::Zstd => "zstd",
            Format::File => "file",
        }
    }

    /// The format of a compressed stream, given whether it holds a tarball.
    pub fn compressed(container: Container, holds_tar: bool) -> Format {
        match (container, holds_tar) {
            (Container::Gzip, true) => Format::TarGz,
            (Container::Gzip, false) => Format::Gzip,
            (Container::Bzip2, true) => Format::TarBz2,
            (Container::Bzip2, false) => Format::Bzip2,
            (Container::Xz, true) => Format::TarXz,
            (Container::Xz, false) => Format::Xz,
            (Container::Lzma, true) => Format::TarLzma,
            (Container::Lzma, false) => Format::Lzma,
            (Container::Lzip, true) => Format::TarLz,
            (Container::Lzip, false) => Format::Lzip,
            (Container::Zstd, true) => Format::TarZst,
            (Container::Zstd, false) => Format::Zstd,
            (Container::Zip, _) => Format::Zip,
            (Container::Tar, _) => Format::Tar,
            (Container::Plain, _) => Format::File,
        }
    }
}

pub const TAR_BLOCK: usize = 512;

/// Detect the outer container of `data`.
pub fn detect(data: &[u8]) -> Container {
    if data.starts_with(&[0x1f, 0x8b]) {
        Container::Gzip
    } else if data.starts_with(b"BZh") && data.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        Container::Bzip2
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Container::Xz
    } else if data.starts_with(b"LZIP") {
        Container::Lzip
    } else if starts_zstd(data) {
        Container::Zstd
    } else if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Container::Zip
    } else if is_tar_header(data) {
        Container::Tar
    } else if crate::zipdir::is_prefixed_zip(data) {
        Container::Zip
    } else if is_lzma_alone_tarball(data) {
        Container::Lzma
    } else {
        Container::Plain
    }
}

/// Whether `frame` starts with the magic number of a zstd frame libzstd decodes: the current
/// format, or a legacy one (v0.1 to v0.7, which libzstd still reads when built with legacy support,
/// as system builds that CPython links often are).
pub(crate) fn is_zstd_frame(frame: &[u8]) -> bool {
    matches!(frame, [0x1e | 0x22..=0x28, 0xb5, 0x2f, 0xfd, ..])
}

/// The length of the zstd skippable frame at the start of `data`, if one is there whole.
pub(crate) fn zstd_skippable_len(data: &[u8]) -> Option<usize> {
    match data {
        [0x50..=0x5f, 0x2a, 0x4d, 0x18, a, b, c, d, ..] => {
            let len = 8usize.checked_add(u32::from_le_bytes([*a, *b, *c, *d]) as usize)?;
            (len <= data.len()).then_some(len)
        }
        _ => None,
    }
}

/// Whether `data` is zstd: a frame, behind any number of skippable frames (which libzstd, and so
/// Python's `compression.zstd`, passes over). Skippable frames alone decompress to nothing.
fn starts_zstd(mut data: &[u8]) -> bool {
    while let Some(len) = zstd_skippable_len(data) {
        data = &data[len..];
    }
    is_zstd_frame(data)
}

/// Whether `data` starts with a legacy `.lzma` header liblzma's decoder takes (it is picky where
/// the format is not: the dictionary size and the uncompressed size must be plausible).
pub(crate) fn is_lzma_alone_header(data: &[u8]) -> bool {
    let Some(header) = data.get(..13) else { return false };
    let dict = u32::from_le_bytes(header[1..5].try_into().expect("four bytes"));
    let size = u64::from_le_bytes(header[5..13].try_into().expect("eight bytes"));
    let dict_ok = dict == u32::MAX || {
        let top = 31 - dict.max(1).leading_zeros();
        dict == 1 << top || (top > 0 && dict == (1 << top) | (1 << (top - 1)))
    };
    header[0] <= 224 && dict_ok && (size == u64::MAX || size < 1 << 38)
}

/// Whether `data` is a tarball in the legacy `.lzma` format. The format has no magic bytes:
/// Python's `lzma` (so `tarfile`, and pip for `.tar.lzma`, `.tlz` and `.tar.lz` sdists) takes
/// anything whose 13-byte header liblzma accepts: a properties byte, a dictionary size of 2^n or
/// 2^n + 2^(n-1) bytes, and an unknown or plausible uncompressed size. Only a stream that then
/// inflates to a tar header counts (pip opens nothing else), so text and binary files that happen
/// to look like such a header stay files.
fn is_lzma_alone_tarball(data: &[u8]) -> bool {
    if !is_lzma_alone_header(data) {
        return false;
    }
    let Ok(reader) = lzma_rust2::LzmaReader::new_mem_limit(data, crate::walk::LZMA_MEMORY_LIMIT_KB, None)
    else {
        return false;
    };
    let mut head = Vec::with_capacity(2 * TAR_BLOCK);
    std::io::Read::read_to_end(&mut std::io::Read::take(reader, 2 * TAR_BLOCK as u64), &mut head).is_ok()
        && is_tar_header(&head)
}

/// Every container pip could see in `data`, the one its magic bytes name first: a tarball that
/// also parses at offset 0 behind compressed magic (pip reads a `.tar` file as a plain tarball),
/// and a zip found from its end behind anything else (pip unzips whatever `zipfile.is_zipfile`
/// accepts, whatever its name). `[Plain]` when there is none.
pub fn interpretations(data: &[u8]) -> Vec<Container> {
    let primary = detect(data);
    let mut found = vec![primary];
    if matches!(
        primary,
        Container::Gzip | Container::Bzip2 | Container::Xz | Container::Lzip | Container::Zstd
    ) && is_tar_header(data)
    {
        found.push(Container::Tar);
    }
    if primary != Container::Zip && primary != Container::Plain && crate::zipdir::is_prefixed_zip(data) {
        found.push(Container::Zip);
    }
    found
}

/// Whether `data` starts with a tar header: the ustar magic, or (for old v7 archives) a header
/// whose checksum `tarfile` accepts. A tarball that is all end-of-archive zeros counts too.
pub fn is_tar_header(data: &[u8]) -> bool {
    let Some(block) = data.get(..TAR_BLOCK) else {
        return false;
    };
    if &block[257..262] == b"ustar" {
        return true;
    }
    if block.iter().all(|&b| b == 0) {
        // An empty tarball is nothing but zeros. Anything else that starts with zeros (a disk
        // image, a sparse file's hole) is a file: scanned whole rather than as a tarball that
        // ends at once and hides the rest.
        return data.len() >= 2 * TAR_BLOCK && data.iter().all(|&b| b == 0);
    }
    crate::walk::tarfile::checksum_matches(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_magic_bytes() {
        assert_eq!(detect(b"\x1f\x8b\x08\x00"), Container::Gzip);
        assert_eq!(detect(b"BZh91AY&SY"), Container::Bzip2);
        assert_eq!(detect(b"BZhx"), Container::Plain);
        assert_eq!(detect(b"\xfd7zXZ\x00\x00"), Container::Xz);
        assert_eq!(detect(b"PK\x03\x04rest"), Container::Zip);
        assert_eq!(detect(b"PK\x05\x06"), Container::Zip);
        assert_eq!(detect(b"print('hi')"), Container::Plain);
        assert_eq!(detect(b""), Container::Plain);
        assert_eq!(detect(&[0u8; 1024]), Container::Tar);
        assert_eq!(detect(&[0u8; 512]), Container::Plain);
        let mut zeros_then_data = vec![0u8; 4096];
        zeros_then_data.push(b'x');
        assert_eq!(detect(&zeros_then_data), Container::Plain);
        // An end record with nothing valid before it is not a zip.
        assert_eq!(detect(b"print('PK\x05\x06')\n"), Container::Plain);
        let mut fake = b"#!/bin/sh\n".to_vec();
        fake.extend_from_slice(b"PK\x05\x06");
        fake.extend_from_slice(&[0xff; 18]);
        assert_eq!(detect(&fake), Container::Plain);
    }

    #[test]
    fn lzma_alone_needs_a_header_liblzma_takes_and_a_tarball_inside() {
        assert_eq!(detect(b"LZIP\x01\x14"), Container::Lzip);
        assert_eq!(detect(b"\x28\xb5\x2f\xfd\x00"), Container::Zstd);
        assert_eq!(detect(b"\x27\xb5\x2f\xfd\x00"), Container::Zstd, "a legacy (v0.7) frame");
        assert_eq!(detect(b"\x50\x2a\x4d\x18\x02\x00\x00\x00ab\x28\xb5\x2f\xfd"), Container::Zstd);
        assert_eq!(detect(b"\x5f\x2a\x4d\x18\x00\x00\x00\x00"), Container::Plain, "skippable frames only");
        assert_eq!(
            detect(b"\x50\x2a\x4d\x18\xff\x00\x00\x00\x28\xb5\x2f\xfd"),
            Container::Plain,
            "cut short"
        );
        // The header `xz --format=lzma` writes (8 MiB dictionary, unknown size), then no LZMA data.
        let mut header = vec![0x5d, 0, 0, 0x80, 0];
        header.extend_from_slice(&[0xff; 8]);
        assert!(!is_lzma_alone_tarball(&[header.as_slice(), b"print('hi')\n"].concat()));
        // A dictionary size that is neither 2^n nor 2^n + 2^(n-1): liblzma refuses it.
        let mut odd = header.clone();
        odd[1..5].copy_from_slice(&0x0070_0001u32.to_le_bytes());
        assert!(!is_lzma_alone_tarball(&odd));
    }
}
