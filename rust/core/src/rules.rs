//! Compiled rule sets: compile from named sources, serialize to a blob, and the per-rule facts
//! that scoring needs (`weight`, `filetype`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use yara_x::{Compiler, MetaValue, SourceCode};

use crate::codec::{self, put_blob, put_bytes, put_u32};
use crate::routing::{self, Plan};

/// The first bytes of every serialized rule set, whatever its format version.
pub const COMPILED_PREFIX: &[u8] = b"DFHYBRID-RULES";
/// The first bytes of a serialized rule set compiled whole.
pub const COMPILED_MAGIC: &[u8] = b"DFHYBRID-RULES\x05\n";
/// The first bytes of a serialized rule set compiled in filetype-routed parts.
pub const COMPILED_ROUTED_MAGIC: &[u8] = b"DFHYBRID-RULES\x06\n";
/// Formats 1 and 2: the same layouts without the body's checksum, and without machine code; 3 and 4:
/// with a SHA-256 checksum.
const EARLIER_VERSIONS: [u8; 4] = [1, 2, 3, 4];
const HASH_HEX_LEN: usize = 64;
const CHECKSUM_HEX_LEN: usize = 8;

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
    /// The metadata in rule order, each key once: a repeated key keeps its first value.
    pub metadata: Vec<(String, Meta)>,
    /// The `weight` metadata; 0 when absent or not an integer.
    pub weight: i64,
    /// Path suffixes from the `filetype` (or `filetypes`) metadata; empty means every file.
    pub filetypes: Vec<String>,
}

impl RuleInfo {
    /// Whether a match of this rule counts for the file at `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        self.filetypes.is_empty() || self.filetypes.iter().any(|suffix| suffix_fits(path, suffix))
    }
}

/// Whether `suffix` ends the archive-relative `path` as the reference node sees it: it matches the
/// extracted file's absolute path, so `/setup.py` also fits a `setup.py` at the archive's root.
pub(crate) fn suffix_fits(path: &str, suffix: &str) -> bool {
    path.ends_with(suffix) || suffix.strip_prefix('/') == Some(path)
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
    compiled: Compiled,
    pub(crate) infos: Vec<Arc<RuleInfo>>,
    /// namespace -> identifier -> position in `infos`.
    pub(crate) index: HashMap<String, HashMap<String, usize>>,
    hash: String,
}

enum Compiled {
    Whole {
        rules: yara_x::Rules,
        /// Every `filetype` suffix of the set, or `None` when some rule counts for every file.
        suffixes: Option<Vec<String>>,
    },
    Routed(Routed),
}

/// A rule set compiled in parts (see [`crate::routing`]).
struct Routed {
    common: Option<yara_x::Rules>,
    classes: Vec<yara_x::Rules>,
    /// Each suffix of a routable rule and its class, longest suffix first.
    suffixes: Vec<(String, usize)>,
    /// Per class, then for paths in no class: a digest of the rules such a path is scanned with,
    /// mixed into content-cache keys so that matches from one set of parts never stand in for
    /// another's.
    salts: Vec<[u8; 32]>,
}

/// BLAKE3's key-derivation context of content-cache keys ([`Route::cache_key`]).
const CONTENT_KEY_CONTEXT: &str = "dragonfly-hybrid 2026-12-07 content-cache key";

/// The compiled parts a file at some path must be scanned with.
pub(crate) struct Route<'a> {
    /// Indices for [`Inner::part`]; both `None` when no rule can count for the file.
    pub(crate) parts: [Option<usize>; 2],
    salt: Option<&'a [u8; 32]>,
    /// The set's `Rules.hash`.
    set: &'a str,
}

impl Route<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.parts.iter().all(Option::is_none)
    }

    /// The content-cache key of a content whose own key (its BLAKE3 hash) is `hash`, scanned along
    /// this route: BLAKE3 in key-derivation mode over the content's hash, the route's salt and the
    /// set's hash. With the set's hash, an entry imported from another rule set (its "no match", a
    /// rule of the same name) never answers for a content: the content's hash alone keyed a set
    /// compiled whole, and a routed salt digests only rule names. In key-derivation mode, another
    /// domain than the plain hash of any content (a file `hash || salt || set` is not a key).
    pub(crate) fn cache_key(&self, hash: &[u8; 32]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(CONTENT_KEY_CONTEXT);
        hasher.update(hash);
        if let Some(salt) = self.salt {
            hasher.update(salt);
        }
        hasher.update(self.set.as_bytes());
        *hasher.finalize().as_bytes()
    }
}

