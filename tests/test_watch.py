"""``watch`` against a fake PyPI on 127.0.0.1: project list with serials, pages, files, webhook.

The watcher must scan every release published after its baseline exactly once, across restarts (clean
stops and kill -9 alike), honour its filters, and POST findings to the webhook.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid._core import Rules
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.pypi.direct import downloaded_bytes
from dragonfly_hybrid.pypi.download import Downloader
from dragonfly_hybrid.pypi.index import DownloadError
from dragonfly_hybrid.rules_loader import load_rules
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.watch.service import WatchConfig, WatchSummary, serve_watch
from dragonfly_hybrid.watch.source import (
    INDEX_KEY,
    SERIAL_KEY,
    PyPIWatchSource,
    WatchFilters,
    index_identity,
)
from dragonfly_hybrid.watch.webhook import Webhook, redact_webhook_url
from typer.testing import CliRunner

from tests.fakes.pypi import LIGHT_RULE, MARKER, FakeFile, FakeIndex, sdist, tar_gz_bytes, wheel

OLD = "2024-01-01T00:00:00Z"
BAD = b"import os\n# " + MARKER + b"\n"
CLEAN = b"print('hello')\n"


@pytest.fixture
def rules(rules_dir: Path) -> Rules:
    return load_rules([rules_dir])


def publish(index: FakeIndex, name: str, version: str, body: bytes = CLEAN, *, old: bool = False) -> None:
    files = [sdist(name, version, {"setup.py": body}), wheel(name, version, {f"{name}/__init__.py": body})]
    index.add(name, *(FakeFile(f, data, upload_time=OLD if old else None) for f, data in files))


def watch(index: FakeIndex, store: Path, rules: Rules, **options: object) -> WatchSummary:
    values: dict[str, object] = {"once": True, "threads": 2, "interval": 0.05, "handle_signals": False}
    values.update(options)
    config = WatchConfig(store_path=store, rules=rules, index_url=index.url, **values)  # type: ignore[arg-type]
    return asyncio.run(serve_watch(config))


def watch_from_now(index: FakeIndex, store: Path, rules: Rules) -> int:
    """A first run on an index with an old release: the baseline serial, nothing scanned."""
    publish(index, "seed", "1.0", old=True)
    return watch(index, store, rules).serial


def scans_per_release(store: Path) -> dict[str, int]:
    with Store(store, readonly=True) as db:
        rows = db._query(
            "SELECT r.name || '==' || r.version, COUNT(*) FROM scans s "
            "JOIN releases r ON r.id = s.release_id GROUP BY r.id"
        )
    return dict(rows)


def file_requests(index: FakeIndex) -> list[str]:
    return [r for r in index.requests if r.startswith("/files/")]


def test_first_run_records_a_baseline_then_new_releases_are_scanned_filtered_and_hooked(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    store = tmp_path / "store.db"
    publish(fake_index, "trusted", "1.0", old=True)
    publish(fake_index, "other", "2.0", BAD, old=True)
    first = watch(fake_index, store, rules)
    assert (first.polls, first.stored, first.serial) == (1, 0, fake_index.serial)
    assert file_requests(fake_index) == [] and scans_per_release(store) == {}

    publish(fake_index, "trusted", "1.1", BAD)  # a new version of a known project
    publish(fake_index, "fresh", "0.1")  # a new project
    fake_index.add("big", FakeFile("big-1.0.tar.gz", sdist("big", "1.0", {})[1], listed_size=20_000))
    publish(fake_index, "skipme-tool", "1.0", BAD)
    webhook = Webhook(fake_index.hook_url, min_score=5)
    filters = WatchFilters(exclude=("skipme-*",), max_size=10_000)
    second = watch(fake_index, store, rules, filters=filters, webhook=webhook)
    assert second.stored == 3 and second.serial == fake_index.serial
    # big==1.0 was not downloaded (over --max-size), yet it is stored: as incomplete, never clean.
    assert scans_per_release(store) == {"trusted==1.1": 1, "fresh==0.1": 1, "big==1.0": 1}
    with Store(store, readonly=True) as db:
        bad = db.latest_scan("trusted", "1.1")
        assert bad is not None and bad.verdict == "findings" and bad.rules_matched == ["test_marker"]
        assert bad.source == "watch" and bad.rules_hash == rules.hash and bad.scan_seconds is not None
        assert len(db.details(bad.id)) == 2
        clean = db.latest_scan("fresh", "0.1")
        assert clean is not None and clean.verdict == "clean"
    assert [(h["name"], h["version"], h["score"]) for h in fake_index.hooks] == [("trusted", "1.1", 5)]
    assert {f["path"] for f in fake_index.hooks[0]["files"]} == {
        "trusted-1.1/setup.py",
        "trusted/__init__.py",
    }
    assert not any("big" in r or "skipme" in r or "1.0" in r for r in file_requests(fake_index))

    before = len(file_requests(fake_index))
    third = watch(fake_index, store, rules, filters=filters)
    assert third.stored == 0 and len(file_requests(fake_index)) == before


def test_an_interrupted_round_resumes_without_missing_or_repeating_a_release(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    store = tmp_path / "store.db"
    baseline = watch_from_now(fake_index, store, rules)
    for i in range(6):
        publish(fake_index, f"pkg{i}", "1.0", BAD if i % 2 else CLEAN)
    stopped = watch(fake_index, store, rules, max_jobs=2)
    assert stopped.stored == 2 and stopped.serial == baseline  # the round is not finished: serial stays
    resumed = watch(fake_index, store, rules)
    assert resumed.stored == 4 and resumed.serial == fake_index.serial
    assert scans_per_release(store) == {f"pkg{i}==1.0": 1 for i in range(6)}

    # A wheel added later to a release already scanned: only that file is scanned.
    fake_index.add("pkg0", FakeFile("pkg0-1.0-py2-none-any.whl", wheel("pkg0", "1.0", {"x.py": BAD})[1]))
    late = watch(fake_index, store, rules)
    assert late.stored == 1
    with Store(store, readonly=True) as db:
        scan = db.latest_scan("pkg0", "1.0")
        assert scan is not None and scan.verdict == "findings"
        assert [d["name"] for d in db.details(scan.id)] == ["pkg0-1.0-py2-none-any.whl"]


def test_a_stale_project_page_holds_the_serial_back_until_it_is_fresh(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    store = tmp_path / "store.db"
    baseline = watch_from_now(fake_index, store, rules)
    publish(fake_index, "alpha", "1.0")
    publish(fake_index, "beta", "1.0")
    fake_index.faults.stale_pages["beta"] = baseline  # a CDN copy from before the upload
    held = watch(fake_index, store, rules)
    assert held.stored == 1 and held.serial == fake_index.project_serials["beta"] - 1
    del fake_index.faults.stale_pages["beta"]
    fresh = watch(fake_index, store, rules)
    assert fresh.stored == 1 and fresh.serial == fake_index.serial
    assert scans_per_release(store) == {"alpha==1.0": 1, "beta==1.0": 1}


def test_a_failed_download_is_stored_as_a_failure_and_the_webhook_retries(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    publish(fake_index, "gone", "1.0")
    publish(fake_index, "evil", "1.0", BAD)
    fake_index.faults.missing.update(f.filename for f in fake_index.projects["gone"])  # 404: permanent
    fake_index.faults.hook_status[:] = [500]  # the first POST fails, the retry succeeds
    summary = watch(fake_index, store, rules, webhook=Webhook(fake_index.hook_url, min_score=1))
    assert summary.stored == 2 and summary.serial == fake_index.serial
    with Store(store, readonly=True) as db:
        failed = db.latest_scan("gone", "1.0")
        assert failed is not None and failed.verdict == "incomplete"
        assert failed.error is not None and "HTTP 404" in failed.error
        # A row per file not downloaded, with the digest listed and its own error; never counted as read,
        # so the next poll that sees the project tries them again.
        rows = db.details(failed.id)
        gone = fake_index.projects["gone"]
        assert sorted((d["name"], d["sha256"], d["listed_sha256"]) for d in rows) == sorted(
            (f.filename, "", f.sha256) for f in gone
        )
        for row in rows:
            [issue] = row["issues"]
            assert issue["kind"] == "download-failed" and "HTTP 404" in issue["message"]
            assert fake_index.file_url("gone", row["name"]) in issue["message"]
        assert not any(db.stored_files("gone", "1.0").has(f.filename, f.sha256) for f in gone)
    assert [h["name"] for h in fake_index.hooks] == ["evil"]
    assert fake_index.requests.count("POST /hook") == 2


def test_watch_cli_once_and_its_exit_codes(fake_index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    store = tmp_path / "store.db"
    runner = CliRunner()
    args = ["watch", "--once", "--store", str(store), "--rules", str(rules_dir), "--threads", "2"]
    result = runner.invoke(app, [*args, "--index-url", fake_index.url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 poll(s), 0 release(s) stored" in result.stderr
    # Another store: this one follows fake_index, and refuses another index (exit 2).
    other_store = [*args[:3], str(tmp_path / "unreachable.db"), *args[4:]]
    unreachable = runner.invoke(app, [*other_store, "--index-url", "http://127.0.0.1:9/simple/"])
    assert unreachable.exit_code == 3 and "cannot poll the index" in unreachable.stderr
    bad_size = runner.invoke(app, [*args, "--index-url", fake_index.url, "--max-size", "lots"])
    assert bad_size.exit_code == 2
    (tmp_path / "not-a-db").write_text("hello" * 1000)
    bad_store = runner.invoke(
        app, [*args[:2], "--store", str(tmp_path / "not-a-db"), "--index-url", fake_index.url]
    )
    assert bad_store.exit_code == 2 and "cannot open the store" in bad_store.stderr


def test_kill_9_mid_watch_then_restart_scans_every_release_exactly_once(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    for i in range(4):
        publish(fake_index, f"quick{i}", "1.0", BAD if i == 0 else CLEAN)
    for i in range(2):
        publish(fake_index, f"slow{i}", "1.0")
        for f in fake_index.projects[f"slow{i}"]:
            fake_index.faults.delay[f.filename] = 30.0
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "watch", "--once", "--store", str(store),
               "--rules", str(rules_dir), "--index-url", fake_index.url, "--threads", "2"]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len([k for k in scans_per_release(store) if k.startswith("quick")]) == 4:
                break
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert set(scans_per_release(store)) == {f"quick{i}==1.0" for i in range(4)}
    with Store(store) as db:
        assert db.integrity_check() == "ok"
        assert int(db.get_state(SERIAL_KEY) or 0) < fake_index.serial
    fake_index.faults.delay.clear()
    resumed = watch(fake_index, store, rules)
    assert resumed.stored == 2 and resumed.serial == fake_index.serial
    assert scans_per_release(store) == {
        **{f"quick{i}==1.0": 1 for i in range(4)},
        **{f"slow{i}==1.0": 1 for i in range(2)},
    }


def repacked(project: str, members: dict[str, bytes]) -> FakeFile:
    """An sdist of ``project`` 1.0 whose members are exactly ``members`` (the same bytes in every project)."""
    return FakeFile(f"{project}-1.0.tar.gz", tar_gz_bytes(members))


def test_a_restarted_watch_answers_files_it_has_seen_from_the_stored_content_cache(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    store = tmp_path / "store.db"
    members = {"src/evil.py": BAD, "src/ok.py": CLEAN}
    watch_from_now(fake_index, store, rules)
    fake_index.add("first", repacked("first", members))
    first = watch(fake_index, store, rules)
    assert first.stored == 1 and (first.cache_loaded, first.cache_hits, first.cache_misses) == (0, 0, 2)
    assert first.cache_saved == 2

    fake_index.add("second", repacked("second", members))  # a new project shipping the same files
    second = watch(fake_index, store, rules)  # a new run: a new Scanner, loaded from the store
    assert second.stored == 1 and second.cache_loaded == 2
    assert (second.cache_hits, second.cache_misses, second.cache_saved) == (2, 0, 0)
    with Store(store, readonly=True) as db:
        scans = [db.latest_scan(name, "1.0") for name in ("first", "second")]
        assert all(s is not None and s.verdict == "findings" for s in scans)
        details = [db.details(s.id) for s in scans if s is not None]
        assert details[0][0]["files"] == details[1][0]["files"]  # same matches, patterns and offsets
        assert details[1][0]["files_scanned"] == 2


def test_on_an_index_without_upload_times_every_release_not_stored_is_scanned(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    """Without PEP 700 times, only the version pip would install counted as new: a flagged pre-release
    or backport published after the baseline was never scanned, and the serial moved past it."""
    store = tmp_path / "store.db"
    publish(fake_index, "foo", "2.0", old=True)
    watch(fake_index, store, rules)  # the baseline
    publish(fake_index, "foo", "3.0rc1", BAD)
    publish(fake_index, "foo", "1.9.1", BAD)
    for file in fake_index.projects["foo"]:
        file.upload_time = None  # the index lists no upload-time (FakeIndex.add stamped them)
    watch(fake_index, store, rules)
    with Store(store, readonly=True) as db:
        scans = {v: db.latest_scan("foo", v) for v in ("3.0rc1", "1.9.1", "2.0")}
    assert {v: scan.verdict if scan else None for v, scan in scans.items()} == {
        "3.0rc1": "findings",
        "1.9.1": "findings",
        "2.0": "clean",  # not seen before either: the store alone tells what was
    }


def test_a_file_of_the_same_name_from_another_host_is_not_taken_for_the_index_file(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules, rules_dir: Path
) -> None:
    """A lock file's scan stores `foo-1.0-py3-none-any.whl` fetched from another host (clean); the index
    then publishes its own file of that name (flagged): the watcher sharing the store scans it."""
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    with FakeIndex() as other_host:
        [locked] = other_host.add("foo", wheel("foo", "1.0", {"foo/__init__.py": CLEAN}))
        lock = tmp_path / "pylock.toml"
        lock.write_text(
            'lock-version = "1.0"\ncreated-by = "test"\n[[packages]]\nname = "foo"\nversion = "1.0"\n'
            f'wheels = [{{ url = "{other_host.file_url("foo", locked.filename)}", '
            f'hashes = {{ sha256 = "{locked.sha256}" }} }}]\n'
        )
        scanned = CliRunner().invoke(
            app, ["scan", "--store", str(store), "-R", str(lock), "-r", str(rules_dir), "-q"]
        )
        assert scanned.exit_code == 0, scanned.output
    [index_file] = fake_index.add("foo", wheel("foo", "1.0", {"foo/__init__.py": BAD}))
    assert index_file.filename == locked.filename and index_file.sha256 != locked.sha256
    summary = watch(fake_index, store, rules)
    assert summary.stored == 1 and file_requests(fake_index) == [f"/files/foo/{locked.filename}"]
    with Store(store, readonly=True) as db:
        scan = db.latest_scan("foo", "1.0")
        assert scan is not None and (scan.source, scan.verdict) == ("watch", "findings")
    # A new release brings foo's page back: the index's 1.0 wheel, stored now, counts as seen.
    fake_index.add("foo", wheel("foo", "2.0", {"foo/__init__.py": CLEAN}))
    assert watch(fake_index, store, rules).stored == 1
    assert scans_per_release(store) == {"foo==1.0": 2, "foo==2.0": 1}


def test_a_download_that_does_not_match_the_index_sha256_is_stored_as_a_failure(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    listed = "ab" * 32
    bad_sdist = FakeFile(*sdist("tampered", "1.0", {"setup.py": BAD}), listed_sha256=listed)
    fake_index.add("tampered", bad_sdist, FakeFile(*wheel("tampered", "1.0", {"t/__init__.py": CLEAN})))
    only = FakeFile(*sdist("swapped", "1.0", {"setup.py": BAD}), listed_sha256=listed.upper())
    fake_index.add("swapped", only)
    summary = watch(fake_index, store, rules, webhook=Webhook(fake_index.hook_url, min_score=1))
    assert summary.stored == 2 and summary.serial == fake_index.serial
    with Store(store, readonly=True) as db:
        for name, file in (("tampered", bad_sdist), ("swapped", only)):
            scan = db.latest_scan(name, "1.0")
            assert scan is not None and scan.verdict == "incomplete" and scan.error is not None
            assert f"sha256 of {file.filename} is {file.sha256}, but the index lists {listed}" in scan.error
        tampered = db.latest_scan("tampered", "1.0")
        assert tampered is not None
        # The mismatched bytes were never scanned; the wheel, which matched its digest, was. The sdist is
        # stored without bytes, with the digest listed: only those bytes, once read, settle it.
        wheel_row, sdist_row = db.details(tampered.id)
        assert wheel_row["name"] == "tampered-1.0-py3-none-any.whl" and wheel_row["complete"]
        assert (sdist_row["name"], sdist_row["sha256"], sdist_row["listed_sha256"]) == (
            bad_sdist.filename, "", listed
        )  # fmt: skip
        assert [i["kind"] for i in sdist_row["issues"]] == ["download-failed"]
        swapped = db.latest_scan("swapped", "1.0")
        assert swapped is not None
        assert [d["listed_sha256"] for d in db.details(swapped.id)] == [listed]  # stored in lower case
    assert fake_index.hooks == []  # BAD is in the unverified sdists only: no finding reported


def test_downloads_are_checked_against_the_listed_digest_only_when_there_is_one(
    fake_index: FakeIndex,
) -> None:
    (good,) = fake_index.add("pkg", FakeFile("pkg-1.0.tar.gz", b"the real bytes"))
    url = fake_index.file_url("pkg", good.filename)

    async def fetch(sha256: str | None) -> bytes:
        downloader = Downloader(2)
        try:
            data = await downloader.download(url, 1000, sha256=sha256)
            return bytes(downloaded_bytes(data))
        finally:
            downloader.close()

    assert asyncio.run(fetch(good.sha256)) == b"the real bytes"
    assert asyncio.run(fetch(None)) == b"the real bytes"  # mainframe jobs carry no digests
    with pytest.raises(DownloadError) as caught:
        asyncio.run(fetch("0" * 64))
    assert caught.value.permanent
    assert (
        str(caught.value)
        == f"sha256 of pkg-1.0.tar.gz is {good.sha256}, but the index lists {'0' * 64} (from {url})"
    )


def test_watch_limit_flags_apply_to_every_archive(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    runner = CliRunner()
    args = ["watch", "--once", "--store", str(store), "--rules", str(rules_dir), "--threads", "2",
            "--index-url", fake_index.url]  # fmt: skip
    assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0  # the baseline
    fake_index.add(
        "bulky", repacked("bulky", {"bulky-1.0/big.py": b"x = 1\n" * 500, "bulky-1.0/a.py": CLEAN})
    )
    result = runner.invoke(
        app, [*args, "--max-member-size", "1K", "--max-depth", "0"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "1 release(s) stored" in result.stderr
    with Store(store, readonly=True) as db:
        scan = db.latest_scan("bulky", "1.0")
        assert scan is not None and scan.verdict == "incomplete"
        (dist,) = db.details(scan.id)
        assert [(i["path"], i["kind"], i["unscanned"]) for i in dist["issues"]] == [
            ("bulky-1.0/big.py", "member-too-large", True)
        ]
    for bad in (["--max-members", "0"], ["--max-member-size", "lots"], ["--max-ratio", "-1"]):
        assert runner.invoke(app, [*args, *bad]).exit_code == 2
    huge = runner.invoke(app, [*args, "--max-member-size", str(2**70)])
    assert huge.exit_code == 2 and "Invalid value for '--max-member-size'" in huge.stderr


# ------------------------------------------------------------------------------------------- webhook

TOKEN = "wh-s3cret-T0KEN-9f8e7d"
QUERY_TOKEN = "q-s3cret-4a5b6c"


def flat(text: str) -> str:
    """CLI output with rich's error panel (box characters, wrapped lines) flattened to one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "not a url",
        "hooks.example.test/notify",
        "ftp://example.test/hook",
        "javascript:alert(1)",
        "http://",
        "https:///no-host",
        "http://127.0.0.1:99999/hook",
        "",
        f"ftp://user:{TOKEN}@example.test/{QUERY_TOKEN}",
    ],
)
def test_webhook_must_be_http_and_is_checked_at_start(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, url: str
) -> None:
    store = tmp_path / "store.db"
    args = [
        "watch",
        "--once",
        "--store",
        str(store),
        "--rules",
        str(rules_dir),
        "--index-url",
        fake_index.url,
    ]
    result = CliRunner().invoke(app, [*args, "--webhook", url])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--webhook': must be an http:// or https:// URL" in flat(result.stderr)
    assert TOKEN not in result.output and QUERY_TOKEN not in result.output
    assert fake_index.requests == [] and not store.exists()  # refused before anything ran
    with pytest.raises(ValueError, match="webhook URL must be an http"):
        Webhook(url)


