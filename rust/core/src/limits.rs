//! Hostile-input limits. Every limit has a safe default and, when hit, produces an [`Issue`]
//! naming the member and the limit.
//!
//! [`Issue`]: crate::Issue

use std::time::Duration;

/// Bounds on the work one distribution may cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest inflated size of a single member, in bytes.
    pub max_member_size: u64,
    /// Largest inflated size of all members of one distribution together, in bytes.
    pub max_total_size: u64,
    /// Most members (of any type) read from one distribution, nested archives included.
    pub max_members: u64,
    /// Largest inflated/compressed ratio of a member (zip) or of a compressed stream (tarballs).
    pub max_ratio: u64,
    /// How deep archives inside archives are opened (0: members are never opened as archives).
    pub max_depth: u32,
    /// YARA-X scan timeout per file.
    pub timeout: Duration,
}

/// Ratios are only judged once this much has been inflated: tiny members compress arbitrarily well.
pub const RATIO_GRACE_BYTES: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_member_size: 256_000_000,
            max_total_size: 2_000_000_000,
            max_members: 100_000,
            max_ratio: 1000,
            max_depth: 3,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// True when `inflated` bytes out of `compressed` input bytes exceed the ratio limit: the exact
    /// ratio, not its integer part (which let up to `compressed - 1` bytes more through).
    pub fn ratio_exceeded(&self, inflated: u64, compressed: u64) -> bool {
        inflated > RATIO_GRACE_BYTES && inflated > self.max_ratio.saturating_mul(compressed.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_judged_exactly_past_the_grace_bytes() {
        let limits = Limits { max_ratio: 800, ..Limits::default() };
        let compressed = 2_000; // 1.6 MB at 800:1, past the grace bytes
        assert!(!limits.ratio_exceeded(800 * compressed, compressed));
        assert!(limits.ratio_exceeded(800 * compressed + 1, compressed)); // its integer part is still 800
        assert!(!limits.ratio_exceeded(RATIO_GRACE_BYTES, 1)); // tiny members compress arbitrarily well
        assert!(!Limits { max_ratio: u64::MAX, ..Limits::default() }.ratio_exceeded(u64::MAX, 2));
    }
}
