//! Dragonfly scoring on arbitrary results: no panic, and the contract holds (distinct-rule sums,
//! release = max, verdicts, failure reasons, inspector URLs).
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use dragonfly_core::{
    inspector_url, DistributionReport, FileReport, Format, Issue, IssueKind, ReleaseReport, RuleHit,
    RuleInfo, Verdict,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Rule {
    identifier: u8,
    namespace: bool,
    weight: i32,
    filetypes: Vec<String>,
}

#[derive(Arbitrary, Debug)]
struct File {
    path: String,
    rules: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Dist {
    name: String,
    url: Option<String>,
    files: Vec<File>,
    issues: Vec<(u8, bool, String)>,
}

#[derive(Arbitrary, Debug)]
struct Release {
    name: String,
    version: String,
    rules: Vec<Rule>,
    dists: Vec<Dist>,
}

fuzz_target!(|input: Release| {
    let rules: Vec<Arc<RuleInfo>> = input
        .rules
        .iter()
        .map(|r| {
            Arc::new(RuleInfo {
                identifier: format!("r{}", r.identifier),
                namespace: if r.namespace { "default".into() } else { "other".into() },
                tags: vec![],
                metadata: vec![],
                weight: i64::from(r.weight),
                filetypes: r.filetypes.clone(),
            })
        })
        .collect();
    let distributions: Vec<DistributionReport> = input
        .dists
        .iter()
        .map(|d| {
            let files = d
                .files
                .iter()
                .filter_map(|f| {
                    let hits: Vec<RuleHit> = f
                        .rules
                        .iter()
                        .filter_map(|&i| rules.get(i as usize))
                        .filter(|rule| rule.applies_to(&f.path))
                        .map(|rule| RuleHit { rule: Arc::clone(rule), patterns: vec![] })
                        .collect();
                    (!hits.is_empty()).then(|| FileReport {
                        path: f.path.clone(),
                        size: 0,
                        sha256: String::new(),
                        is_text: true,
                        hits,
                    })
                })
                .collect();
            let issues = d
                .issues
                .iter()
                .map(|(kind, unscanned, message)| {
                    let kind = IssueKind::ALL[*kind as usize % IssueKind::ALL.len()];
                    let mut issue = Issue::new("p", kind, message.clone());
                    issue.unscanned = *unscanned;
                    issue
                })
                .collect();
            DistributionReport {
                name: d.name.clone(),
                url: d.url.clone(),
                format: Format::Zip,
                size: 0,
                sha256: String::new(),
                files_scanned: 0,
                bytes_scanned: 0,
                files,
                issues,
            }
        })
        .collect();

    for dist in &distributions {
        // Score: the sum of the weights of the distinct rules that matched anywhere.
        let mut distinct = BTreeMap::new();
        for hit in dist.files.iter().flat_map(|f| &f.hits) {
            distinct.insert((hit.rule.namespace.clone(), hit.rule.identifier.clone()), hit.rule.weight);
        }
        // Repeated identifiers may carry different weights; the first seen counts.
        let mut first = BTreeMap::new();
        for hit in dist.files.iter().flat_map(|f| &f.hits) {
            first.entry((hit.rule.namespace.clone(), hit.rule.identifier.clone())).or_insert(hit.rule.weight);
        }
        assert_eq!(dist.score(), first.values().sum::<i64>());
        assert_eq!(distinct.len(), first.len());
        let top = dist.top_file();
        assert_eq!(top.is_some(), !dist.files.is_empty());
        if let Some(top) = top {
            assert!(dist.files.iter().all(|f| f.score() <= top.score()));
        }
        match dist.verdict() {
            Verdict::Findings => assert!(!dist.files.is_empty()),
            Verdict::Clean => assert!(dist.files.is_empty() && dist.issues.iter().all(|i| !i.unscanned)),
            Verdict::Incomplete => assert!(dist.files.is_empty() && dist.issues.iter().any(|i| i.unscanned)),
        }
    }
    let release = ReleaseReport { name: input.name.clone(), version: input.version.clone(), distributions };
    let max = release.distributions.iter().map(DistributionReport::score).max().unwrap_or(0);
    assert_eq!(release.score(), max);
    assert_eq!(release.failure_reason().is_some(), release.verdict() == Verdict::Incomplete);
    if release.verdict() == Verdict::Clean {
        assert!(release.complete());
    }
    if let Some(url) = release.inspector_url() {
        let expected = format!("https://inspector.pypi.io/project/{}/{}/", input.name, input.version);
        assert!(url.starts_with(&expected), "{url}");
    }
    let mut names = release.rules_matched();
    let sorted = names.clone();
    names.sort();
    assert_eq!(names, sorted);
    for dist in &input.dists {
        for file in &dist.files {
            let _ = inspector_url(&input.name, &input.version, dist.url.as_deref().unwrap_or(""), &file.path);
        }
    }
});