impl Inner {
    /// How many compiled parts there are: one when whole, else the common part and the classes.
    pub(crate) fn part_count(&self) -> usize {
        match &self.compiled {
            Compiled::Whole { .. } => 1,
            Compiled::Routed(routed) => 1 + routed.classes.len(),
        }
    }

    pub(crate) fn part(&self, index: usize) -> &yara_x::Rules {
        match (&self.compiled, index) {
            (Compiled::Whole { rules, .. }, 0) => rules,
            (Compiled::Routed(routed), 0) => {
                routed.common.as_ref().expect("routes skip an empty common part")
            }
            (Compiled::Routed(routed), i) => &routed.classes[i - 1],
            (Compiled::Whole { .. }, _) => unreachable!("a whole rule set has one part"),
        }
    }
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

fn sorted_sources<'a, I>(sources: I) -> Result<Vec<(&'a str, &'a str)>, RulesError>
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
    Ok(sources)
}

/// Compile each part with [`build`] on the pool's threads, in order; `None` when any part fails.
/// The largest parts are taken first, each thread taking the next as it finishes: a routed set is a
/// few parts of similar size (each repeats the rules its suffixes share) and a few small ones, and
/// a large part started last would leave the other threads idle (on 2 threads, 0.94x the time of
/// the pool's own split for the bench's `light` set, 0.95x for the bundled set; BENCHMARKS.md).
fn build_largest_first(parts: &[Vec<(&str, &str)>]) -> Option<Vec<yara_x::Rules>> {
    let size = |part: &Vec<(&str, &str)>| part.iter().map(|(_, text)| text.len()).sum::<usize>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&parts[i])));
    let next = AtomicUsize::new(0);
    let built: Vec<Mutex<Option<yara_x::Rules>>> = parts.iter().map(|_| Mutex::new(None)).collect();
    let failed = AtomicBool::new(false);
    let workers = rayon::current_num_threads().min(parts.len());
    (0..workers).into_par_iter().for_each(|_| {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            match build(&parts[i]) {
                Ok(rules) => *built[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(rules),
                Err(_) => failed.store(true, Ordering::Relaxed),
            }
        }
    });
    built.into_iter().map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner())).collect()
}

/// What a rule source's `include` statement is told (see [`build`]).
const INCLUDE_REFUSED: &str = "include statements are not supported: remove it and give the included \
     file as a rule file of its own (every rule file of a --rules directory is compiled), so that the \
     rule set's hash covers every rule";

