//! The thin PyO3 layer over `dragonfly-core`: converts arguments and results, releases the GIL
//! for every scan, and defines the package's exception types (`dragonfly_hybrid.errors` re-exports
//! them), so the extension depends on nothing above it. `download_buffer` keeps the node's download
//! buffers for reuse.

mod download_buffer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use download_buffer::DownloadBuffer;
use dragonfly_core as core;
use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyIndexError, PyKeyError, PyOSError, PyOverflowError, PyRuntimeError,
    PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pyo3::create_exception!(
    _core,
    RuleCompileError,
    PyValueError,
    "Rule sources did not compile.\n\n``str(error)`` lists every diagnostic as ``origin:line:column: message``; \
     ``diagnostics`` holds them as ``(origin, line, column, message)`` tuples (1-based line and column, 0 when \
     unknown)."
);
pyo3::create_exception!(
    _core,
    RulesFormatError,
    PyValueError,
    "A blob is not a compiled rule set written by this version of dragonfly-hybrid."
);

pyo3::create_exception!(
    _core,
    ScanCancelled,
    PyException,
    "The scan was cancelled through its ``ScanProgress`` (``progress.cancel()``); it has no result."
);

fn cancelled_error(err: core::EngineError) -> PyErr {
    match err {
        core::EngineError::Cancelled => ScanCancelled::new_err(err.to_string()),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

fn rules_error(py: Python<'_>, err: core::RulesError) -> PyErr {
    match &err {
        core::RulesError::Compile(diagnostics) => {
            let items: Vec<(String, usize, usize, String)> =
                diagnostics.iter().map(|d| (d.origin.clone(), d.line, d.column, d.message.clone())).collect();
            let raised = RuleCompileError::new_err(err.to_string());
            match raised.value(py).setattr("diagnostics", items) {
                Ok(()) => raised,
                Err(err) => err,
            }
        }
        core::RulesError::Format(_) => RulesFormatError::new_err(err.to_string()),
    }
}

/// Threads a Scanner starts when none are asked for: the cores this process may run on.
#[pyfunction]
fn default_threads() -> usize {
    core::default_threads()
}

/// A compiled YARA-X rule set, shared read-only by every scanning thread.
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct Rules {
    inner: core::RuleSet,
}

#[pymethods]
impl Rules {
    #[staticmethod]
    #[pyo3(signature = (sources, *, route_by_filetype = true))]
    fn compile(py: Python<'_>, sources: &Bound<'_, PyAny>, route_by_filetype: bool) -> PyResult<Self> {
        let mapping = sources
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("sources must be a dict of origin -> YARA source"))?;
        let mut owned: Vec<(String, String)> = Vec::with_capacity(mapping.len());
        for (origin, text) in mapping.iter() {
            let origin: String =
                origin.extract().map_err(|_| PyTypeError::new_err("rule origins must be str"))?;
            let text: String = text
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("the source of {origin:?} must be str")))?;
            owned.push((origin, text));
        }
        let pairs = || owned.iter().map(|(o, t)| (o.as_str(), t.as_str()));
        let result = py.detach(|| {
            if route_by_filetype {
                core::RuleSet::compile(pairs())
            } else {
                core::RuleSet::compile_whole(pairs())
            }
        });
        result.map(|inner| Self { inner }).map_err(|err| rules_error(py, err))
    }

    #[staticmethod]
    fn deserialize(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        py.detach(|| core::RuleSet::deserialize(data))
            .map(|inner| Self { inner })
            .map_err(|err| rules_error(py, err))
    }

    fn serialize<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let blob = py.detach(|| self.inner.serialize());
        PyBytes::new(py, &blob)
    }

    #[getter]
    fn hash(&self) -> &str {
        self.inner.hash()
    }

    #[getter]
    fn count(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn filetype_classes(&self) -> Option<usize> {
        self.inner.routed_classes()
    }

    #[getter]
    fn identifiers(&self) -> Vec<String> {
        self.inner.infos().iter().map(|info| info.identifier.clone()).collect()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("<Rules count={} hash={}>", self.inner.len(), &self.inner.hash()[..12])
    }
}

/// Hostile-input limits.
#[pyclass(frozen, eq, module = "dragonfly_hybrid._core")]
#[derive(PartialEq)]
struct Limits {
    inner: core::Limits,
}

#[pymethods]
impl Limits {
    #[new]
    // The defaults are the core's (`Limits::default`), the one place they are written.
    #[pyo3(signature = (*, max_member_size=None, max_total_size=None, max_members=None, max_ratio=None, max_depth=None, timeout=None))]
    fn new(
        max_member_size: Option<Wide<u64>>,
        max_total_size: Option<Wide<u64>>,
        max_members: Option<Wide<u64>>,
        max_ratio: Option<Wide<u64>>,
        max_depth: Option<Wide<u32>>,
        timeout: Option<Wide<f64>>,
    ) -> PyResult<Self> {
        let defaults = core::Limits::default();
        let positive = |name: &str, given: Option<Wide<u64>>, default: u64| -> PyResult<u64> {
            let Some(given) = given else { return Ok(default) };
            match given.value {
                Some(v) if v > 0 => Ok(v),
                _ => Err(PyValueError::new_err(format!(
                    "{name} must be a positive integer below 2**64, got {}",
                    given.shown
                ))),
            }
        };
        let max_depth = match max_depth {
            None => defaults.max_depth,
            Some(Wide { value: Some(depth), .. }) if depth <= core::MAX_NESTING_DEPTH => depth,
            Some(Wide { shown, .. }) => {
                return Err(PyValueError::new_err(format!(
                    "max_depth must be an integer from 0 to {} (the walker never opens archives nested \
                     deeper), got {shown}",
                    core::MAX_NESTING_DEPTH
                )))
            }
        };
        let timeout = match timeout {
            None => defaults.timeout.as_secs_f64(),
            Some(Wide { value: Some(seconds), .. })
                if seconds.is_finite() && (0.001..=86_400.0).contains(&seconds) =>
            {
                seconds
            }
            Some(Wide { shown, .. }) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a number of seconds from 0.001 to 86400, got {shown}"
                )))
            }
        };
        Ok(Self {
            inner: core::Limits {
                max_member_size: positive("max_member_size", max_member_size, defaults.max_member_size)?,
                max_total_size: positive("max_total_size", max_total_size, defaults.max_total_size)?,
                max_members: positive("max_members", max_members, defaults.max_members)?,
                max_ratio: positive("max_ratio", max_ratio, defaults.max_ratio)?,
                max_depth,
                timeout: Duration::from_secs_f64(timeout),
            },
        })
    }

    #[getter]
    fn max_member_size(&self) -> u64 {
        self.inner.max_member_size
    }
    #[getter]
    fn max_total_size(&self) -> u64 {
        self.inner.max_total_size
    }
    #[getter]
    fn max_members(&self) -> u64 {
        self.inner.max_members
    }
    #[getter]
    fn max_ratio(&self) -> u64 {
        self.inner.max_ratio
    }
    #[getter]
    fn max_depth(&self) -> u32 {
        self.inner.max_depth
    }
    #[getter]
    fn timeout(&self) -> f64 {
        self.inner.timeout.as_secs_f64()
    }

    fn __repr__(&self) -> String {
        let l = &self.inner;
        format!(
            "Limits(max_member_size={}, max_total_size={}, max_members={}, max_ratio={}, max_depth={}, timeout={:?})",
            l.max_member_size,
            l.max_total_size,
            l.max_members,
            l.max_ratio,
            l.max_depth,
            l.timeout.as_secs_f64()
        )
    }
}