def test_webhook_file_url_exits_2_in_a_real_process(tmp_path: Path, rules_dir: Path) -> None:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "watch", "--once",
               "--store", str(tmp_path / "s.db"), "--rules", str(rules_dir),
               "--index-url", "http://127.0.0.1:9/simple/", "--webhook", "file:///etc/passwd"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "--webhook" in done.stderr and "Traceback" not in done.stderr


def test_http_and_https_webhooks_are_accepted() -> None:
    for url in (
        "http://127.0.0.1:8080/hook",
        "HTTPS://hooks.slack.com/services/T0/B0/x",
        " https://h.test/ ",
    ):
        assert Webhook(url).url == url.strip()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://discord.com/api/webhooks/123456/{TOKEN}", "https://discord.com/***"),
        (f"https://hooks.slack.com/services/T0AAA/B0BBB/{TOKEN}", "https://hooks.slack.com/***"),
        (f"https://hooks.example.test/notify?token={TOKEN}&x=1", "https://hooks.example.test/***?***"),
        (f"https://user:{TOKEN}@hooks.example.test:8443/#{TOKEN}", "https://hooks.example.test:8443/"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ],
)
def test_webhook_urls_are_redacted_to_their_origin(url: str, shown: str) -> None:
    assert redact_webhook_url(url) == shown
    assert TOKEN not in repr(Webhook(url)) and TOKEN not in str(Webhook(url))