/// Compile sources into one namespace, or every diagnostic located in its source.
fn build(sources: &[(&str, &str)]) -> Result<yara_x::Rules, RulesError> {
    let mut compiler = Compiler::new();
    compiler.relaxed_re_syntax(true);
    // An included file is not part of the sources `Rules.hash` digests: editing it would change the
    // rules behind an unchanged hash, and the rules cache and the content cache (both keyed by it)
    // would go on answering for the old rules.
    compiler.enable_includes(false);
    for (origin, text) in sources {
        // Errors are collected below from `compiler.errors()`, which holds all of them.
        let _ = compiler.add_source(SourceCode::from(*text).with_origin(*origin));
    }
    let errors = compiler.errors();
    if errors.is_empty() {
        return Ok(compiler.build());
    }
    let by_origin: HashMap<&str, &str> = sources.iter().copied().collect();
    let diagnostics = errors
        .iter()
        .map(|err| {
            let mut labels = err.labels();
            let label = labels.next();
            let located = |origin: Option<&str>, start: usize| {
                let origin = origin.unwrap_or("");
                let place = by_origin.get(origin).map_or((0, 0), |text| line_column(text, start));
                (origin.to_owned(), place)
            };
            let (origin, (line, column)) =
                label.as_ref().map(|l| located(l.origin(), l.span().start())).unwrap_or_default();
            let detail = label.as_ref().map(|l| l.text()).filter(|t| !t.is_empty());
            let mut message = match detail {
                _ if matches!(err, yara_x::errors::CompileError::IncludeNotAllowed(_)) => {
                    INCLUDE_REFUSED.to_owned()
                }
                Some(detail) if detail != err.title() => format!("{}: {}", err.title(), detail),
                _ => err.title().to_owned(),
            };
            // The other places an error points at (a duplicate rule's first declaration, maybe in
            // another file): without them the message named one file of two.
            for other in labels.filter(|l| !l.text().is_empty()) {
                let (at, (line, column)) = located(other.origin(), other.span().start());
                message.push_str(&format!(" ({}: {at}:{line}:{column})", other.text()));
            }
            Diagnostic { origin, line, column, message }
        })
        .collect();
    Err(RulesError::Compile(diagnostics))
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
            // A key may repeat; its first value wins, in scoring and in every report.
            let mut metadata: Vec<(String, Meta)> = Vec::new();
            for (key, value) in rule.metadata() {
                if !metadata.iter().any(|(seen, _)| seen == key) {
                    metadata.push((key.to_owned(), owned_meta(value)));
                }
            }
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
                .map_or_else(Vec::new, |(_, value)| {
                    // YARA-X hands a string with an escape (`".py\x20.pyi"`) over as bytes.
                    let text = match value {
                        Meta::Str(s) => s.as_str(),
                        Meta::Bytes(b) => std::str::from_utf8(b).unwrap_or_default(),
                        _ => "",
                    };
                    text.split_whitespace().map(str::to_owned).collect()
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
    fn new(compiled: Compiled, infos: Vec<Arc<RuleInfo>>, hash: String) -> Self {
        let mut index: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, info) in infos.iter().enumerate() {
            index.entry(info.namespace.clone()).or_default().insert(info.identifier.clone(), i);
        }
        Self { inner: Arc::new(Inner { compiled, infos, index, hash }) }
    }

    fn from_whole(rules: yara_x::Rules, hash: String) -> Self {
        let infos = rule_infos(&rules);
        let suffixes = if infos.iter().all(|info| !info.filetypes.is_empty()) {
            let mut all: Vec<String> = infos.iter().flat_map(|info| info.filetypes.iter().cloned()).collect();
            all.sort_unstable();
            all.dedup();
            Some(all)
        } else {
            None
        };
        Self::new(Compiled::Whole { rules, suffixes }, infos, hash)
    }

    /// Assemble a routed set from its compiled parts; `order` lists every rule identifier in
    /// source order. `None` when the parts do not hold exactly the rules of `order`, once each.
    fn from_routed(
        common: Option<yara_x::Rules>,
        classes: Vec<yara_x::Rules>,
        mut suffixes: Vec<(String, usize)>,
        order: &[String],
        hash: String,
    ) -> Option<Self> {
        let common_infos = common.as_ref().map(rule_infos).unwrap_or_default();
        let class_infos: Vec<Vec<Arc<RuleInfo>>> = classes.iter().map(rule_infos).collect();
        if suffixes.iter().any(|(_, class)| *class >= classes.len()) {
            return None;
        }
        let mut by_name: HashMap<&str, Arc<RuleInfo>> = HashMap::new();
        for info in &common_infos {
            if by_name.insert(&info.identifier, Arc::clone(info)).is_some() {
                return None;
            }
        }
        // A routed rule appears in every class it fits, the same each time, and never in common.
        let mut routed_rules: HashMap<&str, &Arc<RuleInfo>> = HashMap::new();
        for info in class_infos.iter().flatten() {
            if by_name.contains_key(info.identifier.as_str()) {
                return None;
            }
            if *routed_rules.entry(&info.identifier).or_insert(info) != info {
                return None;
            }
        }
        by_name.extend(routed_rules.iter().map(|(name, info)| (*name, Arc::clone(info))));
        if by_name.len() != order.len() {
            return None;
        }
        let infos: Vec<Arc<RuleInfo>> =
            order.iter().map(|id| by_name.get(id.as_str()).cloned()).collect::<Option<_>>()?;
        // The routing table must send every path to at least the class rules that fit it (a blob
        // is checked like a fresh compile): each suffix's class holds every routed rule that fits
        // a path ending in it (extra rules are harmless: their matches are filtered by
        // `filetype`), and every suffix of a routed rule has an entry.
        let consistent = routed_rules.values().all(|info| {
            !info.filetypes.is_empty()
                && info.filetypes.iter().all(|ft| suffixes.iter().any(|(s, _)| s == ft))
        }) && suffixes.iter().all(|(suffix, class)| {
            let held: std::collections::HashSet<&str> =
                class_infos[*class].iter().map(|i| i.identifier.as_str()).collect();
            routed_rules
                .values()
                .filter(|i| i.filetypes.iter().any(|ft| suffix.ends_with(ft.as_str())))
                .all(|i| held.contains(i.identifier.as_str()))
        });
        if !consistent {
            return None;
        }
        let mut salts: Vec<[u8; 32]> =
            class_infos.iter().map(|class| route_salt(common_infos.iter().chain(class))).collect();
        salts.push(route_salt(common_infos.iter()));
        suffixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let routed = Routed { common, classes, suffixes, salts };
        Some(Self::new(Compiled::Routed(routed), infos, hash))
    }

    /// Compile `(origin, source)` pairs together in one namespace, as the Dragonfly mainframe
    /// expects (a duplicate rule name is an error). Regular expressions use the relaxed syntax
    /// that libyara accepts, so rule sets written for libyara compile too.
    ///
    /// When the sources allow it, the set is compiled in filetype-routed parts so that each file
    /// is scanned only with the rules that can count for it; results are the same either way.
    pub fn compile<'a, I>(sources: I) -> Result<Self, RulesError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let sources = sorted_sources(sources)?;
        let hash = hash_sources(&sources);
        if let Some(set) = routing::plan(&sources).and_then(|plan| Self::compile_routed(plan, &hash)) {
            return Ok(set);
        }
        Ok(Self::from_whole(build(&sources)?, hash))
    }

    /// [`RuleSet::compile`] without filetype routing: one compiled part holding every rule. For
    /// comparing the two.
    pub fn compile_whole<'a, I>(sources: I) -> Result<Self, RulesError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let sources = sorted_sources(sources)?;
        let hash = hash_sources(&sources);
        Ok(Self::from_whole(build(&sources)?, hash))
    }

    /// Compile the parts of `plan`; `None` when any part fails (compiling whole then reports the
    /// errors where the author wrote them) or the compiled metadata disagrees with the plan.
    fn compile_routed(plan: Plan, hash: &str) -> Option<Self> {
        let labels: Vec<String> = (0..plan.classes.len()).map(|i| format!("filetype class {i}")).collect();
        let mut parts: Vec<Vec<(&str, &str)>> = plan
            .classes
            .iter()
            .zip(&labels)
            .map(|(class, label)| vec![(label.as_str(), class.source.as_str())])
            .collect();
        if let Some(common) = &plan.common {
            parts.push(common.iter().map(|(o, t)| (o.as_str(), t.as_str())).collect());
        }
        let mut built = build_largest_first(&parts)?;
        let common = plan.common.is_some().then(|| built.pop()).flatten();
        let set = Self::from_routed(common, built, plan.suffixes, &plan.order, hash.to_owned())?;
        let agrees = set.infos().iter().all(|info| match plan.routed.get(&info.identifier) {
            Some(filetypes) => *filetypes == info.filetypes,
            None => true,
        });
        agrees.then_some(set)
    }

    /// Whether the set is compiled in filetype-routed parts, and how many classes it has.
    pub fn routed_classes(&self) -> Option<usize> {
        match &self.inner.compiled {
            Compiled::Whole { .. } => None,
            Compiled::Routed(routed) => Some(routed.classes.len()),
        }
    }

    /// A blob that [`RuleSet::deserialize`] loads without compiling again.
    pub fn serialize(&self) -> Vec<u8> {
        let blob = |rules: &yara_x::Rules| {
            rules.serialize().expect("serializing compiled rules to memory cannot fail")
        };
        let mut out = Vec::new();
        let magic = match &self.inner.compiled {
            Compiled::Whole { rules, .. } => {
                out.extend_from_slice(&blob(rules));
                COMPILED_MAGIC
            }
            Compiled::Routed(routed) => {
                put_u32(&mut out, self.inner.infos.len());
                for info in &self.inner.infos {
                    put_bytes(&mut out, info.identifier.as_bytes());
                }
                put_u32(&mut out, routed.suffixes.len());
                for (suffix, class) in &routed.suffixes {
                    put_bytes(&mut out, suffix.as_bytes());
                    put_u32(&mut out, *class);
                }
                out.push(u8::from(routed.common.is_some()));
                if let Some(common) = &routed.common {
                    put_blob(&mut out, &blob(common));
                }
                put_u32(&mut out, routed.classes.len());
                for class in &routed.classes {
                    put_blob(&mut out, &blob(class));
                }
                COMPILED_ROUTED_MAGIC
            }
        };
        // The body holds machine code that runs when loaded: a damaged blob must be refused, not run.
        let mut blob = Vec::with_capacity(magic.len() + HASH_HEX_LEN + CHECKSUM_HEX_LEN + 2 + out.len());
        blob.extend_from_slice(magic);
        blob.extend_from_slice(self.inner.hash.as_bytes());
        blob.push(b'\n');
        let checksum = checksum(&blob, &out);
        blob.extend_from_slice(checksum.as_bytes());
        blob.push(b'\n');
        blob.extend_from_slice(&out);
        blob
    }

    pub fn deserialize(data: &[u8]) -> Result<Self, RulesError> {
        let (routed, rest) = if let Some(rest) = data.strip_prefix(COMPILED_MAGIC) {
            (false, rest)
        } else if let Some(rest) = data.strip_prefix(COMPILED_ROUTED_MAGIC) {
            (true, rest)
        } else if data
            .strip_prefix(COMPILED_PREFIX)
            .is_some_and(|rest| rest.get(1) == Some(&b'\n') && EARLIER_VERSIONS.contains(&rest[0]))
        {
            return Err(RulesError::Format(
                "written by an earlier version of dragonfly-hybrid; compile the rules again".into(),
            ));
        } else {
            return Err(RulesError::Format("missing header".into()));
        };
        let (hash, rest) =
            hex_line(rest, HASH_HEX_LEN).ok_or_else(|| RulesError::Format("bad rule-set hash".into()))?;
        let hash = hash.to_owned();
        let header = &data[..data.len() - rest.len()];
        let (stored, body) =
            hex_line(rest, CHECKSUM_HEX_LEN).ok_or_else(|| RulesError::Format("bad checksum line".into()))?;
        if checksum(header, body) != stored {
            return Err(RulesError::Format("damaged: its checksum does not match its content".into()));
        }
        if !routed {
            return Ok(Self::from_whole(load_part(body)?, hash));
        }
        let mut reader = Reader(codec::Reader::new(body));
        let order = (0..reader.count()?).map(|_| reader.string()).collect::<Result<Vec<_>, _>>()?;
        let suffixes = (0..reader.count()?)
            .map(|_| Ok((reader.string()?, reader.u32()? as usize)))
            .collect::<Result<Vec<_>, RulesError>>()?;
        let has_common = match reader.take(1)? {
            [0] => false,
            [1] => true,
            _ => return Err(RulesError::Format("bad common-part flag".into())),
        };
        let common = if has_common { Some(reader.blob()?) } else { None };
        let classes = (0..reader.count()?).map(|_| reader.blob()).collect::<Result<Vec<_>, _>>()?;
        if !reader.0.rest.is_empty() {
            return Err(RulesError::Format("trailing bytes after the last part".into()));
        }
        let blobs: Vec<&[u8]> = common.into_iter().chain(classes).collect();
        let mut parts = load_parts(&blobs)?;
        let common = if has_common { Some(parts.remove(0)) } else { None };
        Self::from_routed(common, parts, suffixes, &order, hash)
            .ok_or_else(|| RulesError::Format("the compiled parts do not hold the listed rules".into()))
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

    /// Whether results depend on when a file is scanned, not only on its bytes: a rule set that imports
    /// YARA's `time` module (`time.now()`). Its answers are never kept in a content cache: a "no match"
    /// kept before a rule's moment would answer after it.
    pub fn reads_the_clock(&self) -> bool {
        let parts: Vec<&yara_x::Rules> = match &self.inner.compiled {
            Compiled::Whole { rules, .. } => vec![rules],
            Compiled::Routed(routed) => routed.common.iter().chain(&routed.classes).collect(),
        };
        parts.iter().any(|rules| rules.imports().any(|module| module == "time"))
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub(crate) fn index_of(&self, namespace: &str, identifier: &str) -> Option<usize> {
        self.inner.index.get(namespace)?.get(identifier).copied()
    }

    /// The compiled parts a file at `path` must be scanned with; none when no rule can count for
    /// it (every rule has a `filetype` and none fits), so that scanning it cannot change any result.
    pub(crate) fn route(&self, path: &str) -> Route<'_> {
        match &self.inner.compiled {
            Compiled::Whole { suffixes, .. } => {
                let applies = suffixes.as_ref().is_none_or(|all| all.iter().any(|s| suffix_fits(path, s)));
                Route { parts: [applies.then_some(0), None], salt: None, set: &self.inner.hash }
            }
            Compiled::Routed(routed) => {
                // The longest suffix that fits names the class: every shorter one that fits the
                // path is a suffix of it, so it fits the same rules.
                let class = routed.suffixes.iter().find(|(s, _)| suffix_fits(path, s)).map(|(_, c)| *c);
                Route {
                    parts: [routed.common.as_ref().map(|_| 0), class.map(|c| c + 1)],
                    salt: Some(&routed.salts[class.unwrap_or(routed.classes.len())]),
                    set: &self.inner.hash,
                }
            }
        }
    }

    /// Whether any rule can count for a file at `path`.
    pub fn may_apply(&self, path: &str) -> bool {
        !self.route(path).is_empty()
    }
}

