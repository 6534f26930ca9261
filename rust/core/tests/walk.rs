//! The walker and scanner on real archives of every supported format, including broken ones.

mod common;

use common::*;
use dragonfly_core::{DistInput, Format, Input, IssueKind, Limits, ReleaseReport, Verdict};

const SETUP: &[u8] = b"import os\nEVIL_MARKER = 1\n";
const CLEAN: &[u8] = b"def f():\n    return 42\n";

fn sdist_entries() -> Vec<(&'static str, &'static [u8])> {
    vec![("pkg-1.0/setup.py", SETUP), ("pkg-1.0/pkg/__init__.py", CLEAN), ("pkg-1.0/README", b"hello")]
}

#[test]
fn every_format_is_detected_and_scanned() {
    let entries = sdist_entries();
    let cases: Vec<(&str, Vec<u8>, Format)> = vec![
        ("pkg-1.0.tar.gz", tar_gz(&entries), Format::TarGz),
        ("pkg-1.0.tar.bz2", bzip2(&tar(&entries)), Format::TarBz2),
        ("pkg-1.0.tar.xz", xz(&tar(&entries)), Format::TarXz),
        ("pkg-1.0.tar.lzma", lzma_alone(&tar(&entries)), Format::TarLzma),
        ("pkg-1.0.tar.lz", lzip(&tar(&entries)), Format::TarLz),
        ("pkg-1.0.tar.zst", zstd(&tar(&entries)), Format::TarZst),
        ("pkg-1.0.tar", tar(&entries), Format::Tar),
        ("pkg-1.0.zip", zip(&entries), Format::Zip),
        // The name lies: the format comes from the bytes.
        ("pkg-1.0-py3-none-any.whl", tar_gz(&entries), Format::TarGz),
    ];
    for threads in [1, 2] {
        let engine = engine(Limits::default(), threads);
        for (name, data, format) in &cases {
            let report = scan(&engine, name, data);
            assert_eq!(report.format, *format, "{name}");
            assert_eq!(report.files_scanned, 3, "{name}");
            assert_eq!(report.bytes_scanned, (SETUP.len() + CLEAN.len() + 5) as u64, "{name}");
            assert_eq!(paths(&report), vec!["pkg-1.0/setup.py"], "{name}");
            assert_eq!(report.rules_matched(), vec!["evil_marker"], "{name}");
            assert_eq!(report.score(), 5, "{name}");
            assert!(report.issues.is_empty(), "{name}: {:?}", report.issues);
            assert_eq!(report.verdict(), Verdict::Findings);
            assert_eq!(report.size, data.len() as u64);
            assert_eq!(report.sha256.len(), 64);
        }
    }
}

#[test]
fn plain_and_single_compressed_files() {
    let engine = engine(Limits::default(), 2);
    let plain = scan(&engine, "evil.py", SETUP);
    assert_eq!(plain.format, Format::File);
    assert_eq!(paths(&plain), vec!["evil.py"]);

    let gz = scan(&engine, "notes.txt.gz", &gzip(SETUP));
    assert_eq!(gz.format, Format::Gzip);
    assert_eq!(paths(&gz), vec!["notes.txt"]);

    let clean = scan(&engine, "ok.py", CLEAN);
    assert_eq!(clean.verdict(), Verdict::Clean);
    assert_eq!(clean.files_scanned, 1);

    let empty = scan(&engine, "empty", b"");
    assert_eq!(empty.verdict(), Verdict::Clean);
    assert_eq!(empty.files_scanned, 1);
}

#[test]
fn filetype_limits_where_a_rule_counts() {
    let engine = engine(Limits::default(), 2);
    let data = tar_gz(&[
        ("p/a.py", b"PY_ONLY_MARKER"),
        ("p/a.txt", b"PY_ONLY_MARKER"),
        ("p/b.pyi", b"PY_ONLY_MARKER"),
    ]);
    let report = scan(&engine, "p.tar.gz", &data);
    assert_eq!(paths(&report), vec!["p/a.py", "p/b.pyi"]);
    assert_eq!(report.score(), 3);
}

#[test]
fn identical_contents_are_reported_at_every_path() {
    let engine = engine(Limits::default(), 2);
    let data = zip(&[("a/x.py", SETUP), ("b/y.py", SETUP), ("c/z.txt", SETUP)]);
    let first = scan(&engine, "d.zip", &data);
    assert_eq!(paths(&first), vec!["a/x.py", "b/y.py", "c/z.txt"]);
    // Again, now entirely from the content cache.
    let second = scan(&engine, "d.zip", &data);
    assert_eq!(first, second);
}

