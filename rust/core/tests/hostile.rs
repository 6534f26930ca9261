//! The hostile corpus (tests/common/hostile.rs) against the engine. Each case runs in a child
//! process of this test binary so that its peak RSS (VmHWM) and CPU time are its own; the parent
//! fails the test on a crash, a hang (no exit within `HANG_SECONDS`), or a peak over the case's
//! bound. Bounds are generous (shared machines, allocator slack) but far below what the unbounded
//! behaviour would take: the bombs inflate to GBs.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hostile::*;
use common::*;
use dragonfly_core::{DistInput, DistributionReport, Engine, Input, Issue, Limits, RuleSet, Verdict};

const MARKER: &[u8] = b"import os\nEVIL_MARKER = 1\n";
const CHILD_ENV: &str = "DRAGONFLY_HOSTILE_CASE";
/// A case still running after this long is hung (the slowest takes a few seconds).
const HANG_SECONDS: u64 = 180;
/// CPU seconds a case may use: generous, but unbounded work (inflating GBs) would take longer.
const CPU_SECONDS: f64 = 60.0;

/// Run `body` in a child process and check its peak RSS and CPU time.
fn isolated(name: &str, max_rss_mb: u64, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        body();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let peak = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB").to_owned();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // utime and stime, in clock ticks (100 per second on Linux), after the command name.
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: u64 =
            fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
        println!("\nHOSTILE_PEAK {}", peak.split_whitespace().nth(1).unwrap_or("0"));
        println!("\nHOSTILE_CPU_TICKS {ticks}");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the case");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(HANG_SECONDS) {
            child.kill().ok();
            child.wait().ok();
            panic!("{name}: still running after {HANG_SECONDS} s (hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{name}: the case failed ({status}):\n{out}\n{err}");
    let value = |key: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or_else(|| panic!("{name}: no {key} in the child's output:\n{out}\n{err}"))
    };
    let peak_mb = value("HOSTILE_PEAK ") / 1024;
    let cpu = value("HOSTILE_CPU_TICKS ") as f64 / 100.0;
    eprintln!("{name}: peak RSS {peak_mb} MB, CPU {cpu:.1} s, wall {:.1} s", started.elapsed().as_secs_f64());
    assert!(peak_mb <= max_rss_mb, "{name}: peak RSS {peak_mb} MB over the bound of {max_rss_mb} MB");
    assert!(cpu <= CPU_SECONDS, "{name}: {cpu:.1} CPU seconds, over {CPU_SECONDS}");
}

/// A test whose body runs isolated, with a peak-RSS bound in MB.
macro_rules! hostile {
    ($(#[$meta:meta])* $name:ident, $rss_mb:expr, $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            isolated(stringify!($name), $rss_mb, || $body);
        }
    };
}

fn find<'a>(report: &'a DistributionReport, kind: &str, path: &str) -> &'a Issue {
    report
        .issues
        .iter()
        .find(|i| i.kind.as_str() == kind && i.path == path)
        .unwrap_or_else(|| panic!("no {kind} issue for {path:?} in {:#?}", report.issues))
}

fn count(report: &DistributionReport, kind: &str) -> usize {
    report.issues.iter().filter(|i| i.kind.as_str() == kind).count()
}

fn no_bugs(report: &DistributionReport) {
    assert_eq!(count(report, "internal-error"), 0, "{:#?}", report.issues);
    if !report.complete() {
        assert_ne!(report.verdict(), Verdict::Clean);
    }
}

fn default_engine() -> Engine {
    engine(Limits::default(), 2)
}

// --- Bombs -------------------------------------------------------------------------------------

hostile!(gzip_bomb_tar_gz, 300, {
    // A member declaring 4 GiB, followed by 4 GiB of zeros, after a member with the marker.
    let data = DeflateStream::new()
        .part(&tar_member("bomb/before.py", MARKER))
        .part(&tar_header("bomb/zeros.bin", 4 << 30, b'0'))
        .zeros(4 << 30)
        .gzip();
    assert!(data.len() < 8 << 20);
    let report = scan(&default_engine(), "bomb.tar.gz", &data);
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["bomb/before.py"]);
    let issue = find(&report, "compression-ratio", "bomb/zeros.bin");
    assert!(issue.unscanned && issue.message.contains("1000:1"), "{issue}");
    assert_eq!(report.verdict(), Verdict::Findings);
    // Without the marker: never clean.
    let data = DeflateStream::new().part(&tar_header("z.bin", 4 << 30, b'0')).zeros(4 << 30).gzip();
    assert_eq!(scan(&default_engine(), "bomb.tar.gz", &data).verdict(), Verdict::Incomplete);
});

hostile!(gzip_bomb_single_file, 300, {
    // 4 GiB of one letter: one compressed file, cut by the ratio limit.
    let data = DeflateStream::new().repeat(&[b'x'; 1 << 20], 4096).gzip();
    let report = scan(&default_engine(), "letters.gz", &data);
    no_bugs(&report);
    find(&report, "compression-ratio", "letters");
    assert_eq!(report.verdict(), Verdict::Incomplete);
    // 4 GiB of zeros starts like an empty tarball (two zero blocks): the zeros after its end
    // marker are read as trailing data, and cut by the same limit.
    let data = DeflateStream::new().zeros(4 << 30).gzip();
    let report = scan(&default_engine(), "zeros.gz", &data);
    no_bugs(&report);
    find(&report, "compression-ratio", "<after end of archive>");
    assert_eq!(report.verdict(), Verdict::Incomplete);
});

