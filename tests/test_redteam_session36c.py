"""Red-team pass 21 (session 36) on pass 20's change: a scan's caller now waits on the engine's pool and is
asked every 100 ms whether to stop (``run_polling`` / ``PendingRelease::block_polling`` in
rust/core/src/engine.rs); the binding's question re-acquires the GIL and runs Python's signal handlers
(``interruptible`` in rust/python/src/lib.rs).

``block_polling`` asks that question while it holds the release's ``ReleaseWaiter`` mutex (the guard
``wait_timeout`` hands back). A driver on the pool that finishes one of that release's distributions
blocks in ``ReleaseWaiter::finish`` on the same mutex for as long as the question takes: re-acquiring the
GIL, and then whatever Python signal handler runs. So the engine's pool stops while another thread holds
the GIL, and a handler that needs the pool (a scan, or waiting for another thread's scan) never returns.
Pass 19's thread per call asked with no lock held, and ``run_polling`` (``scan_bytes``, ``scan_path``,
``scan_many``) holds none either: only ``scan_release`` is affected.

Each test fails on the code it was written against. The children that would hang run under a short hang
guard of their own (SIGKILL), so that a failure costs under a minute rather than the shared 120 s.
"""

from __future__ import annotations

import pytest

from tests.test_api_redteam import SLOW_SCAN_PRELUDE, last_json_line, run_child

HANG_GUARD = 45
"""Seconds a child may run (each needs under 10 s when nothing hangs): a failure costs under a minute."""


def run_guarded(source: str) -> tuple[int, str]:
    return run_child(source, hang_guard=HANG_GUARD)


# --- a signal handler run from scan_release's poll --------------------------------------------------------


@pytest.mark.parametrize("inner", ["scan_bytes", "scan_release"])
def test_a_signal_handler_that_scans_while_scan_release_waits_does_not_deadlock(inner: str) -> None:
    """A Python signal handler (here SIGUSR1) that scans something small with the same ``Scanner`` while
    the main thread is in ``scan_release``: the handler runs inside ``block_polling``'s question, with
    the outer release's waiter mutex held; the pool's drivers finish outer distributions and block on
    that mutex in ``ReleaseWaiter::finish``, so the handler's scan never gets a thread, and the process
    hangs for good (even SIGTERM is a Python handler that never runs). The same handler during
    ``scan_bytes`` or ``scan_many`` (``run_polling``, no lock held) returns in about a second, and before
    pass 20 it did during ``scan_release`` too. A fixed product asks its question without holding the
    waiter's lock: the handler's scan completes, then the outer release completes."""
    code, output = run_guarded(
        SLOW_SCAN_PRELUDE
        + f"""
import json, os, signal, threading, time
from dragonfly_hybrid import _core
scanner = _core.Scanner(_core.Rules.compile({{"slow.yar": SLOW_RULE}}), threads=2, content_cache=False)
items = [(f"d{{i}}.tar", slow_tarball(15, seed=i), None) for i in range(4)]
progress = _core.ScanProgress()
nested = {{}}
def handler(signum, frame):
    if {inner!r} == "scan_bytes":
        nested["verdict"] = scanner.scan_bytes(b"hello", "a.py").verdict
    else:
        nested["verdict"] = scanner.scan_release("n", "1", [("a.py", b"hello", None)]).verdict
signal.signal(signal.SIGUSR1, handler)
def poke():
    while progress.files < 1:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGUSR1)
threading.Thread(target=poke, daemon=True).start()
release = scanner.scan_release("outer", "1", items, progress=progress)
print(json.dumps({{"nested": nested, "complete": release.complete}}))
"""
    )
    assert code == 0, output[-3000:]
    outcome = last_json_line(output)
    assert outcome == {"nested": {"verdict": "findings"}, "complete": True}, outcome


def test_a_sigterm_handler_that_waits_for_a_worker_scan_does_not_deadlock() -> None:
    """A common graceful-shutdown handler: SIGTERM sets a stop flag and joins the worker thread, whose
    ``scan_release`` on the same ``Scanner`` is queued behind the main thread's release. The handler runs
    in the main thread's ``block_polling`` question with the main release's waiter mutex held; the
    drivers finishing the main release's distributions block on it, the worker's release is never
    scanned, ``join`` never returns: a permanent hang (SIGTERM from outside cannot end it either). A fixed
    product lets the pool go on while the handler runs: the worker's release finishes, the handler
    returns, and the main release completes."""
    code, output = run_guarded(
        SLOW_SCAN_PRELUDE
        + """
import json, os, signal, threading, time
from dragonfly_hybrid import _core
scanner = _core.Scanner(_core.Rules.compile({"slow.yar": SLOW_RULE}), threads=2, content_cache=False)
main_items = [(f"m{i}.tar", slow_tarball(5, seed=i), None) for i in range(6)]
progress = _core.ScanProgress()
stop = threading.Event()
done = {}
def work():
    while progress.files < 1:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    done["worker"] = scanner.scan_release("w", "1", [("w.py", b"small", None)]).verdict
worker = threading.Thread(target=work)
def graceful(signum, frame):
    stop.set()
    worker.join()
signal.signal(signal.SIGTERM, graceful)
worker.start()
release = scanner.scan_release("m", "1", main_items, progress=progress)
print(json.dumps({"worker": done, "complete": release.complete, "stopped": stop.is_set()}))
"""
    )
    assert code == 0, output[-3000:]
    outcome = last_json_line(output)
    assert outcome == {"worker": {"worker": "findings"}, "complete": True, "stopped": True}, outcome


# --- the GIL held elsewhere while scan_release waits -----------------------------------------------------


def test_a_thread_holding_the_gil_does_not_stop_the_pool_during_scan_release() -> None:
    """While another thread holds the GIL (here a C call that keeps it: ``ctypes.PyDLL`` does not release
    it; a long regex, ``json.dumps`` of a large report, a C extension), the thread waiting in
    ``scan_release`` asks its question: ``Python::attach`` blocked for the GIL with the release's waiter
    mutex held, and the first driver that finished one of the release's distributions blocked on that
    mutex in ``ReleaseWaiter::finish``: on one thread the whole engine stopped until the GIL came back.
    The scan holds no GIL and needs none: a release of about half a second of scanning, started just
    before a 5-second hold, is finished when the hold ends (with the lock held: 1 or 2 of its 8)."""
    code, output = run_guarded(
        SLOW_SCAN_PRELUDE
        + """
import ctypes, json, random, threading, time
from dragonfly_hybrid import _core
scanner = _core.Scanner(_core.Rules.compile({"slow.yar": SLOW_RULE}), threads=1, content_cache=False)
rng = random.Random(1)
items = [(f"d{i}.py", rng.randbytes(60_000), None) for i in range(8)]
progress = _core.ScanProgress()
worker = threading.Thread(target=lambda: scanner.scan_release("a", "1", items, progress=progress))
worker.start()
time.sleep(0.05)
ctypes.PyDLL(None).usleep(5_000_000)  # the GIL held: no other Python code runs meanwhile
finished = progress.distributions
worker.join()
print(json.dumps({"finished during the hold": finished, "of": len(items)}))
"""
    )
    assert code == 0, output[-3000:]
    outcome = last_json_line(output)
    assert outcome["finished during the hold"] == outcome["of"], outcome