#[test]
fn results_are_in_archive_order_whatever_the_thread_count() {
    let bodies: Vec<Vec<u8>> = (0..200).map(|i| format!("# file {i}\nEVIL_MARKER\n").into_bytes()).collect();
    let names: Vec<String> = (0..200).map(|i| format!("pkg/m{i:03}.py")).collect();
    let entries: Vec<(&str, &[u8])> =
        names.iter().map(String::as_str).zip(bodies.iter().map(Vec::as_slice)).collect();
    for data in [tar_gz(&entries), zip(&entries)] {
        let one = scan(&engine(Limits::default(), 1), "x", &data);
        let two = scan(&engine(Limits::default(), 2), "x", &data);
        assert_eq!(one.files.len(), 200);
        assert_eq!(one, two);
        assert_eq!(paths(&one), names.iter().map(String::as_str).collect::<Vec<_>>());
        // Ties pick the last file, as the reference node does.
        assert_eq!(one.top_file().unwrap().path, "pkg/m199.py");
    }
}

#[test]
fn nested_archives_are_opened_to_the_depth_limit() {
    let inner = zip(&[("evil.py", SETUP)]);
    let middle = tar_gz(&[("data/inner.zip", &inner)]);
    let outer = tar_gz(&[("pkg/middle.tar.gz", &middle), ("pkg/ok.py", CLEAN)]);

    let report = scan(&engine(Limits::default(), 2), "outer.tar.gz", &outer);
    assert_eq!(paths(&report), vec!["pkg/middle.tar.gz!/data/inner.zip!/evil.py"]);
    assert!(report.complete());

    let shallow = Limits { max_depth: 1, ..Limits::default() };
    let report = scan(&engine(shallow, 2), "outer.tar.gz", &outer);
    assert!(report.files.is_empty());
    assert_eq!(issue_kinds(&report), vec!["nesting-too-deep"]);
    assert_eq!(report.issues[0].path, "pkg/middle.tar.gz!/data/inner.zip");
    assert_eq!(report.verdict(), Verdict::Incomplete);
}

#[test]
fn links_and_directories_are_recorded_not_followed() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    builder.append_data(&mut dir, "pkg/", &[][..]).unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "pkg/passwd", "/etc/passwd").unwrap();
    let mut fifo = tar::Header::new_gnu();
    fifo.set_entry_type(tar::EntryType::Fifo);
    fifo.set_size(0);
    builder.append_data(&mut fifo, "pkg/pipe", &[][..]).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(CLEAN.len() as u64);
    builder.append_data(&mut file, "pkg/ok.py", CLEAN).unwrap();
    let data = gzip(&builder.into_inner().unwrap());

    let report = scan(&engine(Limits::default(), 2), "links.tar.gz", &data);
    assert_eq!(issue_kinds(&report), vec!["link-not-followed", "special-entry"]);
    assert!(report.issues[0].message.contains("/etc/passwd"));
    assert_eq!(report.files_scanned, 1);
    // Links have no content of their own: nothing was left unscanned.
    assert_eq!(report.verdict(), Verdict::Clean);
}

#[test]
fn member_size_limit_is_enforced_while_reading() {
    let big = vec![b'A'; 4096];
    let limits = Limits { max_member_size: 1000, ..Limits::default() };
    for (name, data) in [
        ("t.tar.gz", tar_gz(&[("p/big.bin", &big), ("p/s.py", SETUP)])),
        ("z.zip", zip(&[("p/big.bin", &big), ("p/s.py", SETUP)])),
    ] {
        let report = scan(&engine(limits.clone(), 2), name, &data);
        assert_eq!(issue_kinds(&report), vec!["member-too-large"], "{name}");
        assert_eq!(report.issues[0].path, "p/big.bin");
        assert!(report.issues[0].message.contains("1000"), "{}", report.issues[0].message);
        // The rest of the archive is still scanned.
        assert_eq!(paths(&report), vec!["p/s.py"], "{name}");
        assert_eq!(report.verdict(), Verdict::Findings);
    }
    // With nothing matched, an unscanned member makes the verdict incomplete, never clean.
    let report = scan(&engine(limits, 2), "t.tar.gz", &tar_gz(&[("p/big.bin", &big)]));
    assert_eq!(report.verdict(), Verdict::Incomplete);
}

