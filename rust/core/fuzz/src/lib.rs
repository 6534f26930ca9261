//! Shared set-up of the fuzz targets: one engine per process, with small limits so that every
//! input is cheap, and the invariants every walk must keep.

use std::sync::OnceLock;
use std::time::Duration;

use dragonfly_core::{fuzzing, Container, DistributionReport, Engine, IssueKind, Limits, RuleSet};

const RULES: &str = r#"
rule marker { meta: weight = 5 strings: $a = "EVIL_MARKER" condition: $a }
rule py_only { meta: weight = 3 filetype = ".py" strings: $a = "PY_ONLY" condition: $a }
rule header { meta: weight = 1 condition: uint16(0) == 0x4b50 }
"#;

/// Limits small enough that a fuzz input cannot make one execution slow.
pub fn limits() -> Limits {
    Limits {
        max_member_size: 1 << 20,
        max_total_size: 8 << 20,
        max_members: 2_000,
        max_ratio: 1000,
        max_depth: 3,
        timeout: Duration::from_secs(2),
    }
}

pub fn engine(threads: usize) -> &'static Engine {
    static ONE: OnceLock<Engine> = OnceLock::new();
    static TWO: OnceLock<Engine> = OnceLock::new();
    let cell = if threads == 1 { &ONE } else { &TWO };
    cell.get_or_init(|| {
        let rules = RuleSet::compile([("fuzz.yar", RULES)]).expect("fuzz rules compile");
        Engine::new(rules, limits(), Some(threads)).expect("engine starts")
    })
}

/// What every report must satisfy, whatever the input.
pub fn check(report: &DistributionReport) {
    for issue in &report.issues {
        assert_ne!(issue.kind, IssueKind::InternalError, "scanner bug: {issue}");
    }
    let limits = limits();
    // Hidden blobs are scanned on top of the members, each under the member limit.
    let budget = limits.max_total_size + 64 * limits.max_member_size;
    assert!(report.bytes_scanned <= budget, "scanned {} bytes", report.bytes_scanned);
    for file in &report.files {
        assert!(file.size <= limits.max_member_size.max(report.size), "{} is {} bytes", file.path, file.size);
    }
}

/// Walk `data` as the given container (bypassing format detection) and check the report.
pub fn walk(container: Container, data: &[u8]) {
    let report = fuzzing::walk_as(engine(1), container, data);
    check(&report);
}
