//! The content cache: counters, the journal of new entries, importing them into another engine,
//! and rejecting entries that do not fit the rule set. Also fast-scan mode and scans without digests.

mod common;

use common::{engine, marker_rules, scan, tar_gz, zip};
use dragonfly_core::{CacheEntryError, Digests, Engine, Limits, RuleSet};

fn sample() -> Vec<u8> {
    tar_gz(&[
        ("pkg/a.py", b"x = 1\nPY_ONLY_MARKER EVIL_MARKER\n"),
        ("pkg/b.py", b"print('clean')\n"),
        ("pkg/copy.py", b"print('clean')\n"),
        ("pkg/data.txt", b"EVIL_MARKER EVIL_MARKER"),
    ])
}

// One thread: two workers may both miss on the same content at once (both then scan it), which
// would make the exact counts below depend on timing.
fn journaling(rules: RuleSet) -> Engine {
    Engine::new(rules, Limits::default(), Some(1)).unwrap().with_cache_journal(true)
}

#[test]
fn identical_contents_are_scanned_once_and_counted() {
    let engine = engine(Limits::default(), 1);
    let first = scan(&engine, "s.tar.gz", &sample());
    let stats = engine.cache_stats();
    assert_eq!((stats.entries, stats.misses, stats.hits), (3, 3, 1), "{stats:?}");
    let again = scan(&engine, "s.tar.gz", &sample());
    assert_eq!(engine.cache_stats().hits, 5);
    assert_eq!(first.files, again.files);
    assert_eq!(first.score(), 8);
}

#[test]
fn journal_round_trips_into_a_fresh_engine() {
    let writer = journaling(marker_rules());
    let expected = scan(&writer, "s.tar.gz", &sample());
    let entries = writer.take_cache_journal().expect("journaling engine");
    assert_eq!(entries.len(), 3);
    // Contents without matches take no space beyond their key.
    assert_eq!(entries.iter().filter(|(_, blob)| blob.is_empty()).count(), 1);
    assert!(writer.take_cache_journal().unwrap().is_empty(), "taking empties the journal");

    let reader = journaling(marker_rules());
    let (loaded, error) = reader.import_cache(entries.iter().map(|(h, b)| (*h, b.as_slice())));
    assert_eq!((loaded, error), (3, None));
    let report = scan(&reader, "s.tar.gz", &sample());
    let stats = reader.cache_stats();
    assert_eq!((stats.misses, stats.hits), (0, 4), "nothing is scanned again: {stats:?}");
    assert_eq!(report.files, expected.files, "same matches, patterns and offsets from the cache");
    assert!(reader.take_cache_journal().unwrap().is_empty(), "imported entries are not new");
}

#[test]
fn engines_without_a_journal_say_so() {
    assert!(engine(Limits::default(), 1).take_cache_journal().is_none());
}

#[test]
fn entries_that_do_not_fit_the_rule_set_are_rejected() {
    let writer = journaling(marker_rules());
    scan(&writer, "a.py", b"EVIL_MARKER");
    let entries = writer.take_cache_journal().unwrap();
    let (hash, blob) = &entries[0];
    assert!(!blob.is_empty());

    let other = RuleSet::compile([("o.yar", "rule other { strings: $a = \"EVIL\" condition: $a }")]).unwrap();
    let reader = journaling(other);
    let (loaded, error) = reader.import_cache([(*hash, blob.as_slice())]);
    assert_eq!(loaded, 0);
    assert_eq!(error, Some(CacheEntryError::UnknownRule("default.evil_marker".into())));

    let reader = journaling(marker_rules());
    let mut bad_version = blob.clone();
    bad_version[0] = 9;
    let mut trailing = blob.clone();
    trailing.push(0);
    let cases: [(&[u8], CacheEntryError); 3] = [
        (&blob[..blob.len() - 3], CacheEntryError::Truncated),
        (&bad_version, CacheEntryError::Version(9)),
        (&trailing, CacheEntryError::Trailing(1)),
    ];
    for (data, expected) in cases {
        assert_eq!(reader.import_cache([(*hash, data)]), (0, Some(expected)));
    }
    // A huge declared count must not allocate: it is refused before reading further.
    let mut huge = vec![blob[0]];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(reader.import_cache([(*hash, huge.as_slice())]).1, Some(CacheEntryError::Malformed(_))));
    assert_eq!(reader.cache_stats().entries, 0);
}

#[test]
fn fast_scan_finds_the_same_rules_with_fewer_matches() {
    let data = zip(&[("m.py", "EVIL_MARKER ".repeat(50).as_bytes())]);
    let full = scan(&engine(Limits::default(), 1), "m.whl", &data);
    let fast_engine = engine(Limits::default(), 1).with_fast_scan(true);
    assert!(fast_engine.fast_scan());
    let fast = scan(&fast_engine, "m.whl", &data);
    assert_eq!(full.rules_matched(), fast.rules_matched());
    assert_eq!(full.score(), fast.score());
    assert_eq!(full.files[0].hits[0].patterns.len(), 16, "reports keep 16 matches per pattern");
    assert_eq!(fast.files[0].hits[0].patterns.len(), 1);
}

#[test]
fn without_digests_reports_match_the_same_and_leave_every_sha256_empty() {
    use sha2::{Digest, Sha256};
    let data = sample();
    // With and without the content cache: without it, matching files are hashed only for the report.
    for caching in [true, false] {
        let with = engine(Limits::default(), 2).with_content_cache(caching);
        let files_only =
            engine(Limits::default(), 2).with_content_cache(caching).with_digests(Digests::Files);
        let without = engine(Limits::default(), 2).with_content_cache(caching).with_digests(Digests::None);
        assert_eq!(
            (with.digests(), files_only.digests(), without.digests()),
            (Digests::All, Digests::Files, Digests::None)
        );
        let full = scan(&with, "s.tar.gz", &data);
        let (files, bare) = (scan(&files_only, "s.tar.gz", &data), scan(&without, "s.tar.gz", &data));
        assert_eq!(full.sha256, hex(&Sha256::digest(&data)));
        assert!(!full.files.is_empty());
        assert!(full.files.iter().all(|f| f.sha256.len() == 64));
        assert_eq!(bare.sha256, "");
        assert!(bare.files.iter().all(|f| f.sha256.is_empty()));
        let blank = |r: &dragonfly_core::DistributionReport, files: bool| {
            let mut r = r.clone();
            r.sha256.clear();
            if files {
                r.files.iter_mut().for_each(|f| f.sha256.clear());
            }
            r
        };
        assert_eq!(blank(&full, true), bare, "only the digests differ");
        // Only the matched files' digests: the distribution's is left empty.
        assert_eq!(files.sha256, "");
        assert_eq!(blank(&full, false), files);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