hostile!(zstd_bomb_tar, 300, {
    // 2 GiB of zeros in a member, in a zstd tarball of a few hundred KiB: cut by the ratio limit.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.write_all(&tar_member("bomb/before.py", MARKER)).unwrap();
    encoder.write_all(&tar_header("bomb/zeros.bin", 2 << 30, b'0')).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..2048 {
        encoder.write_all(&zeros).unwrap();
    }
    let data = encoder.finish().unwrap();
    assert!(data.len() < 1 << 20, "{}", data.len());
    let report = scan(&default_engine(), "bomb.tar.zst", &data);
    no_bugs(&report);
    assert_eq!(report.format, dragonfly_core::Format::TarZst);
    assert_eq!(paths(&report), vec!["bomb/before.py"]);
    let issue = find(&report, "compression-ratio", "bomb/zeros.bin");
    assert!(issue.unscanned, "{issue}");
    assert_eq!(report.verdict(), Verdict::Findings);
});

hostile!(zip_bomb_one_entry, 300, {
    for declared in [None, Some(1000)] {
        let mut bomb = ZipMember::from_stream("zeros.bin", DeflateStream::new().zeros(3 << 30));
        if let Some(size) = declared {
            bomb.size = size; // the header lies: the stream is still cut by the limits
        }
        let data = zip_raw(&[ZipMember::deflated("a.py", MARKER), bomb], &ZipLayout::default());
        let report = scan(&default_engine(), "bomb.zip", &data);
        no_bugs(&report);
        assert_eq!(paths(&report), vec!["a.py"]);
        find(&report, "compression-ratio", "zeros.bin");
    }
});

hostile!(huge_member_under_the_ratio_limit, 600, {
    // 1 GiB that compresses ~100:1: only the member-size limit (256 MB) stops it, with the first
    // 256 MB scanned; memory stays near one member.
    let unit = low_ratio_unit(1 << 16);
    let stream = DeflateStream::new().repeat(&unit, 1 << 14);
    let zip = zip_raw(
        &[ZipMember::from_stream("big.bin", stream), ZipMember::stored("a.py", MARKER)],
        &ZipLayout::default(),
    );
    let report = scan(&default_engine(), "big.zip", &zip);
    no_bugs(&report);
    let issue = find(&report, "member-too-large", "big.bin");
    assert!(issue.message.contains("only the first 256000000 bytes were scanned"), "{issue}");
    assert_eq!(paths(&report), vec!["a.py"]);
    assert_eq!(report.bytes_scanned, 256_000_000 + MARKER.len() as u64);
});

hostile!(huge_tar_members_are_bounded_in_flight, 700, {
    // Six 200 MB members (under every limit): the reader may not run far ahead of the scanners.
    let unit = low_ratio_unit(1 << 16);
    let mut stream = DeflateStream::new();
    for i in 0..6 {
        stream = stream.part(&tar_header(&format!("p/big{i}.bin"), 200 << 20, b'0')).repeat(&unit, 3200);
    }
    let data = stream.part(&tar_member("p/z.py", MARKER)).part(&TAR_END).gzip();
    let report = scan(&default_engine(), "big.tar.gz", &data);
    no_bugs(&report);
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    assert_eq!(report.files_scanned, 7);
    assert_eq!(paths(&report), vec!["p/z.py"]);
});

hostile!(overlapping_entries_zip_bomb, 400, {
    // 200 entries sharing one 16 MiB kernel (~100:1): 3.2 GB if each were inflated in full.
    let kernel = DeflateStream::new().repeat(&low_ratio_unit(1 << 16), 256);
    let data = overlapping_zip_bomb(200, kernel);
    assert!(data.len() < 1 << 20, "{}", data.len());
    let report = scan(&default_engine(), "overlap.zip", &data);
    no_bugs(&report);
    assert_eq!(count(&report, "overlapping-entries"), 199);
    let ratio = report.issues.iter().find(|i| i.kind.as_str() == "compression-ratio").expect("budget issue");
    assert!(ratio.message.contains("in all"), "{ratio}");
    assert!(report.bytes_scanned < 1000 * data.len() as u64 + (64 << 20));
    assert_eq!(report.verdict(), Verdict::Incomplete);
});

hostile!(overlapping_entries_aliasing_one_local_header, 200, {
    let layout = ZipLayout { aliases: vec![("alias.py".into(), 0)], ..ZipLayout::default() };
    let data = zip_raw(&[ZipMember::deflated("a.py", MARKER), ZipMember::stored("b.txt", b"ok")], &layout);
    let report = scan(&default_engine(), "alias.zip", &data);
    no_bugs(&report);
    find(&report, "overlapping-entries", "alias.py");
    // The alias is scanned too (its local header names it differently: reported as well).
    assert_eq!(paths(&report), vec!["a.py", "alias.py"]);
    find(&report, "corrupt", "alias.py");
});

// --- Nesting -----------------------------------------------------------------------------------

fn nested(levels: usize) -> Vec<u8> {
    let mut data = MARKER.to_vec();
    let mut name = "evil.py".to_owned();
    for level in 0..levels {
        data = if level % 2 == 0 { zip(&[(&name, &data)]) } else { tar_gz(&[(&name, &data)]) };
        name = if level % 2 == 0 { format!("l{level}.zip") } else { format!("l{level}.tar.gz") };
    }
    data
}