def test_webhook_tokens_never_reach_the_logs(fake_index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    """A webhook whose POST fails (404 here: the fake only serves /hook) is logged, with its host, never its
    path or query: Discord and Slack webhooks carry their secret there."""
    store = tmp_path / "store.db"
    base = ["watch", "--once", "--store", str(store), "--rules", str(rules_dir),
            "--index-url", fake_index.url, "--threads", "2", "--log-format", "json",
            "--log-level", "DEBUG"]  # fmt: skip
    assert CliRunner().invoke(app, base, catch_exceptions=False).exit_code == 0  # the baseline
    publish(fake_index, "evil", "1.0", BAD)
    hook = f"http://127.0.0.1:{fake_index.port}/api/webhooks/123456/{TOKEN}?token={QUERY_TOKEN}"
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *base, "--webhook", hook]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"POST /api/webhooks/123456/{TOKEN}?token={QUERY_TOKEN}" in fake_index.requests  # it was sent
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [failed] = [r for r in records if r["message"] == "webhook failed"]
    assert failed["url"] == f"http://127.0.0.1:{fake_index.port}/***?***" and failed["error"] == "HTTP 404"
    assert TOKEN not in done.stderr and QUERY_TOKEN not in done.stderr


# ------------------------------------------------------------------------------ what the store keeps

