//! Results and Dragonfly scoring: per file, per distribution, per release.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::format::Format;
use crate::issue::Issue;
use crate::rules::RuleInfo;
use crate::walk::{PYTHON_READING, ZIPIMPORT_READING};

/// One match of one pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternHit {
    pub identifier: String,
    pub offset: u64,
    pub length: u64,
    /// The first bytes of the match (at most [`MATCH_DATA_BYTES`]).
    pub data: Vec<u8>,
    /// 1-based line of the match's first byte (lines end at `\n`).
    pub line: u64,
    /// 1-based column of the match's first byte, in bytes from the start of its line.
    pub column: u64,
    /// The match's line around the match, without its line ending (at most [`SNIPPET_BYTES`]).
    pub snippet: Vec<u8>,
    /// Where the match starts within `snippet`.
    pub snippet_offset: u64,
}

/// Bytes of matched data kept per pattern match.
pub const MATCH_DATA_BYTES: usize = 64;
/// Bytes of the matched line kept per pattern match.
pub const SNIPPET_BYTES: usize = 120;
/// Bytes of the line kept before the match in a snippet, when the line is longer than a snippet.
pub const SNIPPET_LEAD: usize = 32;
/// Matches kept per pattern identifier in a report (YARA-X still counts all of them).
pub const MATCHES_PER_PATTERN: usize = 16;

/// A rule that matched a file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    pub rule: Arc<RuleInfo>,
    pub patterns: Vec<PatternHit>,
}

/// A file that matched at least one rule (after `filetype` filtering).
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Whether the file looks like text: its first bytes hold no NUL and are UTF-8.
    pub is_text: bool,
    pub hits: Vec<RuleHit>,
}

impl FileReport {
    /// Sum of the weights of the rules that matched this file.
    pub fn score(&self) -> i64 {
        self.hits.iter().fold(0, |sum, hit| sum.saturating_add(hit.rule.weight))
    }
}

/// The outcome of one distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributionReport {
    pub name: String,
    pub url: Option<String>,
    pub format: Format,
    pub size: u64,
    pub sha256: String,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    /// Files with matches, in archive order.
    pub files: Vec<FileReport>,
    pub issues: Vec<Issue>,
}

/// What a distribution's matches add up to ([`DistributionReport::tally`]).
#[derive(Debug)]
pub struct Tally<'a> {
    /// The distinct rules that matched anywhere, in first-seen order.
    pub rules: Vec<&'a Arc<RuleInfo>>,
    /// Sum of the weights of `rules`.
    pub score: i64,
    /// The file with the highest score; among equals the last in archive order.
    pub top_file: Option<&'a FileReport>,
}

impl Tally<'_> {
    /// Identifiers of the rules that matched, sorted.
    pub fn rules_matched(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self.rules.iter().map(|r| r.identifier.as_str()).collect();
        names.into_iter().map(str::to_owned).collect()
    }
}

/// The three outcomes a user acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Findings,
    /// Nothing matched, but some content was not scanned: never reported as clean.
    Incomplete,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Findings => "findings",
            Verdict::Incomplete => "incomplete",
        }
    }

    fn of(matched: bool, complete: bool) -> Verdict {
        if matched {
            Verdict::Findings
        } else if complete {
            Verdict::Clean
        } else {
            Verdict::Incomplete
        }
    }
}

impl DistributionReport {
    /// The report of a distribution whose bytes could not be read at all.
    pub fn unreadable(name: String, url: Option<String>, issue: Issue) -> Self {
        Self {
            name,
            url,
            format: Format::File,
            size: 0,
            sha256: String::new(),
            files_scanned: 0,
            bytes_scanned: 0,
            files: Vec::new(),
            issues: vec![issue],
        }
    }