hostile!(nested_archives_past_the_depth_limit, 200, {
    let data = nested(6);
    let report = scan(&default_engine(), "nested.tar.gz", &data);
    no_bugs(&report);
    let deep = report.issues.iter().find(|i| i.kind.as_str() == "nesting-too-deep").expect("depth issue");
    assert_eq!(deep.path.matches("!/").count(), 3, "{deep}");
    assert_eq!(report.verdict(), Verdict::Incomplete);
    // With room enough, the marker is found at its full path.
    let deep_limits = Limits { max_depth: 10, ..Limits::default() };
    let report = scan(&engine(deep_limits, 2), "nested.tar.gz", &data);
    assert_eq!(paths(&report), vec!["l4.zip!/l3.tar.gz!/l2.zip!/l1.tar.gz!/l0.zip!/evil.py"]);
    assert!(report.complete());
});

hostile!(extreme_limit_settings_still_scan_everything, 200, {
    // The largest values the settings accept must not wrap around into "read nothing".
    let limits = Limits {
        max_member_size: u64::MAX,
        max_total_size: u64::MAX,
        max_members: u64::MAX,
        max_ratio: u64::MAX,
        max_depth: u32::MAX,
        timeout: Duration::from_secs(86_400),
    };
    let data = tar_gz(&[("p/a.py", MARKER), ("p/inner.zip", &zip(&[("b.py", MARKER)]))]);
    let report = scan(&engine(limits, 2), "x.tar.gz", &data);
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["p/a.py", "p/inner.zip!/b.py"]);
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    // The smallest: every member is over the limits, and says so.
    let limits = Limits {
        max_member_size: 1,
        max_total_size: 1,
        max_members: 1,
        max_ratio: 1,
        max_depth: 0,
        timeout: Duration::from_nanos(1),
    };
    let report = scan(&engine(limits, 2), "x.tar.gz", &data);
    no_bugs(&report);
    assert_eq!(report.verdict(), Verdict::Incomplete);
});

hostile!(very_deep_nesting_with_a_high_limit, 300, {
    // A user may raise the depth limit: past 32 levels the walker stops anyway, as deeper
    // recursion could exhaust a worker's stack (found by this test: 3000 levels aborted).
    let data = nested(100);
    let limits = Limits { max_depth: u32::MAX, ..Limits::default() };
    let report = scan(&engine(limits, 2), "deep", &data);
    no_bugs(&report);
    let deep = report.issues.iter().find(|i| i.kind.as_str() == "nesting-too-deep").expect("depth issue");
    assert_eq!(deep.path.matches("!/").count(), 32, "{deep}");
    assert!(deep.message.contains("32 levels"), "{deep}");
    // Under the ceiling, a high limit is honoured.
    let limits = Limits { max_depth: 30, ..Limits::default() };
    let report = scan(&engine(limits, 2), "deep", &nested(30));
    assert_eq!(report.verdict(), Verdict::Findings);
    assert!(report.complete());
});

hostile!(nested_fan_out, 300, {
    // 16 x 16 x 16 copies of a 64 KiB file behind three levels of zips.
    let leaf = low_ratio_unit(1 << 16);
    let mut level = zip(&(0..16)
        .map(|i| (format!("f{i}.bin"), leaf.clone()))
        .collect::<Vec<_>>()
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect::<Vec<_>>());
    for _ in 0..2 {
        let names: Vec<String> = (0..16).map(|i| format!("z{i}.zip")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), level.as_slice())).collect();
        level = zip(&entries);
    }
    let limits = Limits { max_total_size: 64 << 20, ..Limits::default() };
    let report = scan(&engine(limits, 2), "fan.zip", &level);
    no_bugs(&report);
    assert!(count(&report, "total-size-exceeded") == 1, "{:#?}", report.issues);
    assert_eq!(report.verdict(), Verdict::Incomplete);
});

// --- Counts and names --------------------------------------------------------------------------

hostile!(tar_with_hundreds_of_thousands_of_entries, 400, {
    let data = many_members_tar_gz(200_000, |i| if i == 50_000 { MARKER.to_vec() } else { Vec::new() });
    let report = scan(&default_engine(), "many.tar.gz", &data);
    no_bugs(&report);
    assert_eq!(report.files_scanned, 100_000);
    assert_eq!(paths(&report), vec!["pkg/d150/m0050000.py"]);
    let issue = report.issues.iter().find(|i| i.kind.as_str() == "too-many-members").expect("count issue");
    assert!(issue.message.contains("100000"), "{issue}");
    // Raised, every member is scanned in the same bounded memory.
    let limits = Limits { max_members: 1_000_000, ..Limits::default() };
    let report = scan(&engine(limits, 2), "many.tar.gz", &data);
    assert_eq!(report.files_scanned, 200_000);
    assert!(report.issues.is_empty(), "{:#?}", &report.issues[..report.issues.len().min(5)]);
});

hostile!(zip_with_hundreds_of_thousands_of_entries, 300, {
    // More entries than a classic end record can count: the count field is saturated and the
    // central directory is read by its size, as zipfile does.
    let members: Vec<ZipMember> = (0..150_000)
        .map(|i| {
            ZipMember::stored(&format!("pkg/m{i:06}.py"), if i == 7 || i == 120_000 { MARKER } else { b"" })
        })
        .collect();
    let data = zip_raw(&members, &ZipLayout::default());
    drop(members);
    let report = scan(&default_engine(), "many.zip", &data);
    no_bugs(&report);
    // The first 100 000 entries, always the same ones (entries are read in parallel).
    assert_eq!(report.files_scanned, 100_000);
    assert_eq!(paths(&report), vec!["pkg/m000007.py"]);
    assert_eq!(issue_kinds(&report), vec!["too-many-members"]);
});