/// Large members' buffers are reused from one member to the next: a member that comes out shorter
/// than it declares (truncated, or inflating to less) holds only its own bytes, never what a larger
/// member before it left in the buffer.
#[test]
fn a_short_member_after_a_larger_one_holds_only_its_own_bytes() {
    let mut big = vec![b'a'; 300_000];
    big[299_000..299_011].copy_from_slice(b"EVIL_MARKER");
    let short = vec![b'b'; 100_000];
    // A tarball cut inside its last member, which declares as many bytes as the first.
    let mut cut = tar(&[("pkg/big.py", &big), ("pkg/short.py", &big)]);
    let short_starts = 512 + 300_000usize.next_multiple_of(512) + 512;
    cut.truncate(short_starts + 100_000);
    // A zip whose last member declares 300,000 bytes and inflates to 100,000.
    let mut lying = zip(&[("pkg/big.py", &big), ("pkg/filler.txt", b"x"), ("pkg/short.py", &short)]);
    declare_size(&mut lying, b"pkg/short.py", 300_000);
    for threads in [1, 2] {
        for (name, data) in
            [("cut.tar.gz", gzip(&cut)), ("cut.tar", cut.clone()), ("lying.zip", lying.clone())]
        {
            for _ in 0..3 {
                let report = scan(&engine(Limits::default(), threads), name, &data);
                assert_eq!(paths(&report), vec!["pkg/big.py"], "{name}, {threads} threads");
                assert!(!report.issues.is_empty(), "{name}: the short member is an issue");
            }
        }
    }
}

/// Set the uncompressed size that `name`'s local header and central directory entry declare.
fn declare_size(zip: &mut [u8], name: &[u8], size: u32) {
    let mut patched = 0;
    for (signature, size_at, name_at) in [(b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)] {
        let mut at = 0;
        while let Some(found) = zip[at..].windows(4).position(|w| w == signature) {
            let header = at + found;
            if zip[header + name_at..].starts_with(name) {
                zip[header + size_at..header + size_at + 4].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
            at = header + 4;
        }
    }
    assert_eq!(patched, 2, "a local header and a central directory entry");
}

#[test]
fn total_size_and_member_count_limits() {
    let chunk = vec![b'x'; 600];
    let entries: Vec<(String, &[u8])> = (0..10).map(|i| (format!("p/f{i}"), chunk.as_slice())).collect();
    let entries: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), *d)).collect();

    let limits = Limits { max_total_size: 2000, ..Limits::default() };
    let report = scan(&engine(limits, 1), "t.tar.gz", &tar_gz(&entries));
    assert!(issue_kinds(&report).contains(&"total-size-exceeded"), "{:?}", report.issues);
    assert!(report.files_scanned < 10);
    assert_eq!(report.verdict(), Verdict::Incomplete);

    let limits = Limits { max_members: 4, ..Limits::default() };
    for data in [tar_gz(&entries), zip(&entries)] {
        let report = scan(&engine(limits.clone(), 2), "t", &data);
        assert_eq!(issue_kinds(&report), vec!["too-many-members"]);
        assert_eq!(report.files_scanned, 4);
        assert_eq!(report.verdict(), Verdict::Incomplete);
    }
}

#[test]
fn compression_ratio_limit_stops_bombs() {
    let zeros = vec![0u8; 8 << 20];
    let limits = Limits { max_ratio: 100, ..Limits::default() };
    let bomb = tar_gz(&[("p/zeros.bin", &zeros)]);
    let report = scan(&engine(limits.clone(), 2), "bomb.tar.gz", &bomb);
    assert!(issue_kinds(&report).contains(&"compression-ratio"), "{:?}", report.issues);
    assert_eq!(report.verdict(), Verdict::Incomplete);

    let report = scan(&engine(limits, 2), "bomb.zip", &zip(&[("zeros.bin", &zeros)]));
    assert_eq!(issue_kinds(&report), vec!["compression-ratio"]);
    assert_eq!(report.issues[0].path, "zeros.bin");
}