    /// The distinct rules that matched anywhere (in first-seen order), the score and the top file, in
    /// one pass over the hits: a report of tens of thousands of matched files asks for all three.
    pub fn tally(&self) -> Tally<'_> {
        // The hits of one rule share its `RuleInfo`: names are compared once per distinct one, not per
        // hit (tens of thousands of hits took 4 ms per call).
        let mut seen_infos = FxHashSet::default();
        let mut seen = BTreeSet::new();
        let mut rules = Vec::new();
        let mut top: Option<(i64, &FileReport)> = None;
        for (at, file) in self.files.iter().enumerate() {
            // Each file's hits are an allocation of their own: ask for those a few files ahead.
            if let Some(ahead) = self.files.get(at + 8) {
                prefetch(ahead.hits.as_ptr());
            }
            let mut file_score: i64 = 0;
            for hit in &file.hits {
                // Saturating: weights up to i64::MAX wrapped past it to a negative, benign-looking score.
                file_score = file_score.saturating_add(hit.rule.weight);
                if seen_infos.insert(Arc::as_ptr(&hit.rule))
                    && seen.insert((&hit.rule.namespace, &hit.rule.identifier))
                {
                    rules.push(&hit.rule);
                }
            }
            // Among equal scores the last file wins, as the reference node picks it.
            if top.is_none_or(|(best, _)| file_score >= best) {
                top = Some((file_score, file));
            }
        }
        let score = rules.iter().fold(0i64, |sum, rule| sum.saturating_add(rule.weight));
        Tally { score, rules, top_file: top.map(|(_, f)| f) }
    }

    /// Sum of the weights of the distinct rules that matched anywhere in the distribution.
    pub fn score(&self) -> i64 {
        self.tally().score
    }

    /// Identifiers of the rules that matched, sorted.
    pub fn rules_matched(&self) -> Vec<String> {
        self.tally().rules_matched()
    }

    /// The file with the highest score; among equals the last in archive order, as the
    /// reference node picks it.
    pub fn top_file(&self) -> Option<&FileReport> {
        self.tally().top_file
    }

    /// True when every byte of the distribution was scanned.
    pub fn complete(&self) -> bool {
        !self.issues.iter().any(|issue| issue.unscanned)
    }

    pub fn verdict(&self) -> Verdict {
        Verdict::of(!self.files.is_empty(), self.complete())
    }
}

/// One release: every distribution of a `name==version`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseReport {
    pub name: String,
    pub version: String,
    pub distributions: Vec<DistributionReport>,
}

impl ReleaseReport {
    /// The distribution with the highest score; among equals one that matched something (a match of
    /// weight 0 keeps its link), then the last, as the reference node.
    pub fn top_distribution(&self) -> Option<&DistributionReport> {
        self.distributions.iter().max_by_key(|dist| (dist.score(), !dist.files.is_empty()))
    }

    /// The maximum distribution score (not the sum).
    pub fn score(&self) -> i64 {
        self.top_distribution().map_or(0, DistributionReport::score)
    }

    /// Union of the matched rule identifiers, sorted.
    pub fn rules_matched(&self) -> Vec<String> {
        let names: BTreeSet<String> =
            self.distributions.iter().flat_map(DistributionReport::rules_matched).collect();
        names.into_iter().collect()
    }

    /// The inspector.pypi.io page of the top file of the top distribution; `None` when nothing
    /// matched or the distribution has no URL.
    pub fn inspector_url(&self) -> Option<String> {
        let dist = self.top_distribution()?;
        let file = dist.top_file()?;
        inspector_url(&self.name, &self.version, dist.url.as_deref()?, &file.path)
    }

    pub fn complete(&self) -> bool {
        self.distributions.iter().all(DistributionReport::complete)
    }

    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.distributions.iter().any(|d| !d.files.is_empty()), self.complete())
    }

    /// Why the release cannot be reported clean: the unscanned issues, distribution by
    /// distribution. `None` unless the verdict is [`Verdict::Incomplete`].
    pub fn failure_reason(&self) -> Option<String> {
        if self.verdict() != Verdict::Incomplete {
            return None;
        }
        const SHOWN: usize = 5;
        let unscanned: Vec<String> = self
            .distributions
            .iter()
            .flat_map(|dist| {
                dist.issues.iter().filter(|i| i.unscanned).map(move |i| format!("{}: {}", dist.name, i))
            })
            .collect();
        let mut reason =
            format!("could not scan everything: {}", unscanned[..unscanned.len().min(SHOWN)].join("; "));
        if unscanned.len() > SHOWN {
            reason.push_str(&format!("; and {} more", unscanned.len() - SHOWN));
        }
        Some(reason)
    }
}