hostile!(central_directory_records_past_the_member_limit_are_never_held, 200, {
    // 2.5 M central-directory records (117 MB, all naming one empty local entry): each record
    // would be a member held in memory (490 MB before the member limit was applied while reading
    // the directory). Only `max_members` of them are read at all.
    const RECORDS: u32 = 2_500_000;
    let mut data = Vec::with_capacity(48 * RECORDS as usize + 64);
    data.extend_from_slice(b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0a");
    let central_start = data.len() as u32;
    let mut record = b"PK\x01\x02\x14\x03\x14\0\0\0\0\0\0\0\0\0".to_vec();
    record.extend_from_slice(&[0; 12]);
    record.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    record.push(b'a');
    for _ in 0..RECORDS {
        data.extend_from_slice(&record);
    }
    let central_size = data.len() as u32 - central_start;
    data.extend_from_slice(b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff");
    data.extend_from_slice(&central_size.to_le_bytes());
    data.extend_from_slice(&central_start.to_le_bytes());
    data.extend_from_slice(&[0, 0]);
    let report = scan(&default_engine(), "records.whl", &data);
    no_bugs(&report);
    assert_eq!(report.files_scanned, 100_000);
    find(&report, "too-many-members", "");
    assert!(!report.complete());
});

hostile!(many_duplicate_names, 200, {
    // Only the first copy carries the marker: a reader that keeps one entry per name misses it.
    let mut members = vec![ZipMember::deflated("pkg/setup.py", MARKER)];
    members.extend((0..999).map(|_| ZipMember::deflated("pkg/setup.py", b"print('clean')")));
    let report = scan(&default_engine(), "dups.zip", &zip_raw(&members, &ZipLayout::default()));
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["pkg/setup.py"]);
    assert_eq!(count(&report, "duplicate-name"), 999);
    assert_eq!(report.files_scanned, 1000);

    let mut tar_data = tar_member("pkg/setup.py", MARKER);
    for _ in 0..999 {
        tar_data.extend_from_slice(&tar_member("pkg/setup.py", b"print('clean')"));
    }
    tar_data.extend_from_slice(&TAR_END);
    let report = scan(&default_engine(), "dups.tar.gz", &gzip(&tar_data));
    assert_eq!(paths(&report), vec!["pkg/setup.py"]);
    assert_eq!(count(&report, "duplicate-name"), 999);
    assert!(report.issues.iter().all(|i| !i.unscanned));
});

hostile!(issues_are_capped_per_kind, 200, {
    let mut data = Vec::new();
    for i in 0..5000 {
        data.extend_from_slice(&tar_header_raw(format!("p/l{i}").as_bytes(), 0, b'2', b"/etc/passwd"));
    }
    data.extend_from_slice(&TAR_END);
    let report = scan(&default_engine(), "links.tar", &data);
    no_bugs(&report);
    assert_eq!(count(&report, "link-not-followed"), 1001);
    let summary = report.issues.last().unwrap();
    assert_eq!(summary.message, "4000 more link-not-followed issues were not listed");
    assert_eq!(report.verdict(), Verdict::Clean);
});

hostile!(path_traversal_and_absolute_names, 200, {
    let names = ["../../etc/evil.py", "/abs/evil.py", "C:\\win\\evil.py", "p/\u{7}bell.py"];
    let mut tar_data: Vec<u8> = names.iter().flat_map(|n| tar_member(n, MARKER)).collect();
    tar_data.extend_from_slice(&TAR_END);
    let members: Vec<ZipMember> = names.iter().map(|n| ZipMember::deflated(n, MARKER)).collect();
    for (archive, data) in [("t.tar", tar_data), ("z.zip", zip_raw(&members, &ZipLayout::default()))] {
        let report = scan(&default_engine(), archive, &data);
        no_bugs(&report);
        assert_eq!(paths(&report), names.to_vec(), "{archive}");
        for name in names {
            assert!(!find(&report, "unsafe-path", name).unscanned);
        }
    }
    // zipfile cuts a name at a NUL byte: so do we, and say so.
    let report = scan(
        &default_engine(),
        "nul.zip",
        &zip_raw(&[ZipMember::deflated("evil.py\0.txt", MARKER)], &ZipLayout::default()),
    );
    assert_eq!(paths(&report), vec!["evil.py"]);
    assert!(find(&report, "unsafe-path", "evil.py").message.contains("NUL"));
});

hostile!(non_utf8_names, 200, {
    let mut tar_data = tar_header_raw(b"p/\xff\xfe.py", MARKER.len() as u64, b'0', b"").to_vec();
    tar_data.extend_from_slice(MARKER);
    tar_data.resize(1024, 0);
    tar_data.extend_from_slice(&TAR_END);
    let report = scan(&default_engine(), "t.tar", &tar_data);
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["p/\u{fffd}\u{fffd}.py"]);
    assert!(find(&report, "unsafe-path", "p/\u{fffd}\u{fffd}.py").message.contains("UTF-8"));
    // Zip: flagged UTF-8 but invalid is reported; CP437 (no flag) is decoded as zipfile does.
    let bad = ZipMember { name: b"p/\xff.py".to_vec(), flags: 0x800, ..ZipMember::deflated("x", MARKER) };
    let cp437 = ZipMember { name: b"p/caf\x82.py".to_vec(), ..ZipMember::deflated("x", MARKER) };
    let report = scan(&default_engine(), "z.zip", &zip_raw(&[bad, cp437], &ZipLayout::default()));
    assert_eq!(paths(&report), vec!["p/\u{fffd}.py", "p/café.py"]);
    assert_eq!(count(&report, "unsafe-path"), 1);
});

