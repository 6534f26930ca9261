//! Format detection from magic bytes (never from the file name: PyPI serves `.tar.gz`, `.tgz`,
//! `.tar.bz2`, `.zip`, `.egg` and `.whl`, and an attacker chooses the name anyway).

/// The outer container of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Gzip,
    Bzip2,
    Xz,
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
    Tar,
    Zip,
    Gzip,
    Bzip2,
    Xz,
    File,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TarGz => "tar.gz",
            Format::TarBz2 => "tar.bz2",
            Format::TarXz => "tar.xz",
            Format::Tar => "tar",
            Format::Zip => "zip",
            Format::Gzip => "gzip",
            Format::Bzip2 => "bzip2",
            Format::Xz => "xz",
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
    } else if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Container::Zip
    } else if is_tar_header(data) {
        Container::Tar
    } else if crate::zipdir::is_prefixed_zip(data) {
        Container::Zip
    } else {
        Container::Plain
    }
}

/// Every container pip could see in `data`, the one its magic bytes name first: a tarball that
/// also parses at offset 0 behind compressed magic (pip reads a `.tar` file as a plain tarball),
/// and a zip found from its end behind anything else (pip unzips whatever `zipfile.is_zipfile`
/// accepts, whatever its name). `[Plain]` when there is none.
pub fn interpretations(data: &[u8]) -> Vec<Container> {
    let primary = detect(data);
    let mut found = vec![primary];
    if matches!(primary, Container::Gzip | Container::Bzip2 | Container::Xz) && is_tar_header(data) {
        found.push(Container::Tar);
    }
    if primary != Container::Zip && primary != Container::Plain && crate::zipdir::is_prefixed_zip(data) {
        found.push(Container::Zip);
    }
    found
}

/// Whether `data` starts with a tar header: the ustar magic, or (for old v7 archives) a header
/// whose checksum is right. A tarball that is all end-of-archive zeros counts too.
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
    let field = &block[148..156];
    let digits: Vec<u8> =
        field.iter().copied().skip_while(|b| *b == b' ').take_while(|b| (b'0'..=b'7').contains(b)).collect();
    if digits.is_empty() {
        return false;
    }
    let Ok(stored) = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or(""), 8) else {
        return false;
    };
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    stored == computed
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
}
