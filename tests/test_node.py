"""The node against a fake mainframe and file host on 127.0.0.1: real HTTP, real leases, real signals."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path

import pytest
from dragonfly_hybrid._core import DownloadBuffer
from dragonfly_hybrid.errors import NoRulesError
from dragonfly_hybrid.node.jobs import MainframeError
from dragonfly_hybrid.node.metrics import MetricsServer, NodeMetrics
from dragonfly_hybrid.node.service import serve
from dragonfly_hybrid.node.settings import NodeSettings
from dragonfly_hybrid.rules_loader import cache_entry

from tests.fakes.mainframe import FakeMainframe
from tests.fakes.pypi import SLOW_RULE, FakeIndex, slow_tarball, tar_gz_bytes, wheel

MARK = b"x = 'DRAGONFLY_TEST_MARKER'\n"
LIGHT = b"y = 'DRAGONFLY_LIGHT_MARKER'\n"
CLEAN = b"print('hello')\n"


@pytest.fixture
def fake() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


def settings_for(
    fake: FakeMainframe, tmp_path: Path, worker: str | None = None, **extra: object
) -> NodeSettings:
    values = {
        "metrics_port": None,
        "load_duration": 0.1,
        "rules_cache_dir": tmp_path / "rules-cache",
        "threads": 2,
        **extra,
    }
    return NodeSettings(**fake.node_settings(worker, **values))


def run_node(settings: NodeSettings, **kwargs: object) -> NodeMetrics:
    metrics = NodeMetrics()
    asyncio.run(serve(settings, metrics=metrics, **kwargs))  # type: ignore[arg-type]
    return metrics


def add_releases(fake: FakeMainframe, count: int) -> None:
    for i in range(count):
        body = MARK if i % 3 == 0 else CLEAN
        fake.add_release(
            f"pkg{i}", "1.0", {"setup.py": body, f"pkg{i}/__init__.py": LIGHT if i % 5 == 0 else CLEAN}
        )


def accepted_by_job(fake: FakeMainframe) -> Counter[tuple[str, str]]:
    return Counter((s.body["name"], s.body["version"]) for s in fake.results)


def test_happy_path_many_jobs_each_get_one_correct_result(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 30)
    metrics = run_node(settings_for(fake, tmp_path), once=True)
    results = {s.body["name"]: s.body for s in fake.results}
    assert set(accepted_by_job(fake).values()) == {1} and len(results) == 30
    for i in range(30):
        body = results[f"pkg{i}"]
        expected = {"test_marker"} if i % 3 == 0 else set()
        if i % 5 == 0:
            expected.add("light_marker")
        assert set(body["rules_matched"]) == expected, body
        # Both distributions (sdist, wheel) match the same rules: the score is their max, not their sum.
        assert body["score"] == (5 if i % 3 == 0 else 0) + (1 if i % 5 == 0 else 0)
        assert body["commit"] == fake.rules_hash
        state = fake.state(f"pkg{i}", "1.0")
        assert (body["attempt"], body["assignment_id"]) == (state.attempt, state.assignment_id)
        if expected:
            url = body["inspector_url"]
            assert url.startswith(f"https://inspector.pypi.io/project/pkg{i}/1.0/packages/")
            assert url.endswith(("/setup.py", f"/pkg{i}/__init__.py"))
        else:
            assert body["inspector_url"] is None
    assert metrics.jobs_claimed._value.get() == 30
    assert metrics.jobs_finished.labels("success")._value.get() == 30


@pytest.mark.usefixtures("empty_download_pool")
def test_a_node_that_finds_no_job_frees_the_download_buffers_it_kept(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    add_releases(fake, 3)
    run_node(settings_for(fake, tmp_path), max_jobs=3)
    kept = DownloadBuffer(1_000_000)  # as a download done with before the queue ran dry
    del kept
    count, size = DownloadBuffer.pooled()
    assert count >= 1
    metrics = NodeMetrics()
    assert metrics.registry.get_sample_value("dragonfly_download_buffers_kept_bytes") == size
    run_node(settings_for(fake, tmp_path), once=True)  # the queue is empty
    assert DownloadBuffer.pooled() == (0, 0)
    assert metrics.registry.get_sample_value("dragonfly_download_buffers_kept_bytes") == 0
    assert len(fake.results) == 3


def test_server_errors_and_dropped_connections_are_retried(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 6)
    fake.fail_next("package", 503, count=3)
    fake.drop_next("package", count=2)
    fake.fail_next("rules", 502, count=1)
    fake.drop_next("files", count=2)
    run_node(settings_for(fake, tmp_path), once=True)
    assert accepted_by_job(fake) == Counter({(f"pkg{i}", "1.0"): 1 for i in range(6)})
    assert fake.count("package", 503) == 3


def test_a_once_run_goes_on_through_failed_claims_and_drains_the_queue(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """A 503 or a lost answer to POST /jobs is not "no job": the run used to stop there, saying drained."""
    add_releases(fake, 4)
    fake.fail_next("jobs", 503, count=2)
    fake.drop_next("jobs", count=1)
    run_node(settings_for(fake, tmp_path, bulk_size=2), once=True)
    assert accepted_by_job(fake) == Counter({(f"pkg{i}", "1.0"): 1 for i in range(4)})


@pytest.mark.parametrize("status", [404, 503])
def test_a_once_run_whose_claims_keep_failing_finishes_its_jobs_then_fails(
    fake: FakeMainframe, tmp_path: Path, status: int
) -> None:
    """A POST /jobs that keeps answering 4xx (a wrong base URL path) had `--once` retry forever; one that
    keeps answering 5xx had it exit 0 as if the queue were drained. The jobs claimed before are submitted."""
    add_releases(fake, 4)
    fake.delay("files", 0.3)  # the two jobs a claim limit of 2 lets in are still downloading
    settings = settings_for(fake, tmp_path, bulk_size=1)

    def after_two_claims() -> None:
        fake.wait_until(lambda: len(fake.claims) >= 2)
        fake.fail_next("jobs", status, count=1000)

    thread = threading.Thread(target=after_two_claims)
    thread.start()
    with pytest.raises(
        MainframeError, match=rf"could not claim jobs \(4 tries\): POST /jobs .*HTTP {status}"
    ):
        run_node(settings, once=True)
    thread.join()
    assert fake.count("jobs", status) == 4
    assert len(fake.claims) == 2 and len(fake.results) == 2  # the jobs claimed were submitted


@pytest.mark.parametrize("load_duration", [0.0, 0.1])
def test_the_wait_after_a_failed_claim_doubles_and_never_shrinks(
    fake: FakeMainframe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_duration: float
) -> None:
    """Fourteenth pass: the wait was capped at the poll interval, so with DRAGONFLY_LOAD_DURATION=0 (or a
    small one) it was 1 s, then 0 s: a daemon whose claims kept failing at once (HTTP 404) claimed and
    logged thousands of times a second. The waits are recorded, not slept."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    def sleep(delay: float, result: object = None) -> Coroutine[object, object, object]:
        if sys._getframe(1).f_code.co_name == "_load":
            waits.append(delay)
            delay = 0
        return real_sleep(delay, result)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    fake.fail_next("jobs", 404, count=1000)
    with pytest.raises(MainframeError, match=r"could not claim jobs \(4 tries\)"):
        run_node(settings_for(fake, tmp_path, load_duration=load_duration), once=True)
    assert waits == [1.0, 2.0, 4.0]
    assert fake.count("jobs", 404) == 4


