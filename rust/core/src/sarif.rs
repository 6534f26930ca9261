//! The bulk of a SARIF log (`--format sarif`): the findings ranked, and one result written per finding,
//! so that 5,000 results cost no Python object each. `dragonfly_hybrid.report` writes the rest of the log,
//! documents the fields, and renders a result itself wherever matching it here would mean copying
//! Python's text rules (Unicode categories, case-insensitive matching, lossy decoding): a member label or
//! release version that is not printable ASCII, and a text snippet or match that is not UTF-8.
//! `tests/test_sarif_results.py` compares both renderings of the same findings, byte for byte.

use std::cmp::Ordering;

use sha2::{Digest, Sha256};

use crate::format::Format;
use crate::json::{integer, string};
use crate::report::{prefetch, DistributionReport, FileReport, PatternHit, RuleHit};
use crate::rules::hex;

/// Matches of rules with at least this weight are `error` results; lighter ones are `warning`
/// (`report.SARIF_ERROR_WEIGHT`).
const ERROR_WEIGHT: i64 = 5;
/// `report.SARIF_FINGERPRINT_KEY`.
const FINGERPRINT_KEY: &str = "dragonflyFinding/v1";

/// A finding: the distribution (its index in the list ranked), the file and the rule hit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindingRef {
    pub dist: usize,
    pub file: usize,
    pub hit: usize,
}

/// At most `limit` findings of `dists` (each with its target's index), ranked as the report module's
/// `heaviest_findings` ranks them: the heaviest rule first, then target order, distribution name,
/// member path and rule identifier; then distribution order and scan order (so the order is total).
pub fn rank(dists: &[(usize, &DistributionReport)], limit: usize) -> Vec<FindingRef> {
    if limit == 0 {
        return Vec::new();
    }
    let mut found: Vec<FindingRef> =
        dists
            .iter()
            .enumerate()
            .flat_map(|(dist, (_, report))| {
                report.files.iter().enumerate().flat_map(move |(file, f)| {
                    (0..f.hits.len()).map(move |hit| FindingRef { dist, file, hit })
                })
            })
            .collect();
    let key = |f: &FindingRef| {
        let (target, report) = dists[f.dist];
        let file = &report.files[f.file];
        (file.hits[f.hit].rule.weight, target, &report.name, &file.path, &file.hits[f.hit].rule.identifier)
    };
    let order = |a: &FindingRef, b: &FindingRef| -> Ordering {
        let (a_weight, a_target, a_name, a_path, a_rule) = key(a);
        let (b_weight, b_target, b_name, b_path, b_rule) = key(b);
        b_weight
            .cmp(&a_weight)
            .then(a_target.cmp(&b_target))
            .then_with(|| a_name.cmp(b_name))
            .then_with(|| a_path.cmp(b_path))
            .then_with(|| a_rule.cmp(b_rule))
            .then((a.dist, a.file, a.hit).cmp(&(b.dist, b.file, b.hit)))
    };
    if limit < found.len() {
        found.select_nth_unstable_by(limit - 1, order);
        found.truncate(limit);
    }
    found.sort_unstable_by(order);
    found
}

/// Ask for what [`write_result`] reads of the findings after `ranked[at]`, one link of each chain per
/// step (the file's report, then its path and hits, the hit's patterns, the first pattern's bytes): the
/// ranked findings are scattered over the reports, and each result otherwise waits on its cache misses
/// in turn. `reports` are the distributions `FindingRef::dist` indexes.
pub fn prefetch_findings(reports: &[&DistributionReport], ranked: &[FindingRef], at: usize) {
    let finding = |ahead: usize| {
        let found = ranked.get(at + ahead)?;
        Some((reports.get(found.dist)?.files.get(found.file)?, found.hit))
    };
    if let Some((file, _)) = finding(8) {
        let start: *const u8 = std::ptr::from_ref(file).cast();
        prefetch(start);
        prefetch(start.wrapping_add(std::mem::size_of::<FileReport>() - 1));
    }
    if let Some((file, hit)) = finding(4) {
        prefetch(file.path.as_ptr());
        prefetch(file.hits.as_ptr().wrapping_add(hit));
    }
    if let Some((file, hit)) = finding(2) {
        if let Some(hit) = file.hits.get(hit) {
            prefetch(hit.patterns.as_ptr());
        }
    }
    if let Some((file, hit)) = finding(1) {
        if let Some(pattern) = file.hits.get(hit).and_then(|hit| hit.patterns.first()) {
            prefetch(pattern.data.as_ptr());
            prefetch(pattern.snippet.as_ptr());
        }
    }
}

