"""An sdist's in-tree build backend: pip builds an sdist by importing the module its pyproject.toml names
(`[build-system] build-backend`, setuptools' when it names none) with `backend-path` first on `sys.path`, so
a module found there runs at install time as a setup.py does, whatever its name. The engine scans each
module that import may run again under a setup.py name, with an informational `ambiguous` issue.

The differential at the end holds the engine against pip's own hook caller (the `pyproject_hooks` pip
vendors, and the current one from PyPI, a test dependency: before 1.1 it splits `backend-path` entries on
`:`, later ones do not): random trees and pyproject.toml files are built, the hook caller imports the
backend in a subprocess whose every opened file is recorded by an audit hook, and every `.py` file it
opened in the tree must be one the engine scanned as the backend."""

from __future__ import annotations

import gzip
import importlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dragonfly_hybrid as dh
import pytest

from tests.archive_gen import unicode_path_extra, zip_of

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
SETUP = (FIXTURES / "install_cmdclass_shell" / "positive" / "setup.py").read_bytes()
SETUP_ONLY_RULE = "install_cmdclass_shell"  # filetype "setup.py": no other name gets it
READING = "<as the sdist's build backend>"
IN_TREE = b'[build-system]\nrequires = []\nbuild-backend = "backend:api"\nbackend-path = ["_build"]\n'


@pytest.fixture(scope="module")
def scanner() -> dh.Scanner:
    return dh.Scanner(dh.bundled_rules(), threads=1)


