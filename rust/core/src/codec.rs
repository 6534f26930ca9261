//! The byte codec of what the core persists (compiled routed rule sets, content-cache entries):
//! little-endian integers and length-prefixed byte strings, read with bounds checks only.

/// The data ended inside a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

/// A `u32` (a count or a length); counts and lengths over 4 GiB are a bug, not data.
pub(crate) fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).expect("counts and lengths fit in 32 bits").to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// A byte string with a `u32` length.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A byte string with a `u64` length (for parts that may pass 4 GiB).
pub(crate) fn put_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads what the `put_*` functions wrote, never past the end.
pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if n > self.rest.len() {
            return Err(Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn blob(&mut self) -> Result<&'a [u8], Truncated> {
        let len = usize::try_from(self.u64()?).map_err(|_| Truncated)?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut out = Vec::new();
        put_u32(&mut out, 7);
        put_bytes(&mut out, b"name");
        put_blob(&mut out, b"part");
        put_u64(&mut out, u64::MAX);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.u32(), Ok(7));
        assert_eq!(reader.bytes(), Ok(&b"name"[..]));
        assert_eq!(reader.blob(), Ok(&b"part"[..]));
        assert_eq!(reader.u64(), Ok(u64::MAX));
        assert!(reader.rest.is_empty());
        let mut short = Reader::new(&out[..6]);
        short.u32().unwrap();
        assert_eq!(short.bytes(), Err(Truncated));
    }
}