hostile!(links_devices_and_fifos, 200, {
    let mut data = Vec::new();
    data.extend_from_slice(&tar_header_raw(b"p/sym", 0, b'2', b"../../../../etc/passwd"));
    data.extend_from_slice(&tar_header_raw(b"p/hard", 0, b'1', b"p/ok.py"));
    data.extend_from_slice(&tar_header_raw(b"p/chr", 0, b'3', b""));
    data.extend_from_slice(&tar_header_raw(b"p/blk", 0, b'4', b""));
    data.extend_from_slice(&tar_header_raw(b"p/fifo", 0, b'6', b""));
    data.extend_from_slice(&tar_member("p/ok.py", b"x = 1"));
    data.extend_from_slice(&TAR_END);
    let report = scan(&default_engine(), "links.tar", &data);
    no_bugs(&report);
    assert!(find(&report, "link-not-followed", "p/sym").message.contains("/etc/passwd"));
    find(&report, "link-not-followed", "p/hard");
    for path in ["p/chr", "p/blk", "p/fifo"] {
        find(&report, "special-entry", path);
    }
    assert_eq!(report.verdict(), Verdict::Clean);
    // A zip symlink is written by pip as a file holding its target: that text is scanned.
    let link = ZipMember { external_attr: 0o120777 << 16, ..ZipMember::stored("p/link", b"EVIL_MARKER") };
    let report = scan(&default_engine(), "l.zip", &zip_raw(&[link], &ZipLayout::default()));
    find(&report, "link-not-followed", "p/link");
    assert_eq!(paths(&report), vec!["p/link"]);
});

// --- Header lies -------------------------------------------------------------------------------

hostile!(pax_and_ustar_size_lies, 200, {
    // PAX size overrides the header's 0, as in Python's tarfile: the content is scanned.
    let data = [
        pax_member(&[("size", &MARKER.len().to_string())], tar_header("p/pax.py", 0, b'0'), MARKER),
        TAR_END.to_vec(),
    ]
    .concat();
    let report = scan(&default_engine(), "pax.tar", &data);
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["p/pax.py"]);
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    // A PAX size far past the end: the member is read to the end, then the archive is truncated.
    let data = [
        pax_member(&[("size", "1000000000000000")], tar_header("p/huge.py", 0, b'0'), MARKER),
        TAR_END.to_vec(),
    ]
    .concat();
    let report = scan(&default_engine(), "pax.tar", &data);
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["p/huge.py"]);
    find(&report, "size-mismatch", "p/huge.py");
    assert!(count(&report, "corrupt") == 1, "{:#?}", report.issues);
    assert_eq!(report.verdict(), Verdict::Findings);
    // A ustar size shorter than the content: the rest is read as a header, which is garbage.
    let mut data = tar_header("p/short.py", 10, b'0').to_vec();
    data.extend_from_slice(b"0123456789EVIL_MARKER and then some more bytes");
    data.resize(2048, 0);
    let report = scan(&default_engine(), "short.tar", &data);
    no_bugs(&report);
    assert!(report.issues.is_empty() || report.verdict() != Verdict::Clean, "{:#?}", report.issues);
});

hostile!(gnu_long_name_and_pax_record_bombs, 250, {
    // 512 MiB of metadata before one entry. The tar crate would hold it whole in memory.
    let names = [(b'L', "././@LongLink"), (b'x', "PaxHeaders/p")];
    for (kind, name) in names {
        let data = DeflateStream::new()
            .part(&tar_member("p/a.py", MARKER))
            .part(&tar_header(name, 512 << 20, kind))
            .repeat(&low_ratio_unit(1 << 16), 8192)
            .part(&tar_header("p/b.py", 0, b'0'))
            .gzip();
        let report = scan(&default_engine(), "meta.tar.gz", &data);
        no_bugs(&report);
        assert_eq!(paths(&report), vec!["p/a.py"]);
        let issue =
            report.issues.iter().find(|i| i.kind.as_str() == "member-too-large").expect("metadata issue");
        assert!(issue.message.contains("metadata"), "{issue}");
        assert_eq!(issue.path, "");
    }
});

hostile!(sparse_members, 500, {
    // 200 MB of holes around a marker at 100 MB: expanded as extractors would, and found.
    let data =
        [gnu_sparse_member("p/sparse.bin", 200 << 20, &[(100 << 20, MARKER)]), TAR_END.to_vec()].concat();
    let report = scan(&default_engine(), "sparse.tar", &gzip(&data));
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["p/sparse.bin"], "{:#?}", report.issues);
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    // Holes past the member-size limit are cut there like any content.
    let small = Limits { max_member_size: 8 << 20, ..Limits::default() };
    let data = [gnu_sparse_member("p/huge.bin", 4 << 30, &[(0, MARKER)]), TAR_END.to_vec()].concat();
    let report = scan(&engine(small, 2), "sparse.tar", &data);
    no_bugs(&report);
    find(&report, "member-too-large", "p/huge.bin");
    assert_eq!(paths(&report), vec!["p/huge.bin"]);
});