/// What a result takes from its target and distribution, worked out once by the report module.
pub struct ResultContext<'a> {
    /// The target as given, already a JSON string (`properties.target`).
    pub target_json: &'a str,
    /// The target scores below `--min-score`: level `note`, `properties.belowMinScore`.
    pub below_min_score: bool,
    /// The `relatedLocations` array (the requirements-file line), already JSON.
    pub related_json: Option<&'a str>,
    /// The normalised project and the version the distribution's file name carries (fingerprints).
    pub project: &'a str,
    pub version: Option<&'a str>,
}

/// Write the SARIF result of `hit` in `file` of `dist` to `buf` on one line, as Python's
/// `json.dumps(result, ensure_ascii=False, separators=(", ", ": "))` writes the report module's; `false`
/// (and nothing written) when the report module must render it (see the module comment).
pub fn write_result(
    buf: &mut Vec<u8>,
    context: &ResultContext<'_>,
    dist: &DistributionReport,
    file: &FileReport,
    hit: &RuleHit,
    rule_index: usize,
    description: Option<&str>,
) -> bool {
    let label = member_label(dist, &file.path);
    if !printable_ascii(&label) || !context.version.is_none_or(printable_ascii) {
        return false;
    }
    let pattern = first_pattern(hit);
    let region = match pattern {
        Some(p) if file.is_text => match text_region(p) {
            Some(region) => Some(region),
            None => return false,
        },
        Some(p) => Some(Region { start_line: p.line, columns: None, snippet: None }),
        None => None,
    };
    let rule = &hit.rule;
    let start = buf.len();
    buf.extend_from_slice(b"{\"ruleId\": ");
    string(buf, &rule.identifier);
    buf.extend_from_slice(b", \"ruleIndex\": ");
    integer(buf, rule_index);
    buf.extend_from_slice(b", \"level\": \"");
    buf.extend_from_slice(match (context.below_min_score, rule.weight >= ERROR_WEIGHT) {
        (true, _) => b"note",
        (false, true) => b"error",
        (false, false) => b"warning",
    });
    let mut message = format!("Rule {} (weight {}) matched {label}", rule.identifier, rule.weight);
    if let Some(p) = pattern {
        if file.is_text {
            message.push_str(&format!(":{}", p.line));
        } else {
            message.push_str(&format!(" (byte {})", p.offset));
        }
    }
    if let Some(description) = description.filter(|d| !d.is_empty()) {
        message.push_str(": ");
        message.push_str(description);
    }
    buf.extend_from_slice(b"\", \"message\": {\"text\": ");
    string(buf, &message);
    buf.extend_from_slice(b"}, \"locations\": [{\"physicalLocation\": {\"artifactLocation\": {\"uri\": ");
    string(buf, &percent_encoded(&label));
    buf.push(b'}');
    if let (Some(p), Some(region)) = (pattern, region) {
        buf.extend_from_slice(b", \"region\": {\"startLine\": ");
        integer(buf, region.start_line);
        if let Some((start_column, end_column)) = region.columns {
            buf.extend_from_slice(b", \"startColumn\": ");
            integer(buf, start_column);
            if let Some(end_column) = end_column {
                buf.extend_from_slice(b", \"endColumn\": ");
                integer(buf, end_column);
            }
        }
        if let Some(snippet) = region.snippet {
            buf.extend_from_slice(b", \"snippet\": {\"text\": ");
            string(buf, snippet);
            buf.push(b'}');
        }
        buf.extend_from_slice(b", \"byteOffset\": ");
        integer(buf, p.offset);
        buf.extend_from_slice(b", \"byteLength\": ");
        integer(buf, p.length);
        buf.push(b'}');
    }
    buf.extend_from_slice(b"}}], \"partialFingerprints\": {\"");
    buf.extend_from_slice(FINGERPRINT_KEY.as_bytes());
    buf.extend_from_slice(b"\": \"");
    buf.extend_from_slice(fingerprint(context, &file.path, hit, pattern).as_bytes());
    buf.extend_from_slice(b"\"}, \"properties\": {\"target\": ");
    buf.extend_from_slice(context.target_json.as_bytes());
    buf.extend_from_slice(b", \"distribution\": ");
    string(buf, &dist.name);
    buf.extend_from_slice(b", \"score\": ");
    integer(buf, file.score());
    buf.extend_from_slice(b", \"sha256\": ");
    string(buf, &file.sha256);
    if context.below_min_score {
        buf.extend_from_slice(b", \"belowMinScore\": true");
    }
    buf.push(b'}');
    if let Some(related) = context.related_json {
        buf.extend_from_slice(b", \"relatedLocations\": ");
        buf.extend_from_slice(related.as_bytes());
    }
    buf.push(b'}');
    debug_assert!(std::str::from_utf8(&buf[start..]).is_ok());
    true
}