/// One match of one pattern. This and the other parts of a distribution's result (`RuleMatch`,
/// `FileResult`) share its report and point into it: a report may hold 50,000 files, and a copy of
/// each part asked for cost more than the rest of a SARIF or HTML report.
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct PatternMatch {
    dist: Arc<core::DistributionReport>,
    file: usize,
    hit: usize,
    pattern: usize,
}

impl PatternMatch {
    fn inner(&self) -> &core::PatternHit {
        &self.dist.files[self.file].hits[self.hit].patterns[self.pattern]
    }
}

#[pymethods]
impl PatternMatch {
    #[getter]
    fn identifier(&self) -> &str {
        &self.inner().identifier
    }
    #[getter]
    fn offset(&self) -> u64 {
        self.inner().offset
    }
    #[getter]
    fn length(&self) -> u64 {
        self.inner().length
    }
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner().data)
    }
    #[getter]
    fn line(&self) -> u64 {
        self.inner().line
    }
    #[getter]
    fn column(&self) -> u64 {
        self.inner().column
    }
    #[getter]
    fn snippet<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner().snippet)
    }
    #[getter]
    fn snippet_offset(&self) -> u64 {
        self.inner().snippet_offset
    }
    /// The snippet split as (before, match, after), each decoded as Python's
    /// `bytes.decode("utf-8", "backslashreplace")` decodes it.
    fn snippet_parts<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>, Bound<'py, PyString>) {
        let pattern = self.inner();
        let line = &pattern.snippet[..];
        // As Python slices: `snippet[:start]`, `snippet[start:end]`, `snippet[end:]`.
        let start = usize::try_from(pattern.snippet_offset).map_or(line.len(), |at| at.min(line.len()));
        let end = usize::try_from(pattern.length)
            .map_or(line.len(), |length| start.saturating_add(length).min(line.len()));
        let part = |bytes: &[u8]| PyString::new(py, &core::utf8_backslashed(bytes));
        (part(&line[..start]), part(&line[start..end]), part(&line[end..]))
    }
    fn __repr__(&self) -> String {
        let pattern = self.inner();
        format!("<PatternMatch {} at {}+{}>", pattern.identifier, pattern.offset, pattern.length)
    }
}

fn meta_to_py<'py>(py: Python<'py>, value: &core::Meta) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        core::Meta::Int(v) => v.into_pyobject(py)?.into_any(),
        core::Meta::Float(v) => v.into_pyobject(py)?.into_any(),
        core::Meta::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
        core::Meta::Str(v) => PyString::new(py, v).into_any(),
        core::Meta::Bytes(v) => PyBytes::new(py, v).into_any(),
    })
}

/// A rule that matched a file (a part of its distribution's report, as `PatternMatch`).
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct RuleMatch {
    dist: Arc<core::DistributionReport>,
    file: usize,
    hit: usize,
}

impl RuleMatch {
    fn new(dist: &Arc<core::DistributionReport>, file: usize, hit: usize) -> Self {
        Self { dist: Arc::clone(dist), file, hit }
    }

    fn inner(&self) -> &core::RuleHit {
        &self.dist.files[self.file].hits[self.hit]
    }
}

#[pymethods]
impl RuleMatch {
    #[getter]
    fn identifier(&self) -> &str {
        &self.inner().rule.identifier
    }
    #[getter]
    fn namespace(&self) -> &str {
        &self.inner().rule.namespace
    }
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.inner().rule.tags.clone()
    }
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        // Each key once: a repeated key keeps its first value (`RuleInfo::metadata`).
        for (key, value) in &self.inner().rule.metadata {
            dict.set_item(key, meta_to_py(py, value)?)?;
        }
        Ok(dict)
    }
    #[getter]
    fn weight(&self) -> i64 {
        self.inner().rule.weight
    }
    #[getter]
    fn patterns(&self) -> Vec<PatternMatch> {
        (0..self.inner().patterns.len())
            .map(|pattern| PatternMatch {
                dist: Arc::clone(&self.dist),
                file: self.file,
                hit: self.hit,
                pattern,
            })
            .collect()
    }
    fn __repr__(&self) -> String {
        format!("<RuleMatch {} weight={}>", self.inner().rule.identifier, self.inner().rule.weight)
    }
}

/// A scanned file that matched at least one rule (a part of its distribution's report, as
/// `PatternMatch`).
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct FileResult {
    dist: Arc<core::DistributionReport>,
    file: usize,
}

impl FileResult {
    fn new(dist: &Arc<core::DistributionReport>, file: usize) -> Self {
        Self { dist: Arc::clone(dist), file }
    }

    fn inner(&self) -> &core::FileReport {
        &self.dist.files[self.file]
    }
}