hostile!(zip64_size_lies, 200, {
    // zip64 sizes that lie: 2^62 bytes declared for a few; the data decides, the lie is reported.
    let big = ZipMember { zip64: true, size: 1 << 62, ..ZipMember::deflated("p/big.py", MARKER) };
    let report = scan(&default_engine(), "z64.zip", &zip_raw(&[big], &ZipLayout::default()));
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["p/big.py"]);
    assert!(find(&report, "size-mismatch", "p/big.py").message.contains("zip64"));
    // A compressed size past the end of the file: what is there is scanned, and reported.
    let long =
        ZipMember { zip64: true, compressed_size: Some(1 << 40), ..ZipMember::stored("p/long.py", MARKER) };
    let report = scan(&default_engine(), "z64.zip", &zip_raw(&[long], &ZipLayout::default()));
    no_bugs(&report);
    // zipfile stops at the declared size; zipimport reads all of it: both are scanned as the file.
    assert_eq!(paths(&report), vec!["p/long.py", "p/long.py<as zipimport reads it>"]);
    assert!(!report.issues.is_empty());
    // A smaller declared size: the whole stream is scanned anyway.
    let short = ZipMember { size: 3, ..ZipMember::deflated("p/short.py", MARKER) };
    let report = scan(&default_engine(), "z.zip", &zip_raw(&[short], &ZipLayout::default()));
    assert_eq!(paths(&report), vec!["p/short.py"]);
    find(&report, "size-mismatch", "p/short.py");
});

// --- Corruption --------------------------------------------------------------------------------

fn three_members() -> Vec<u8> {
    // Incompressible, so that the compressed stream has several blocks to cut between.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    tar(&[("p/a.py", MARKER), ("p/noise.bin", &noise), ("p/c.py", b"x = 1")])
}

