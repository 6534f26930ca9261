//! Compiled rule sets: compile from named sources, serialize to a blob, and the per-rule facts
//! that scoring needs (`weight`, `filetype`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use yara_x::{Compiler, MetaValue, SourceCode};

/// The first bytes of every serialized rule set.
pub const COMPILED_MAGIC: &[u8] = b"DFHYBRID-RULES\x01\n";
const HASH_HEX_LEN: usize = 64;

/// A metadata value of a rule, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
}

/// What scoring and reports need to know about one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    pub identifier: String,
    pub namespace: String,
    pub tags: Vec<String>,
    pub metadata: Vec<(String, Meta)>,
    /// The `weight` metadata; 0 when absent or not an integer.
    pub weight: i64,
    /// Path suffixes from the `filetype` (or `filetypes`) metadata; empty means every file.
    pub filetypes: Vec<String>,
}

impl RuleInfo {
    /// Whether a match of this rule counts for the file at `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        self.filetypes.is_empty() || self.filetypes.iter().any(|suffix| path.ends_with(suffix.as_str()))
    }
}

/// One compile diagnostic, located in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub origin: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.origin, self.line, self.column, self.message)
    }
}

/// Errors of rule compilation and loading.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Compile(Vec<Diagnostic>),
    #[error("not a compiled dragonfly-hybrid rule set: {0}")]
    Format(String),
}