SECRET = "idx-s3cret-P4ss"


def watch_process(url: str, store: Path, rules_dir: Path) -> subprocess.CompletedProcess[str]:
    """``watch --once`` as a real process."""
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "watch", "--once", "--store", str(store),
               "--rules", str(rules_dir), "--index-url", url, "--threads", "2"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("https://pypi.org/simple/", "https://pypi.org/simple", True),
        ("https://pypi.org/simple/", f"https://user:{SECRET}@PyPI.org:443/simple//#frag", True),
        ("http://mirror.test/simple/", "https://mirror.test/simple/", True),
        ("http://[::1]:8080/simple/", "http://[::1]:8080/simple", True),
        ("https://pypi.org/simple/", "https://test.pypi.org/simple/", False),
        ("https://mirror.test/simple/", "https://mirror.test:8443/simple/", False),
        ("https://mirror.test/a/simple/", "https://mirror.test/b/simple/", False),
        # Query values are never kept (redact_url: they may be tokens), so they do not tell indexes apart.
        ("https://mirror.test/simple/?tenant=a", "https://mirror.test/simple/?tenant=b", True),
        ("https://mirror.test/simple/", f"https://mirror.test/simple/?token={SECRET}", False),
    ],
)
def test_index_urls_are_the_same_index_up_to_credentials_case_default_port_and_slashes(
    first: str, second: str, same: bool
) -> None:
    assert (index_identity(first) == index_identity(second)) is same
    assert SECRET not in index_identity(second)