/// A digest of the rules a route scans with, mixed into its content-cache keys.
fn route_salt<'a>(rules: impl Iterator<Item = &'a Arc<RuleInfo>>) -> [u8; 32] {
    let mut names: Vec<&str> = rules.map(|info| info.identifier.as_str()).collect();
    names.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(b"dragonfly-hybrid filetype route\0");
    for name in names {
        hasher.update(name.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

fn load_part(blob: &[u8]) -> Result<yara_x::Rules, RulesError> {
    yara_x::Rules::deserialize(blob).map_err(|err| RulesError::Format(err.to_string()))
}

fn load_serially(blobs: &[&[u8]]) -> Result<Vec<yara_x::Rules>, RulesError> {
    blobs.iter().map(|blob| load_part(blob)).collect()
}

/// Each blob loaded as compiled rules, in order, on this thread and one more (the parts split by size):
/// a node cannot scan before its rules are in. With this and the CRC-32 checksum, the bundled set (six
/// parts, 3.1 MB) loads in 2.9 ms instead of 4.5 ms on 2 cores. Serially when a thread cannot be had.
fn load_parts(blobs: &[&[u8]]) -> Result<Vec<yara_x::Rules>, RulesError> {
    let half = blobs.iter().map(|blob| blob.len()).sum::<usize>() / 2;
    let mut taken = 0;
    let split = blobs
        .iter()
        .position(|blob| {
            taken += blob.len();
            taken >= half
        })
        .map_or(blobs.len(), |i| i + 1);
    let (first, second) = blobs.split_at(split);
    if first.is_empty() || second.is_empty() {
        return load_serially(blobs);
    }
    let (first, second) = std::thread::scope(|scope| {
        match std::thread::Builder::new().spawn_scoped(scope, || load_serially(second)) {
            Ok(other) => {
                let first = load_serially(first);
                (first, other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            }
            Err(_) => (load_serially(first), load_serially(second)),
        }
    });
    let mut parts = first?;
    parts.extend(second?);
    Ok(parts)
}

/// The codec's reader, with this format's errors.
struct Reader<'a>(codec::Reader<'a>);

fn truncated(_: codec::Truncated) -> RulesError {
    RulesError::Format("truncated routed rule set".into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RulesError> {
        self.0.take(n).map_err(truncated)
    }

    fn u32(&mut self) -> Result<u32, RulesError> {
        self.0.u32().map_err(truncated)
    }

    /// A count of entries of at least 4 bytes each, checked against what is left.
    fn count(&mut self) -> Result<usize, RulesError> {
        let n = self.u32()? as usize;
        if n > self.0.rest.len() / 4 {
            return Err(RulesError::Format(format!("count {n} exceeds the blob")));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, RulesError> {
        let bytes = self.0.bytes().map_err(truncated)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RulesError::Format("a name is not UTF-8".into()))
    }

    fn blob(&mut self) -> Result<&'a [u8], RulesError> {
        self.0
            .blob()
            .map_err(|_| RulesError::Format("truncated routed rule set (or a part too large)".into()))
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet").field("rules", &self.len()).field("hash", &self.hash()).finish()
    }
}

/// What a blob's checksum line holds: the CRC-32 of its header (magic and rule-set hash line) and body,
/// in hex. It is there to catch damage (a blob is as trusted as the file it came from, see the README),
/// and every load of the rules waits for it: a SHA-256 took 1.6 ms of a 3.8 MB set's 6 ms load.
fn checksum(header: &[u8], body: &[u8]) -> String {
    let mut crc = crate::crc::Crc32::new();
    crc.update(header);
    crc.update(body);
    format!("{:08x}", crc.sum())
}

/// A line of `len` hex digits at the start of `data`, and what follows its newline.
fn hex_line(data: &[u8], len: usize) -> Option<(&str, &[u8])> {
    let line = data.get(..len).filter(|_| data.get(len) == Some(&b'\n'))?;
    let text = std::str::from_utf8(line).ok().filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some((text, &data[len + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(identifier: &str, padding: usize) -> Vec<u8> {
        let mut compiler = Compiler::new();
        // Strings of different lengths give parts of different sizes, so the split is not in the middle.
        let source =
            format!("rule {identifier} {{ strings: $a = \"{}\" condition: $a }}", "x".repeat(padding));
        compiler.add_source(source.as_str()).unwrap();
        compiler.build().serialize().unwrap()
    }

    fn identifiers(parts: &[yara_x::Rules]) -> Vec<String> {
        parts.iter().flat_map(|rules| rules.iter().map(|rule| rule.identifier().to_owned())).collect()
    }

    #[test]
    fn parts_load_in_order_whichever_thread_loads_them() {
        let blobs: Vec<Vec<u8>> = [("a", 4), ("b", 400), ("c", 4), ("d", 40), ("e", 4)]
            .iter()
            .map(|(identifier, padding)| part(identifier, *padding))
            .collect();
        for count in 0..=blobs.len() {
            let some: Vec<&[u8]> = blobs[..count].iter().map(Vec::as_slice).collect();
            let expected: Vec<String> =
                ["a", "b", "c", "d", "e"][..count].iter().map(|s| s.to_string()).collect();
            assert_eq!(identifiers(&load_parts(&some).unwrap()), expected, "{count} parts");
        }
    }

    #[test]
    fn a_content_key_is_no_plain_hash_of_any_content() {
        let sources = [("r.yar", "rule py { meta: filetype = \".py\" strings: $a = \"x\" condition: $a }")];
        let routed = RuleSet::compile(sources).unwrap();
        let whole = RuleSet::compile_whole(sources).unwrap();
        let route = routed.route("setup.py");
        let salt = *route.salt.expect("a routed set salts every route");
        let content = b"import os\n";
        let hash = *blake3::hash(content).as_bytes();
        // A file made of the key's inputs is keyed by a derived key too: it never names the content.
        let mut crafted = hash.to_vec();
        crafted.extend_from_slice(&salt);
        crafted.extend_from_slice(routed.hash().as_bytes());
        assert_eq!(whole.hash(), routed.hash());
        let whole_key = whole.route("setup.py").cache_key(&hash);
        for key in [route.cache_key(&hash), whole_key] {
            assert_ne!(key, hash);
            assert_ne!(key, whole.route("x.py").cache_key(blake3::hash(&crafted).as_bytes()));
        }
        assert_ne!(route.cache_key(&hash), whole_key, "routed and whole answers are kept apart");
    }

    #[test]
    fn another_rule_set_keys_the_same_content_apart() {
        // Rules of the same names, other strings: neither set's answers may stand in for the other's.
        let one = [("r.yar", "rule evil { meta: filetype = \".py\" strings: $a = \"x\" condition: $a }")];
        let two = [("r.yar", "rule evil { meta: filetype = \".py\" strings: $a = \"y\" condition: $a }")];
        let hash = *blake3::hash(b"x y").as_bytes();
        for (a, b) in [
            (RuleSet::compile(one).unwrap(), RuleSet::compile(two).unwrap()),
            (RuleSet::compile_whole(one).unwrap(), RuleSet::compile_whole(two).unwrap()),
        ] {
            assert_ne!(a.route("a.py").cache_key(&hash), b.route("a.py").cache_key(&hash));
        }
    }

    #[test]
    fn a_set_that_imports_time_reads_the_clock_whole_or_routed() {
        let timed = "import \"time\"\nrule t { condition: time.now() > 0 }";
        let routed = "rule py { meta: filetype = \".py\" strings: $a = \"x\" condition: $a }";
        for sources in [vec![("t.yar", timed)], vec![("t.yar", timed), ("r.yar", routed)]] {
            assert!(RuleSet::compile(sources.clone()).unwrap().reads_the_clock(), "{sources:?}");
            assert!(RuleSet::compile_whole(sources).unwrap().reads_the_clock());
        }
        let plain =
            RuleSet::compile([("r.yar", routed), ("m.yar", "import \"math\" rule m { condition: false }")]);
        assert!(!plain.unwrap().reads_the_clock());
    }

    #[test]
    fn an_include_statement_is_refused_with_what_to_do_instead() {
        let sources = [("main.yar", "include \"other.yar\"\nrule a { condition: true }")];
        let Err(RulesError::Compile(diagnostics)) = RuleSet::compile(sources) else {
            panic!("an include compiled");
        };
        let [diagnostic] = diagnostics.as_slice() else { panic!("{diagnostics:?}") };
        assert_eq!((diagnostic.origin.as_str(), diagnostic.line, diagnostic.column), ("main.yar", 1, 1));
        assert_eq!(diagnostic.message, INCLUDE_REFUSED);
    }

    #[test]
    fn a_duplicate_rule_names_where_it_was_first_declared() {
        let sources =
            [("one.yar", "rule same { condition: true }"), ("two.yar", "\nrule same { condition: false }")];
        let Err(RulesError::Compile(diagnostics)) = RuleSet::compile(sources) else {
            panic!("a duplicate rule compiled");
        };
        let [diagnostic] = diagnostics.as_slice() else { panic!("{diagnostics:?}") };
        assert_eq!((diagnostic.origin.as_str(), diagnostic.line, diagnostic.column), ("two.yar", 2, 6));
        assert!(
            diagnostic.message.ends_with("(`same` declared here for the first time: one.yar:1:6)"),
            "{diagnostic:?}"
        );
    }

    #[test]
    fn a_slashed_filetype_fits_a_file_at_the_root_whole_or_routed() {
        // The reference node matches the extracted file's absolute path: `/setup.py` fits `setup.py`.
        let sources = [
            ("s.yar", "rule s { meta: filetype = \"/setup.py\" strings: $a = \"x\" condition: $a }"),
            ("p.yar", "rule p { meta: filetype = \"setup.py\" strings: $a = \"x\" condition: $a }"),
        ];
        for set in [RuleSet::compile(sources).unwrap(), RuleSet::compile_whole(sources).unwrap()] {
            let info = |id: &str| &set.inner().infos[set.index_of("default", id).unwrap()];
            for (path, slashed, plain) in
                [("setup.py", true, true), ("a/setup.py", true, true), ("mysetup.py", false, true)]
            {
                assert!(set.may_apply(path), "{path}");
                assert_eq!(info("s").applies_to(path), slashed, "{path}");
                assert_eq!(info("p").applies_to(path), plain, "{path}");
            }
            assert!(!set.may_apply("setup.pyc"));
        }
    }

    #[test]
    fn a_filetype_written_with_an_escape_still_limits_the_rule() {
        // YARA-X hands a meta string holding an escape over as bytes.
        let set = RuleSet::compile_whole([(
            "e.yar",
            "rule e { meta: filetype = \".py\\x20.pyi\" strings: $a = \"x\" condition: $a }",
        )])
        .unwrap();
        let info = &set.inner().infos[0];
        assert_eq!(info.filetypes, vec![".py", ".pyi"]);
        assert!(info.applies_to("a.pyi") && !info.applies_to("a.txt"));
    }

    #[test]
    fn a_part_that_does_not_load_fails_the_whole_set_from_either_half() {
        let good = part("a", 4);
        for at in 0..4 {
            let mut blobs: Vec<&[u8]> = vec![&good; 4];
            blobs[at] = b"not compiled rules";
            assert!(matches!(load_parts(&blobs), Err(RulesError::Format(_))), "bad part at {at}");
        }
    }
}