#[pymethods]
impl FileResult {
    #[getter]
    fn path(&self) -> &str {
        &self.inner().path
    }
    #[getter]
    fn size(&self) -> u64 {
        self.inner().size
    }
    #[getter]
    fn sha256(&self) -> &str {
        &self.inner().sha256
    }
    #[getter]
    fn is_text(&self) -> bool {
        self.inner().is_text
    }
    #[getter]
    fn score(&self) -> i64 {
        self.inner().score()
    }
    #[getter]
    fn matches(&self) -> Vec<RuleMatch> {
        (0..self.inner().hits.len()).map(|hit| RuleMatch::new(&self.dist, self.file, hit)).collect()
    }
    fn __repr__(&self) -> String {
        format!("<FileResult {:?} score={}>", self.inner().path, self.inner().score())
    }
}

/// A problem met while scanning.
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct ScanIssue {
    inner: core::Issue,
}

#[pymethods]
impl ScanIssue {
    #[getter]
    fn path(&self) -> &str {
        &self.inner.path
    }
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }
    #[getter]
    fn message(&self) -> &str {
        &self.inner.message
    }
    #[getter]
    fn unscanned(&self) -> bool {
        self.inner.unscanned
    }
    fn __repr__(&self) -> String {
        format!("<ScanIssue {}>", self.inner)
    }
    fn __str__(&self) -> String {
        self.inner.to_string()
    }
}

/// The outcome of one distribution.
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct DistributionResult {
    inner: Arc<core::DistributionReport>,
    /// Its score, rules and top file, counted once on first use: a report asks for them several times,
    /// and each count is a pass over every hit (tens of thousands in a large wheel).
    totals: OnceLock<Totals>,
}

struct Totals {
    score: i64,
    rules_matched: Vec<String>,
    top_file: Option<usize>,
}

impl DistributionResult {
    fn new(inner: Arc<core::DistributionReport>) -> Self {
        Self { inner, totals: OnceLock::new() }
    }

    fn totals(&self) -> &Totals {
        self.totals.get_or_init(|| {
            let tally = self.inner.tally();
            let top_file = tally.top_file.map(|top| {
                self.inner.files.iter().position(|f| std::ptr::eq(f, top)).expect("a file of this report")
            });
            Totals { score: tally.score, rules_matched: tally.rules_matched(), top_file }
        })
    }
}

#[pymethods]
impl DistributionResult {
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    #[getter]
    fn url(&self) -> Option<&str> {
        self.inner.url.as_deref()
    }
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format.as_str()
    }
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }
    #[getter]
    fn sha256(&self) -> &str {
        &self.inner.sha256
    }
    #[getter]
    fn files_scanned(&self) -> u64 {
        self.inner.files_scanned
    }
    #[getter]
    fn bytes_scanned(&self) -> u64 {
        self.inner.bytes_scanned
    }
    #[getter]
    fn score(&self) -> i64 {
        self.totals().score
    }
    #[getter]
    fn rules_matched(&self) -> Vec<String> {
        self.totals().rules_matched.clone()
    }
    #[getter]
    fn top_file(&self) -> Option<&str> {
        self.totals().top_file.map(|index| self.inner.files[index].path.as_str())
    }
    #[getter]
    fn files(&self) -> Vec<FileResult> {
        (0..self.inner.files.len()).map(|file| FileResult::new(&self.inner, file)).collect()
    }
    /// ``len(files)``, without building them.
    #[getter]
    fn file_count(&self) -> usize {
        self.inner.files.len()
    }
    /// How many (file, rule) matches: the sum of ``len(f.matches)`` over ``files``, without building them.
    #[getter]
    fn match_count(&self) -> usize {
        self.inner.files.iter().map(|f| f.hits.len()).sum()
    }
    /// Every rule that matched, with its weight and how many files it matched:
    /// ``{identifier: (weight, files)}``, without building the files.
    fn rule_file_counts(&self) -> std::collections::BTreeMap<String, (i64, usize)> {
        // Counted per rule (the hits of one rule share its `RuleInfo`), in the order first met, then
        // merged by identifier: copying the name once per hit took milliseconds on 40,000 hits.
        let mut index: HashMap<*const core::RuleInfo, usize> = HashMap::new();
        let mut per_rule: Vec<(&core::RuleInfo, usize)> = Vec::new();
        for hit in self.inner.files.iter().flat_map(|file| &file.hits) {
            let at = *index.entry(Arc::as_ptr(&hit.rule)).or_insert_with(|| {
                per_rule.push((&hit.rule, 0));
                per_rule.len() - 1
            });
            per_rule[at].1 += 1;
        }
        let mut counts = std::collections::BTreeMap::new();
        for (rule, hits) in per_rule {
            counts.entry(rule.identifier.clone()).or_insert((rule.weight, 0)).1 += hits;
        }
        counts
    }
    /// At most ``n`` (file, match) pairs: the heaviest rule first, then by path, then by rule
    /// identifier, then in scan order. Only these are built (a report may hold 50,000 matches).
    fn top_findings(&self, n: Wide<usize>) -> PyResult<Vec<(FileResult, RuleMatch)>> {
        let n = match n.value {
            Some(n) => n,
            // Past usize: every finding; below 0 was a bare OverflowError.
            None if !n.shown.starts_with('-') => usize::MAX,
            None => return Err(PyValueError::new_err(format!("n must be 0 or more, not {}", n.shown))),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        // Only hits as heavy as the n-th heaviest can be among the first n: the others are not ranked.
        let mut per_weight: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
        for hit in self.inner.files.iter().flat_map(|file| &file.hits) {
            *per_weight.entry(hit.rule.weight).or_insert(0) += 1;
        }
        let mut heavier = 0;
        let lightest = per_weight
            .iter()
            .rev()
            .find(|&(_, &count)| {
                heavier += count;
                heavier >= n
            })
            .map_or(i64::MIN, |(&weight, _)| weight);
        // The position in scan order ends the key, so the order is total and an unstable select is exact.
        let mut pairs: Vec<FindingKey<'_>> = self
            .inner
            .files
            .iter()
            .enumerate()
            .flat_map(|(at, f)| f.hits.iter().enumerate().map(move |(hit_at, h)| (at, f, hit_at, h)))
            .enumerate()
            .filter(|(_, (_, _, _, hit))| hit.rule.weight >= lightest)
            .map(|(position, (file_at, file, hit_at, hit))| FindingKey {
                weight: hit.rule.weight,
                position,
                file,
                hit,
                file_at,
                hit_at,
            })
            .collect();
        if n < pairs.len() {
            pairs.select_nth_unstable_by(n - 1, FindingKey::order);
            pairs.truncate(n);
        }
        pairs.sort_unstable_by(FindingKey::order);
        Ok(pairs
            .into_iter()
            .map(|k| {
                (FileResult::new(&self.inner, k.file_at), RuleMatch::new(&self.inner, k.file_at, k.hit_at))
            })
            .collect())
    }
    #[getter]
    fn issues(&self) -> Vec<ScanIssue> {
        self.inner.issues.iter().map(|i| ScanIssue { inner: i.clone() }).collect()
    }
    #[getter]
    fn complete(&self) -> bool {
        self.inner.complete()
    }
    #[getter]
    fn verdict(&self) -> &'static str {
        self.inner.verdict().as_str()
    }
    fn __repr__(&self) -> String {
        format!(
            "<DistributionResult {:?} {} score={} files_scanned={} issues={}>",
            self.inner.name,
            self.inner.verdict().as_str(),
            self.totals().score,
            self.inner.files_scanned,
            self.inner.issues.len()
        )
    }
}

