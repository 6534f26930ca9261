"""Red-team findings against the Python API as a hostile or careless *caller* uses it (session 36).

Each test fails on the code it was written against. Cases that crash the interpreter (SIGSEGV, abort) or
would exhaust the machine's memory run in a child process, under a memory cap and a generous hang guard,
so that this suite survives them.
"""

from __future__ import annotations

import glob
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid import _core

from tests.fakes.pypi import SLOW_RULE, slow_tarball

HANG_GUARD = 120
"""Seconds a child may run before it counts as hung (the slowest child needs about 10 s today)."""
PACKAGE_DIR = Path(_core.__file__).resolve().parents[1]
"""The directory of the ``dragonfly_hybrid`` package this suite imported: the children import it too."""
REPO = Path(__file__).resolve().parents[1]

MARKER_RULE = 'rule test_marker { meta: weight = 5 strings: $m = "DRAGONFLY_TEST_MARKER" condition: $m }'

# Source for the children: a rule that reads each byte a hundred times (about 1 MB/s per thread) and a
# tarball of distinct random members, so that a scan takes seconds (as tests/fakes/pypi.py's SLOW_RULE and
# slow_tarball; copied so that a child needs nothing but the standard library and the extension).
SLOW_SCAN_PRELUDE = (
    f"import io, random, tarfile\nSLOW_RULE = {SLOW_RULE!r}\n{inspect.getsource(slow_tarball)}"
)
"""What a child needs to build a slow scan, taken from ``tests.fakes.pypi`` as source: a child may run
another Python, without this suite's packages (``jsonschema``) to import that module."""


