"""What the benchmarks ran on, gathered from the machine (``/proc``, ``/etc/os-release``, the tools).

Recorded in the ``--benchmark-json`` file (``machine_info["dfh"]``) and rendered by ``bench/report.py``;
``python -m bench.machine`` prints it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, key: str, sep: str = ":") -> str | None:
    for line in text.splitlines():
        name, found, value = line.partition(sep)
        if found and name.strip() == key:
            return value.strip().strip('"')
    return None


def _run(*argv: str, cwd: Path | None = None) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=cwd, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def describe() -> dict[str, object]:
    cpuinfo = _read("/proc/cpuinfo")
    meminfo = _read("/proc/meminfo")
    mem_kib = (_field(meminfo, "MemTotal") or "0 kB").split()[0]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    commit = _run("git", "rev-parse", "--short=12", "HEAD", cwd=REPO)
    dirty = _run("git", "status", "--porcelain", "--untracked-files=no", cwd=REPO)
    return {
        "cpu": _field(cpuinfo, "model name") or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "usable_cpus": usable,
        "ram_gb": round(int(mem_kib) * 1024 / 1e9, 1) if mem_kib.isdigit() else None,
        "os": _field(_read("/etc/os-release"), "PRETTY_NAME", "=") or platform.system(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "rustc": _run("rustc", "--version"),
        "yara_x_python": _version("yara-x"),
        "dragonfly_hybrid": _version("dragonfly-hybrid"),
        "commit": None if commit is None else commit + ("-dirty" if dirty else ""),
    }


if __name__ == "__main__":
    for key, value in describe().items():
        print(f"{key}: {value}")
