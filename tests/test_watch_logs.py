"""What ``watch`` says and when it stops, as real processes against the fake index: an index whose project
list is not PEP 691 JSON stops the run at once (exit 2, one request, no re-download loop); findings are
logged at WARNING with score and rules; idle polls give a sign of life; none of the node's words
(jobs claimed, results submitted) appear."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.watch.source import PyPIWatchSource

from tests.fakes.pypi import HTML_TYPE, JSON_TYPE, MARKER, FakeFile, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"
CLEAN = b"print('hello')\n"
NODE_WORDS = ("claim", "submit", "job")


def watch_cli(
    index: FakeIndex, store: Path, rules_dir: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "watch", "--store", str(store),
               "--rules", str(rules_dir), "--index-url", index.url, "--threads", "2",
               "--log-format", "json", *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def records(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def publish(index: FakeIndex, name: str, version: str, body: bytes) -> None:
    files = [sdist(name, version, {"setup.py": body}), wheel(name, version, {f"{name}/__init__.py": body})]
    index.add(name, *(FakeFile(f, data) for f, data in files))


HTML_LIST = b'<!DOCTYPE html><html><body><a href="/simple/seed/">seed</a></body></html>'


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (HTML_LIST, "text/html", "answered text/html, not the PEP 691 JSON project list"),
        (HTML_LIST, HTML_TYPE, f"answered {HTML_TYPE}, not the PEP 691 JSON project list"),
        (b'{"meta": {"api-version": "1.0"}, "projects": [{"name": "se', JSON_TYPE, "JSONDecodeError"),
        (b'{"meta": {"api-version": "1.0"}, "projects": [{"name": "seed"}]}', JSON_TYPE, "KeyError"),
    ],
    ids=["html", "pep503-html", "truncated-json", "json-without-serials"],
)
def test_an_index_without_a_json_project_list_stops_the_watch_after_one_request(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, body: bytes, content_type: str, said: str
) -> None:
    fake_index.faults.project_list = (body, content_type)
    # Not --once: a transient failure would be retried forever; this one must stop the run.
    done = watch_cli(fake_index, tmp_path / "store.db", rules_dir, "--interval", "0.05")
    assert done.returncode == 2, done.stderr
    assert fake_index.requests.count("/simple/") == 1
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot watch this index: {fake_index.url}" in error and said in error
    assert "_last-serial" in error and "Traceback" not in done.stderr


def test_findings_are_warnings_idle_polls_say_so_and_no_node_words(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    publish(fake_index, "seed", "1.0", CLEAN)
    assert watch_cli(fake_index, store, rules_dir, "--once").returncode == 0  # the baseline
    publish(fake_index, "evil", "1.0", BAD)
    publish(fake_index, "good", "1.0", CLEAN)
    fake_index.faults.missing.add("broken-1.0.tar.gz")
    publish(fake_index, "broken", "1.0", CLEAN)
    busy = watch_cli(fake_index, store, rules_dir, "--once", "--log-level", "DEBUG")
    assert busy.returncode == 0, busy.stderr
    lines = records(busy.stderr)
    by_project = {line.get("project"): line for line in lines if str(line["message"]).startswith("release ")}
    evil, good, broken = by_project["evil"], by_project["good"], by_project["broken"]
    assert (evil["level"], evil["message"]) == ("warning", "release has findings")
    assert evil["score"] == 5 and evil["rules"] == "test_marker"
    assert (good["level"], good["message"]) == ("info", "release stored")
    assert broken["level"] == "warning" and "broken-1.0.tar.gz" in str(broken["error"])
    idle = watch_cli(fake_index, store, rules_dir, "--once")
    assert idle.returncode == 0, idle.stderr
    [alive] = [line for line in records(idle.stderr) if str(line["message"]).startswith("no new releases")]
    assert alive["level"] == "info" and "0 stored by this run so far" in str(alive["message"])
    for run in (busy, idle):
        said = run.stderr.lower()
        assert not [word for word in NODE_WORDS if word in said], run.stderr


def test_idle_polls_log_a_sign_of_life_at_the_first_then_periodically(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    publish(fake_index, "seed", "1.0", CLEAN)
    with Store(tmp_path / "store.db") as store:
        source = PyPIWatchSource(
            store, "rules", index_url=fake_index.url, clock=lambda: now[0], idle_notice=600.0
        )

        async def poll_at(moments: list[float]) -> None:
            for moment in moments:
                now[0] = moment
                assert await source.claim(10) == []

        with caplog.at_level(logging.INFO, logger="dragonfly_hybrid.watch"):
            asyncio.run(poll_at([0.0]))  # the baseline
            asyncio.run(poll_at([10.0, 100.0, 500.0, 620.0, 700.0, 1300.0]))
            asyncio.run(source.aclose())
    alive = [r for r in caplog.records if r.getMessage().startswith("no new releases")]
    assert len(alive) == 3  # at 10 (the first idle poll), 620 and 1300
    assert all(r.levelno == logging.INFO for r in alive)
