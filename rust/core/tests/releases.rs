//! Releases scanned at once from several threads: they share the engine's queue of distributions.

mod common;

use std::thread;
use std::time::Duration;

use dragonfly_core::{DistInput, Engine, EngineError, Input, Limits, ReleaseReport, ScanControl};

/// Release `i`: one to three distributions of both formats, some with the marker.
fn release(i: usize) -> Vec<(String, Vec<u8>)> {
    let text = format!("print({i})\n").repeat(50 + i * 40);
    let marked = format!("{text}EVIL_MARKER\n");
    let mut dists = vec![(
        format!("r{i}-1.0.tar.gz"),
        common::tar_gz(&[
            (&format!("r{i}-1.0/setup.py"), text.as_bytes()),
            (
                &format!("r{i}-1.0/r{i}/core.py"),
                if i.is_multiple_of(2) { marked.as_bytes() } else { b"x = 1\n" },
            ),
        ]),
    )];
    if i % 3 != 1 {
        let members: Vec<(String, String)> =
            (0..(5 + 3 * i)).map(|m| (format!("r{i}/m{m}.py"), format!("{text}# {m}\n"))).collect();
        let entries: Vec<(&str, &[u8])> = members.iter().map(|(n, c)| (n.as_str(), c.as_bytes())).collect();
        dists.push((format!("r{i}-1.0-py3-none-any.whl"), common::zip(&entries)));
    }
    if i % 3 == 2 {
        dists.push((format!("r{i}-1.0.zip"), common::zip(&[("evil.py", marked.as_bytes())])));
    }
    dists
}

fn inputs(dists: &[(String, Vec<u8>)]) -> Vec<DistInput<'_>> {
    dists
        .iter()
        .map(|(name, data)| DistInput { name: name.clone(), url: None, input: Input::Bytes(data) })
        .collect()
}

/// Each release scanned on a thread of its own, as `r{i}`.
fn scan_each_on_a_thread<'scope, 'env>(
    scope: &'scope thread::Scope<'scope, 'env>,
    engine: &'env Engine,
    releases: &'env [Vec<(String, Vec<u8>)>],
) -> Vec<thread::ScopedJoinHandle<'scope, ReleaseReport>> {
    releases
        .iter()
        .enumerate()
        .map(|(i, dists)| scope.spawn(move || engine.scan_release(&format!("r{i}"), "1.0", inputs(dists))))
        .collect()
}

#[test]
fn releases_scanned_at_once_get_the_reports_of_a_scan_each() {
    let releases: Vec<Vec<(String, Vec<u8>)>> = (0..8).map(release).collect();
    let engine = common::engine(Limits::default(), 2);
    let expected: Vec<ReleaseReport> = releases
        .iter()
        .enumerate()
        .map(|(i, dists)| ReleaseReport {
            name: format!("r{i}"),
            version: "1.0".into(),
            distributions: engine.scan_many(inputs(dists)),
        })
        .collect();
    assert!(expected.iter().any(|r| r.distributions.iter().any(|d| !d.files.is_empty())));
    for _ in 0..5 {
        let got: Vec<ReleaseReport> = thread::scope(|scope| {
            let callers = scan_each_on_a_thread(scope, &engine, &releases);
            callers.into_iter().map(|c| c.join().expect("a caller ends")).collect()
        });
        // Each release's distributions come back in the order given, whatever order they were scanned in.
        assert_eq!(got, expected);
    }
}

#[test]
fn a_cancelled_release_leaves_the_others_scanned() {
    let engine = common::engine(Limits { max_total_size: u64::MAX, ..Limits::default() }, 2);
    // Enough members that the cancel lands while the big release is still being scanned.
    let names: Vec<String> = (0..20_000).map(|m| format!("big/m{m}.py")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"import os\n"[..])).collect();
    let big = common::tar_gz(&entries);
    let others: Vec<Vec<(String, Vec<u8>)>> = (0..4).map(release).collect();
    let cancel = ScanControl::new();
    let (cancelled, finished) = thread::scope(|scope| {
        let big_caller = scope.spawn(|| {
            let dists = vec![DistInput { name: "big.tar.gz".into(), url: None, input: Input::Bytes(&big) }];
            engine.scan_release_with("big", "1.0", dists, &cancel, &mut dragonfly_core::never)
        });
        while cancel.files() < 100 {
            thread::sleep(Duration::from_millis(1));
        }
        let callers = scan_each_on_a_thread(scope, &engine, &others);
        cancel.cancel();
        let finished: Vec<ReleaseReport> = callers.into_iter().map(|c| c.join().expect("ends")).collect();
        (big_caller.join().expect("ends"), finished)
    });
    assert!(matches!(cancelled, Err(EngineError::Cancelled)), "{cancelled:?}");
    assert!(cancel.files() < 20_000, "the cancel did not stop the big release");
    for (i, report) in finished.iter().enumerate() {
        let alone = engine.scan_many(inputs(&others[i]));
        assert_eq!(report.distributions, alone, "release r{i}");
    }
}

#[test]
fn a_release_without_distributions_is_an_empty_report() {
    let engine = common::engine(Limits::default(), 2);
    let report = engine.scan_release("empty", "0", Vec::new());
    assert_eq!((report.name.as_str(), report.distributions.len()), ("empty", 0));
}