def test_a_store_that_follows_one_index_refuses_to_follow_another(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    fake_index.serial = 5_000_000  # a big index (PyPI); the other one's serials are far lower
    publish(fake_index, "seed", "1.0", old=True)
    assert watch_process(fake_index.url, store, rules_dir).returncode == 0  # the baseline
    # The same index spelled another way (credentials, no trailing slash) is still this store's index.
    same = watch_process(f"http://user:{SECRET}@127.0.0.1:{fake_index.port}/simple", store, rules_dir)
    assert same.returncode == 0, same.stderr
    with FakeIndex() as other:
        publish(other, "evil", "1.0", BAD)
        refused = watch_process(f"http://user:{SECRET}@127.0.0.1:{other.port}/simple/", store, rules_dir)
        assert refused.returncode == 2, refused.stderr
        [error] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert error == (
            f"error: the store {store} follows the index {fake_index.url} (serial {fake_index.serial}), "
            f"not {other.url}: one index's serials mean nothing on another (releases would be missed); "
            f"watch {other.url} with another store (--store PATH or DRAGONFLY_STORE)"
        )
        assert SECRET not in refused.stderr and "Traceback" not in refused.stderr
        assert other.requests == []  # refused before polling it
        with Store(store, readonly=True) as db:
            assert db.get_state(SERIAL_KEY) == str(fake_index.serial)
            assert db.get_state(INDEX_KEY) == fake_index.url
        # What the message says to do works: another store follows the other index.
        assert watch_process(other.url, tmp_path / "other.db", rules_dir).returncode == 0


def test_index_credentials_are_never_stored_nor_reported(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Relative file links joined to ``http://user:pass@host/simple/`` carry the credentials: the
    downloads need them, the store and ``report`` must not have them."""
    fake_index.faults.basic_auth = ("user", SECRET)
    url = f"http://user:{SECRET}@127.0.0.1:{fake_index.port}/simple/"
    store = tmp_path / "store.db"
    publish(fake_index, "seed", "1.0", old=True)
    assert watch_process(url, store, rules_dir).returncode == 0  # the baseline
    publish(fake_index, "evil", "1.0", BAD)
    done = watch_process(url, store, rules_dir)
    assert done.returncode == 0 and "1 release(s) stored" in done.stderr, done.stderr
    assert SECRET not in done.stderr
    connection = sqlite3.connect(store)
    try:
        dump = "\n".join(connection.iterdump())
    finally:
        connection.close()
    assert SECRET not in dump
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "report", "--store", str(store), "evil==1.0",
               "-f", "json"]  # fmt: skip
    report = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert report.returncode == 0, report.stderr
    assert SECRET not in report.stdout
    assert {d["url"] for d in json.loads(report.stdout)["distributions"]} == {
        fake_index.file_url("evil", f.filename) for f in fake_index.projects["evil"]
    }


def test_files_over_max_size_are_stored_as_not_downloaded_and_leave_the_release_incomplete(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    listed = 50_000

    def huge(name: str, body: bytes) -> FakeFile:
        return FakeFile(*sdist(name, "1.0", {"setup.py": body}), listed_size=listed)

    fake_index.add(
        "partly", FakeFile(*wheel("partly", "1.0", {"partly/__init__.py": CLEAN})), huge("partly", BAD)
    )
    fake_index.add("whole", huge("whole", BAD))  # every file over the limit
    fake_index.add(
        "flagged", FakeFile(*wheel("flagged", "1.0", {"flagged/__init__.py": BAD})), huge("flagged", CLEAN)
    )
    filters = WatchFilters(max_size=10_000)
    summary = watch(fake_index, store, rules, filters=filters)
    assert summary.stored == 3 and summary.serial == fake_index.serial
    assert not [r for r in file_requests(fake_index) if r.endswith(".tar.gz")]  # the flag's purpose holds
    message = f"not downloaded: the index lists {listed} bytes, over --max-size (10000 bytes)"
    with Store(store, readonly=True) as db:
        for name, verdict in (("partly", "incomplete"), ("whole", "incomplete"), ("flagged", "findings")):
            scan = db.latest_scan(name, "1.0")
            assert scan is not None and scan.verdict == verdict, name
            assert scan.error == f"{name}-1.0.tar.gz {message}"
            skipped = [d for d in db.details(scan.id) if d["name"] == f"{name}-1.0.tar.gz"]
            assert [
                (d["format"], d["size"], d["sha256"], d["files_scanned"], d["verdict"], d["complete"])
                for d in skipped
            ] == [("-", listed, "", 0, "incomplete", False)]
            assert skipped[0]["url"] == fake_index.file_url(name, f"{name}-1.0.tar.gz")
            assert skipped[0]["issues"] == [
                {"path": "", "kind": "over-max-size", "message": message, "unscanned": True}
            ]
        partly = db.latest_scan("partly", "1.0")
        assert partly is not None and partly.score == 0
        assert [d["verdict"] for d in db.details(partly.id)] == ["clean", "incomplete"]
    shown = CliRunner().invoke(app, ["report", "--store", str(store), "whole==1.0"], catch_exceptions=False)
    assert (
        shown.exit_code == 0 and "unscanned [over-max-size] whole-1.0.tar.gz: not downloaded" in shown.stdout
    )

    # A new release makes the index list the project again: the file kept out counts as seen, not re-stored.
    publish(fake_index, "whole", "2.0")
    again = watch(fake_index, store, rules, filters=filters)
    assert again.stored == 1
    assert scans_per_release(store) == {
        "partly==1.0": 1, "whole==1.0": 1, "flagged==1.0": 1, "whole==2.0": 1
    }  # fmt: skip


def test_a_file_kept_out_by_max_size_is_settled_only_by_its_listed_bytes(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules, rules_dir: Path
) -> None:
    """Red-team finding (eleventh pass): `watch --max-size` stores partly-1.0.tar.gz (flagged, listed big)
    without its bytes. A lock file's scan then read the index's wheel and another host's clean file of the
    same name: the row without bytes gave way to those bytes, `report` showed the release clean, and
    `watch` counted the index's sdist as seen, so it never scanned it. The row keeps the digest the index
    listed: only those bytes settle it, and `watch` downloads the file once --max-size lets it."""
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    wheel_file = FakeFile(*wheel("partly", "1.0", {"partly/__init__.py": CLEAN}))
    big = FakeFile(*sdist("partly", "1.0", {"setup.py": BAD}), listed_size=50_000)
    fake_index.add("partly", wheel_file, big)
    filters = WatchFilters(max_size=10_000)
    assert watch(fake_index, store, rules, filters=filters).stored == 1
    with FakeIndex() as other:
        (elsewhere,) = other.add("partly", sdist("partly", "1.0", {"setup.py": CLEAN}))
        lock = tmp_path / "pylock.toml"
        lock.write_text(
            'lock-version = "1.0"\ncreated-by = "test"\n[[packages]]\nname = "partly"\nversion = "1.0"\n'
            f'sdist = {{ url = "{other.file_url("partly", elsewhere.filename)}", '
            f'hashes = {{ sha256 = "{elsewhere.sha256}" }} }}\n'
            f'wheels = [{{ url = "{fake_index.file_url("partly", wheel_file.filename)}", '
            f'hashes = {{ sha256 = "{wheel_file.sha256}" }} }}]\n'
        )
        scan = ["scan", "-R", str(lock), "-r", str(rules_dir), "--store", str(store), "-q"]
        scanned = CliRunner().invoke(app, scan, catch_exceptions=False)
        assert scanned.exit_code == 0, scanned.output

    def report() -> dict[str, Any]:
        shown = CliRunner().invoke(app, ["report", "--store", str(store), "partly==1.0", "-f", "json"])
        assert shown.exit_code == 0, shown.output
        data: dict[str, Any] = json.loads(shown.stdout)
        return data

    data = report()
    assert data["verdict"] == "incomplete" and f"{big.filename} not downloaded" in data["error"]
    assert sorted((d["name"], d["sha256"]) for d in data["distributions"]) == [
        (wheel_file.filename, wheel_file.sha256),
        (big.filename, ""),
        (big.filename, elsewhere.sha256),
    ]
    with Store(store, readonly=True) as db:
        stored = db.stored_files("partly", "1.0")
        assert stored.has(big.filename, elsewhere.sha256) and not stored.has(big.filename, big.sha256)

    # The project changes, the sdist still over --max-size: it is not stored again...
    publish(fake_index, "partly", "2.0")
    assert watch(fake_index, store, rules, filters=filters).stored == 1
    assert scans_per_release(store)["partly==1.0"] == 2
    # ... and without the limit, the next change has it downloaded and scanned: its finding shows.
    publish(fake_index, "partly", "3.0")
    assert watch(fake_index, store, rules).stored == 2
    data = report()
    assert (data["verdict"], data["rules_matched"], data["error"]) == ("findings", ["test_marker"], None)


def test_a_release_given_up_on_is_stored_with_a_row_per_file_it_was_to_scan(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    """A job not stored within its lease, `max_attempts` times: its files are stored as not downloaded
    (the digest listed, the reason), so only a scan of each settles it."""
    now = [0.0]
    publish(fake_index, "seed", "1.0", old=True)
    with Store(tmp_path / "store.db") as store:
        source = PyPIWatchSource(
            store, rules.hash, index_url=fake_index.url, lease=10.0, max_attempts=2, clock=lambda: now[0]
        )

        async def lease_out() -> None:
            assert await source.claim(10) == []  # the baseline
            publish(fake_index, "slow", "1.0", BAD)
            (first,) = await source.claim(10)
            now[0] = 11.0
            (again,) = await source.claim(10)
            assert (first.attempt, again.attempt) == (1, 2)
            now[0] = 22.0
            assert await source.claim(10) == []  # given up on, and stored
            await source.aclose()

        asyncio.run(lease_out())
        release = store.release("slow", "1.0")
    assert release is not None and release.verdict == "incomplete"
    assert release.error is not None and release.error.startswith("not scanned after 2 attempts")
    assert sorted((d["name"], d["listed_sha256"], d["complete"]) for d in release.distributions) == sorted(
        (f.filename, f.sha256, False) for f in fake_index.projects["slow"]
    )


def _report(store: Path, release: str) -> dict[str, Any]:
    shown = CliRunner().invoke(app, ["report", "--store", str(store), release, "-f", "json"])
    assert shown.exit_code == 0, shown.output
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


def test_a_name_listed_twice_with_one_copy_lost_stores_that_copys_digest(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules, rules_dir: Path
) -> None:
    """Red-team finding (thirteenth pass): the index lists pkg's wheel twice (two URLs, other bytes); the
    flagged copy 404s, the clean one is read. `watch` paired the file read with the job's URLs by name, so
    the row stored for the copy not read had the *read* copy's digest, settled at once: once a hash-mode
    `scan -R` read the clean copy again, `report` showed the release clean and its error settled, though the
    flagged copy was never scanned. Each file read is paired with its own URL."""
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    name, flagged = wheel("pkg", "1.0", {"pkg/__init__.py": BAD})
    _, clean = wheel("pkg", "1.0", {"pkg/__init__.py": CLEAN})
    lost, served = (
        FakeFile(f"{name}?copy={n}", body, listed_url=f"{fake_index.file_url('pkg', name)}?copy={n}",
                 listed_name=name)
        for n, body in ((1, flagged), (2, clean))
    )  # fmt: skip
    fake_index.add("pkg", lost, served)
    fake_index.faults.missing.add(lost.filename)
    assert watch(fake_index, store, rules).stored == 1
    with Store(store, readonly=True) as db:
        scan = db.latest_scan("pkg", "1.0")
        assert scan is not None
        assert sorted((d["sha256"], d["listed_sha256"]) for d in db.details(scan.id)) == sorted(
            [("", lost.sha256), (served.sha256, None)]
        )
    requirements = tmp_path / "req.txt"
    requirements.write_text(f"pkg==1.0 --hash=sha256:{served.sha256}\n")
    scanned = CliRunner().invoke(
        app,
        ["scan", "-R", str(requirements), "-r", str(rules_dir), "--index-url", fake_index.url,
         "--store", str(store), "-q"],
        catch_exceptions=False,
    )  # fmt: skip
    assert scanned.exit_code == 0, scanned.output
    data = _report(store, "pkg==1.0")
    assert data["verdict"] == "incomplete" and "could not download" in data["error"]
    assert [(d["sha256"], d["listed_sha256"]) for d in data["distributions"]] == [
        ("", lost.sha256),
        (served.sha256, None),
    ]


def test_a_release_read_only_under_other_rules_is_scanned_with_the_watchers(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules
) -> None:
    """Red-team finding (thirteenth pass): `scan --store -r B` (a set without the rule that flags pkg) read
    pkg 1.0, published after the watcher's baseline; `watch` then counted its files as seen and never
    scanned them with its own rules: `report` showed the release clean. A file counts as seen under the
    rule set watch scans with only."""
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    publish(fake_index, "pkg", "1.0", BAD)
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    (narrow / "light.yar").write_text(LIGHT_RULE)
    scanned = CliRunner().invoke(
        app,
        ["scan", "pkg==1.0", "-r", str(narrow), "--index-url", fake_index.url, "--store", str(store), "-q"],
        catch_exceptions=False,
    )
    assert scanned.exit_code == 0, scanned.output
    assert _report(store, "pkg==1.0")["verdict"] == "clean"
    assert watch(fake_index, store, rules).stored == 1
    data = _report(store, "pkg==1.0")
    assert (data["verdict"], data["rules_matched"]) == ("findings", ["test_marker"])
    assert [s["source"] for s in data["scans"]] == ["watch"]  # it read every file `scan -r B` read
    # Seen under the watcher's rules now: the next change of the project does not scan 1.0 again.
    publish(fake_index, "pkg", "2.0")
    assert watch(fake_index, store, rules).stored == 1
    assert scans_per_release(store) == {"pkg==1.0": 2, "pkg==2.0": 1}


def test_a_file_listed_without_a_digest_is_not_seen_through_another_hosts_file_of_its_name(
    fake_index: FakeIndex, tmp_path: Path, rules: Rules, rules_dir: Path
) -> None:
    """Red-team finding (thirteenth pass): the index lists pkg's wheel (flagged) without a sha256, after
    the watcher's baseline; a lock file's `scan --store` had read another host's clean file of that name.
    `watch` took the name alone for the file and never downloaded it: `report` showed the release clean.
    Without a digest, a copy read from the same URL is the file."""
    store = tmp_path / "store.db"
    watch_from_now(fake_index, store, rules)
    with FakeIndex() as other_host:
        [theirs] = other_host.add("pkg", wheel("pkg", "1.0", {"pkg/__init__.py": CLEAN}))
        lock = tmp_path / "pylock.toml"
        lock.write_text(
            'lock-version = "1.0"\ncreated-by = "test"\n[[packages]]\nname = "pkg"\nversion = "1.0"\n'
            f'wheels = [{{ url = "{other_host.file_url("pkg", theirs.filename)}", '
            f'hashes = {{ sha256 = "{theirs.sha256}" }} }}]\n'
        )
        scan = ["scan", "-R", str(lock), "-r", str(rules_dir), "--store", str(store), "-q"]
        scanned = CliRunner().invoke(app, scan, catch_exceptions=False)
        assert scanned.exit_code == 0, scanned.output
    name, flagged = wheel("pkg", "1.0", {"pkg/__init__.py": BAD})
    fake_index.add("pkg", FakeFile(name, flagged, listed_sha256=""))
    assert watch(fake_index, store, rules).stored == 1
    assert file_requests(fake_index) == [f"/files/pkg/{name}"]
    data = _report(store, "pkg==1.0")
    assert (data["verdict"], data["rules_matched"]) == ("findings", ["test_marker"])
    # Read from its own URL now: the next change of the project does not download it again.
    publish(fake_index, "pkg", "2.0")
    assert watch(fake_index, store, rules).stored == 1
    assert scans_per_release(store)["pkg==1.0"] == 2
