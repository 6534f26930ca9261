//! Cancelling a scan from another thread, and the live counters of [`ScanControl`].

mod common;

use std::thread;
use std::time::{Duration, Instant};

use dragonfly_core::{DistInput, EngineError, Input, Limits, ScanControl};

/// Limits that let a test archive inflate as far as it likes: only a cancel stops it early.
fn unbounded() -> Limits {
    Limits {
        max_member_size: 1 << 30,
        max_total_size: u64::MAX,
        max_members: u64::MAX,
        max_ratio: u64::MAX,
        ..Limits::default()
    }
}

/// `copies` gzip members, each a tarball of `files` text files of `size` bytes without the
/// end-of-archive blocks: read as one gzip stream they are one tarball of `copies * files` members,
/// built from one compressed piece.
fn repeated_tar_gz(copies: usize, files: usize, size: usize) -> Vec<u8> {
    let text: Vec<u8> = b"import os\nprint('hello world')\n".iter().copied().cycle().take(size).collect();
    let names: Vec<String> = (0..files).map(|i| format!("pkg/module_{i}.py")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), text.as_slice())).collect();
    let mut tar = common::tar(&entries);
    tar.truncate(tar.len() - 1024); // the two zero blocks that end the archive
    common::gzip(&tar).repeat(copies)
}

/// Scan `data` on 2 threads, cancelling once `ready` says so; the result, and how long the
/// scan ran after the cancel.
fn scan_and_cancel(
    data: &[u8],
    control: &ScanControl,
    ready: impl Fn(&ScanControl) -> bool + Sync,
) -> (Result<dragonfly_core::DistributionReport, EngineError>, Duration) {
    let engine = common::engine(unbounded(), 2);
    thread::scope(|scope| {
        let canceller = scope.spawn(|| {
            while !ready(control) {
                thread::sleep(Duration::from_millis(2));
            }
            control.cancel();
            Instant::now()
        });
        let result = engine.scan_with(
            DistInput { name: "big.tar.gz".into(), url: None, input: Input::Bytes(data) },
            control,
            &mut dragonfly_core::never,
        );
        let ended = Instant::now();
        let cancelled_at = canceller.join().expect("the cancelling thread ends");
        (result, ended.saturating_duration_since(cancelled_at))
    })
}

#[test]
fn a_cancel_between_members_stops_the_scan_promptly() {
    // 200 000 files of 64 KiB (12.5 GiB inflated): scanning all of them takes far longer than
    // the second allowed after the cancel.
    let data = repeated_tar_gz(2_000, 100, 64 << 10);
    let control = ScanControl::new();
    let (result, after_cancel) = scan_and_cancel(&data, &control, |c| c.files() >= 500);
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert!(after_cancel < Duration::from_secs(1), "the scan ran {after_cancel:?} after the cancel");
    let files = control.files();
    assert!((500..200_000).contains(&files), "{files} files scanned");
    assert_eq!(control.bytes(), files * (64 << 10));
    assert_eq!(control.distributions(), 0, "a cancelled distribution is not finished");
    assert!(control.is_cancelled());
}

/// `size` bytes that do not compress, from a fixed-seed generator.
fn noise(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..size)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn a_cancel_inside_one_huge_member_stops_the_scan_promptly() {
    // One bzip2'd file of 400 MiB that does not compress (100 copies of one 4 MiB stream, read
    // as one): bzip2 inflates it at tens of MB/s, so reading it takes seconds; the cancel comes
    // while it is being read.
    let data = common::bzip2(&noise(4 << 20)).repeat(100);
    let control = ScanControl::new();
    let started = Instant::now();
    let (result, after_cancel) =
        scan_and_cancel(&data, &control, |_| started.elapsed() >= Duration::from_millis(200));
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert!(after_cancel < Duration::from_millis(500), "the scan ran {after_cancel:?} after the cancel");
    assert_eq!(control.files(), 0, "the member was not scanned");
}

#[test]
fn counters_of_a_whole_scan_equal_the_reports_totals() {
    let engine = common::engine(Limits::default(), 2);
    let first = repeated_tar_gz(3, 10, 1000);
    let second = common::zip(&[("a.py", b"EVIL_MARKER"), ("b.txt", b"plain")]);
    let control = ScanControl::new();
    let dists = vec![
        DistInput { name: "first.tar.gz".into(), url: None, input: Input::Bytes(&first) },
        DistInput { name: "second.zip".into(), url: None, input: Input::Bytes(&second) },
    ];
    let reports = engine.scan_many_with(dists, &control, &mut dragonfly_core::never).expect("not cancelled");
    assert_eq!(control.files(), reports.iter().map(|r| r.files_scanned).sum::<u64>());
    assert_eq!(control.bytes(), reports.iter().map(|r| r.bytes_scanned).sum::<u64>());
    assert_eq!(control.files(), 32);
    assert_eq!(control.distributions(), 2);
    assert!(!control.is_cancelled());
}

#[test]
fn a_control_cancelled_before_the_scan_scans_nothing() {
    let engine = common::engine(Limits::default(), 2);
    let data = common::tar_gz(&[("a.py", b"EVIL_MARKER")]);
    let control = ScanControl::new();
    control.cancel();
    let dists = vec![DistInput { name: "a.tar.gz".into(), url: None, input: Input::Bytes(&data) }];
    let result = engine.scan_release_with("a", "1.0", dists, &control, &mut dragonfly_core::never);
    assert!(matches!(result, Err(EngineError::Cancelled)));
    assert_eq!((control.files(), control.distributions()), (0, 0));
}

#[test]
fn a_caller_that_says_stop_while_it_waits_cancels_every_kind_of_scan() {
    // What the Python binding does with Ctrl-C: the waiting thread is asked every POLL_INTERVAL, and the
    // first "stop" cancels the scan (200,000 members: it would not finish for minutes otherwise).
    let engine = common::engine(unbounded(), 2);
    let data = repeated_tar_gz(2_000, 100, 64 << 10);
    let input = || vec![DistInput { name: "big.tar.gz".into(), url: None, input: Input::Bytes(&data) }];
    for kind in ["scan_with", "scan_many_with", "scan_release_with"] {
        let control = ScanControl::new();
        let mut asked = 0;
        let mut stop_at_the_second_question = || {
            asked += 1;
            asked == 2
        };
        let interrupted: dragonfly_core::Interrupted<'_> = &mut stop_at_the_second_question;
        let cancelled = match kind {
            "scan_with" => engine.scan_with(input().remove(0), &control, interrupted).err(),
            "scan_many_with" => engine.scan_many_with(input(), &control, interrupted).err(),
            _ => engine.scan_release_with("big", "1.0", input(), &control, interrupted).err(),
        };
        assert!(matches!(cancelled, Some(EngineError::Cancelled)), "{kind}: {cancelled:?}");
        assert!(control.is_cancelled() && control.files() < 200_000, "{kind}");
        assert_eq!(asked, 2, "{kind}: asked again after it said stop");
    }
}