/// One (file, rule) match of a distribution, as ranked by ``DistributionResult.top_findings``.
struct FindingKey<'a> {
    weight: i64,
    position: usize,
    file: &'a core::FileReport,
    hit: &'a core::RuleHit,
    file_at: usize,
    hit_at: usize,
}

impl FindingKey<'_> {
    /// Heaviest rule first, then path, then rule identifier, then scan order (so the order is total).
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.weight
            .cmp(&a.weight)
            .then_with(|| a.file.path.cmp(&b.file.path))
            .then_with(|| a.hit.rule.identifier.cmp(&b.hit.rule.identifier))
            .then_with(|| a.position.cmp(&b.position))
    }
}

/// What a SARIF result takes from its target (`SarifFindings`).
struct SarifTarget {
    /// `None`: the target's results are all rendered by the report module (its text is not UTF-8).
    target_json: Option<String>,
    below_min_score: bool,
    related_json: Option<String>,
}

/// A distribution of a SARIF log, with its target and the project and version of its file name.
struct SarifDist {
    target: usize,
    report: Arc<core::DistributionReport>,
    project: String,
    version: Option<String>,
}

/// The findings of a SARIF log, ranked, and their results as JSON lines (`report.write_sarif_document`).
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct SarifFindings {
    targets: Vec<SarifTarget>,
    dists: Vec<SarifDist>,
    ranked: Vec<core::FindingRef>,
}