/// A compiled rule set plus the facts about each rule. Cheap to clone (shared).
#[derive(Clone)]
pub struct RuleSet {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) rules: yara_x::Rules,
    pub(crate) infos: Vec<Arc<RuleInfo>>,
    /// namespace -> identifier -> position in `infos`.
    pub(crate) index: HashMap<String, HashMap<String, usize>>,
    /// Every `filetype` suffix of the set, or `None` when some rule counts for every file.
    suffixes: Option<Vec<String>>,
    hash: String,
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source.as_bytes()[..offset.min(source.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

fn hash_sources(sources: &[(&str, &str)]) -> String {
    let mut hasher = Sha256::new();
    for (origin, text) in sources {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        hasher.update((origin.len() as u64).to_le_bytes());
        hasher.update(origin.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hex(&hasher.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn owned_meta(value: MetaValue<'_>) -> Meta {
    match value {
        MetaValue::Integer(v) => Meta::Int(v),
        MetaValue::Float(v) => Meta::Float(v),
        MetaValue::Bool(v) => Meta::Bool(v),
        MetaValue::String(v) => Meta::Str(v.to_owned()),
        MetaValue::Bytes(v) => Meta::Bytes(v.to_vec()),
    }
}

fn rule_infos(rules: &yara_x::Rules) -> Vec<Arc<RuleInfo>> {
    rules
        .iter()
        .map(|rule| {
            let metadata: Vec<(String, Meta)> =
                rule.metadata().map(|(key, value)| (key.to_owned(), owned_meta(value))).collect();
            let weight = metadata.iter().find(|(key, _)| key == "weight").map_or(0, |(_, value)| {
                if let Meta::Int(w) = value {
                    *w
                } else {
                    0
                }
            });
            let filetypes = metadata
                .iter()
                .find(|(key, _)| key == "filetype" || key == "filetypes")
                .map_or_else(Vec::new, |(_, value)| match value {
                    Meta::Str(s) => s.split_whitespace().map(str::to_owned).collect(),
                    _ => Vec::new(),
                });
            Arc::new(RuleInfo {
                identifier: rule.identifier().to_owned(),
                namespace: rule.namespace().to_owned(),
                tags: rule.tags().map(|t| t.identifier().to_owned()).collect(),
                metadata,
                weight,
                filetypes,
            })
        })
        .collect()
}

impl RuleSet {
    fn from_parts(rules: yara_x::Rules, hash: String) -> Self {
        let infos = rule_infos(&rules);
        let suffixes = if infos.iter().all(|info| !info.filetypes.is_empty()) {
            let mut all: Vec<String> = infos.iter().flat_map(|info| info.filetypes.iter().cloned()).collect();
            all.sort_unstable();
            all.dedup();
            Some(all)
        } else {
            None
        };
        let mut index: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, info) in infos.iter().enumerate() {
            index.entry(info.namespace.clone()).or_default().insert(info.identifier.clone(), i);
        }
        Self { inner: Arc::new(Inner { rules, infos, index, suffixes, hash }) }
    }

    /// Compile `(origin, source)` pairs together in one namespace, as the Dragonfly mainframe
    /// expects (a duplicate rule name is an error). Regular expressions use the relaxed syntax
    /// that libyara accepts, so rule sets written for libyara compile too.
    pub fn compile<'a, I>(sources: I) -> Result<Self, RulesError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut sources: Vec<(&str, &str)> = sources.into_iter().collect();
        sources.sort_unstable();
        if sources.is_empty() {
            return Err(RulesError::Compile(vec![Diagnostic {
                origin: String::new(),
                line: 0,
                column: 0,
                message: "no rule sources given".into(),
            }]));
        }
        let mut compiler = Compiler::new();
        compiler.relaxed_re_syntax(true);
        for (origin, text) in &sources {
            // Errors are collected below from `compiler.errors()`, which holds all of them.
            let _ = compiler.add_source(SourceCode::from(*text).with_origin(*origin));
        }
        let errors = compiler.errors();
        if !errors.is_empty() {
            let by_origin: HashMap<&str, &str> = sources.iter().copied().collect();
            let diagnostics = errors
                .iter()
                .map(|err| {
                    let label = err.labels().next();
                    let origin = label.as_ref().and_then(|l| l.origin()).unwrap_or("").to_owned();
                    let (line, column) = match (&label, by_origin.get(origin.as_str())) {
                        (Some(label), Some(text)) => line_column(text, label.span().start()),
                        _ => (0, 0),
                    };
                    let detail = label.as_ref().map(|l| l.text()).filter(|t| !t.is_empty());
                    let message = match detail {
                        Some(detail) if detail != err.title() => format!("{}: {}", err.title(), detail),
                        _ => err.title().to_owned(),
                    };
                    Diagnostic { origin, line, column, message }
                })
                .collect();
            return Err(RulesError::Compile(diagnostics));
        }
        let hash = hash_sources(&sources);
        Ok(Self::from_parts(compiler.build(), hash))
    }

    /// A blob that [`RuleSet::deserialize`] loads without compiling again.
    pub fn serialize(&self) -> Vec<u8> {
        let body = self.inner.rules.serialize().expect("serializing compiled rules to memory cannot fail");
        let mut out = Vec::with_capacity(COMPILED_MAGIC.len() + HASH_HEX_LEN + 1 + body.len());
        out.extend_from_slice(COMPILED_MAGIC);
        out.extend_from_slice(self.inner.hash.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&body);
        out
    }

    pub fn deserialize(data: &[u8]) -> Result<Self, RulesError> {
        let rest =
            data.strip_prefix(COMPILED_MAGIC).ok_or_else(|| RulesError::Format("missing header".into()))?;
        if rest.len() < HASH_HEX_LEN + 1 || rest[HASH_HEX_LEN] != b'\n' {
            return Err(RulesError::Format("truncated header".into()));
        }
        let hash = std::str::from_utf8(&rest[..HASH_HEX_LEN])
            .ok()
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| RulesError::Format("bad rule-set hash".into()))?
            .to_owned();
        let rules = yara_x::Rules::deserialize(&rest[HASH_HEX_LEN + 1..])
            .map_err(|err| RulesError::Format(err.to_string()))?;
        Ok(Self::from_parts(rules, hash))
    }

    /// Stable SHA-256 of the sorted (origin, source) pairs the set was compiled from.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    pub fn len(&self) -> usize {
        self.inner.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.infos.is_empty()
    }

    pub fn infos(&self) -> &[Arc<RuleInfo>] {
        &self.inner.infos
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub(crate) fn index_of(&self, namespace: &str, identifier: &str) -> Option<usize> {
        self.inner.index.get(namespace)?.get(identifier).copied()
    }

    /// Whether any rule can count for a file at `path`. When every rule has a `filetype` and none
    /// fits, scanning the file cannot change any result, so it is skipped.
    pub fn may_apply(&self, path: &str) -> bool {
        self.inner
            .suffixes
            .as_ref()
            .is_none_or(|all| all.iter().any(|suffix| path.ends_with(suffix.as_str())))
    }

    /// Same compiled object (not merely equal sources).
    pub fn ptr_eq(&self, other: &RuleSet) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet").field("rules", &self.len()).field("hash", &self.hash()).finish()
    }
}