/// `<distribution name>/<member path>`; a plain file is just its distribution name.
fn member_label(dist: &DistributionReport, path: &str) -> String {
    if path.is_empty() || (dist.format == Format::File && path == dist.name) {
        dist.name.clone()
    } else {
        format!("{}/{path}", dist.name)
    }
}

/// Every character from the space to `~`: text the report module's `printable` leaves as it is, and
/// that Python's case-insensitive matching reads as plain ASCII.
fn printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The match's earliest pattern match (the first of equals): where a report points.
fn first_pattern(hit: &RuleHit) -> Option<&PatternHit> {
    hit.patterns.iter().fold(None, |first: Option<&PatternHit>, p| match first {
        Some(f) if f.offset <= p.offset => Some(f),
        _ => Some(p),
    })
}

struct Region<'a> {
    start_line: u64,
    /// The start column and, when the whole match is known to lie on the line, the end column.
    columns: Option<(usize, Option<usize>)>,
    snippet: Option<&'a str>,
}

/// A text file's region (line, UTF-16 columns when known exactly, the line's text); `None` when a
/// byte the columns or the text depend on is not UTF-8 (Python then decodes it with replacements).
fn text_region(p: &PatternHit) -> Option<Region<'_>> {
    let snippet = std::str::from_utf8(&p.snippet).ok()?;
    let mut columns = None;
    if p.column.checked_sub(1) == Some(p.snippet_offset) {
        let before = snippet.get(..usize::try_from(p.snippet_offset).ok()?)?;
        let start = utf16_units(before) + 1;
        let mut end = None;
        if p.length <= p.data.len() as u64 && !p.data.contains(&b'\n') {
            end = Some(start + utf16_units(std::str::from_utf8(&p.data).ok()?));
        }
        columns = Some((start, end));
    }
    Some(Region { start_line: p.line, columns, snippet: Some(snippet) })
}

fn utf16_units(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Percent-encoded as Python's `urllib.parse.quote(text, safe="/!")`: every byte of its UTF-8 but
/// letters, digits, `_.-~/!` written `%XX`; and the dots of a `.` or `..` segment too (the report
/// module's `artifact_uri`), so that a member named `../setup.py` is not resolved to another file.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, segment) in text.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if segment == "." || segment == ".." {
            out.push_str(&"%2E".repeat(segment.len()));
        } else {
            encode_segment(segment, &mut out);
        }
    }
    out
}

fn encode_segment(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in segment.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~!".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.extend([
                '%',
                char::from(HEX[usize::from(byte >> 4)]),
                char::from(HEX[usize::from(byte & 0xf)]),
            ]);
        }
    }
}

