"""Every numeric setting and flag has a finite, sane range, checked at start (issue 15, configuration).

A value out of range, NaN or infinity stops ``node`` (and ``config``) with exit 2 and a message naming the
variable, and ``scan``/``watch`` with exit 2 naming the flag: never an internal error (exit 3), a traceback,
or a node that starts hundreds of threads and hangs. The node cases run the real entry point in a
subprocess, with no credentials: a bad value must be reported before anything else is looked at.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dragonfly_hybrid._core import MAX_NESTING_DEPTH
from dragonfly_hybrid.bounds import (
    MAX_BYTES,
    MAX_SCAN_TIMEOUT,
    MIN_THREADS_CAP,
    THREADS_PER_CORE,
    available_cores,
    max_threads,
)
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.node.settings import ConfigError, load_settings
from typer.testing import CliRunner

from tests.fakes.pypi import sdist, write

TOO_MANY_THREADS = str(100_000)
TWO_TO_THE_64 = str(2**64)  # 18446744073709551616: does not fit the core's u64 counters


pytestmark = pytest.mark.usefixtures("clean_env")


def flat(text: str) -> str:
    """CLI output with rich's error panel (box characters, wrapped lines) flattened to one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


# ---------------------------------------------------------------------------------------- settings

# (variable, value): the cases first, then every other numeric setting past its bound, NaN and
# infinity, negative values.
OUT_OF_RANGE = [
    ("DRAGONFLY_THREADS", TOO_MANY_THREADS),
    ("DRAGONFLY_SCAN_TIMEOUT", "inf"),
    ("DRAGONFLY_SCAN_TIMEOUT", "1e12"),
    ("DRAGONFLY_MAX_MEMBER_SIZE", TWO_TO_THE_64),
    ("DRAGONFLY_JOB_TIMEOUT", "inf"),
    ("DRAGONFLY_MAX_DEPTH", "1000000"),
    ("DRAGONFLY_MAX_DEPTH", str(MAX_NESTING_DEPTH + 1)),
    ("DRAGONFLY_SCAN_TIMEOUT", "nan"),
    ("DRAGONFLY_SCAN_TIMEOUT", "-inf"),
    ("DRAGONFLY_SCAN_TIMEOUT", "-1"),
    ("DRAGONFLY_SCAN_TIMEOUT", "0.00001"),  # below the core's 1 ms resolution
    ("DRAGONFLY_JOB_TIMEOUT", "nan"),
    ("DRAGONFLY_JOB_TIMEOUT", "-5"),
    ("DRAGONFLY_JOB_TIMEOUT", "1e12"),
    ("DRAGONFLY_LOAD_DURATION", "inf"),
    ("DRAGONFLY_LOAD_DURATION", "1e9"),
    ("DRAGONFLY_GRACE_PERIOD", "nan"),
    ("DRAGONFLY_GRACE_PERIOD", "1e9"),
    ("DRAGONFLY_HTTP_TIMEOUT", "inf"),
    ("DRAGONFLY_HTTP_TIMEOUT", "-1"),
    ("DRAGONFLY_BULK_SIZE", "1000000"),
    ("DRAGONFLY_DOWNLOAD_CONCURRENCY", "100000"),
    ("DRAGONFLY_SUBMIT_CONCURRENCY", "100000"),
    ("DRAGONFLY_MAX_SCAN_SIZE", TWO_TO_THE_64),
    ("DRAGONFLY_MAX_TOTAL_SIZE", TWO_TO_THE_64),
    ("DRAGONFLY_MAX_TOTAL_SIZE", "-1"),
    ("DRAGONFLY_MAX_MEMBERS", str(10**12)),
    ("DRAGONFLY_MAX_RATIO", str(10**12)),
    ("DRAGONFLY_METRICS_PORT", "-1"),
]


@pytest.mark.parametrize(("variable", "value"), OUT_OF_RANGE)
def test_out_of_range_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"(?m)^{variable}: ") as caught:
        load_settings()
    assert value not in str(caught.value)  # values are never echoed


def test_non_finite_values_in_the_toml_file_are_refused(tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", b"scan_timeout = inf\njob_timeout = nan\ngrace_period = -inf\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(toml)
    lines = str(caught.value).splitlines()[1:]
    assert sorted(line.split(":")[0] for line in lines) == [
        "DRAGONFLY_GRACE_PERIOD",
        "DRAGONFLY_JOB_TIMEOUT",
        "DRAGONFLY_SCAN_TIMEOUT",
    ]
    assert all("finite" in line for line in lines)


def test_threads_are_capped_at_a_few_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    cap = max_threads()
    assert cap == max(MIN_THREADS_CAP, THREADS_PER_CORE * available_cores())
    assert max_threads(1) == MIN_THREADS_CAP and max_threads(64) == 64 * THREADS_PER_CORE
    monkeypatch.setenv("DRAGONFLY_THREADS", str(cap))
    assert load_settings().threads == cap
    monkeypatch.setenv("DRAGONFLY_THREADS", str(cap + 1))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"DRAGONFLY_THREADS: must be at most {cap} " in str(caught.value)


def test_the_bounds_themselves_are_accepted_and_reach_the_core() -> None:
    settings = load_settings(
        overrides={
            "max_depth": MAX_NESTING_DEPTH,
            "max_member_size": MAX_BYTES,
            "max_total_size": MAX_BYTES,
            "scan_timeout": MAX_SCAN_TIMEOUT,
            "job_timeout": 86_400,
        }
    )
    limits = settings.limits()
    assert (limits.max_depth, limits.max_member_size, limits.timeout) == (32, MAX_BYTES, MAX_SCAN_TIMEOUT)


def test_a_value_from_a_flag_names_the_flag_too() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            overrides={"threads": 100_000, "job_timeout": math.inf, "bulk_size": None},
            flags={"threads": "--threads", "job_timeout": "--job-timeout", "bulk_size": "--bulk-size"},
        )
    lines = str(caught.value).splitlines()
    assert any(line.startswith("DRAGONFLY_THREADS (--threads): must be at most") for line in lines)
    assert "DRAGONFLY_JOB_TIMEOUT (--job-timeout): Input should be a finite number" in lines
    assert not any("--bulk-size" in line for line in lines)  # not given: not named