hostile!(truncated_and_corrupt_streams, 200, {
    let engine = default_engine();
    for (name, data) in [
        ("t.tar.gz", gzip(&three_members())),
        ("t.tar.bz2", bzip2(&three_members())),
        ("t.tar.xz", xz(&three_members())),
        ("t.tar.zst", zstd(&three_members())),
    ] {
        for cut in [data.len() * 6 / 10, data.len() - 20] {
            let report = scan(&engine, name, &data[..cut]);
            no_bugs(&report);
            assert!(!report.complete(), "{name} cut at {cut}");
            assert!(
                count(&report, "corrupt") + count(&report, "bad-checksum") >= 1,
                "{name}: {:#?}",
                report.issues
            );
            // bzip2 inflates whole 900 kB blocks: a cut block yields nothing at all.
            if name != "t.tar.bz2" {
                assert_eq!(paths(&report), vec!["p/a.py"], "{name} cut at {cut}");
            }
        }
        let mut flipped = data.clone();
        let at = flipped.len() * 7 / 10;
        flipped[at] ^= 0x55;
        let report = scan(&engine, name, &flipped);
        no_bugs(&report);
        assert_ne!(report.verdict(), Verdict::Clean, "{name} flipped: {:#?}", report.issues);
    }
    // A zip member whose deflate data is cut short inside a complete archive.
    let mut member = ZipMember::deflated("p/noise.bin", &three_members());
    member.data.truncate(member.data.len() / 2);
    let data = zip_raw(&[ZipMember::deflated("p/a.py", MARKER), member], &ZipLayout::default());
    let report = scan(&engine, "cut.zip", &data);
    no_bugs(&report);
    let issue = report.issues.iter().find(|i| i.path == "p/noise.bin").expect("an issue for the cut member");
    assert!(issue.unscanned && issue.kind.as_str() == "corrupt", "{issue}");
    // What inflated before the cut was scanned (here it holds the marker, as a nested tarball).
    assert_eq!(paths(&report)[0], "p/a.py");
    // An empty gzip header with nothing after it.
    let report = scan(&engine, "x.tar.gz", &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    assert_eq!(issue_kinds(&report), vec!["corrupt"]);
});

hostile!(bad_checksums, 200, {
    let engine = default_engine();
    // gzip: the trailer's CRC is wrong, every member came out and was scanned.
    let mut data = gzip(&three_members());
    let at = data.len() - 8;
    data[at] ^= 1;
    let report = scan(&engine, "crc.tar.gz", &data);
    no_bugs(&report);
    assert_eq!(issue_kinds(&report), vec!["bad-checksum"]);
    assert_eq!(report.verdict(), Verdict::Findings);
    // The first of two gzip members has a bad CRC: the second is still read, and scanned.
    let whole = tar(&[("p/a.txt", b"clean"), ("p/evil.py", MARKER)]);
    let mut first = gzip(&whole[..1024]);
    let at = first.len() - 8;
    first[at] ^= 1;
    let data = [first, gzip(&whole[1024..])].concat();
    let report = scan(&engine, "two.tar.gz", &data);
    no_bugs(&report);
    assert_eq!(issue_kinds(&report), vec!["bad-checksum"]);
    assert_eq!(paths(&report), vec!["p/evil.py"]);
    // zip: CRC-32 of a stored member.
    let member = ZipMember { crc: 0xdead_beef, ..ZipMember::stored("p/a.py", MARKER) };
    let report = scan(&engine, "crc.zip", &zip_raw(&[member], &ZipLayout::default()));
    assert!(find(&report, "bad-checksum", "p/a.py").message.contains("deadbeef"));
    assert_eq!(paths(&report), vec!["p/a.py"]);
    // xz: the block check (CRC64) of the last bytes is wrong.
    let mut data = xz(&three_members());
    let at = data.len() - 40;
    data[at] ^= 1;
    let report = scan(&engine, "crc.tar.xz", &data);
    no_bugs(&report);
    assert_ne!(report.verdict(), Verdict::Clean);
});

hostile!(zip_compression_methods, 200, {
    // Every supported method inflates; each member's CRC and size are checked.
    let data = zip_raw(&zip_methods(MARKER), &ZipLayout::default());
    let report = scan(&default_engine(), "methods.zip", &data);
    no_bugs(&report);
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    assert_eq!(paths(&report), vec!["m/deflate64.py", "m/bzip2.py", "m/xz.py", "m/zstd.py", "m/zstd2.py"]);
    // A method-14 (LZMA) member asking for a 1 GiB dictionary is refused before any allocation.
    let mut lzma = vec![9, 20, 5, 0, 0x5d];
    lzma.extend_from_slice(&(1u32 << 30).to_le_bytes());
    lzma.extend_from_slice(&[0; 32]);
    let member = ZipMember { method: 14, data: lzma, ..ZipMember::stored("m/lzma.py", MARKER) };
    let report = scan(&default_engine(), "lzma.zip", &zip_raw(&[member], &ZipLayout::default()));
    no_bugs(&report);
    assert!(find(&report, "corrupt", "m/lzma.py").message.contains("memory"), "{:#?}", report.issues);
});

hostile!(encrypted_zip_entries, 200, {
    let traditional = ZipMember { flags: 1, ..ZipMember::stored("p/secret.py", b"\x01\x02\x03") };
    let strong = ZipMember { flags: 0x41, ..ZipMember::stored("p/strong.py", b"\x01\x02\x03") };
    let aes = ZipMember { method: 99, ..ZipMember::stored("p/aes.py", b"\x01\x02\x03") };
    let data =
        zip_raw(&[traditional, strong, aes, ZipMember::deflated("p/a.py", MARKER)], &ZipLayout::default());
    let report = scan(&default_engine(), "enc.zip", &data);
    no_bugs(&report);
    for path in ["p/secret.py", "p/strong.py", "p/aes.py"] {
        assert!(find(&report, "encrypted", path).unscanned);
    }
    assert_eq!(paths(&report), vec!["p/a.py"]);
    // PPMd (method 98): neither this scanner nor `zipfile` inflates it.
    let unknown = ZipMember { method: 98, ..ZipMember::stored("p/ppmd.py", b"\x07\x00") };
    let report = scan(&default_engine(), "ppmd.zip", &zip_raw(&[unknown], &ZipLayout::default()));
    assert_eq!(issue_kinds(&report), vec!["unsupported-compression"]);
    assert_eq!(report.verdict(), Verdict::Incomplete);
});

// --- Hidden data, empty and odd-but-valid archives ---------------------------------------------

hostile!(data_hidden_around_a_zip, 200, {
    let layout = ZipLayout {
        prefix: b"#!/bin/sh\nEVIL_MARKER prefix\n".to_vec(),
        gaps: vec![(0, b"EVIL_MARKER between".to_vec())],
        comment: b"EVIL_MARKER comment".to_vec(),
        suffix: b"EVIL_MARKER after".to_vec(),
        aliases: vec![],
    };
    let data =
        zip_raw(&[ZipMember::deflated("a.txt", b"clean"), ZipMember::stored("b.txt", b"clean too")], &layout);
    let report = scan(&default_engine(), "hidden.zip", &data);
    no_bugs(&report);
    assert_eq!(count(&report, "hidden-data"), 4, "{:#?}", report.issues);
    assert!(report.issues.iter().all(|i| !i.unscanned), "{:#?}", report.issues);
    assert_eq!(report.files.len(), 4, "{:?}", paths(&report));
    for place in [
        "<before the first zip entry",
        "<between zip entries",
        "<zip comment>",
        "<after the end of the zip archive",
    ] {
        assert!(paths(&report).iter().any(|p| p.starts_with(place)), "{place}: {:?}", paths(&report));
    }
    assert_eq!(report.files_scanned, 6);
});

hostile!(data_hidden_after_tar_and_gzip_ends, 200, {
    let mut data = tar(&[("p/a.txt", b"clean")]);
    data.extend_from_slice(b"EVIL_MARKER after the tar end marker");
    let report = scan(&default_engine(), "t.tar", &data);
    no_bugs(&report);
    find(&report, "hidden-data", "<after end of archive>");
    assert_eq!(paths(&report), vec!["<after end of archive>"]);
    // After the last gzip member, bytes that are not gzip.
    let mut data = gzip(&tar(&[("p/a.txt", b"clean")]));
    data.extend_from_slice(b"EVIL_MARKER after the gzip stream");
    let report = scan(&default_engine(), "t.tar.gz", &data);
    no_bugs(&report);
    let issue = find(&report, "hidden-data", "<after end of gzip stream>");
    assert!(!issue.unscanned);
    assert_eq!(paths(&report), vec!["<after end of gzip stream>"]);
    // Zero padding after gzip is normal and not reported.
    let mut data = gzip(&tar(&[("p/a.txt", b"clean")]));
    data.extend_from_slice(&[0; 4096]);
    assert!(scan(&default_engine(), "t.tar.gz", &data).issues.is_empty());
});

hostile!(empty_archives_and_files, 200, {
    let engine = default_engine();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.tar", TAR_END.to_vec()),
        ("empty.tar.gz", gzip(&TAR_END)),
        ("empty.zip", zip_raw(&[], &ZipLayout::default())),
        ("empty-member.tar", tar(&[("p/empty.py", b"")])),
        ("empty-member.zip", zip_raw(&[ZipMember::stored("p/empty.py", b"")], &ZipLayout::default())),
        ("empty.gz", gzip(b"")),
        ("nothing", Vec::new()),
    ];
    for (name, data) in cases {
        let report = scan(&engine, name, &data);
        no_bugs(&report);
        assert!(report.issues.is_empty(), "{name}: {:#?}", report.issues);
        assert_eq!(report.verdict(), Verdict::Clean, "{name}");
    }
});

