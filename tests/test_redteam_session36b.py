"""Red-team pass 20 (session 36) on the nineteenth pass's changes: ``interruptible`` (then a thread per
scan call; the caller now waits polling while the scan runs on the engine's pool) and ``Wide<T>`` argument
parsing in ``Limits(...)`` / ``Scanner(threads=...)``.

Each test fails on the code it was written against. The risky case runs in a child process under a
memory cap and a generous hang guard.
"""

from __future__ import annotations

import pytest
from dragonfly_hybrid import _core

from tests.test_api_redteam import last_json_line, run_child

# --- a scan that cannot get its thread ---------------------------------------------------------------


def test_a_scan_that_cannot_start_its_thread_is_not_a_panic() -> None:
    """``interruptible`` runs every ``scan_*`` on a new thread (``std::thread::scope`` + ``spawn``), and
    ``spawn`` panics when the OS refuses a thread (no memory for its stack, a pids/threads limit): every
    scan then raises ``pyo3_runtime.PanicException`` (a ``BaseException``: ``except Exception`` in a caller
    or the node does not catch it). The build before pass 19 scanned on the engine's pool, which already
    exists, and gave a verdict (``incomplete``: yara-x could not map its scratch memory). A fixed product
    spawns with ``std::thread::Builder::spawn_scoped`` and, when that fails, scans on the calling thread
    (without the signal checks) or raises an ordinary error (``MemoryError``/``OSError``), never a panic.
    Here the address space is capped at what the process has mapped plus 1 MiB once the Scanner (and its
    pool) exists, so that a new thread's 2 MiB stack cannot be mapped."""
    code, output = run_child(
        """
        import json, resource
        from dragonfly_hybrid import _core
        rules = _core.Rules.compile({"m.yar": 'rule m { strings: $a = "EVIL" condition: $a }'})
        scanner = _core.Scanner(rules, threads=1, content_cache=False)
        status = open("/proc/self/status").read()
        mapped = int(status.split("VmSize:")[1].split()[0]) * 1024
        cap = mapped + (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        outcome = {}
        try:
            outcome["verdict"] = scanner.scan_bytes(b"hello EVIL", "a.py").verdict
        except BaseException as err:
            outcome["raised"] = f"{type(err).__module__}.{type(err).__name__}"
        print(json.dumps(outcome))
        """
    )
    assert code == 0, output[-3000:]
    outcome = last_json_line(output)
    assert outcome.get("raised") != "pyo3_runtime.PanicException", (
        f"a scan that could not start its thread panicked: {outcome}\n{output[-1500:]}"
    )


# --- Wide<T>: values that are not the numbers they stand for ------------------------------------------


RULES = _core.Rules.compile({"a.yar": "rule a { condition: true }"})


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_total_size", True),
        ("max_members", True),
        ("max_depth", False),
        ("max_depth", True),
        ("timeout", True),
        ("threads", True),
    ],
)
def test_a_bool_is_not_taken_as_a_limit(argument: str, value: bool) -> None:
    """``Wide<T>`` extracts integers through ``__index__``, which a ``bool`` has: ``Limits(max_total_size=
    True)`` is a 1-byte total-size limit, ``Limits(max_depth=False)`` opens no nested archive,
    ``Limits(timeout=True)`` is one second and ``Scanner(threads=True)`` one thread, all silently (a
    flag passed to the wrong keyword). ``Scanner(digests=...)`` already tells bools apart. A fixed product
    refuses a bool with a TypeError or ValueError naming the argument."""
    with pytest.raises((TypeError, ValueError)) as raised:
        if argument == "threads":
            _core.Scanner(RULES, threads=value)
        else:
            _core.Limits(**{argument: value})
    text = str(raised.value) + " ".join(getattr(raised.value, "__notes__", []))
    assert argument in text


class Unprintable(int):
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("argument", ["max_total_size", "max_depth", "timeout", "threads"])
def test_the_error_for_a_value_without_a_repr_still_says_what_was_given(argument: str) -> None:
    """``Wide::extract`` takes the value's ``repr`` for the message and, when ``__repr__`` raises, uses an
    empty string: ``ValueError: max_total_size must be a positive integer below 2**64, got `` (nothing
    after "got"). A fixed product falls back to something that says what was given (its type, its
    integer value)."""
    value = Unprintable(-5)
    with pytest.raises(ValueError) as raised:
        if argument == "threads":
            _core.Scanner(RULES, threads=value)
        else:
            _core.Limits(**{argument: value})
    assert not str(raised.value).rstrip().endswith("got"), str(raised.value)