/// `https://inspector.pypi.io/project/{name}/{version}/{download path}/{file path}`: the download
/// URL's path under inspector.pypi.io, as the Dragonfly mainframe expects. Members of nested archives
/// are shown by the outermost member (the inspector cannot open inner archives).
///
/// Every piece is percent-encoded, as the reference node's URL library does: a package names its
/// members (and a hostile index its names and URLs), so a `#` or `?` cut the link short, a space or a
/// bidi character went out raw, and `..` segments (or backslashes, which browsers read as `/`) sent
/// whoever followed the link to another project's page. The name, the version and each member path
/// segment are one segment each (`/`, `\` and `%` escaped); the download path keeps its escapes and
/// resolves its own dot segments within itself; a member path with a `..` segment links to its
/// distribution's page (a browser resolves `..` however it is spelled); a name or version that is
/// empty, `.` or `..` gives no link. The download URL's query and fragment are left out. A reading of a
/// file (`NAME<as Python reads it>`, `NAME<as zipimport reads it>`) links to the file.
pub fn inspector_url(name: &str, version: &str, download_url: &str, file_path: &str) -> Option<String> {
    if [name, version].iter().any(|piece| matches!(*piece, "" | "." | "..")) {
        return None;
    }
    let path = download_path(download_url)?;
    let mut url = String::from("https://inspector.pypi.io/project/");
    push_segment(&mut url, name);
    url.push('/');
    push_segment(&mut url, version);
    url.push('/');
    url.push_str(&path);
    url.push('/');
    let outer = file_path.split("!/").next().unwrap_or(file_path);
    // A reading of a file's content (as zipimport or CPython reads it) links to the file.
    let outer =
        [ZIPIMPORT_READING, PYTHON_READING].iter().find_map(|r| outer.strip_suffix(r)).unwrap_or(outer);
    let segments: Vec<&str> = outer.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if segments.is_empty() || segments.contains(&"..") {
        return Some(url);
    }
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            url.push('/');
        }
        push_segment(&mut url, segment);
    }
    Some(url)
}

/// RFC 3986's `pchar` less `%`: what a path segment holds as it is.
fn is_pchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte)
}

fn push_escaped(url: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    url.push('%');
    url.push(HEX[usize::from(byte >> 4)] as char);
    url.push(HEX[usize::from(byte & 0xf)] as char);
}

/// `text` as one path segment: every byte that is not a `pchar` escaped (`/`, `\` and `%` too).
fn push_segment(url: &mut String, text: &str) {
    for &byte in text.as_bytes() {
        if is_pchar(byte) {
            url.push(byte as char);
        } else {
            push_escaped(url, byte);
        }
    }
}

/// A segment of the download URL's path: its escapes kept (upper-cased), any other byte that is not a
/// `pchar` escaped. ASCII only.
fn url_segment(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push('%');
            out.push(bytes[i + 1].to_ascii_uppercase() as char);
            out.push(bytes[i + 2].to_ascii_uppercase() as char);
            i += 3;
            continue;
        }
        if is_pchar(byte) {
            out.push(byte as char);
        } else {
            push_escaped(&mut out, byte);
        }
        i += 1;
    }
    out
}

/// How many dots an encoded segment is made of (`.` or `%2E` each), as a browser reads it; None when it
/// holds anything else.
fn dot_count(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
    }
    Some(dots)
}