hostile!(concatenated_gzip_members_and_archives_of_archives, 200, {
    let whole = tar(&[("p/a.txt", b"clean"), ("p/evil.py", MARKER)]);
    let mut data = gzip(&whole[..512]);
    data.extend_from_slice(&gzip(&whole[512..]));
    let report = scan(&default_engine(), "two.tar.gz", &data);
    no_bugs(&report);
    assert_eq!(paths(&report), vec!["p/evil.py"]);
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    // A tarball whose only member is a zip; a gzip of a gzip.
    let inner = zip(&[("evil.py", MARKER)]);
    let report = scan(&default_engine(), "outer.tar.gz", &tar_gz(&[("inner.zip", &inner)]));
    assert_eq!(paths(&report), vec!["inner.zip!/evil.py"]);
    let report = scan(&default_engine(), "double.tar.gz.gz", &gzip(&tar_gz(&[("p/evil.py", MARKER)])));
    assert_eq!(paths(&report), vec!["double.tar.gz!/p/evil.py"]);
    assert!(report.complete());
});

// --- Time --------------------------------------------------------------------------------------

fn slow_engine(timeout: Duration) -> Engine {
    // A loop over every byte pair, and a regex with a long bounded gap that a crafted file keeps
    // alive at every offset: both far past the timeout on the file below.
    let rules = RuleSet::compile([(
        "slow.yar",
        r#"rule slow_loop { condition: for any i in (0..filesize) : (for any j in (0..filesize) : (uint8(i) == uint8(j) + 1 and uint8(j) == 0xff)) }
           rule slow_regex { strings: $a = /a[^z]{0,60000}q[^z]{0,60000}z/ condition: $a }
           rule quick { meta: weight = 1 strings: $a = "QUICK" condition: $a }"#,
    )])
    .unwrap();
    Engine::new(rules, Limits { timeout, ..Limits::default() }, Some(2)).unwrap()
}

hostile!(scan_timeout_is_honoured_and_other_files_go_on, 300, {
    let engine = slow_engine(Duration::from_secs(1));
    let slow = vec![b'a'; 300_000];
    let quick: Vec<(String, &[u8])> = (0..50).map(|i| (format!("p/q{i}.py"), &b"QUICK"[..])).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("p/slow.bin", &slow)];
    entries.extend(quick.iter().map(|(n, d)| (n.as_str(), *d)));
    let started = Instant::now();
    let report = scan(&engine, "slow.zip", &zip(&entries));
    no_bugs(&report);
    let issue = find(&report, "scan-timeout", "p/slow.bin");
    assert!(issue.unscanned && issue.message.contains("1s"), "{issue}");
    assert_eq!(report.files.len(), 50);
    assert_eq!(report.verdict(), Verdict::Findings);
    // Not a performance threshold: only that the timeout bounded the scan (unbounded, it runs
    // for hours), with a wide margin for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());

    // Across distributions: a slow one does not hold up the others.
    let fast = zip(&[("p/q.py", b"QUICK")]);
    let slow_dist = zip(&[("p/slow.bin", &slow)]);
    let mut inputs = vec![DistInput { name: "slow.zip".into(), url: None, input: Input::Bytes(&slow_dist) }];
    for i in 0..20 {
        inputs.push(DistInput { name: format!("fast{i}.zip"), url: None, input: Input::Bytes(&fast) });
    }
    let reports = engine.scan_many(inputs);
    assert_eq!(issue_kinds(&reports[0]), vec!["scan-timeout"]);
    assert!(reports[1..].iter().all(|r| r.verdict() == Verdict::Findings && r.issues.is_empty()));
});

// --- The whole corpus, and the fuzzers' seeds ---------------------------------------------------

hostile!(whole_corpus_is_bounded_and_never_falsely_clean, 400, {
    for threads in [1, 2] {
        let engine = engine(Limits::default(), threads);
        for (name, data) in corpus() {
            let report = scan(&engine, name, &data);
            no_bugs(&report);
            assert!(report.verdict() != Verdict::Clean || report.complete(), "{name}");
        }
    }
});

/// Writes the corpus as seeds for the fuzz targets: `DRAGONFLY_FUZZ_SEEDS=dir cargo test
/// --release -p dragonfly-core --test hostile -- --ignored write_fuzz_seeds` (`make fuzz` does).
#[test]
#[ignore = "writes files; run by `make fuzz-seeds`"]
fn write_fuzz_seeds() {
    let Ok(root) = std::env::var("DRAGONFLY_FUZZ_SEEDS") else { return };
    let root = std::path::Path::new(&root);
    for (name, data) in corpus() {
        let targets: &[&str] = match name.rsplit('.').next().unwrap_or("") {
            "zip" => &["walk_zip", "scan_any"],
            "gz" => &["walk_gzip", "scan_any"],
            "tar" => &["walk_tar", "scan_any"],
            _ => &["scan_any"],
        };
        // Keep seeds small: libFuzzer's inputs are bounded by -max_len anyway.
        if data.len() > 1 << 20 {
            continue;
        }
        for target in targets {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), &data).unwrap();
        }
    }
    // Small tarballs for the bzip2, xz, .lzma and lzip walkers (large seeds only slow every execution).
    let small = tar(&[("p/a.py", MARKER), ("p/b.txt", b"hello"), ("p/c/d.py", b"def f(): pass\n")]);
    let nested = tar(&[("p/inner.zip", &zip(&[("x.py", MARKER)]))]);
    let walkers = [
        ("walk_bzip2", bzip2 as fn(&[u8]) -> Vec<u8>),
        ("walk_xz", xz),
        ("walk_lzma", lzma_alone),
        ("walk_lzip", lzip),
        ("walk_zstd", zstd),
    ];
    for (target, compress) in walkers {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("small.tar"), compress(&small)).unwrap();
        std::fs::write(dir.join("nested.tar"), compress(&nested)).unwrap();
    }
}