type SarifTargetArgs<'py> =
    (Option<String>, bool, Option<String>, Vec<(PyRef<'py, DistributionResult>, String, Option<String>)>);

impl SarifFindings {
    fn hit(&self, found: core::FindingRef) -> (&SarifDist, &core::FileReport, &core::RuleHit) {
        let dist = &self.dists[found.dist];
        let file = &dist.report.files[found.file];
        (dist, file, &file.hits[found.hit])
    }
}

#[pymethods]
impl SarifFindings {
    #[new]
    fn new(targets: Vec<SarifTargetArgs<'_>>, limit: usize) -> Self {
        let mut dists = Vec::new();
        let targets = targets
            .into_iter()
            .enumerate()
            .map(|(index, (target_json, below_min_score, related_json, target_dists))| {
                dists.extend(target_dists.into_iter().map(|(dist, project, version)| SarifDist {
                    target: index,
                    report: Arc::clone(&dist.inner),
                    project,
                    version,
                }));
                SarifTarget { target_json, below_min_score, related_json }
            })
            .collect();
        let keyed: Vec<(usize, &core::DistributionReport)> =
            dists.iter().map(|d| (d.target, &*d.report)).collect();
        let ranked = core::rank_findings(&keyed, limit);
        Self { targets, dists, ranked }
    }
    fn __len__(&self) -> usize {
        self.ranked.len()
    }
    /// The first match of each rule (identifier and namespace) among the findings, in their order.
    fn rules(&self) -> Vec<RuleMatch> {
        let mut seen = HashSet::new();
        self.ranked
            .iter()
            .filter(|&&found| {
                let rule = &self.hit(found).2.rule;
                seen.insert((&rule.identifier, &rule.namespace))
            })
            .map(|found| RuleMatch::new(&self.dists[found.dist].report, found.file, found.hit))
            .collect()
    }
    /// Finding ``index``: its target's index, its distribution's index (targets' distributions in
    /// order), the file and the match.
    fn finding(&self, index: usize) -> PyResult<(usize, usize, FileResult, RuleMatch)> {
        let found = *self.ranked.get(index).ok_or_else(|| PyIndexError::new_err("no such finding"))?;
        let report = &self.dists[found.dist].report;
        Ok((
            self.dists[found.dist].target,
            found.dist,
            FileResult::new(report, found.file),
            RuleMatch::new(report, found.file, found.hit),
        ))
    }
    /// Each finding's SARIF result as one line of JSON, or ``None`` where the report module renders it.
    fn results(
        &self,
        py: Python<'_>,
        descriptions: HashMap<(String, String), Option<String>>,
        indices: HashMap<String, usize>,
    ) -> PyResult<Vec<Option<String>>> {
        py.detach(|| {
            let mut buf = Vec::with_capacity(1024);
            let reports: Vec<&core::DistributionReport> = self.dists.iter().map(|d| &*d.report).collect();
            // Looked up per result without making its key.
            let descriptions: HashMap<(&str, &str), Option<&str>> = descriptions
                .iter()
                .map(|((rule, namespace), text)| ((rule.as_str(), namespace.as_str()), text.as_deref()))
                .collect();
            self.ranked
                .iter()
                .enumerate()
                .map(|(at, &found)| {
                    core::prefetch_findings(&reports, &self.ranked, at);
                    let (dist, file, hit) = self.hit(found);
                    let target = &self.targets[dist.target];
                    let Some(target_json) = target.target_json.as_deref() else { return Ok(None) };
                    let rule = &hit.rule;
                    let index = *indices.get(&rule.identifier).ok_or_else(|| {
                        PyKeyError::new_err(format!("no rule index for {}", rule.identifier))
                    })?;
                    let description = descriptions
                        .get(&(rule.identifier.as_str(), rule.namespace.as_str()))
                        .copied()
                        .flatten();
                    let context = core::ResultContext {
                        target_json,
                        below_min_score: target.below_min_score,
                        related_json: target.related_json.as_deref(),
                        project: &dist.project,
                        version: dist.version.as_deref(),
                    };
                    buf.clear();
                    Ok(core::write_sarif_result(
                        &mut buf,
                        &context,
                        &dist.report,
                        file,
                        hit,
                        index,
                        description,
                    )
                    .then(|| String::from_utf8(buf.clone()).expect("JSON written from UTF-8 text")))
                })
                .collect()
        })
    }
}

/// One release, scored as the Dragonfly mainframe expects.
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct ReleaseResult {
    inner: core::ReleaseReport,
}

#[pymethods]
impl ReleaseResult {
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    #[getter]
    fn version(&self) -> &str {
        &self.inner.version
    }
    #[getter]
    fn distributions(&self) -> Vec<DistributionResult> {
        self.inner.distributions.iter().map(|d| DistributionResult::new(Arc::new(d.clone()))).collect()
    }
    #[getter]
    fn score(&self) -> i64 {
        self.inner.score()
    }
    #[getter]
    fn rules_matched(&self) -> Vec<String> {
        self.inner.rules_matched()
    }
    #[getter]
    fn inspector_url(&self) -> Option<String> {
        self.inner.inspector_url()
    }
    #[getter]
    fn complete(&self) -> bool {
        self.inner.complete()
    }
    #[getter]
    fn verdict(&self) -> &'static str {
        self.inner.verdict().as_str()
    }
    #[getter]
    fn failure_reason(&self) -> Option<String> {
        self.inner.failure_reason()
    }
    fn __repr__(&self) -> String {
        format!(
            "<ReleaseResult {}=={} {} score={}>",
            self.inner.name,
            self.inner.version,
            self.inner.verdict().as_str(),
            self.inner.score()
        )
    }
}

/// The deepest `level` the JSON writers take: deeper, the indentation alone would be gigabytes (and
/// past `usize::MAX / 2` its arithmetic would wrap).
const MAX_JSON_LEVEL: usize = 1000;

/// `level` as a layout, or a `ValueError` naming it when negative or past [`MAX_JSON_LEVEL`].
fn json_layout(level: Option<Wide<usize>>) -> PyResult<core::Layout> {
    match level {
        None => Ok(core::Layout::Compact),
        Some(Wide { value: Some(level), .. }) if level <= MAX_JSON_LEVEL => {
            Ok(core::Layout::Indented { level })
        }
        Some(Wide { shown, .. }) => Err(PyValueError::new_err(format!(
            "level must be an integer from 0 to {MAX_JSON_LEVEL} (levels of indentation), not {shown}"
        ))),
    }
}

/// The JSON array of `distributions` (the schema of `dragonfly_hybrid.report`): one line when `level`
/// is None, else `Layout::Indented` (each file and issue on one line), every line after the first
/// `level` levels deeper.
#[pyfunction]
#[pyo3(signature = (distributions, level=None))]
fn distributions_json<'py>(
    py: Python<'py>,
    distributions: Vec<PyRef<'py, DistributionResult>>,
    level: Option<Wide<usize>>,
) -> PyResult<Bound<'py, PyString>> {
    let reports: Vec<Arc<core::DistributionReport>> =
        distributions.iter().map(|d| Arc::clone(&d.inner)).collect();
    let layout = json_layout(level)?;
    let text = py.detach(|| {
        let refs: Vec<&core::DistributionReport> = reports.iter().map(|r| &**r).collect();
        let mut out = Vec::with_capacity(4096);
        core::write_distributions(&mut out, &refs, layout).map(|()| out)
    });
    let text = text.map_err(|err| PyRuntimeError::new_err(format!("cannot write the JSON report: {err}")))?;
    // The writer copies Rust strs and ASCII only: the text is UTF-8.
    let text = String::from_utf8(text).map_err(|err| PyRuntimeError::new_err(err.to_string()))?;
    Ok(PyString::new(py, &text))
}

/// Write what `distributions_json` returns, UTF-8 encoded, to the open file descriptor `fd` (at its
/// position; not closed), a MB or so at a time: a report of tens of MB is never held in memory.
#[cfg(unix)]
#[pyfunction]
#[pyo3(signature = (distributions, fd, level=None))]
fn write_distributions_json(
    py: Python<'_>,
    distributions: Vec<PyRef<'_, DistributionResult>>,
    fd: i32,
    level: Option<Wide<usize>>,
) -> PyResult<()> {
    use std::os::fd::{BorrowedFd, OwnedFd};

    if fd < 0 {
        return Err(PyValueError::new_err(format!("not a file descriptor: {fd}")));
    }
    let reports: Vec<Arc<core::DistributionReport>> =
        distributions.iter().map(|d| Arc::clone(&d.inner)).collect();
    let layout = json_layout(level)?;
    // SAFETY: the caller keeps `fd` open for the duration of this call (Python holds the file
    // object); it is duplicated, so closing our copy leaves the caller's descriptor untouched.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned: OwnedFd = borrowed.try_clone_to_owned()?;
    py.detach(|| {
        let refs: Vec<&core::DistributionReport> = reports.iter().map(|r| &**r).collect();
        // `write_distributions` buffers: it writes in large pieces.
        core::write_distributions(std::fs::File::from(owned), &refs, layout)
    })?;
    Ok(())
}