def run_child(
    source: str, *, python: str = sys.executable, memory_cap: int | None = None, hang_guard: int = HANG_GUARD
) -> tuple[int, str]:
    """Run ``source`` in a new interpreter that imports this suite's package; its return code (negative:
    killed by that signal) and its output. ``memory_cap``: RLIMIT_AS in bytes, so that a blow-up ends
    the child instead of starving the machine; past ``hang_guard`` seconds the child is killed (SIGKILL:
    a hung main thread never runs a Python SIGTERM handler) and the test fails."""
    prelude = "import sys\n"
    if memory_cap is not None:
        prelude += f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({memory_cap}, {memory_cap}))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_DIR), str(REPO)]), "RUST_BACKTRACE": "0"}
    try:
        done = subprocess.run(
            [python, "-c", prelude + textwrap.dedent(source)],
            capture_output=True,
            text=True,
            timeout=hang_guard,
            env=env,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child hung for {hang_guard} s")
    return done.returncode, done.stdout + done.stderr


def last_json_line(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, f"the child printed no result:\n{output[-3000:]}"
    return json.loads(lines[-1])


# --- Ctrl-C during a scan in the main thread -------------------------------------------------------------


@pytest.mark.parametrize("method", ["scan_bytes", "scan_many", "scan_release", "scan_path"])
def test_ctrl_c_in_the_main_thread_stops_a_scan_before_it_finishes(method: str, tmp_path: Path) -> None:
    """SIGINT while ``Scanner.scan_*`` runs in the main thread: the engine holds no GIL but never runs the
    signal handler, so the whole scan (150 members of 64 KiB with the slow rule: about 10 s on one
    thread) runs to its end and its result is then thrown away for the KeyboardInterrupt. The call should
    check for signals while it waits, cancel the scan and raise KeyboardInterrupt within about a second:
    long before the last member is scanned."""
    archive = tmp_path / "slow.tar"
    code, output = run_child(
        SLOW_SCAN_PRELUDE
        + f"""
import json, os, signal, threading, time
from dragonfly_hybrid import _core
# Python's own Ctrl-C handler, as a terminal gives it: a child of a shell's background job without job
# control starts with SIGINT ignored, and Python then installs none (the signal would do nothing).
signal.signal(signal.SIGINT, signal.default_int_handler)
MEMBERS = 150
data = slow_tarball(MEMBERS)
path = {str(archive)!r}
open(path, "wb").write(data)
scanner = _core.Scanner(_core.Rules.compile({{"slow.yar": SLOW_RULE}}), threads=1, content_cache=False)
progress = _core.ScanProgress()
def interrupt():
    while progress.files < 1:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt, daemon=True).start()
interrupted = False
try:
    method = {method!r}
    if method == "scan_bytes":
        scanner.scan_bytes(data, "slow.tar", progress=progress)
    elif method == "scan_many":
        scanner.scan_many([("slow.tar", data, None)], progress=progress)
    elif method == "scan_release":
        scanner.scan_release("slow", "1.0", [("slow.tar", data, None)], progress=progress)
    else:
        scanner.scan_path(path, progress=progress)
except KeyboardInterrupt:
    interrupted = True
print(json.dumps({{"interrupted": interrupted, "files": progress.files, "members": MEMBERS,
                  "finished": progress.distributions}}))
"""
    )
    assert code == 0, output[-3000:]
    result = last_json_line(output)
    assert result["interrupted"], result
    assert result["finished"] == 0 and result["files"] < result["members"], (
        f"Ctrl-C was only seen after the whole scan ran ({result}): the engine never checks for signals"
    )


# --- a bytearray whose buffer export is not the bytearray's own ------------------------------------------


def python_with_buffer_protocol() -> str | None:
    """An interpreter (3.12 or later: classes may define ``__buffer__``) that can load the abi3 extension."""
    if sys.version_info >= (3, 12):
        return sys.executable
    candidates = [shutil.which(f"python3.{minor}") for minor in range(12, 16)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3.1[2-9]")))
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def test_a_bytearray_subclass_exporting_another_buffer_cannot_be_freed_while_it_is_scanned() -> None:
    """``BytesLike::extract`` pins a bytearray with ``memoryview(array)`` and then reads the array's own
    storage. Since Python 3.12 a subclass may define ``__buffer__``: the memoryview is then of whatever it
    returns, the array is not exported, and another thread may clear it while the scan reads its freed
    storage (SIGSEGV here). A subclass is now copied while the GIL is held (an exact bytearray is still
    pinned and read in place): the resize goes through, and the scan reads the whole content it was
    given."""
    python = python_with_buffer_protocol()
    if python is None:
        pytest.skip("needs a Python 3.12 or later to define __buffer__")
    code, output = run_child(
        SLOW_SCAN_PRELUDE
        + f"""
import importlib.util, json, threading, time
spec = importlib.util.spec_from_file_location("dragonfly_hybrid._core", {_core.__file__!r})
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)

class Decoy(bytearray):
    def __buffer__(self, flags):
        return memoryview(b"decoy")

array = Decoy(slow_tarball(40))
scanner = core.Scanner(core.Rules.compile({{"slow.yar": SLOW_RULE}}), threads=1, content_cache=False)
progress = core.ScanProgress()
outcome = {{}}
def resize():
    while progress.files < 1:
        time.sleep(0.01)
    try:
        array.clear()
        outcome["resize"] = "done"
        junk = [bytes(range(256)) * 4096 for _ in range(16)]  # the freed memory reused
    except BufferError:
        outcome["resize"] = "BufferError"
thread = threading.Thread(target=resize, daemon=True)
thread.start()
try:
    result = scanner.scan_bytes(array, "x.tar", progress=progress)
    outcome["scan"] = result.verdict
except TypeError as err:
    outcome["scan"] = "TypeError"
    outcome["resize"] = "not started"
    progress.cancel()
print(json.dumps(outcome))
""",
        python=python,
    )
    assert code == 0, f"the scan crashed (return code {code}) reading a freed bytearray:\n{output[-2000:]}"
    outcome = last_json_line(output)
    assert outcome == {"resize": "done", "scan": "findings"}, outcome


# --- scan_path of a file whose size lies ----------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="needs Linux's /proc/self/pagemap")
@pytest.mark.parametrize("method", ["scan_path", "scan_many"])
def test_a_file_longer_than_its_stated_size_is_read_no_further_than_the_total_size_limit(method: str) -> None:
    """``read_limited`` checks ``max_total_size`` against the file's ``st_size`` only, then reads to its
    end. A procfs file states 0 bytes and may hold any amount (/proc/self/pagemap: 8 bytes per page of
    the address space, some 256 GiB), as may a file still being written: the scan reads until memory runs
    out (the process aborts here under a 2 GiB cap; without one it takes the machine's memory). The fixed
    engine reads at most the limit and reports the rest unscanned (``total-size-exceeded``)."""
    code, output = run_child(
        f"""
import json
from dragonfly_hybrid import _core
scanner = _core.Scanner(_core.Rules.compile({{"m.yar": {MARKER_RULE!r}}}),
                        _core.Limits(max_total_size=1 << 20), threads=1)
if {method!r} == "scan_path":
    result = scanner.scan_path("/proc/self/pagemap")
else:
    (result,) = scanner.scan_many([("pagemap", "/proc/self/pagemap", None)])
print(json.dumps({{"verdict": result.verdict, "kinds": [issue.kind for issue in result.issues]}}))
""",
        memory_cap=2 << 30,
    )
    assert code == 0, f"a 1 MiB-limited scan ran out of memory (return code {code}):\n{output[-1500:]}"
    result = last_json_line(output)
    assert result["verdict"] == "incomplete" and "total-size-exceeded" in result["kinds"], result


# --- distributions_json's level --------------------------------------------------------------------------


@pytest.mark.parametrize("level", [10**9, 2**62, 2**63 - 1, 2**64, -1])
@pytest.mark.parametrize("function", ["distributions_json", "write_distributions_json"])
def test_an_indent_level_the_writer_cannot_honour_is_a_clear_error(function: str, level: int) -> None:
    """``Layout::Indented { level }`` indents by ``2 * level + 2`` spaces, unchecked: 10**9 asks for 2 GB
    of spaces per line (an abort under a 1 GiB cap, else memory exhaustion), 2**62 a PanicException
    ("capacity overflow"), and 2**63 - 1 wraps to an indent of 0 whose closing ``indent - 2`` wraps again:
    the text comes back truncated, invalid JSON, without an error. The fixed API bounds ``level`` and
    raises ValueError naming it."""
    code, output = run_child(
        f"""
import json, os, tempfile
from dragonfly_hybrid import _core
scanner = _core.Scanner(_core.Rules.compile({{"m.yar": {MARKER_RULE!r}}}), threads=1)
dist = scanner.scan_bytes(b"DRAGONFLY_TEST_MARKER", "x.py")
outcome = {{}}
try:
    if {function!r} == "distributions_json":
        text = _core.distributions_json([dist], level={level})
    else:
        with tempfile.TemporaryFile() as out:
            _core.write_distributions_json([dist], out.fileno(), level={level})
            out.seek(0)
            text = out.read().decode()
    try:
        json.loads(text)
        outcome["returned"] = "valid JSON"
    except ValueError:
        outcome["returned"] = "invalid JSON"
except ValueError as err:
    outcome["raised"] = "ValueError"
    outcome["names_level"] = "level" in str(err)
except BaseException as err:
    outcome["raised"] = type(err).__name__
print(json.dumps(outcome))
""",
        memory_cap=1 << 30,
    )
    assert code == 0, f"the process died (return code {code}):\n{output[-1500:]}"
    outcome = last_json_line(output)
    assert outcome == {"raised": "ValueError", "names_level": True}, outcome


# --- arguments out of range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["max_member_size", "max_total_size", "max_members", "max_ratio", "max_depth"]
)
def test_a_limit_too_large_for_any_integer_type_is_a_value_error_naming_it(name: str) -> None:
    """``Limits.new`` takes each limit as an i128 so that "a negative or huge value is a ValueError naming
    the limit, not an OverflowError from the conversion" (its comment); past 2**127 the conversion still
    raises a bare OverflowError ("Python int too large to convert to C long") that names nothing."""
    with pytest.raises(ValueError, match=name):
        dh.Limits(**{name: 2**200})


@pytest.mark.parametrize("threads", [-1, 2**64])
def test_a_negative_or_huge_thread_count_is_a_value_error_naming_threads(threads: int) -> None:
    """``threads=0`` and ``threads=10**6`` are ValueErrors naming ``threads``; -1 and 2**64 fail in the
    conversion to ``usize`` first: OverflowError "can't convert negative int to unsigned", which does not
    say which argument."""
    with pytest.raises(ValueError, match="threads"):
        dh.Scanner(dh.Rules.compile({"m.yar": MARKER_RULE}), threads=threads)