/// SHA-256 of rule identifier, project, versionless member path and the SHA-256 of the matched bytes,
/// joined by NUL (the report module's `finding_fingerprint`).
fn fingerprint(
    context: &ResultContext<'_>,
    path: &str,
    hit: &RuleHit,
    pattern: Option<&PatternHit>,
) -> String {
    let matched = hex(&Sha256::digest(pattern.map_or(&[][..], |p| &p.data[..])));
    let path = versionless_path(path, context.project, context.version);
    let mut hasher = Sha256::new();
    for (index, part) in [hit.rule.identifier.as_str(), context.project, &path, &matched].iter().enumerate() {
        if index > 0 {
            hasher.update(b"\0");
        }
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())
}

/// The report module's `versionless_path` for printable ASCII: each directory named
/// `<name>-<version>[.dist-info|.data|.egg-info]` (any case), whose name normalises to `project`, written
/// `<project>[suffix]`. Among the suffixes the shortest that fits wins, as the module's regular expression
/// (a greedy name) picks it.
fn versionless_path(path: &str, project: &str, version: Option<&str>) -> String {
    let Some(version) = version else { return path.to_owned() };
    let named = |part: &str| -> Option<String> {
        let bytes = part.as_bytes();
        // The split the expression finds, if any; only then is the name compared with the project.
        let (name, suffix) = ["", ".data", ".egg-info", ".dist-info"].iter().find_map(|suffix| {
            let split = bytes.len().checked_sub(suffix.len() + version.len() + 1).filter(|&at| at > 0)?;
            let (dash, rest) = bytes[split..].split_first()?;
            let (found_version, found_suffix) = rest.split_at(version.len());
            let fits = *dash == b'-'
                && found_version.eq_ignore_ascii_case(version.as_bytes())
                && found_suffix.eq_ignore_ascii_case(suffix.as_bytes());
            fits.then(|| (part.get(..split), part.get(split + 1 + version.len()..)))
        })?;
        let (name, suffix) = (name?, suffix?);
        (normalize_project(name) == project).then(|| format!("{project}{suffix}"))
    };
    path.split('/').map(|part| named(part).unwrap_or_else(|| part.to_owned())).collect::<Vec<_>>().join("/")
}

/// PEP 503 for ASCII: each run of `-`, `_` and `.` becomes one `-`, letters lower case.
fn normalize_project(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for byte in name.bytes() {
        let separator = matches!(byte, b'-' | b'_' | b'.');
        if !separator {
            out.push(char::from(byte.to_ascii_lowercase()));
        } else if !in_run {
            out.push('-');
        }
        in_run = separator;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_never_reads_past_the_findings_or_the_reports() {
        let rule = std::sync::Arc::new(crate::rules::RuleInfo {
            identifier: "r".into(),
            namespace: "default".into(),
            tags: vec![],
            metadata: vec![],
            weight: 1,
            filetypes: vec![],
        });
        let file = |hits: usize| FileReport {
            path: "a.py".into(),
            size: 1,
            sha256: "0".repeat(64),
            is_text: true,
            hits: (0..hits).map(|_| RuleHit { rule: rule.clone(), patterns: vec![] }).collect(),
        };
        let report = DistributionReport {
            name: "a.whl".into(),
            url: None,
            format: Format::Zip,
            size: 1,
            sha256: "0".repeat(64),
            files_scanned: 2,
            bytes_scanned: 2,
            files: vec![file(1), file(0)],
            issues: vec![],
        };
        // References past every list (a distribution, a file, a hit that do not exist) are skipped.
        let ranked: Vec<FindingRef> =
            (0..12).map(|i| FindingRef { dist: i % 3, file: i % 4, hit: i % 2 }).collect();
        for at in 0..ranked.len() + 2 {
            prefetch_findings(&[&report], &ranked, at);
        }
        prefetch_findings(&[], &ranked, 0);
    }
}