/// A numeric argument of any size, as given: `value` when it fits (`None` past `i128` or `f64`), and its
/// `repr`. Range checks then name the argument in a `ValueError` whatever its size, where a conversion
/// to a fixed-width type raised a bare `OverflowError` first (`Limits(max_total_size=2**200)`,
/// `Scanner(threads=-1)`).
struct Wide<T> {
    value: Option<T>,
    shown: String,
}

impl<'a, 'py, T> FromPyObject<'a, 'py> for Wide<T>
where
    T: for<'b> FromPyObject<'b, 'py>,
{
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if value.is_instance_of::<PyBool>() {
            // An int to Python, a flag given to the wrong keyword here (`max_depth=False`: 0).
            return Err(PyTypeError::new_err("a number is wanted, not a bool"));
        }
        // A repr that raises (or is not text) gives way to the value's type.
        let shown = value.repr().map(|repr| repr.to_string()).unwrap_or_else(|_| {
            let kind = value.get_type().name().map(|name| name.to_string()).unwrap_or_default();
            format!("a {kind} object")
        });
        match value.extract::<T>().map_err(Into::<PyErr>::into) {
            Ok(fits) => Ok(Self { value: Some(fits), shown }),
            Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => Ok(Self { value: None, shown }),
            Err(err) => Err(err),
        }
    }
}

/// `Scanner(digests=...)`'s value for the matched files' digests only.
const DIGESTS_FILES: &str = "files";

/// `digests=`: `True`, `False` or `"files"`.
struct DigestsArg(core::Digests);

impl<'a, 'py> FromPyObject<'a, 'py> for DigestsArg {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(flag) = value.cast::<PyBool>() {
            return Ok(Self(if flag.is_true() { core::Digests::All } else { core::Digests::None }));
        }
        if value.extract::<String>().is_ok_and(|text| text == DIGESTS_FILES) {
            return Ok(Self(core::Digests::Files));
        }
        let shown = value.repr().map(|repr| repr.to_string()).unwrap_or_default();
        Err(PyValueError::new_err(format!("digests must be True, False or {DIGESTS_FILES:?}, not {shown}")))
    }
}

/// Bytes handed over by Python without a copy: `bytes`, or a `bytearray` (the node downloads into one,
/// a [`DownloadBuffer`]'s) held exported through a `memoryview` for the scan, so that it cannot be
/// resized or freed meanwhile.
enum BytesLike<'py> {
    Bytes(Bound<'py, PyBytes>),
    ByteArray { array: Bound<'py, PyByteArray>, _export: Bound<'py, PyMemoryView> },
}

impl<'py> BytesLike<'py> {
    fn extract(data: &Bound<'py, PyAny>) -> PyResult<Option<Self>> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            return Ok(Some(Self::Bytes(bytes.clone())));
        }
        let array = if let Ok(buffer) = data.cast::<DownloadBuffer>() {
            buffer.get().array(data.py())
        } else if let Ok(array) = data.cast_exact::<PyByteArray>() {
            array.clone()
        } else if let Ok(array) = data.cast::<PyByteArray>() {
            // A subclass may export another object's buffer (`__buffer__`, Python 3.12+), which would leave
            // its own storage free to be resized or freed under the scan: it is copied instead.
            // SAFETY: the GIL is held, so no Python code resizes or writes the array during the copy.
            return Ok(Some(Self::Bytes(PyBytes::new(data.py(), unsafe { array.as_bytes() }))));
        } else {
            return Ok(None);
        };
        let export = PyMemoryView::from(array.as_any())?;
        Ok(Some(Self::ByteArray { array, _export: export }))
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Bytes(bytes) => bytes.as_bytes(),
            // SAFETY: the export keeps the array's memory alive and its size fixed while `self` lives. Its
            // content must not be written while a scan reads it: the contract of CPython's hashlib and
            // zlib, which read a bytearray with the GIL released too.
            Self::ByteArray { array, .. } => unsafe { array.as_bytes() },
        }
    }
}

/// Input bytes as Python gave them: borrowed bytes (kept alive by the caller) or a path.
enum Source<'py> {
    Bytes(BytesLike<'py>),
    Path(PathBuf),
}

fn extract_items<'py>(items: &Bound<'py, PyAny>) -> PyResult<Vec<(String, Source<'py>, Option<String>)>> {
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        let (name, data, url): (String, Bound<'py, PyAny>, Option<String>) =
            item.extract().map_err(|_| {
                PyTypeError::new_err(
                    "each distribution must be a (name, bytes or path str, url or None) tuple",
                )
            })?;
        let source = if let Some(bytes) = BytesLike::extract(&data)? {
            Source::Bytes(bytes)
        } else if let Ok(path) = data.extract::<PathBuf>() {
            Source::Path(path)
        } else {
            return Err(PyTypeError::new_err(format!(
                "the data of {name:?} must be bytes, a bytearray, a DownloadBuffer or a path"
            )));
        };
        out.push((name, source, url));
    }
    Ok(out)
}