/// The download URL's path, without its query and fragment, each segment encoded, its own dot segments
/// resolved within it (as when it was fetched, never above it); None when nothing is left.
fn download_path(download_url: &str) -> Option<String> {
    // As a browser reads the URL: tabs and newlines dropped, `\\` a `/`, and the host ended by the first
    // `/`, `?` or `#` (a `#/packages/...` is a fragment, not a path).
    let url: String = download_url.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let path = after_scheme.find(['/', '\\', '?', '#']).map_or("", |end| &after_scheme[end..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut kept: Vec<String> = Vec::new();
    for raw in path.split(['/', '\\']) {
        let segment = url_segment(raw);
        match dot_count(&segment) {
            Some(0 | 1) => {}
            Some(2) => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
    }
    (!kept.is_empty()).then(|| kept.join("/"))
}

/// Ask the CPU to bring `address`'s cache line in: walking a report's many small allocations (a file's
/// hits, their patterns, their bytes) is mostly waiting on cache misses, which overlap when the next
/// ones are asked for ahead of use.
#[inline(always)]
pub(crate) fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, weight: i64) -> Arc<RuleInfo> {
        Arc::new(RuleInfo {
            identifier: id.into(),
            namespace: "default".into(),
            tags: vec![],
            metadata: vec![],
            weight,
            filetypes: vec![],
        })
    }

    fn file(path: &str, rules: &[&Arc<RuleInfo>]) -> FileReport {
        FileReport {
            path: path.into(),
            size: 1,
            sha256: String::new(),
            is_text: true,
            hits: rules.iter().map(|r| RuleHit { rule: Arc::clone(r), patterns: vec![] }).collect(),
        }
    }

    fn dist(name: &str, files: Vec<FileReport>) -> DistributionReport {
        DistributionReport {
            name: name.into(),
            url: Some(format!("https://files.pythonhosted.org/packages/ab/cd/{name}")),
            format: Format::TarGz,
            size: 0,
            sha256: String::new(),
            files_scanned: files.len() as u64,
            bytes_scanned: 0,
            files,
            issues: vec![],
        }
    }

    #[test]
    fn contract_example_scores_max_of_distinct_sums() {
        let (r5, r7, r2, r9) = (rule("a", 5), rule("b", 7), rule("c", 2), rule("d", 9));
        // Dist A matches {5, 7}, twice for 5 (distinct rules count once) -> 12.
        let a = dist("a.tar.gz", vec![file("x/setup.py", &[&r5, &r7]), file("x/y.py", &[&r5])]);
        let b = dist("b.whl", vec![file("m.py", &[&r2, &r9])]);
        assert_eq!(a.score(), 12);
        assert_eq!(b.score(), 11);
        let release = ReleaseReport { name: "p".into(), version: "1".into(), distributions: vec![a, b] };
        assert_eq!(release.score(), 12);
        assert_eq!(release.rules_matched(), vec!["a", "b", "c", "d"]);
        assert_eq!(
            release.inspector_url().unwrap(),
            "https://inspector.pypi.io/project/p/1/packages/ab/cd/a.tar.gz/x/setup.py"
        );
    }

    #[test]
    fn ties_pick_the_last_like_the_reference_node() {
        let r = rule("a", 3);
        let d = dist("d.zip", vec![file("first.py", &[&r]), file("second.py", &[&r])]);
        assert_eq!(d.top_file().unwrap().path, "second.py");
        let release = ReleaseReport {
            name: "p".into(),
            version: "1".into(),
            distributions: vec![d.clone(), dist("e.zip", vec![file("z.py", &[&r])])],
        };
        assert_eq!(release.top_distribution().unwrap().name, "e.zip");
    }

    #[test]
    fn nothing_matched_means_no_inspector_url_and_clean() {
        let release = ReleaseReport {
            name: "p".into(),
            version: "1".into(),
            distributions: vec![dist("a.whl", vec![])],
        };
        assert_eq!(release.score(), 0);
        assert_eq!(release.inspector_url(), None);
        assert_eq!(release.verdict(), Verdict::Clean);
        assert_eq!(release.failure_reason(), None);
    }

    #[test]
    fn zero_weight_match_is_a_finding_with_url() {
        let r = rule("zero", 0);
        let release = ReleaseReport {
            name: "p".into(),
            version: "1".into(),
            distributions: vec![dist("a.whl", vec![file("m.py", &[&r])])],
        };
        assert_eq!(release.score(), 0);
        assert_eq!(release.verdict(), Verdict::Findings);
        assert!(release.inspector_url().unwrap().ends_with("/a.whl/m.py"));
    }

    #[test]
    fn a_zero_weight_match_keeps_its_link_beside_a_clean_distribution_after_it() {
        let r = rule("zero", 0);
        let release = ReleaseReport {
            name: "p".into(),
            version: "1".into(),
            distributions: vec![dist("a.whl", vec![file("m.py", &[&r])]), dist("b.tar.gz", vec![])],
        };
        assert_eq!(release.top_distribution().unwrap().name, "a.whl");
        assert!(release.inspector_url().unwrap().ends_with("/a.whl/m.py"));
    }

    #[test]
    fn weights_past_i64_saturate_instead_of_wrapping_negative() {
        let (a, b) = (rule("a", i64::MAX), rule("b", i64::MAX));
        let d = dist("a.whl", vec![file("m.py", &[&a, &b]), file("n.py", &[&a])]);
        assert_eq!(d.files[0].score(), i64::MAX);
        assert_eq!(d.score(), i64::MAX);
        assert_eq!(d.top_file().unwrap().path, "n.py");
    }

    #[test]
    fn unscanned_content_is_never_clean() {
        let mut d = dist("a.tar.gz", vec![]);
        d.issues.push(Issue::new("a/big.bin", crate::IssueKind::MemberTooLarge, "too big"));
        let release = ReleaseReport { name: "p".into(), version: "1".into(), distributions: vec![d] };
        assert_eq!(release.verdict(), Verdict::Incomplete);
        let reason = release.failure_reason().unwrap();
        assert!(reason.contains("a.tar.gz: a/big.bin: member-too-large"), "{reason}");
    }

    #[test]
    fn inspector_url_shapes() {
        assert_eq!(
            inspector_url("requests", "2.19.1", "https://files.pythonhosted.org/packages/54/1f/h/requests-2.19.1.tar.gz", "requests-2.19.1/setup.py").unwrap(),
            "https://inspector.pypi.io/project/requests/2.19.1/packages/54/1f/h/requests-2.19.1.tar.gz/requests-2.19.1/setup.py"
        );
        assert_eq!(
            inspector_url("a", "1", "https://h/p/a.whl?x=1#frag", "inner.zip!/evil.py").unwrap(),
            "https://inspector.pypi.io/project/a/1/p/a.whl/inner.zip"
        );
        assert_eq!(inspector_url("a", "1", "https://host", "f"), None);
        for reading in ["pkg/setup.py<as Python reads it>", "pkg/b.zip<as zipimport reads it>"] {
            let url = inspector_url("a", "1", "https://h/p/a.tar.gz", reading).unwrap();
            assert_eq!(
                url,
                format!(
                    "https://inspector.pypi.io/project/a/1/p/a.tar.gz/{}",
                    &reading[..reading.find('<').unwrap()]
                )
            );
        }
    }

    #[test]
    fn inspector_urls_encode_what_a_package_names() {
        let url = |name, version, download, file| inspector_url(name, version, download, file);
        assert_eq!(
            url("a b", "1.0+x/y", "https://h/p%2fq/a%20b.whl", "dir/f #1?.py").unwrap(),
            "https://inspector.pypi.io/project/a%20b/1.0+x%2Fy/p%2Fq/a%20b.whl/dir/f%20%231%3F.py"
        );
        // A member's `..` (any spelling) or a backslash never leaves the distribution's page.
        let base = "https://inspector.pypi.io/project/a/1/p/a.whl/";
        assert_eq!(url("a", "1", "https://h/p/a.whl", "x/../../../other/9/f.py").unwrap(), base);
        assert_eq!(
            url("a", "1", "https://h/p/a.whl", "..\\..\\other.py").unwrap(),
            format!("{base}..%5C..%5Cother.py")
        );
        assert_eq!(
            url("a", "1", "https://h/p/a.whl", "%2e%2e/x.py").unwrap(),
            format!("{base}%252e%252e/x.py")
        );
        // The download URL's own dot segments resolve within its path.
        assert_eq!(
            url("a", "1", "https://h/p/../../q/./a.whl", "f").unwrap(),
            "https://inspector.pypi.io/project/a/1/q/a.whl/f"
        );
        assert_eq!(
            url("a", "1", "https://h/p/%2E%2e/a.whl", "f").unwrap(),
            "https://inspector.pypi.io/project/a/1/a.whl/f"
        );
        assert_eq!(
            url("é", "1", "https://h/a.whl", "ü.py").unwrap(),
            "https://inspector.pypi.io/project/%C3%A9/1/a.whl/%C3%BC.py"
        );
        assert_eq!(url("..", "1", "https://h/a.whl", "f"), None);
        assert_eq!(url("a", "", "https://h/a.whl", "f"), None);
        assert_eq!(url("a", "1", "https://h/../..", "f"), None);
        // The download URL read as a browser reads it (sixteenth red-team pass).
        assert_eq!(url("a", "1", "https://h#/packages/other/9/x.zip", "m.py"), None);
        assert_eq!(url("a", "1", "https://h?/packages/x.zip", "m.py"), None);
        assert_eq!(
            url("a", "1", "https://h/pack\tag\nes/x.zip", "m.py").unwrap(),
            "https://inspector.pypi.io/project/a/1/packages/x.zip/m.py"
        );
        assert_eq!(
            url("a", "1", "https://h\\packages\\x.zip", "m.py").unwrap(),
            "https://inspector.pypi.io/project/a/1/packages/x.zip/m.py"
        );
    }
}
