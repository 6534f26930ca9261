"""Node pass 33: three problems session 38's notes left, with real archives, real HTTP on 127.0.0.1 and real
processes. Each test fails on the code before its fix:

* a release submitted with findings though part of it was not scanned was logged with ``unscanned=None``
  (the release's own failure reason is None once it has findings): the line names what was not scanned,
  a distribution never downloaded or a member past a limit;
* a standalone run (``--job``/``--jobs-file``) whose scan of a release failed inside the node (a bug: an
  ``internal-error``) wrote no line for it and exited 0, as if the list were done: nobody claims a release
  of a list again, so it gets a failure line naming the error;
* the metrics endpoint's ``Server`` header told any client the exact Python version.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, cast

from dragonfly_hybrid._core import Limits, ReleaseResult, Scanner
from dragonfly_hybrid.node.metrics import MetricsServer, NodeMetrics
from dragonfly_hybrid.node.pipeline import Node, NodeOptions, RuleState
from dragonfly_hybrid.node.sinks import JsonLinesSink
from dragonfly_hybrid.node.sources import LocalSource
from dragonfly_hybrid.rules_loader import load_rules

from tests.fakes.pypi import FakeIndex, wheel
from tests.test_node import MARK
from tests.test_node_pass29 import clean_env
from tests.test_redteam_watch_crash import HANG_GUARD


def node(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "node", "--metrics-port", "0", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env={**clean_env(), **env},
        cwd=cwd,
        check=False,
    )


def partial_line(stderr: str) -> str:
    [line] = [text for text in stderr.splitlines() if "submitting findings for a partly unscanned" in text]
    return line


def test_findings_with_a_distribution_never_downloaded_log_that_distribution(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    fake_index.add(
        "mixed",
        wheel("mixed", "1.0", {"mixed/__init__.py": MARK}),
        ("mixed-1.0.tar.gz", b"cut off on every try" * 100),
    )
    fake_index.faults.drop.add("mixed-1.0.tar.gz")
    done = node("--job", "mixed==1.0", "--index-url", fake_index.url, "-r", str(rules_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [result] = [json.loads(text) for text in done.stdout.splitlines()]
    assert result["status"] == "success" and result["rules_matched"] == ["test_marker"]
    line = partial_line(done.stderr)
    assert "unscanned=None" not in line
    assert "mixed-1.0.tar.gz: TruncatedBody after 3 tries" in line


def test_findings_with_a_member_past_a_limit_log_that_member(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """The wheel's marked file is scanned; a larger member is past ``DRAGONFLY_MAX_MEMBER_SIZE``: the line
    names the member and the issue, as a failure's reason would."""
    big = b"# padding\n" * 1000
    fake_index.add("limited", wheel("limited", "1.0", {"limited/__init__.py": MARK, "limited/big.py": big}))
    args = ["--job", "limited==1.0", "--index-url", fake_index.url, "-r", str(rules_dir)]
    done = node(*args, cwd=tmp_path, DRAGONFLY_MAX_MEMBER_SIZE="4096")
    assert done.returncode == 0, done.stderr
    [result] = [json.loads(text) for text in done.stdout.splitlines()]
    assert result["status"] == "success" and result["rules_matched"] == ["test_marker"]
    line = partial_line(done.stderr)
    assert "unscanned=None" not in line
    assert "limited-1.0-py3-none-any.whl: limited/big.py: member-too-large" in line


class _FailingFor:
    """A scanner whose scan of the release ``name`` raises (what a bug in the node would do); the others
    are scanned by ``scanner``."""

    def __init__(self, scanner: Scanner, name: str) -> None:
        self._scanner, self._name = scanner, name

    def scan_release(self, name: str, version: str, *args: Any, **kwargs: Any) -> ReleaseResult:
        if name == self._name:
            raise RuntimeError("the scanner went away")
        return self._scanner.scan_release(name, version, *args, **kwargs)


class _BrokenFor(RuleState):
    async def ensure(self, wanted: str) -> Scanner:
        return cast(Scanner, _FailingFor(await super().ensure(wanted), "broken"))


def test_a_standalone_release_whose_scan_fails_inside_the_node_gets_a_failure_line(
    fake_index: FakeIndex, rules_dir: Path
) -> None:
    [broken] = fake_index.add("broken", wheel("broken", "1.0", {"broken/__init__.py": MARK}))
    [fine] = fake_index.add("fine", wheel("fine", "1.0", {"fine/__init__.py": MARK}))
    rules = load_rules([rules_dir])
    stream = io.StringIO()

    async def scenario() -> None:
        urls = {
            name: [fake_index.file_url(name, file.filename)]
            for name, file in (("broken", broken), ("fine", fine))
        }
        source = LocalSource([("broken", "1.0", urls["broken"]), ("fine", "1.0", urls["fine"])], rules.hash)
        state = _BrokenFor(source, Limits(), 2, None, initial=(rules, rules.hash), fast_scan=True)
        node = Node(source, JsonLinesSink(stream), state, NodeOptions(once=True, leased=False), threads=2,
                    metrics=NodeMetrics())  # fmt: skip
        await asyncio.wait_for(node.run(), HANG_GUARD)

    asyncio.run(scenario())
    lines = {line["name"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert set(lines) == {"broken", "fine"}
    assert lines["fine"]["status"] == "success" and lines["fine"]["rules_matched"] == ["test_marker"]
    assert lines["broken"]["status"] == "failure"
    assert lines["broken"]["reason"] == "not scanned: internal error: RuntimeError: the scanner went away"


def test_the_metrics_endpoint_does_not_tell_the_python_version() -> None:
    """``http.server`` answers ``Server: BaseHTTP/0.6 Python/3.11.7`` by default: on 0.0.0.0 (the Docker
    image), anyone who can reach the port learns the interpreter's exact version."""
    server = MetricsServer(NodeMetrics(), lambda: True, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=HANG_GUARD) as answer:
            assert answer.status == 200
            assert answer.headers["Server"] == "dragonfly-hybrid"
    finally:
        server.close()