fn dist_inputs<'a>(items: &'a [(String, Source<'_>, Option<String>)]) -> Vec<core::DistInput<'a>> {
    items
        .iter()
        .map(|(name, source, url)| core::DistInput {
            name: name.clone(),
            url: url.clone(),
            input: match source {
                Source::Bytes(bytes) => core::Input::Bytes(bytes.as_bytes()),
                Source::Path(path) => core::Input::Path(path.clone()),
            },
        })
        .collect()
}

/// Live counters of the scans it is passed to (``progress=``), and their cancel switch.
///
/// Safe to read and cancel from any thread while a scan runs (the scan holds no GIL). One object
/// may be passed to several scans: the counters add up and ``cancel()`` stops them all.
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct ScanProgress {
    inner: core::ScanControl,
}

#[pymethods]
impl ScanProgress {
    #[new]
    fn new() -> Self {
        Self { inner: core::ScanControl::new() }
    }

    /// Files scanned so far (as counted in ``files_scanned``).
    #[getter]
    fn files(&self) -> u64 {
        self.inner.files()
    }

    /// Bytes of the files scanned so far (as counted in ``bytes_scanned``).
    #[getter]
    fn bytes(&self) -> u64 {
        self.inner.bytes()
    }

    /// Distributions whose scan has finished.
    #[getter]
    fn distributions(&self) -> u64 {
        self.inner.distributions()
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Stop the scans using this object: they raise ``ScanCancelled`` promptly.
    fn cancel(&self) {
        self.inner.cancel();
    }

    fn __repr__(&self) -> String {
        format!(
            "<ScanProgress files={} bytes={} distributions={}{}>",
            self.inner.files(),
            self.inner.bytes(),
            self.inner.distributions(),
            if self.inner.is_cancelled() { " cancelled" } else { "" }
        )
    }
}

/// The control of `progress`, or a private one when none was given.
fn control_of(progress: Option<&Bound<'_, ScanProgress>>) -> core::ScanControl {
    progress.map_or_else(core::ScanControl::new, |p| p.get().inner.clone())
}

/// Runs `scan` with the GIL released, handing it an [`core::Interrupted`] that looks for Python signals
/// while it waits: a signal handler that raises (Ctrl-C's `KeyboardInterrupt`) cancels the scan (it
/// stops at its next file) and its exception is raised here once the scan has stopped. Without it a scan
/// called from the main thread held Ctrl-C until it had finished. Off the main thread no handler runs
/// (`check_signals` does nothing there).
fn interruptible<T>(py: Python<'_>, scan: impl FnOnce(core::Interrupted<'_>) -> T + Send) -> PyResult<T>
where
    T: Send,
{
    let (result, raised) = py.detach(|| {
        let mut raised: Option<PyErr> = None;
        let mut look_for_signals = || {
            raised = Python::attach(|py| py.check_signals()).err();
            raised.is_some()
        };
        (scan(&mut look_for_signals), raised)
    });
    raised.map_or(Ok(result), Err)
}

/// Scans distributions in parallel on its own thread pool, with the GIL released.
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
struct Scanner {
    engine: Arc<core::Engine>,
    rules: Py<Rules>,
    limits: Py<Limits>,
}

#[pymethods]
impl Scanner {
    #[new]
    #[pyo3(signature = (rules, limits=None, threads=None, *, fast_scan=false, record_cache=false, content_cache=true, digests=DigestsArg(core::Digests::All)))]
    #[pyo3(
        text_signature = "(rules, limits=None, threads=None, *, fast_scan=False, record_cache=False, content_cache=True, digests=True)"
    )]
    // The Python constructor's keyword arguments, one parameter each.
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        rules: Py<Rules>,
        limits: Option<Py<Limits>>,
        threads: Option<Wide<usize>>,
        fast_scan: bool,
        record_cache: bool,
        content_cache: bool,
        digests: DigestsArg,
    ) -> PyResult<Self> {
        let threads = match threads {
            None => None,
            Some(Wide { value: Some(n), .. }) if (1..=core::MAX_THREADS).contains(&n) => Some(n),
            Some(Wide { shown, .. }) => {
                return Err(PyValueError::new_err(format!(
                    "threads must be an integer from 1 to {} (or None for every core), got {shown}",
                    core::MAX_THREADS
                )))
            }
        };
        if fast_scan && record_cache {
            // Entries of a fast scan keep only first matches: persisted, they would short-change
            // a later full scan that loads them.
            return Err(PyValueError::new_err("record_cache cannot be combined with fast_scan"));
        }
        if record_cache && !content_cache {
            return Err(PyValueError::new_err("record_cache needs the content cache (content_cache=True)"));
        }
        let limits = match limits {
            Some(limits) => limits,
            None => Py::new(py, Limits { inner: core::Limits::default() })?,
        };
        let engine = core::Engine::new(rules.get().inner.clone(), limits.get().inner.clone(), threads)
            .map_err(|err| PyRuntimeError::new_err(err.to_string()))?
            .with_fast_scan(fast_scan)
            .with_content_cache(content_cache)
            .with_digests(digests.0)
            .with_cache_journal(record_cache);
        Ok(Self { engine: Arc::new(engine), rules, limits })
    }

    #[getter]
    fn rules(&self, py: Python<'_>) -> Py<Rules> {
        self.rules.clone_ref(py)
    }
    #[getter]
    fn limits(&self, py: Python<'_>) -> Py<Limits> {
        self.limits.clone_ref(py)
    }
    #[getter]
    fn threads(&self) -> usize {
        self.engine.threads()
    }
    #[getter]
    fn fast_scan(&self) -> bool {
        self.engine.fast_scan()
    }
    #[getter]
    fn content_cache(&self) -> bool {
        self.engine.content_cache()
    }
    /// `True` (every digest), `"files"` (the matched files' only) or `False`.
    #[getter]
    fn digests<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self.engine.digests() {
            core::Digests::All => PyBool::new(py, true).to_owned().into_any(),
            core::Digests::Files => PyString::new(py, DIGESTS_FILES).into_any(),
            core::Digests::None => PyBool::new(py, false).to_owned().into_any(),
        }
    }

    /// Content-cache counters: entries held, files answered from the cache, files scanned.
    #[getter]
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.engine.cache_stats();
        let out = PyDict::new(py);
        out.set_item("entries", stats.entries)?;
        out.set_item("hits", stats.hits)?;
        out.set_item("misses", stats.misses)?;
        Ok(out)
    }

    /// The contents scanned since the last call, as (cache key, encoded matches) pairs.
    fn cache_export<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let engine = &self.engine;
        let entries = py.detach(|| engine.take_cache_journal()).ok_or_else(|| {
            PyValueError::new_err("this Scanner does not record its cache: create it with record_cache=True")
        })?;
        Ok(entries.iter().map(|(hash, blob)| (PyBytes::new(py, hash), PyBytes::new(py, blob))).collect())
    }

    /// Load entries exported by a Scanner with the same rules. Returns how many were loaded and,
    /// when some did not fit this rule set, why the first of them was refused.
    fn cache_import(&self, py: Python<'_>, entries: &Bound<'_, PyAny>) -> PyResult<(usize, Option<String>)> {
        if !self.engine.content_cache() {
            return Err(PyValueError::new_err(
                "this Scanner has no content cache: create it with content_cache=True",
            ));
        }
        let mut owned: Vec<([u8; 32], Vec<u8>)> = Vec::new();
        for item in entries.try_iter()? {
            let (hash, blob): (Vec<u8>, Vec<u8>) = item?.extract().map_err(|_| {
                PyTypeError::new_err("each cache entry must be a (cache key bytes, entry bytes) tuple")
            })?;
            let hash: [u8; 32] = hash.try_into().map_err(|h: Vec<u8>| {
                PyValueError::new_err(format!("a cache key is 32 bytes, not {}", h.len()))
            })?;
            owned.push((hash, blob));
        }
        let engine = &self.engine;
        let (loaded, error) =
            py.detach(|| engine.import_cache(owned.iter().map(|(hash, blob)| (*hash, blob.as_slice()))));
        Ok((loaded, error.map(|err| err.to_string())))
    }

    #[pyo3(signature = (data, name, url=None, *, progress=None))]
    fn scan_bytes(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        name: String,
        url: Option<String>,
        progress: Option<&Bound<'_, ScanProgress>>,
    ) -> PyResult<DistributionResult> {
        let data = BytesLike::extract(data)?.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "the data of {name:?} must be bytes, a bytearray or a DownloadBuffer"
            ))
        })?;
        let bytes = data.as_bytes();
        let engine = &self.engine;
        let control = control_of(progress);
        let report = interruptible(py, |interrupted| {
            let dist = core::DistInput { name, url, input: core::Input::Bytes(bytes) };
            engine.scan_with(dist, &control, interrupted)
        })?
        .map_err(cancelled_error)?;
        Ok(DistributionResult::new(Arc::new(report)))
    }

    #[pyo3(signature = (path, name=None, *, progress=None))]
    fn scan_path(
        &self,
        py: Python<'_>,
        path: PathBuf,
        name: Option<String>,
        progress: Option<&Bound<'_, ScanProgress>>,
    ) -> PyResult<DistributionResult> {
        // As Python's own file functions: the OS error showed the raw NUL.
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(PyValueError::new_err("path: embedded NUL byte"));
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(PyOSError::new_err(format!("{} is not a regular file", path.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(PyFileNotFoundError::new_err(format!("no such file: {}", path.display())))
            }
            Err(err) => return Err(PyOSError::new_err(format!("cannot read {}: {err}", path.display()))),
        }
        let name = name.unwrap_or_else(|| {
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
        });
        let engine = &self.engine;
        let control = control_of(progress);
        let report = interruptible(py, |interrupted| {
            let dist = core::DistInput { name, url: None, input: core::Input::Path(path) };
            engine.scan_with(dist, &control, interrupted)
        })?
        .map_err(cancelled_error)?;
        Ok(DistributionResult::new(Arc::new(report)))
    }

    #[pyo3(signature = (items, *, progress=None))]
    fn scan_many(
        &self,
        py: Python<'_>,
        items: &Bound<'_, PyAny>,
        progress: Option<&Bound<'_, ScanProgress>>,
    ) -> PyResult<Vec<DistributionResult>> {
        let items = extract_items(items)?;
        let inputs = dist_inputs(&items);
        let engine = &self.engine;
        let control = control_of(progress);
        let reports = interruptible(py, |interrupted| engine.scan_many_with(inputs, &control, interrupted))?
            .map_err(cancelled_error)?;
        Ok(reports.into_iter().map(|r| DistributionResult::new(Arc::new(r))).collect())
    }

    #[pyo3(signature = (name, version, distributions, *, progress=None))]
    fn scan_release(
        &self,
        py: Python<'_>,
        name: String,
        version: String,
        distributions: &Bound<'_, PyAny>,
        progress: Option<&Bound<'_, ScanProgress>>,
    ) -> PyResult<ReleaseResult> {
        let items = extract_items(distributions)?;
        let inputs = dist_inputs(&items);
        let engine = &self.engine;
        let control = control_of(progress);
        let report = interruptible(py, |interrupted| {
            engine.scan_release_with(&name, &version, inputs, &control, interrupted)
        })?
        .map_err(cancelled_error)?;
        Ok(ReleaseResult { inner: report })
    }
}

