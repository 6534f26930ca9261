//! CRC-32, the checksum of zip and gzip members: every inflated byte of an archive goes through it.

/// The CRC-32 of the bytes given to `update`, and how many there were. libdeflate's (carry-less
/// multiply folding, AVX-512 where the CPU has it) ran at 25-29 GB/s here, flate2's with the zlib-rs
/// backend at 3.6 GB/s, on 4 KiB and 1 MiB pieces alike.
pub(crate) struct Crc32 {
    crc: libdeflater::Crc,
    len: u64,
}

impl Crc32 {
    pub(crate) fn new() -> Self {
        Self { crc: libdeflater::Crc::new(), len: 0 }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.crc.update(data);
        self.len += data.len() as u64;
    }

    pub(crate) fn sum(&self) -> u32 {
        self.crc.sum()
    }

    /// The byte count modulo 2^32, as a gzip member's trailer stores it.
    pub(crate) fn amount(&self) -> u32 {
        self.len as u32
    }
}

/// The CRC-32 of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(data);
    crc.sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against flate2's (zlib's) CRC-32 and byte count, whole and in pieces of every length up to 70,
    /// over lengths around the folding's block sizes.
    #[test]
    fn matches_zlibs_crc_and_count_whole_and_in_pieces() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (0..300).chain([511, 512, 513, 1023, 1024, 1025, 4095, 4096, 4097, 5000]) {
            let mut reference = flate2::Crc::new();
            reference.update(&data[..len]);
            assert_eq!(crc32(&data[..len]), reference.sum(), "length {len}");
            for piece in 1..=70 {
                let mut crc = Crc32::new();
                data[..len].chunks(piece).for_each(|chunk| crc.update(chunk));
                assert_eq!(
                    (crc.sum(), crc.amount()),
                    (reference.sum(), reference.amount()),
                    "{len} by {piece}"
                );
            }
        }
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926); // the check value of CRC-32/ISO-HDLC
    }

    #[test]
    fn the_count_wraps_as_gzips_isize() {
        let mut crc = Crc32::new();
        crc.len = u64::from(u32::MAX);
        crc.update(b"ab");
        assert_eq!(crc.amount(), 1);
    }
}