def targz_of(files: Sequence[tuple[str, bytes]], links: Mapping[str, str] | None = None) -> bytes:
    """A tar.gz of files, then of links (`name: target`; a target starting `hard:` is a hard link's)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE if target.startswith("hard:") else tarfile.SYMTYPE
            info.linkname = target.removeprefix("hard:")
            tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def backend_paths(result: dh.DistributionResult) -> set[str]:
    """The members the engine scanned as the build backend, by their issue."""
    return {i.path for i in result.issues if i.kind == "ambiguous" and "build backend" in i.message}


def hits(result: dh.DistributionResult) -> dict[str, set[str]]:
    return {f.path: {m.identifier for m in f.matches} for f in result.files}


@pytest.mark.parametrize("pyproject_first", [True, False])
@pytest.mark.parametrize("container", ["tar.gz", "zip"])
def test_a_backend_module_gets_the_setup_rules(
    scanner: dh.Scanner, container: str, pyproject_first: bool
) -> None:
    files = [("p-1.0/pyproject.toml", IN_TREE), ("p-1.0/_build/backend.py", SETUP), ("p-1.0/p.py", b"x=1")]
    if not pyproject_first:
        files.reverse()
    data = targz_of(files) if container == "tar.gz" else zip_of(files)
    result = scanner.scan_bytes(data, f"p-1.0.{container}")
    found = hits(result)
    assert SETUP_ONLY_RULE in found.get(f"p-1.0/_build/backend.py{READING}", set()), found
    assert SETUP_ONLY_RULE not in found.get("p-1.0/_build/backend.py", set()), "not for its own name"
    (issue,) = [i for i in result.issues if i.kind == "ambiguous"]
    assert issue.path == "p-1.0/_build/backend.py" and "backend-path" in issue.message and not issue.unscanned
    assert result.complete


@pytest.mark.parametrize(
    ("files", "links", "scanned"),
    [
        # `_build` a symlink to the directory holding the module.
        ([("p-1.0/impl/backend.py", SETUP)], {"p-1.0/_build": "impl"}, "p-1.0/impl/backend.py"),
        # The module itself a symlink, or a hard link, to another member.
        ([("p-1.0/impl.py", SETUP)], {"p-1.0/_build/backend.py": "../impl.py"}, "p-1.0/impl.py"),
        ([("p-1.0/impl.py", SETUP)], {"p-1.0/_build/backend.py": "hard:p-1.0/impl.py"}, "p-1.0/impl.py"),
    ],
)
def test_a_module_reached_through_links_is_scanned_as_the_backend(
    scanner: dh.Scanner, files: list[tuple[str, bytes]], links: dict[str, str], scanned: str
) -> None:
    data = targz_of([("p-1.0/pyproject.toml", IN_TREE), *files], links)
    result = scanner.scan_bytes(data, "p-1.0.tar.gz")
    assert SETUP_ONLY_RULE in hits(result).get(f"{scanned}{READING}", set()), hits(result)
    assert result.complete


@pytest.mark.parametrize("target", ["real.toml", "hard:p-1.0/real.toml"])
def test_a_pyproject_that_is_a_link_leaves_the_scan_incomplete(scanner: dh.Scanner, target: str) -> None:
    files = [("p-1.0/real.toml", IN_TREE), ("p-1.0/_build/backend.py", SETUP)]
    result = scanner.scan_bytes(targz_of(files, {"p-1.0/pyproject.toml": target}), "p-1.0.tar.gz")
    (issue,) = [i for i in result.issues if i.kind == "ambiguous"]
    assert issue.path == "p-1.0/pyproject.toml" and "is a link" in issue.message and issue.unscanned
    assert not result.complete


def test_the_leading_directory_of_either_zip_name_reading(scanner: dh.Scanner) -> None:
    # Python 3.11's zipfile names the last entry `p-1.0/README` (pip strips `p-1.0`); 3.12 and later take its
    # Unicode Path field, `q/README`, and strip nothing. Both roots are looked at.
    extra = unicode_path_extra(b"p-1.0/README", "q/README")
    files = [
        ("p-1.0/pyproject.toml", IN_TREE),
        ("p-1.0/_build/backend.py", SETUP),
        ("p-1.0/README", b"", {"extra": extra}),
    ]
    result = scanner.scan_bytes(zip_of(files), "p-1.0.zip")
    assert SETUP_ONLY_RULE in hits(result).get(f"p-1.0/_build/backend.py{READING}", set()), hits(result)


def test_without_backend_path_the_backend_comes_from_the_build_environment(scanner: dh.Scanner) -> None:
    pyproject = b'[build-system]\nrequires = ["flit_core"]\nbuild-backend = "backend"\n'
    files = [("p-1.0/pyproject.toml", pyproject), ("p-1.0/backend.py", SETUP)]
    result = scanner.scan_bytes(targz_of(files), "p-1.0.tar.gz")
    assert not result.issues and SETUP_ONLY_RULE not in str(hits(result))


def test_setuptools_from_the_tree_when_no_backend_is_named(scanner: dh.Scanner) -> None:
    # pip's default backend, `setuptools.build_meta`, imported with `backend-path` first on sys.path.
    pyproject = b'[build-system]\nrequires = []\nbackend-path = ["."]\n'
    files = [("p-1.0/pyproject.toml", pyproject), ("p-1.0/setuptools/__init__.py", SETUP)]
    result = scanner.scan_bytes(targz_of(files), "p-1.0.tar.gz")
    assert SETUP_ONLY_RULE in hits(result).get(f"p-1.0/setuptools/__init__.py{READING}", set())


def test_a_pyproject_the_engine_cannot_read_leaves_the_scan_incomplete(scanner: dh.Scanner) -> None:
    pyproject = b'[build-system\nbackend-path = ["."]\n'
    result = scanner.scan_bytes(targz_of([("p-1.0/pyproject.toml", pyproject)]), "p-1.0.tar.gz")
    (issue,) = result.issues
    assert issue.path == "p-1.0/pyproject.toml" and issue.kind == "ambiguous" and issue.unscanned
    assert "not TOML" in issue.message and not result.complete


@pytest.mark.parametrize("container", ["tar.gz", "zip"])
@pytest.mark.parametrize("entry", ["_build.zip", "_build.zip/sub"])
def test_modules_zipimport_serves_from_backend_path_get_the_setup_rules(
    scanner: dh.Scanner, container: str, entry: str
) -> None:
    # A file on sys.path is read as a zip (zipimport), a directory inside it too (`archive.zip/sub`).
    pyproject = f'[build-system]\nrequires = []\nbuild-backend = "pk.backend"\nbackend-path = ["{entry}"]\n'
    inner = entry.partition("/")[2]
    modules = [(f"{inner}/pk/__init__.py".lstrip("/"), b""), (f"{inner}/pk/backend.py".lstrip("/"), SETUP)]
    files = [("p-1.0/pyproject.toml", pyproject.encode()), ("p-1.0/_build.zip", zip_of(modules))]
    data = targz_of(files) if container == "tar.gz" else zip_of(files)
    result = scanner.scan_bytes(data, f"p-1.0.{container}")
    module = f"p-1.0/_build.zip!/{modules[1][0]}"
    assert SETUP_ONLY_RULE in hits(result).get(f"{module}{READING}", set()), hits(result)
    assert backend_paths(result) == {module, f"p-1.0/_build.zip!/{modules[0][0]}"}
    assert result.complete


def test_an_sdist_inside_the_distribution_is_not_built(scanner: dh.Scanner) -> None:
    inner = targz_of([("q-1.0/pyproject.toml", IN_TREE), ("q-1.0/_build/backend.py", SETUP)])
    result = scanner.scan_bytes(targz_of([("p-1.0/vendor/q-1.0.tar.gz", inner)]), "p-1.0.tar.gz")
    assert not backend_paths(result)


# The differential against pip's hook caller.

RECORDER = """
import os, runpy, sys
log, opened = os.environ["DFH_OPEN_LOG"], []
def record(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.append(args[0])
sys.addaudithook(record)
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(script)
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open(log, "w") as f:
        f.write("\\n".join(opened))
"""

DIRECTORIES = ["", "_b", "a", "b", "a:b", "src", "_"]
MODULES = [
    "m.py",
    "pk.py",
    "pk/__init__.py",
    "pk/m.py",
    "pk/m/__init__.py",
    "pk/sub/__init__.py",
    "pk/sub/m.py",
    "setuptools/__init__.py",
    "setuptools/build_meta.py",
]
BACKENDS = [None, "m", "m:api", "pk.m", "pk.m:api.obj", "pk..m", "pk.sub.m", "pk", ".m"]
PATH_ENTRIES = [".", "_b", "./_b", "src/../_b", "a:b", "a:", "_b/", "src", "../x", "/abs", "b:/etc"]


def random_case(rng: random.Random) -> tuple[bytes, dict[str, bytes]]:
    backend = rng.choice(BACKENDS)
    if rng.random() < 0.15:
        entries: object = rng.choice(["._b", "_b", "."])  # a string: pyproject_hooks iterates its characters
    else:
        entries = rng.sample(PATH_ENTRIES, rng.randint(1, 3))
    lines = ["[build-system]", "requires = []"]
    if backend is not None:
        lines.append(f"build-backend = {json.dumps(backend)}")
    lines.append(f"backend-path = {json.dumps(entries)}")
    tree = {
        f"{d}/{m}".lstrip("/"): f"VALUE = {rng.randrange(10**9)}\n".encode()
        for d in DIRECTORIES
        for m in MODULES
        if rng.random() < 0.3
    }
    return ("\n".join(lines) + "\n").encode(), tree


def hook_callers() -> list[Any]:
    """pip's vendored hook caller and the current one, where they import."""
    callers = []
    for module in ("pip._vendor.pyproject_hooks", "pyproject_hooks"):
        try:
            callers.append(importlib.import_module(module).BuildBackendHookCaller)
        except ImportError:
            pass
    return callers


def pip_opens(caller: Any, root: Path, pyproject: bytes) -> set[str] | None:
    """The files under `root` that the hook caller opens importing the backend (None: it refuses first)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip reads pyproject.toml with its vendored tomli
        from pip._vendor import tomli as tomllib

    system = tomllib.loads(pyproject.decode())["build-system"]
    backend = system.get("build-backend", "setuptools.build_meta:__legacy__")  # pip's load_pyproject_toml
    log = root.parent / "opened.txt"
    log.unlink(missing_ok=True)

    def runner(
        cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
    ) -> None:
        env = {**os.environ, **(extra_environ or {}), "DFH_OPEN_LOG": str(log)}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        recorder = [sys.executable, "-c", RECORDER]
        subprocess.run([*recorder, *cmd[1:]], cwd=cwd, env=env, capture_output=True, timeout=60, check=False)

    try:
        hooks = caller(str(root), backend, system.get("backend-path", []), runner=runner)
    except ValueError:
        return None  # a backend-path entry outside the tree: pip stops before any import
    try:
        hooks.get_requires_for_build_wheel()
    except Exception:  # the backend failed to import or lacks the hook: what it opened is logged
        pass
    real = os.path.realpath(root)
    opened = log.read_text().splitlines() if log.exists() else []
    return {
        os.path.relpath(path, real)
        for path in map(os.path.realpath, opened)
        if path.startswith(real + os.sep) and path.endswith(".py")
    }


def test_every_module_pips_hook_caller_imports_is_scanned_as_the_backend(
    scanner: dh.Scanner, tmp_path: Path
) -> None:
    callers = hook_callers()
    if not callers:
        pytest.skip("no pyproject_hooks to run: pip's hook caller is the oracle")
    rng = random.Random(int(os.environ.get("DFH_BACKEND_SEED", "19")))
    cases = int(os.environ.get("DFH_BACKEND_CASES", "60"))
    imported_cases = 0
    for case in range(cases):
        pyproject, tree = random_case(rng)
        root = tmp_path / str(case) / "p-1.0"
        for name, data in {"pyproject.toml": pyproject, **tree}.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        opened: set[str] = set()
        for caller in callers:
            opened |= pip_opens(caller, root, pyproject) or set()
        files = [(f"p-1.0/{name}", data) for name, data in {"pyproject.toml": pyproject, **tree}.items()]
        rng.shuffle(files)
        container = "zip" if case % 2 else "tar.gz"
        data = zip_of(files) if container == "zip" else targz_of(files)
        result = scanner.scan_bytes(data, f"p-1.0.{container}")
        scanned = {path.removeprefix("p-1.0/") for path in backend_paths(result)}
        missed = opened - scanned
        assert not missed, f"case {case}: {sorted(missed)} not scanned as the backend\n{pyproject.decode()}"
        imported_cases += bool(opened)
    # The oracle must have imported from the tree often enough for the comparison to mean something.
    print(f"{imported_cases} of {cases} cases imported from the tree")
    assert imported_cases >= cases // 4, imported_cases