/// mimalloc (v3) commits its arenas eagerly and keeps freed memory for a second before returning it:
/// the peak RSS of scanning the benchmark corpus on 2 threads was 172 MB with its defaults and 83 MB
/// with these. (Purging at once saved 5 MB more but cost ~10% of inflate speed in page faults; a
/// 1 s delay inflated ~10% faster but raised the 1-thread peak from 121 to 145 MB.)
/// Set here rather than through `MIMALLOC_*` variables so that no other library in the process is affected.
fn tune_allocator() {
    // Positions in mimalloc's `mi_option_e` (the same in its v2 and v3).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: plain setters of process-wide integers; called once, when the module loads.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 10);
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    tune_allocator();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("COMPILED_RULES_MAGIC", PyBytes::new(m.py(), core::COMPILED_PREFIX))?;
    m.add("ISSUE_KINDS", PyList::new(m.py(), core::IssueKind::ALL.iter().map(|k| k.as_str()))?)?;
    m.add("MAX_NESTING_DEPTH", core::MAX_NESTING_DEPTH)?;
    m.add("MAX_THREADS", core::MAX_THREADS)?;
    m.add("CACHE_ENTRIES", core::CACHE_ENTRIES)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(distributions_json, m)?)?;
    #[cfg(unix)]
    m.add_function(wrap_pyfunction!(write_distributions_json, m)?)?;
    m.add("RuleCompileError", m.py().get_type::<RuleCompileError>())?;
    m.add("RulesFormatError", m.py().get_type::<RulesFormatError>())?;
    m.add("ScanCancelled", m.py().get_type::<ScanCancelled>())?;
    m.add_class::<Rules>()?;
    m.add_class::<Limits>()?;
    m.add_class::<PatternMatch>()?;
    m.add_class::<RuleMatch>()?;
    m.add_class::<FileResult>()?;
    m.add_class::<ScanIssue>()?;
    m.add_class::<DistributionResult>()?;
    m.add_class::<ReleaseResult>()?;
    m.add_class::<SarifFindings>()?;
    m.add_class::<ScanProgress>()?;
    m.add_class::<Scanner>()?;
    m.add_class::<DownloadBuffer>()?;
    Ok(())
}