#[test]
fn truncated_and_corrupt_archives_are_issues_not_crashes() {
    let engine = engine(Limits::default(), 2);
    let whole = tar_gz(&sdist_entries());
    for cut in [10, whole.len() / 2, whole.len() - 9] {
        let report = scan(&engine, "cut.tar.gz", &whole[..cut]);
        assert!(!report.complete(), "cut at {cut}: {:?}", report.issues);
        assert!(issue_kinds(&report).contains(&"corrupt"), "cut at {cut}: {:?}", report.issues);
        assert_ne!(report.verdict(), Verdict::Clean);
    }
    let whole = zip(&sdist_entries());
    let report = scan(&engine, "cut.zip", &whole[..whole.len() / 2]);
    assert_eq!(issue_kinds(&report), vec!["corrupt"]);
    // The raw bytes were still scanned: the marker is in a stored or deflated member, so look
    // only for the incomplete verdict here.
    assert_ne!(report.verdict(), Verdict::Clean);

    let mut garbage = b"PK\x03\x04".to_vec();
    garbage.extend_from_slice(b"EVIL_MARKER and nothing like a zip");
    let report = scan(&engine, "fake.whl", &garbage);
    assert_eq!(issue_kinds(&report), vec!["corrupt"]);
    // Unopenable archives are scanned as raw bytes so a match is not lost.
    assert_eq!(paths(&report), vec!["fake.whl"]);
    assert_eq!(report.verdict(), Verdict::Findings);
}

#[test]
fn bad_checksum_and_encrypted_members() {
    let engine = engine(Limits::default(), 2);
    let mut data = zip(&[("a.py", b"stored? no, deflated EVIL_MARKER"), ("b.txt", b"plain stored body")]);
    // Flip a byte of the stored member's body: its CRC no longer matches.
    let at = data.windows(4).position(|w| w == b"body").unwrap();
    data[at] = b'B';
    let report = scan(&engine, "crc.zip", &data);
    assert_eq!(issue_kinds(&report), vec!["bad-checksum"]);
    assert_eq!(report.issues[0].path, "b.txt");
    // A deflated member whose recorded CRC-32 is wrong, though it inflates whole to its declared size.
    let mut data = zip(&[("a.py", b"deflated EVIL_MARKER, deflated again".as_slice())]);
    for (signature, crc_at) in [(&b"PK\x03\x04"[..], 14), (&b"PK\x01\x02"[..], 16)] {
        let at = data.windows(4).position(|w| w == signature).unwrap();
        data[at + crc_at] ^= 1;
    }
    let report = scan(&engine, "crc.zip", &data);
    assert_eq!(issue_kinds(&report), vec!["bad-checksum"]);
    assert_eq!(report.verdict(), Verdict::Findings);

    // Set the "encrypted" flag on every header.
    let mut data = zip(&[("secret.py", SETUP)]);
    for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
        let at = data.windows(4).position(|w| w == sig).unwrap();
        let flags = if sig[2] == 3 { at + 6 } else { at + 8 };
        data[flags] |= 1;
    }
    let report = scan(&engine, "enc.zip", &data);
    assert_eq!(issue_kinds(&report), vec!["encrypted"]);
    assert_eq!(report.verdict(), Verdict::Incomplete);
}

#[test]
fn release_scoring_matches_the_contract() {
    let engine = engine(Limits::default(), 2);
    let sdist = tar_gz(&[("p-1/setup.py", b"EVIL_MARKER PY_ONLY_MARKER")]);
    let wheel = zip(&[("p/__init__.py", b"ZERO_WEIGHT_MARKER")]);
    let url = "https://files.pythonhosted.org/packages/aa/bb/cc";
    let release: ReleaseReport = engine.scan_release(
        "p",
        "1",
        vec![
            DistInput {
                name: "p-1.tar.gz".into(),
                url: Some(format!("{url}/p-1.tar.gz")),
                input: Input::Bytes(&sdist),
            },
            DistInput {
                name: "p-1-py3-none-any.whl".into(),
                url: Some(format!("{url}/p-1-py3-none-any.whl")),
                input: Input::Owned(wheel),
            },
        ],
    );
    assert_eq!(release.score(), 8);
    assert_eq!(release.rules_matched(), vec!["evil_marker", "py_only", "zero_weight"]);
    assert_eq!(
        release.inspector_url().unwrap(),
        "https://inspector.pypi.io/project/p/1/packages/aa/bb/cc/p-1.tar.gz/p-1/setup.py"
    );
    assert_eq!(release.verdict(), Verdict::Findings);
}

#[test]
fn unreadable_paths_are_issues() {
    let engine = engine(Limits::default(), 2);
    let report = engine.scan(DistInput {
        name: "gone".into(),
        url: None,
        input: Input::Path("/nonexistent/x.tar.gz".into()),
    });
    assert_eq!(report.issues[0].kind, IssueKind::Unreadable);
    assert_eq!(report.verdict(), Verdict::Incomplete);
}

