"""Node, metrics endpoint and watch pass 31: a review of pass 30 (21829fd, 01902e4), with real HTTP on
127.0.0.1 against the fake mainframe, real sockets, real processes and signals. The test of a fix fails
on the code before it; the ``review`` tests pin what held:

* ``Node.run`` cancelled (its caller's task, ``asyncio.run``'s Ctrl-C with ``handle_signals=False``) while
  its first rule set was fetched left the fetch running on its own: it retried ``GET /rules`` after the
  node was gone, then installed the rules or failed with nobody to take its error. It is cancelled too.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

from dragonfly_hybrid._core import Limits
from dragonfly_hybrid.node.mainframe import MainframeClient
from dragonfly_hybrid.node.metrics import MetricsServer, NodeMetrics
from dragonfly_hybrid.node.pipeline import Node, NodeOptions, RuleState
from dragonfly_hybrid.node.sinks import MainframeSink
from dragonfly_hybrid.node.sources import MainframeSource

from tests.fakes.mainframe import FakeMainframe
from tests.test_metrics_endpoint import connect, until
from tests.test_node import add_releases, free_port, node_process
from tests.test_node_pass27 import with_client
from tests.test_node_pass30 import fake as fake  # a fixture: a fake mainframe
from tests.test_redteam_watch_crash import HANG_GUARD
from tests.test_watch_logs import stopped


def health(port: int) -> int:
    """The status ``/healthz`` answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=HANG_GUARD) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


# --- the first rule set's fetch -----------------------------------------------------------------------------


def test_a_node_cancelled_while_its_first_rule_set_is_fetched_leaves_no_fetch_running(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """``GET /rules`` answered 503 (retried): the task running the node is cancelled. Nothing of the node
    is left running once it has ended: the fetch was left to retry on its own."""
    fake.fail_next("rules", 503, count=1_000_000)

    async def scenario(client: MainframeClient) -> list[asyncio.Task[object]]:
        state = RuleState(MainframeSource(client), Limits(), 1, tmp_path / "cache", fast_scan=True)
        node = Node(MainframeSource(client), MainframeSink(client), state, NodeOptions(), threads=1)
        run = asyncio.ensure_future(node.run())
        while fake.count("rules", 503) < 1:
            await asyncio.sleep(0.01)
        run.cancel()
        try:
            await run
        except asyncio.CancelledError:
            pass
        for _ in range(5):  # the cancellations asked for are carried out
            await asyncio.sleep(0)
        return [task for task in asyncio.all_tasks() if "RuleState.start" in repr(task.get_coro())]

    assert with_client(fake, scenario) == []


def test_review_a_node_signalled_while_its_first_rules_are_slow_is_unhealthy_then_stops_with_0(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """What holds: while the first ``GET /rules`` waits for its answer, ``/healthz`` says 503 (no rules);
    a SIGTERM stops the node at once with 0, no traceback, no task left behind (asyncio's debug mode
    says so on stderr), nothing claimed."""
    add_releases(fake, 2)
    fake.delay("rules", HANG_GUARD)
    port = free_port()
    child = node_process(fake, tmp_path, DRAGONFLY_METRICS_PORT=str(port), PYTHONASYNCIODEBUG="1")
    try:
        assert fake.wait_until(lambda: fake.count("root") >= 1, timeout=HANG_GUARD)  # then GET /rules
        assert health(port) == 503
        child.send_signal(signal.SIGTERM)
        status, stderr = stopped(child)
    finally:
        fake.delay("rules", 0)
    assert status == 0, stderr
    assert "Traceback" not in stderr and "never retrieved" not in stderr and "error" not in stderr.lower()
    assert "rules loaded" not in stderr and not fake.claims


# --- the metrics endpoint -----------------------------------------------------------------------------------


def test_review_health_checks_are_answered_through_a_flood_of_connections_opened_and_closed() -> None:
    """What holds: four threads open and close connections as fast as they can (1,000 at least, some
    reset) while health checks are asked in turn: every one is answered 200, and once the flood is over
    the endpoint holds no connection."""
    server = MetricsServer(NodeMetrics(), lambda: True, "127.0.0.1", 0).start()
    opened = 0
    lock = threading.Lock()
    done = threading.Event()

    def flood(reset: bool) -> None:
        nonlocal opened
        while not done.is_set():
            conn = connect(server.port)
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
            with lock:
                opened += 1

    floods = [threading.Thread(target=flood, args=(i % 2 == 0,)) for i in range(4)]
    for thread in floods:
        thread.start()
    answers = []
    try:
        while opened < 1000 or len(answers) < 20:
            answers.append(health(server.port))
    finally:
        done.set()
        for thread in floods:
            thread.join()
    try:
        assert set(answers) == {200}
        assert until(lambda: not server._server._open)
    finally:
        server.close()


def test_review_close_hangs_up_on_the_connections_still_open() -> None:
    """What holds: the node done, ``close`` ends the connections still open (an idle one, one half a
    request in): each reads the end of its stream, none keeps its thread."""
    server = MetricsServer(NodeMetrics(), lambda: True, "127.0.0.1", 0).start()
    idle, half = connect(server.port), connect(server.port)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    assert until(lambda: len(server._server._open) == 2)
    server.close()
    with idle, half:
        assert idle.recv(1) == b"" and half.recv(1) == b""
