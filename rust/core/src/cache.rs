//! The content cache's persistent form: one entry per distinct file content, keyed by its
//! BLAKE3 hash (mixed with the filetype class's rules when the set is routed, see
//! [`crate::routing`]), holding the rules that matched it (before `filetype` filtering) and their
//! patterns.
//!
//! An entry is only meaningful for the rule set that produced it; callers key stored entries by
//! [`RuleSet::hash`](crate::RuleSet::hash) too. Rules are stored by name, not by position, so a
//! decoded entry that names a rule the set does not have is rejected rather than misattributed.

use crate::codec::{self, put_bytes, put_u32, put_u64};
use crate::report::{PatternHit, MATCHES_PER_PATTERN, MATCH_DATA_BYTES, SNIPPET_BYTES};
use crate::rules::RuleSet;
use crate::service::RawHit;

/// Format version, the first byte of every non-empty entry. Contents that matched nothing (most
/// of them) encode as zero bytes.
const VERSION: u8 = 2;

/// Why a stored cache entry could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheEntryError {
    #[error("unknown cache entry format version {0}")]
    Version(u8),
    #[error("cache entry is truncated")]
    Truncated,
    #[error("cache entry has {0} trailing bytes")]
    Trailing(usize),
    #[error("cache entry names rule {0:?}, which this rule set does not have")]
    UnknownRule(String),
    #[error("cache entry is malformed: {0}")]
    Malformed(&'static str),
}

pub(crate) fn encode(rules: &RuleSet, hits: &[RawHit]) -> Vec<u8> {
    if hits.is_empty() {
        return Vec::new();
    }
    let mut out = vec![VERSION];
    put_u32(&mut out, hits.len());
    for hit in hits {
        let info = &rules.infos()[hit.rule];
        put_bytes(&mut out, info.namespace.as_bytes());
        put_bytes(&mut out, info.identifier.as_bytes());
        put_u32(&mut out, hit.patterns.len());
        for pattern in &hit.patterns {
            put_bytes(&mut out, pattern.identifier.as_bytes());
            put_u64(&mut out, pattern.offset);
            put_u64(&mut out, pattern.length);
            put_bytes(&mut out, &pattern.data);
            put_u64(&mut out, pattern.line);
            put_u64(&mut out, pattern.column);
            put_bytes(&mut out, &pattern.snippet);
            put_u64(&mut out, pattern.snippet_offset);
        }
    }
    out
}

pub(crate) fn decode(rules: &RuleSet, data: &[u8]) -> Result<Vec<RawHit>, CacheEntryError> {
    let Some((&version, rest)) = data.split_first() else {
        return Ok(Vec::new());
    };
    if version != VERSION {
        return Err(CacheEntryError::Version(version));
    }
    let mut reader = Reader(codec::Reader::new(rest));
    let count = reader.len()?;
    if count > rules.len() {
        return Err(CacheEntryError::Malformed("more rules than the rule set has"));
    }
    let mut hits = Vec::with_capacity(count);
    for _ in 0..count {
        let namespace = reader.text()?;
        let identifier = reader.text()?;
        let rule = rules
            .index_of(namespace, identifier)
            .ok_or_else(|| CacheEntryError::UnknownRule(format!("{namespace}.{identifier}")))?;
        let patterns = reader.len()?;
        // Every pattern of a rule keeps at most MATCHES_PER_PATTERN matches; a rule has far
        // fewer than 2^16 patterns. Bounds the allocation whatever the entry says.
        if patterns > MATCHES_PER_PATTERN << 16 {
            return Err(CacheEntryError::Malformed("too many pattern matches"));
        }
        let mut hit = RawHit { rule, patterns: Vec::with_capacity(patterns.min(1024)) };
        for _ in 0..patterns {
            let identifier = reader.text()?.to_owned();
            let offset = reader.u64()?;
            let length = reader.u64()?;
            let data = reader.bytes()?;
            if data.len() > MATCH_DATA_BYTES {
                return Err(CacheEntryError::Malformed("match data longer than kept"));
            }
            let line = reader.u64()?;
            let column = reader.u64()?;
            let snippet = reader.bytes()?;
            let snippet_offset = reader.u64()?;
            if snippet.len() > SNIPPET_BYTES || snippet_offset > snippet.len() as u64 {
                return Err(CacheEntryError::Malformed("snippet longer than kept"));
            }
            hit.patterns.push(PatternHit {
                identifier,
                offset,
                length,
                data: data.to_vec(),
                line,
                column,
                snippet: snippet.to_vec(),
                snippet_offset,
            });
        }
        hits.push(hit);
    }
    if !reader.0.rest.is_empty() {
        return Err(CacheEntryError::Trailing(reader.0.rest.len()));
    }
    Ok(hits)
}

/// The codec's reader, with this format's errors.
struct Reader<'a>(codec::Reader<'a>);

impl<'a> Reader<'a> {
    fn len(&mut self) -> Result<usize, CacheEntryError> {
        Ok(self.0.u32().map_err(|_| CacheEntryError::Truncated)? as usize)
    }

    fn u64(&mut self) -> Result<u64, CacheEntryError> {
        self.0.u64().map_err(|_| CacheEntryError::Truncated)
    }

    fn bytes(&mut self) -> Result<&'a [u8], CacheEntryError> {
        self.0.bytes().map_err(|_| CacheEntryError::Truncated)
    }

    fn text(&mut self) -> Result<&'a str, CacheEntryError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CacheEntryError::Malformed("name is not UTF-8"))
    }
}