#[test]
fn scan_timeout_is_an_issue_and_other_files_still_scan() {
    // Nested loops over the file: far more work than a one-second timeout allows.
    let slow = dragonfly_core::RuleSet::compile([(
        "slow.yar",
        r#"rule slow { condition: for any i in (0..filesize) : (for any j in (0..filesize) : (uint8(i) == uint8(j) + 1 and uint8(j) == 0xff)) }
           rule quick { meta: weight = 1 strings: $a = "QUICK" condition: $a }"#,
    )])
    .unwrap();
    let limits = Limits { timeout: std::time::Duration::from_secs(1), ..Limits::default() };
    let engine = dragonfly_core::Engine::new(slow, limits, Some(2)).unwrap();
    let data = zip(&[("p/big.bin", &vec![b'a'; 200_000]), ("p/q.py", b"QUICK")]);
    let report = scan(&engine, "slow.zip", &data);
    assert_eq!(issue_kinds(&report), vec!["scan-timeout"]);
    assert_eq!(report.issues[0].path, "p/big.bin");
    assert_eq!(paths(&report), vec!["p/q.py"]);
    assert!(!report.complete());
}

#[test]
fn files_no_rule_applies_to_are_covered_without_scanning() {
    let typed = dragonfly_core::RuleSet::compile([(
        "t.yar",
        r#"rule py { meta: weight = 2 filetype = ".py" strings: $a = "MARK" condition: $a }"#,
    )])
    .unwrap();
    let engine = dragonfly_core::Engine::new(typed, Limits::default(), Some(2)).unwrap();
    let inner = zip(&[("inner.py", b"MARK")]);
    let data = tar_gz(&[("p/a.py", b"MARK"), ("p/data.json", b"MARK"), ("p/nested.zip", &inner)]);
    let report = scan(&engine, "p.tar.gz", &data);
    // The .json cannot count for any rule; the nested zip is still opened.
    assert_eq!(paths(&report), vec!["p/a.py", "p/nested.zip!/inner.py"]);
    assert_eq!(report.files_scanned, 4);
    assert!(report.complete());
}

/// Deflated zip members up to `RATIO_GRACE_BYTES` are inflated whole, larger ones streamed, as every tar
/// member is: around both edges a zip member is read as the same member in a tarball is, its last bytes
/// included, with and without a member-size limit that cuts it, and a wrong CRC-32 is still caught.
#[test]
fn zip_members_read_whole_or_streamed_end_as_tar_members_do() {
    let edges = [256 << 10, 1 << 20];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for size in edges.iter().flat_map(|&edge: &usize| [edge - 1, edge, edge + 1]) {
        let mut content: Vec<u8> = (0..size - 11)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b'a' + (seed % 26) as u8
            })
            .collect();
        content.extend_from_slice(b"EVIL_MARKER");
        let entries = [("p/m.bin", content.as_slice())];
        let (zipped, tarred) = (zip(&entries), tar_gz(&entries));
        for limits in [Limits::default(), Limits { max_member_size: size as u64 - 1, ..Limits::default() }] {
            let engine = engine(limits.clone(), 2);
            let (z, t) = (scan(&engine, "m.zip", &zipped), scan(&engine, "m.tar.gz", &tarred));
            let cut = limits.max_member_size < size as u64;
            assert_eq!(issue_kinds(&z), issue_kinds(&t), "{size} (cut: {cut})");
            assert_eq!(issue_kinds(&z), if cut { vec!["member-too-large"] } else { vec![] }, "{size}");
            assert_eq!((z.files_scanned, z.bytes_scanned), (t.files_scanned, t.bytes_scanned), "{size}");
            assert_eq!(z.bytes_scanned, (size - usize::from(cut)) as u64, "{size}");
            assert_eq!(z.rules_matched(), t.rules_matched(), "{size}");
            assert_eq!(z.rules_matched().is_empty(), cut, "{size}: the marker ends the member");
        }
        let mut bad = zipped.clone();
        for (signature, crc_at) in [(&b"PK\x03\x04"[..], 14), (&b"PK\x01\x02"[..], 16)] {
            let at = bad.windows(4).position(|w| w == signature).unwrap();
            bad[at + crc_at] ^= 1;
        }
        let report = scan(&engine(Limits::default(), 2), "crc.zip", &bad);
        assert_eq!(issue_kinds(&report), vec!["bad-checksum"], "{size}");
    }
}