def test_expired_token_and_401_lead_to_a_new_login(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 8)
    fake.delay("files", 0.05)
    settings = settings_for(fake, tmp_path)

    def disturb() -> None:
        fake.wait_until(lambda: len(fake.results) >= 2)
        fake.expire_tokens()
        fake.wait_until(lambda: len(fake.results) >= 5)
        fake.unauthorized_next(1)

    thread = threading.Thread(target=disturb)
    thread.start()
    run_node(settings, once=True)
    thread.join()
    assert len(accepted_by_job(fake)) == 8
    assert fake.logins >= 2


def test_lost_lease_409_is_not_retried(fake: FakeMainframe, tmp_path: Path) -> None:
    fake.strict_leases = True
    fake.job_timeout = 1.0
    fake.add_release("slow", "1.0", {"setup.py": MARK})
    fake.delay("package", 1.5)  # the result arrives after the lease ended
    metrics = run_node(settings_for(fake, tmp_path, job_timeout=10, min_lease_left=0), once=True)
    assert [s.status for s in fake.submissions] == [409]
    assert metrics.lease_lost._value.get() == 1
    assert fake.results == []


def test_a_download_slowed_to_a_drip_ends_where_the_lease_runs_short(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """A file host sending a byte every 50 ms (never silent long enough for the read timeout) held the one
    download slot for the ~2 minutes its sdist took, the lease long gone. The download now ends when the
    lease has too little left to scan and submit (7 s lease, 5 s kept for that): the job goes back to the
    server unreported, and the next one is claimed, downloaded and submitted."""
    [slow_url] = fake.add_release("slow", "1.0", {"setup.py": os.urandom(2000)}, wheel=False)
    fake.drip(slow_url, 0.05)
    fake.add_release("quick", "1.0", {"setup.py": MARK})
    settings = settings_for(fake, tmp_path, job_timeout=7, bulk_size=1, download_concurrency=1)
    metrics = run_node(settings, once=True)
    assert [s.body["name"] for s in fake.results] == ["quick"]
    assert metrics.http_errors.labels("download")._value.get() == 1
    assert fake.state("slow", "1.0").status == "PENDING"  # leased, never answered


def test_rules_hash_change_mid_run_reloads_rules(fake: FakeMainframe, tmp_path: Path) -> None:
    new_rule = 'rule new_rule { meta: weight = 9 strings: $a = "BRAND_NEW_MARKER" condition: $a }'
    for i in range(4):
        fake.add_release(f"early{i}", "1.0", {"setup.py": b"BRAND_NEW_MARKER"})
    settings = settings_for(fake, tmp_path, bulk_size=2)

    def change() -> None:
        fake.wait_until(lambda: len(fake.results) >= 2)
        fake.set_rules("fake-rules-2", {"new.yar": new_rule})
        for i in range(4):
            fake.add_release(f"late{i}", "1.0", {"setup.py": b"BRAND_NEW_MARKER"})

    thread = threading.Thread(target=change)
    thread.start()
    run_node(settings, max_jobs=8)
    thread.join()
    by_name = {s.body["name"]: s.body for s in fake.results}
    assert len(by_name) == 8
    for i in range(4):
        late = by_name[f"late{i}"]
        assert (late["commit"], late["rules_matched"], late["score"]) == ("fake-rules-2", ["new_rule"], 9)
    # Every result names the rules it was scanned with.
    for body in by_name.values():
        assert body["commit"] in ("fake-rules-1", "fake-rules-2")
        assert (body["commit"] == "fake-rules-2") == (body["rules_matched"] == ["new_rule"])
    blobs = [p for p in (tmp_path / "rules-cache").iterdir() if p.suffix == ".rules"]
    # A blob is code: readable by its owner only, as the commands' cache keeps it.
    assert blobs and all(p.stat().st_mode & 0o777 == 0o600 for p in blobs)


def test_a_node_with_its_rules_cache_off_writes_no_blob(
    fake: FakeMainframe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DRAGONFLY_RULES_CACHE_DIR", "off")
    add_releases(fake, 2)
    settings = NodeSettings(**fake.node_settings(None, metrics_port=None, load_duration=0.1, threads=2))
    assert settings.rules_cache_dir is None
    run_node(settings, once=True)
    assert len(accepted_by_job(fake)) == 2
    assert list(tmp_path.iterdir()) == []


MARKER_RULE_NAMED = 'rule {} {{ strings: $a = "DRAGONFLY_TEST_MARKER" condition: $a }}'


@pytest.mark.parametrize("commit", ["c" * 300, "a/b", "a_b", "Main", "sha256-" + "0" * 64])
def test_any_rules_commit_name_is_cached_under_its_sources(
    fake: FakeMainframe, tmp_path: Path, commit: str
) -> None:
    """The cache names a set by a digest of its sources (as the commands' cache), never by the commit: a
    300-character name made the file name too long (ENAMETOOLONG: the node could not start), and `a/b` and
    `a_b`, `Main` and `main` (on a case-insensitive file system), or `a/b` and a commit named like its
    digest shared one file."""
    sources = {"m.yar": MARKER_RULE_NAMED.format("m")}
    fake.set_rules(commit, sources)
    fake.add_release("a", "1.0", {"setup.py": MARK})
    run_node(settings_for(fake, tmp_path), once=True)
    [body] = [s.body for s in fake.results]
    assert body["commit"] == commit and body["rules_matched"] == ["m"]
    [blob] = (tmp_path / "rules-cache").glob("*.rules")
    assert blob == cache_entry(tmp_path / "rules-cache", sources)


def test_commits_whose_names_a_file_system_would_confuse_each_run_their_own_rules(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """`a/b` and a commit named `sha256-<digest of "a/b">` (once `a/b`'s file name), `Main` and `main`:
    each runs its own rules, from its own file."""
    commits = ["a/b", "sha256-" + hashlib.sha256(b"a/b").hexdigest(), "Main", "main"]
    for number, commit in enumerate(commits):
        fake.set_rules(commit, {"m.yar": MARKER_RULE_NAMED.format(f"rule_{number}")})
        fake.add_release(f"p{number}", "1.0", {"setup.py": MARK})
        run_node(settings_for(fake, tmp_path), once=True)
    assert {s.body["name"]: s.body["rules_matched"] for s in fake.results} == {
        f"p{number}": [f"rule_{number}"] for number in range(len(commits))
    }
    names = [blob.name for blob in (tmp_path / "rules-cache").glob("*.rules")]
    assert len({name.casefold() for name in names}) == len(commits)


def test_a_commit_served_with_other_sources_runs_them_not_the_cached_set(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """A commit name is the server's choice (a branch name, or another mainframe's commit sharing the cache
    directory): served again with other sources, a restarted node took the set first compiled under that
    name from its cache, and ran rules the server no longer serves."""
    fake.set_rules("main", {"m.yar": MARKER_RULE_NAMED.format("first")})
    fake.add_release("a", "1.0", {"setup.py": MARK})
    run_node(settings_for(fake, tmp_path), once=True)
    fake.set_rules("main", {"m.yar": MARKER_RULE_NAMED.format("second")})
    fake.add_release("b", "1.0", {"setup.py": MARK})
    run_node(settings_for(fake, tmp_path), once=True)
    assert {s.body["name"]: s.body["rules_matched"] for s in fake.results} == {
        "a": ["first"],
        "b": ["second"],
    }


def test_rules_that_do_not_compile_keep_the_last_good_set(fake: FakeMainframe, tmp_path: Path) -> None:
    fake.add_release("a", "1.0", {"setup.py": MARK})
    fake.set_rules("broken-rules", {"broken.yar": "rule broken { condition: nope }"})
    with pytest.raises(Exception, match=r"broken\.yar"):
        run_node(settings_for(fake, tmp_path), once=True)  # no good set yet: cannot start
    fake.set_rules(
        "fake-rules-1", {"m.yar": 'rule m { strings: $a = "DRAGONFLY_TEST_MARKER" condition: $a }'}
    )
    fake.add_release("b", "1.0", {"setup.py": MARK})

    def break_rules() -> None:
        fake.wait_until(lambda: len(fake.claims) >= 1)
        fake.set_rules("broken-rules", {"broken.yar": "rule broken { condition: nope }"})
        fake.add_release("c", "1.0", {"setup.py": MARK})

    thread = threading.Thread(target=break_rules)
    thread.start()
    run_node(settings_for(fake, tmp_path, bulk_size=1), max_jobs=3)
    thread.join()
    bodies = {s.body["name"]: s.body for s in fake.results}
    assert bodies["c"]["commit"] == "fake-rules-1" and bodies["c"]["rules_matched"] == ["m"]


def test_a_rule_set_from_the_mainframe_that_defines_no_rule_is_never_used(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """Comment-only sources compile to a set that matches nothing: installed, every job would be submitted
    clean. The node does not start with one, and keeps the last good set when one is served later."""
    empty = {"notes.yar": "// rules are being rewritten\n"}
    fake.add_release("a", "1.0", {"setup.py": MARK})
    fake.set_rules("empty-rules", empty)
    with pytest.raises(NoRulesError, match="'empty-rules' defines no rule"):
        run_node(settings_for(fake, tmp_path), once=True)
    proc = node_process(fake, tmp_path, "--once")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert stderr.endswith(
        "error: the mainframe's rules cannot be used: the rule set 'empty-rules' defines no rule: "
        "it would match nothing\n"
    )
    assert fake.results == []
    fake.set_rules(
        "fake-rules-1", {"m.yar": 'rule m { strings: $a = "DRAGONFLY_TEST_MARKER" condition: $a }'}
    )
    fake.add_release("b", "1.0", {"setup.py": MARK})

    def empty_rules() -> None:
        fake.wait_until(lambda: len(fake.claims) >= 1)
        fake.set_rules("empty-rules", empty)
        fake.add_release("c", "1.0", {"setup.py": MARK})

    thread = threading.Thread(target=empty_rules)
    thread.start()
    run_node(settings_for(fake, tmp_path, bulk_size=1), max_jobs=3)
    thread.join()
    bodies = {s.body["name"]: s.body for s in fake.results}
    assert bodies["c"]["commit"] == "fake-rules-1" and bodies["c"]["rules_matched"] == ["m"]


def test_oversized_download_is_a_failure_naming_the_cap(fake: FakeMainframe, tmp_path: Path) -> None:
    fake.add_release("big", "1.0", {"data.bin": os.urandom(300_000)}, wheel=False)
    run_node(settings_for(fake, tmp_path, max_scan_size=100_000), once=True)
    [result] = fake.results
    assert "100000" in result.body["reason"] and "download size cap" in result.body["reason"]
    assert fake.state("big", "1.0").status == "FAILED"


def test_hostile_archive_is_a_precise_failure(fake: FakeMainframe, tmp_path: Path) -> None:
    bomb = tar_gz_bytes({"bomb-1.0/zeros.bin": bytes(20_000_000)})
    fake.add_release("bomb", "1.0", distributions=[fake.host_file("bomb-1.0.tar.gz", bomb)])
    whole = tar_gz_bytes({"cut-1.0/a.py": CLEAN * 999})
    fake.add_release("cut", "1.0", distributions=[fake.host_file("cut-1.0.tar.gz", whole[: len(whole) // 2])])
    run_node(settings_for(fake, tmp_path, max_ratio=100), once=True)
    reasons = {s.body["name"]: s.body.get("reason") for s in fake.results}
    assert "compression-ratio" in reasons["bomb"]
    assert "corrupt" in reasons["cut"]


def test_hostile_archive_with_findings_is_still_a_success(fake: FakeMainframe, tmp_path: Path) -> None:
    """The malicious signal is not lost because another part could not be scanned."""
    archive = tar_gz_bytes({"p-1.0/setup.py": MARK, "p-1.0/big.bin": bytes(2_000)})
    fake.add_release("p", "1.0", distributions=[fake.host_file("p-1.0.tar.gz", archive)])
    run_node(settings_for(fake, tmp_path, max_member_size=1_000), once=True)
    [result] = fake.results
    assert result.body["rules_matched"] == ["test_marker"] and result.body["score"] == 5


SETUP_PY_RULE = """
rule setup_py_marker {
  meta:
    weight = 5
    filetype = "setup.py"
  strings:
    $marker = "DRAGONFLY_TEST_MARKER"
  condition:
    $marker
}
"""


def _tar_block(name: bytes, size: int, typeflag: bytes) -> bytes:
    header = bytearray(512)
    header[: len(name)] = name
    header[100:108], header[108:116], header[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    header[124:136], header[136:148] = b"%011o\0" % size, b"00000000000\0"
    header[156:157], header[257:265], header[148:156] = typeflag, b"ustar\x0000", b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def test_archives_read_as_pip_reads_them_are_not_reported_clean(fake: FakeMainframe, tmp_path: Path) -> None:
    """The node sees what pip installs, under pip's name, so a rule that counts only for setup.py fires."""
    payload = b"import os  # DRAGONFLY_TEST_MARKER\n"
    # A PAX size with a leading space: CPython's int() reads it, so setup.py holds the payload.
    record = b" size= %d\n" % len(payload)
    record = b"%d%s" % (len(record) + 2, record)
    pax = _tar_block(b"PaxHeaders/setup.py", len(record), b"x") + _padded(record)
    sdist = pax + _tar_block(b"pax-1.0/setup.py", 0, b"0") + _padded(payload) + bytes(1024)
    fake.add_release("pax", "1.0", distributions=[fake.host_file("pax-1.0.tar", sdist)])
    # A wheel behind a gzip stream: zipfile finds it from its end, so pip installs it.
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as wheel:
        wheel.writestr("prefixed/setup.py", payload)
    prefixed = gzip.compress(b"not a wheel", mtime=0) + inner.getvalue()
    fake.add_release(
        "prefixed", "1.0", distributions=[fake.host_file("prefixed-1.0-py3-none-any.whl", prefixed)]
    )
    # An error page saved under a wheel's name: nothing pip would install was scanned.
    page = b"<html><body>502 Bad Gateway</body></html>"
    fake.add_release("page", "1.0", distributions=[fake.host_file("page-1.0-py3-none-any.whl", page)])
    fake.set_rules("setup-py-rules", {"setup_py_marker": SETUP_PY_RULE})
    run_node(settings_for(fake, tmp_path), once=True)
    by_name = {s.body["name"]: s.body for s in fake.results}
    assert by_name["pax"]["score"] == 5 and by_name["pax"]["rules_matched"] == ["setup_py_marker"]
    assert by_name["prefixed"]["score"] == 5
    assert "reason" in by_name["page"] and "not an archive" in by_name["page"]["reason"], by_name["page"]


def test_missing_distribution_is_a_failure_and_empty_release_is_clean(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    fake.add_release("gone", "1.0", distributions=[fake.url + "/packages/aa/bb/cc/gone-1.0.tar.gz"])
    fake.add_release("empty", "1.0")
    run_node(settings_for(fake, tmp_path), once=True)
    bodies = {s.body["name"]: s.body for s in fake.results}
    assert "HTTP 404" in bodies["gone"]["reason"]
    assert bodies["empty"]["score"] == 0 and bodies["empty"]["rules_matched"] == []


def test_two_nodes_share_the_queue_without_double_work(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 40)
    fake.add_worker("worker-2")
    first = settings_for(fake, tmp_path / "a")
    second = settings_for(fake, tmp_path / "b", worker="worker-2")

    async def both() -> None:
        await asyncio.gather(serve(first, once=True), serve(second, once=True))

    asyncio.run(both())
    assert accepted_by_job(fake) == Counter({(f"pkg{i}", "1.0"): 1 for i in range(40)})
    workers = Counter(s.worker for s in fake.results)
    assert set(workers) <= {"worker-1", "worker-2"}
    assert len(fake.claims) == 40  # no job was claimed twice: none had to be scanned twice


def test_metrics_and_health_endpoints(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 3)
    metrics = run_node(settings_for(fake, tmp_path), once=True)
    server = MetricsServer(metrics, lambda: True, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        health = urllib.request.urlopen(f"{base}/healthz", timeout=5)
    finally:
        server.close()
    assert health.status == 200
    for name in (
        "dragonfly_jobs_claimed_total 3.0",
        'dragonfly_jobs_finished_total{outcome="success"} 3.0',
        "dragonfly_files_scanned_total",
        "dragonfly_bytes_scanned_total",
        "dragonfly_scan_seconds_bucket",
        "dragonfly_job_seconds_bucket",
        "dragonfly_lease_lost_total 0.0",
    ):
        assert name in text, name


def test_metrics_time_every_stage_of_every_job(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 4)
    metrics = run_node(settings_for(fake, tmp_path), once=True)

    def sample(name: str, **labels: str) -> float:
        value = metrics.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value

    for histogram in ("dragonfly_download_seconds", "dragonfly_scan_seconds", "dragonfly_submit_seconds"):
        assert sample(f"{histogram}_count") == 4, histogram
        assert sample(f"{histogram}_sum") > 0, histogram
    for stage in ("download", "scan", "submit"):
        assert sample("dragonfly_queue_wait_seconds_count", stage=stage) == 4, stage
    # Each job's stages happen within its claim-to-result time.
    stages = sum(sample(f"dragonfly_{h}_seconds_sum") for h in ("download", "scan", "submit"))
    waits = sum(sample("dragonfly_queue_wait_seconds_sum", stage=s) for s in ("download", "scan", "submit"))
    assert stages + waits <= sample("dragonfly_job_seconds_sum")
    assert sample("dragonfly_scan_idle_seconds_total") > 0  # the scanners waited for the first download


def node_process(fake: FakeMainframe, tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DRAGONFLY_")}
    for key, value in fake.node_settings(metrics_port=None, load_duration=0.2, grace_period=20).items():
        environment[f"DRAGONFLY_{key.upper()}"] = str(value)
    environment["DRAGONFLY_RULES_CACHE_DIR"] = str(tmp_path / "cache")
    environment.update(env)
    return spawn_node(args, environment, tmp_path)


def spawn_node(args: Sequence[str], environment: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """``dragonfly-hybrid node ARGS`` in a new process with exactly ``environment``, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "dragonfly_hybrid.cli", "node", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def test_sigterm_mid_scan_finishes_in_flight_work_and_exits_0(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 40)
    fake.delay("files", 0.3)  # keep several jobs in flight when the signal arrives
    proc = node_process(fake, tmp_path, DRAGONFLY_BULK_SIZE="4")
    assert fake.wait_until(lambda: len(fake.results) >= 2, timeout=30), proc.stderr
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    claimed = {(c.name, c.version) for c in fake.claims}
    submitted = accepted_by_job(fake)
    # Every claimed job got exactly one result; none was claimed after the signal and left hanging.
    assert set(submitted) == claimed and set(submitted.values()) == {1}
    assert len(claimed) < 40
    assert "stopping" in stderr


def test_secrets_never_reach_the_logs(fake: FakeMainframe, tmp_path: Path) -> None:
    add_releases(fake, 2)
    fake.unauthorized_next(1)
    proc = node_process(fake, tmp_path, "--once", DRAGONFLY_LOG_LEVEL="DEBUG", DRAGONFLY_LOG_FORMAT="json")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert fake.worker.client_secret not in stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(line["message"] == "result submitted" for line in lines)


def test_bad_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    with FakeMainframe() as fake:
        proc = node_process(fake, tmp_path, "--once", DRAGONFLY_BULK_SIZE="zero")
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "DRAGONFLY_BULK_SIZE" in stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except urllib.error.HTTPError:
        return True  # 503 while starting: it answers
    except OSError:
        return False
    return True


def test_second_node_on_the_same_metrics_port_exits_2_naming_the_variable(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """Two nodes on one host with the default metrics port: the second one stops at start with exit 2, a
    one-line reason naming DRAGONFLY_METRICS_PORT and no traceback, before it logs in or claims anything."""
    add_releases(fake, 2)
    port = free_port()
    env = {"DRAGONFLY_METRICS_PORT": str(port), "DRAGONFLY_METRICS_HOST": "127.0.0.1"}
    first = node_process(fake, tmp_path, **env)
    try:
        deadline = time.monotonic() + 30
        while not answers(port) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answers(port), first.stderr
        assert fake.wait_until(lambda: len(fake.results) == 2, timeout=30)  # the first node is at work
        logins = fake.logins
        (tmp_path / "second").mkdir()
        second = node_process(fake, tmp_path / "second", "--once", **env)
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 2, stderr
        assert stderr.startswith(
            "error: DRAGONFLY_METRICS_PORT (--metrics-port): cannot listen on 127.0.0.1:"
        )
        assert "in use" in stderr and "Traceback" not in stderr and len(stderr.splitlines()) == 1
        assert fake.logins == logins  # it stopped before logging in
        assert answers(port)  # the first node is unharmed
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0


def test_metrics_port_in_use_by_anything_names_the_flag_when_given(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        proc = node_process(
            fake, tmp_path, "--once", "--metrics-port", str(port), DRAGONFLY_METRICS_HOST="127.0.0.1"
        )
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "DRAGONFLY_METRICS_PORT (--metrics-port)" in stderr and "Traceback" not in stderr
    assert fake.claims == []


def test_standalone_node_writes_json_lines(fake_index: FakeIndex, rules_dir: Path, tmp_path: Path) -> None:
    fake_index.add("standalone-demo", wheel("standalone-demo", "1.0", {"demo/__init__.py": MARK}))
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dragonfly_hybrid.cli",
            "node",
            "--job",
            "standalone-demo==1.0",
            "--index-url",
            fake_index.url,
            "--rules",
            str(rules_dir),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("DRAGONFLY_")}
        | {"DRAGONFLY_METRICS_PORT": "0"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [line] = [json.loads(text) for text in out.read_text().splitlines()]
    assert line["status"] == "success" and line["name"] == "standalone-demo" and line["score"] == 5
    assert line["rules_matched"] == ["test_marker"]


def test_throughput_decides_how_much_is_claimed() -> None:
    from dragonfly_hybrid.node.pipeline import NodeOptions, ThroughputMeter, claim_limit

    options = NodeOptions(job_timeout=120, bulk_size=20, download_concurrency=8)
    assert claim_limit(None, options, threads=2) == 12  # nothing measured: a scan's and a download's worth
    assert claim_limit(None, NodeOptions(bulk_size=5), threads=2) == 5  # never more than a bulk
    assert claim_limit(0.05, options, threads=2) == 3  # 1 job / 20 s: 3 fit in half a lease
    assert claim_limit(0.001, options, threads=2) == 1
    assert claim_limit(100.0, options, threads=2) == 40  # capped at twice the bulk size
    meter = ThroughputMeter(window=10)
    for t in (0.0, 1.0, 2.0, 3.0):
        meter.record(t)
    assert meter.rate(4.0) == pytest.approx(1.0)
    assert meter.rate(100.0) is None  # old events leave the window


def test_scans_still_running_when_the_grace_period_ends_are_cancelled(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    # One release that takes over 30 s to scan (SLOW_RULE on 1200 distinct members), a 1 s grace period:
    # the node must not wait for the scan to finish before it exits.
    fake.set_rules("slow-rules", {"slow.yar": SLOW_RULE})
    fake.add_release("slow", "1.0", distributions=[fake.host_file("slow-1.0.tar", slow_tarball(1200))])
    proc = node_process(fake, tmp_path, DRAGONFLY_GRACE_PERIOD="1")
    try:
        assert fake.wait_until(lambda: fake.count("files") >= 1, timeout=30), proc.stderr
        time.sleep(2)  # downloaded, and well into the scan
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert elapsed < 6, stderr  # the grace period and a prompt exit, not the rest of the scan
    assert "grace period over" in stderr
    assert fake.results == []  # left for the server to lease again


class _ServedRules:
    """A rules source serving one set (``RuleState`` asks nothing else of its source)."""

    def __init__(self, commit: str, sources: dict[str, str]) -> None:
        from dragonfly_hybrid.node.jobs import RulesPayload

        self.payload = RulesPayload(commit, sources)
        self.fetches = 0

    async def rules(self) -> object:
        self.fetches += 1
        return self.payload


def test_first_rules_compile_before_claims_and_load_from_the_cache_alongside(tmp_path: Path) -> None:
    from dragonfly_hybrid import Limits
    from dragonfly_hybrid.errors import RuleCompileError
    from dragonfly_hybrid.node.pipeline import RuleState

    good = {"m.yar": 'rule m { strings: $a = "DRAGONFLY_TEST_MARKER" condition: $a }'}
    cache = tmp_path / "rules-cache"

    async def first_start(source: _ServedRules) -> RuleState:
        state = RuleState(source, Limits(), 1, cache)  # type: ignore[arg-type]
        assert await state.start() is None, "sources never compiled here: compiled before anything else"
        assert state.scanner is not None and state.commit == source.payload.hash
        return state

    asyncio.run(first_start(_ServedRules("c1", good)))
    with pytest.raises(RuleCompileError):  # at start, before any claim: the node cannot start
        asyncio.run(first_start(_ServedRules("broken", {"b.yar": "rule b { condition: nope }"})))

    async def restart() -> None:
        source = _ServedRules("c1", good)
        state = RuleState(source, Limits(), 1, cache)  # type: ignore[arg-type]
        loading = await state.start()
        assert loading is not None and state.scanner is None, "in the cache: loaded in the background"
        scanner = await state.ensure("c1")  # a scan waits for the load, and fetches nothing again
        assert scanner is state.scanner and state.commit == "c1" and source.fetches == 1
        await loading

    asyncio.run(restart())


def test_the_nodes_scanner_skips_what_its_result_bodies_never_carry(tmp_path: Path) -> None:
    """The node's ``fast_scan`` rule state: only which rules matched which files reach a result body, so its
    Scanner neither keeps every matched string nor hashes the distributions; the watch service's does both."""
    from dragonfly_hybrid import Limits
    from dragonfly_hybrid.node.pipeline import RuleState

    rules = {"m.yar": 'rule m { strings: $a = "DRAGONFLY_TEST_MARKER" condition: $a }'}

    async def scanner_of(fast_scan: bool) -> tuple[bool, bool]:
        source = _ServedRules("c1", rules)
        state = RuleState(source, Limits(), 1, None, fast_scan=fast_scan)  # type: ignore[arg-type]
        await state.start()
        assert state.scanner is not None
        return state.scanner.fast_scan, state.scanner.digests

    assert asyncio.run(scanner_of(True)) == (True, False)
    assert asyncio.run(scanner_of(False)) == (False, True)


def test_inspector_urls_percent_encode_what_the_package_and_the_job_name(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """The contract's ``/project/{name}/{version}/{download path}/{file path}``, as a URL: each piece
    percent-encoded (the reference node builds it with a URL library), so a member named with a space,
    ``#``, ``?``, ``%``, a backslash, non-ASCII or a bidi override links to that member; ``..`` segments,
    which a browser resolves in any spelling, link to the distribution instead of to another project's page.
    (Once pasted in raw: ``#``/``?`` cut the link, ``..`` left ``/project/up/1.0/...`` for
    ``/project/other``.)"""
    member = "a b#c?d%e\\f/é\u202e.py"
    odd = fake.add_release("odd", "1.0", {member: MARK}, sdist=False)[0]
    escape = "x/../../../../../../../project/other/9/other-9.tar.gz/setup.py"
    up = fake.add_release("up", "1.0", distributions=[fake.host_file("up-1.0.zip", zip_of({escape: MARK}))])[
        0
    ]
    named = fake.add_release(
        "p q#", "1.0?/x", distributions=[fake.host_file("p.zip", zip_of({"m.py": MARK}))]
    )[0]
    run_node(settings_for(fake, tmp_path), once=True)
    urls = {s.body["name"]: s.body["inspector_url"] for s in fake.results}

    def path_of(url: str) -> str:
        return urllib.parse.urlsplit(url).path.lstrip("/")

    def encoded(path: str) -> str:
        return "/".join(urllib.parse.quote(part, safe="") for part in path.split("/"))

    base = "https://inspector.pypi.io/project"
    assert urls["odd"] == f"{base}/odd/1.0/{path_of(odd)}/{encoded(member)}"
    assert urls["up"] == f"{base}/up/1.0/{path_of(up)}/"
    assert urls["p q#"] == f"{base}/p%20q%23/1.0%3F%2Fx/{path_of(named)}/m.py"
    for url in urls.values():
        parts = urllib.parse.urlsplit(url)
        assert (parts.netloc, parts.query, parts.fragment) == ("inspector.pypi.io", "", ""), url
        assert "/../" not in url and url.isascii() and url.isprintable(), url


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()