# -------------------------------------------------------------------------------- node, as a process


def node(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``dragonfly-hybrid node`` in a subprocess, with no credentials and only the given variables."""
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("DRAGONFLY_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", "node", "--once", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRAGONFLY_THREADS", TOO_MANY_THREADS),
        ("DRAGONFLY_SCAN_TIMEOUT", "inf"),
        ("DRAGONFLY_SCAN_TIMEOUT", "1e12"),
        ("DRAGONFLY_SCAN_TIMEOUT", "nan"),
        ("DRAGONFLY_MAX_MEMBER_SIZE", TWO_TO_THE_64),
        ("DRAGONFLY_JOB_TIMEOUT", "inf"),
        ("DRAGONFLY_JOB_TIMEOUT", "-1"),
        ("DRAGONFLY_MAX_DEPTH", "1000000"),
    ],
)
def test_node_refuses_at_start_with_exit_2_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    done = node(**{variable: value, "DRAGONFLY_RULES_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: invalid configuration:")
    assert f"\n{variable}: " in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "DRAGONFLY_CLIENT_ID" not in done.stderr  # the bad value is found before credentials


@pytest.mark.parametrize(
    ("flag", "value", "variable"),
    [
        ("--threads", TOO_MANY_THREADS, "DRAGONFLY_THREADS"),
        ("--job-timeout", "inf", "DRAGONFLY_JOB_TIMEOUT"),
        ("--bulk-size", "1000000", "DRAGONFLY_BULK_SIZE"),
    ],
)
def test_node_flags_are_bounded_and_named(flag: str, value: str, variable: str) -> None:
    done = node(flag, value)
    assert done.returncode == 2, done.stderr
    assert f"\n{variable} ({flag}): " in done.stderr
    assert "Traceback" not in done.stderr


def test_config_command_refuses_the_same_values() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("DRAGONFLY_")}
    environment["DRAGONFLY_MAX_DEPTH"] = "1000000"
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", "config"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "DRAGONFLY_MAX_DEPTH: " in done.stderr and done.stdout == ""


# ------------------------------------------------------------------------------------- scan and watch


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write(tmp_path / "in" / "ok-1.0.tar.gz", sdist("ok", "1.0", {"setup.py": b"print(1)\n"})[1])


SCAN_FLAGS = [
    ("--timeout", "inf"),
    ("--timeout", "nan"),
    ("--timeout", "1e12"),
    ("--timeout", "-1"),
    ("--max-member-size", TWO_TO_THE_64),
    ("--max-total-size", TWO_TO_THE_64),
    ("--max-download-size", TWO_TO_THE_64),
    ("--max-member-size", "0"),
    ("--max-depth", "1000000"),
    ("--max-depth", str(MAX_NESTING_DEPTH + 1)),
    ("--max-members", str(10**12)),
    ("--max-ratio", str(10**12)),
]


@pytest.mark.parametrize(("flag", "value"), SCAN_FLAGS)
def test_scan_flags_are_bounded_and_named(rules_dir: Path, archive: Path, flag: str, value: str) -> None:
    result = CliRunner().invoke(app, ["scan", "--rules", str(rules_dir), flag, value, str(archive)])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in flat(result.stderr)
    assert result.stdout == ""


def test_scan_accepts_the_bounds(rules_dir: Path, archive: Path) -> None:
    args = ["--max-depth", "32", "--timeout", "3600", "--max-member-size", "64G", "--threads", "1"]
    result = CliRunner().invoke(app, ["scan", "--rules", str(rules_dir), *args, str(archive)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["scan", "watch"])
def test_threads_flag_is_bounded_in_a_real_process(rules_dir: Path, archive: Path, command: str) -> None:
    """A subprocess with a timeout: before the bound, 100 000 threads started (and hung)."""
    args = [str(archive)] if command == "scan" else ["--once", "--index-url", "http://127.0.0.1:9/simple/"]
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", command, "--rules", str(rules_dir),
         "--threads", TOO_MANY_THREADS, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"Invalid value for '--threads': must be at most {max_threads()}" in flat(done.stderr)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("flag", "value"), [("--interval", "inf"), ("--interval", "nan"), ("--lease", "inf"), ("--lease", "1e12")]
)
def test_watch_durations_are_bounded_and_named(
    rules_dir: Path, tmp_path: Path, flag: str, value: str
) -> None:
    args = ["watch", "--once", "--store", str(tmp_path / "s.db"), "--rules", str(rules_dir),
            "--index-url", "http://127.0.0.1:9/simple/", flag, value]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in flat(result.stderr)
    assert not (tmp_path / "s.db").exists()  # refused before anything was opened
