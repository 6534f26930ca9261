"""Which release ``scan NAME`` and ``scan NAME==VERSION`` pick, against pip 23.2 itself (red-team pass 48).

A clean verdict means every byte pip would install was scanned: random projects are published on the fake
index (versions from a grammar of pre-, post- and dev releases, epochs, local versions, equal spellings such
as ``1.0``/``1.0.0``/``1.00``, legacy versions; wheels for this platform, for others and for Python 2;
sdists; names spelled differently in file names; yanked files; Requires-Python, valid or invalid), then
each spec is given to ``pip download --no-deps``
(one pip process runs them all, each as its own pip command) and to ``PyPIClient.resolve``. Wherever pip
downloads a file, we must list that file among the ones ``scan`` scans, and for a bare name report pip's
version (or refuse); where pip finds nothing, what we pick is not judged.

* ``DFH_VERSION_CASES``: projects per run (default 60: about 25 s on 2 cores, pip being the cost);
* ``DFH_VERSION_SEED``: the run's seed (default 0), printed with every failure; odd seeds serve PEP 503
  HTML project pages, even ones PEP 691 JSON.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.index import PyPIClient, PyPIError, Release, target_python
from packaging.version import InvalidVersion, Version

from tests.fakes.pypi import FakeFile, FakeIndex, tar_gz_bytes, wheel

CASES = int(os.environ.get("DFH_VERSION_CASES", "60"))
SEED = int(os.environ.get("DFH_VERSION_SEED", "0"))

# pip's download command, run in one process for every job (its import is most of a pip run's second), each
# job with its own PIP_* environment; a pip other than the installed one when its path is given.
PIP_DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, os, sys, time
    if sys.argv[2]:
        sys.path.insert(0, sys.argv[2])
    from pip._internal.cli.main import main

    base = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    results = []
    for args, env in json.load(open(sys.argv[1])):
        os.environ.clear()
        os.environ.update(base, **env)
        time.tzset()
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(args)
            except SystemExit as exit:
                code = exit.code
        results.append([code, out.getvalue()[-1500:]])
    json.dump(results, sys.stdout)
    """
)
PIP_ENV = {"PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}

RELEASES = ["0.9", "1.0", "1.0.0", "1.00", "1.1", "2.0", "2.0.1", "1!0.5", "10.0", "0.0.1"]
SUFFIXES = [
    "",
    "",
    "",
    "a1",
    "b2",
    "rc1",
    ".dev0",
    ".post1",
    "rc1.post2.dev3",
    ".post1.dev2",
    "+local",
    "+cu1.2",
]
PIP_DOWNLOAD = ["download", "--no-deps", "--no-cache-dir", "--no-build-isolation", "-q"]
LEGACY = ["1.0.x", "2.0-beta-foo", "dev", "3.0.custom"]
REQUIRES_PYTHON = [
    None,
    None,
    None,
    ">=3.8",
    "<3",
    ">=3.13",
    # Not ">=3.6.*"-style clauses: pip 23.2, the oracle here, compares them as legacy versions, pip 24.1
    # and later (and ``scan``) ignore such a field (test_a_legacy_requires_python_is_ignored_as_pip_24_does).
    "~=3",
    "==2.7.*",
    "",
]
OTHER_TAGS = [
    "cp311-cp311-win_amd64",
    "py2-none-any",
    "cp38-cp38-manylinux_2_17_x86_64",
    "cp311-abi3-macosx_11_0_arm64",
]


@dataclass
class Project:
    name: str
    files: list[FakeFile] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    version_of: dict[str, str] = field(default_factory=dict)
    """File name -> the version it was built as."""


def _spellings(name: str) -> list[str]:
    return [name, name.replace("-", "_"), name.upper().replace("-", "."), name.title().replace("-", "_")]


# An in-tree PEP 517 backend that only writes metadata: what pip runs to prepare an sdist it downloads.
BACKEND = b"""
import os
def prepare_metadata_for_build_wheel(directory, config_settings=None):
    name, version = open(os.path.join(os.path.dirname(__file__), "NV")).read().split()
    info = os.path.join(directory, "%s-%s.dist-info" % (name.replace("-", "_"), version))
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (name, version))
    return os.path.basename(info)
def build_wheel(directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("not built here")
"""
PYPROJECT = b'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'


def _file(rng: random.Random, name: str, version: str) -> FakeFile:
    spelled = rng.choice(_spellings(name))
    legacy = version in LEGACY
    kind = rng.choice(["wheel", "wheel", "other", "sdist"] if not legacy else ["wheel", "other"])
    if kind == "sdist":
        stem = f"{spelled}-{version}"
        members = {"backend.py": BACKEND, "pyproject.toml": PYPROJECT, "NV": f"{name} {version}".encode()}
        content = tar_gz_bytes({f"{stem}/{path}": data for path, data in members.items()})
        filename = f"{stem}{rng.choice(['', '', '', '-py3.8', '-py2.7'])}.tar.gz"  # pip: only for that Python
    else:
        filename, content = wheel(spelled.replace("-", "_"), version, {"m.py": b"pass\n"})
        if kind == "other":
            filename = filename.replace("py3-none-any", rng.choice(OTHER_TAGS))
    return FakeFile(
        filename,
        content,
        yanked=rng.random() < 0.2,
        requires_python=rng.choice(REQUIRES_PYTHON) if rng.random() < 0.5 else None,
    )


def _project(rng: random.Random, number: int) -> Project:
    project = Project(f"proj-{number}-x")
    count = rng.randint(1, 5)
    for _ in range(count):
        version = rng.choice(LEGACY) if rng.random() < 0.08 else rng.choice(RELEASES) + rng.choice(SUFFIXES)
        if version in project.versions:
            continue
        project.versions.append(version)
        for _ in range(rng.randint(1, 2)):
            file = _file(rng, project.name, version)
            if file.filename not in project.version_of:
                project.files.append(file)
                project.version_of[file.filename] = version
    return project


def _specs(rng: random.Random, project: Project) -> list[tuple[str | None, str | None]]:
    """``(version pinned or None, --python-version or None)`` to ask of both sides."""
    specs: list[tuple[str | None, str | None]] = [(None, None), (None, "3.8")]
    valid = [v for v in project.versions if v not in LEGACY]
    if valid:
        pinned = rng.choice(valid)
        equal = {"1.0": "1.0.0", "1.0.0": "1.00", "1.00": "1", "2.0": "2.0.0"}.get(pinned.split("+")[0])
        specs.append((pinned, None))
        specs.append((pinned.split("+")[0], None))
        if equal is not None:
            specs.append((equal, None))
    return specs


def run_pip(
    work: Path, jobs: list[tuple[list[str], dict[str, str]]], pip_path: str = ""
) -> list[tuple[int, str]]:
    """Each job's pip arguments run with its ``PIP_*`` environment (:data:`PIP_DRIVER`, one process; the
    pip at ``pip_path``, else the installed one): its exit code and the end of its output."""
    (work / "jobs.json").write_text(json.dumps(jobs))
    (work / "driver.py").write_text(PIP_DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    done = subprocess.run(
        [sys.executable, str(work / "driver.py"), str(work / "jobs.json"), pip_path],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [(int(code or 0), output) for code, output in json.loads(done.stdout)]


def _pip_downloads(work: Path, jobs: list[list[str]]) -> list[tuple[int, str]]:
    return run_pip(work, [(args, PIP_ENV) for args in jobs])


def resolved(client: PyPIClient, name: str, version: str | None) -> tuple[Release | None, str]:
    """What ``client`` resolves ``name`` (``==version``) to, and its ``version: [files]`` (or the error)."""
    try:
        release = client.resolve(name, version)
    except PyPIError as err:
        return None, f"error {err}"
    return release, f"{release.version}: {sorted(f.filename for f in release.files)}"


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _describe(project: Project) -> str:
    return "\n".join(
        f"    {f.filename} yanked={f.yanked} requires_python={f.requires_python!r}" for f in project.files
    )


def test_scan_picks_the_release_pip_installs(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    projects = [_project(rng, n) for n in range(CASES)]
    with FakeIndex() as index:
        index.faults.html_only = SEED % 2 == 1  # PEP 503 HTML pages on odd seeds, PEP 691 JSON on even ones
        for project in projects:
            index.add(project.name, *project.files)
        cases: list[tuple[Project, str | None, str | None, Path]] = []
        jobs: list[list[str]] = []
        for project in projects:
            for version, python in _specs(rng, project):
                dest = tmp_path / f"d{len(cases)}"
                spec = project.name if version is None else f"{project.name}=={version}"
                args = [*PIP_DOWNLOAD, "-d", str(dest)]
                args += ["--index-url", index.url, *(["--python-version", python] if python else []), spec]
                cases.append((project, version, python, dest))
                jobs.append(args)
        results = _pip_downloads(tmp_path, jobs)
        problems: list[str] = []
        judged = 0
        for (project, version, python, dest), (code, _) in zip(cases, results, strict=True):
            spec = project.name if version is None else f"{project.name}=={version}"
            client = PyPIClient(index.url, python_version=target_python(python), retries=1)
            release, ours = resolved(client, project.name, version)
            downloaded = sorted(p.name for p in dest.iterdir()) if dest.exists() else []
            if code != 0 or len(downloaded) != 1 or release is None:
                continue  # pip installs nothing, or we refuse: no clean verdict about other bytes
            (picked,) = downloaded
            judged += 1
            pip_version = project.version_of[picked]
            # A pin reports the version asked for (every version its `==` matches is scanned, the local
            # variant pip may prefer included); a bare name must report pip's.
            same = version is not None or _version(pip_version) == _version(release.version)
            if picked not in {f.filename for f in release.files} or not same:
                problems.append(
                    f"{spec} (python {python or 'running'}): pip installs {picked} ({pip_version}); "
                    f"we scan {ours}\n{_describe(project)}"
                )
    assert judged >= CASES, f"only {judged} specs where pip and we both picked a release: the generator broke"
    assert not problems, f"DFH_VERSION_SEED={SEED} DFH_VERSION_CASES={CASES}\n" + "\n".join(problems)


def _pip_pick(index: FakeIndex, work: Path, spec: str, python: str | None = None) -> list[str]:
    """The files ``pip download --no-deps`` takes for ``spec`` (empty when it fails)."""
    args = [
        *PIP_DOWNLOAD,
        "-d",
        str(work / "pip"),
        "--index-url",
        index.url,
    ]
    _pip_downloads(work, [[*args, *(["--python-version", python] if python else []), spec]])
    return sorted(p.name for p in (work / "pip").iterdir()) if (work / "pip").exists() else []


@pytest.mark.parametrize("python", [None, "3.8"])
def test_a_legacy_requires_python_is_ignored_as_pip_24_does(
    fake_index: FakeIndex, python: str | None
) -> None:
    """A Requires-Python that is not PEP 440 (``<=3.10.*``, ``>=4.0.*``) is ignored by pip 24.1 and later
    (checked by hand with pip 26.3: "Ignoring invalid Requires-Python"), so they install the newest release;
    pip 23.2, installed here, compares such a clause as a legacy version and installs 1.0 on 3.11 (the README
    says so). ``scan foo`` scans what current pip installs."""
    fake_index.add(
        "foo",
        wheel("foo", "1.0", {"m.py": b"pass\n"}),
        FakeFile(*wheel("foo", "2.0", {"m.py": b"pass\n"}), requires_python="<=3.10.*"),
        FakeFile(*wheel("foo", "3.0", {"m.py": b"pass\n"}), requires_python=">=4.0.*"),
    )
    release = PyPIClient(fake_index.url, python_version=target_python(python)).resolve("foo")
    assert (release.version, [f.filename for f in release.files]) == ("3.0", ["foo-3.0-py3-none-any.whl"])


@pytest.mark.parametrize(("python", "expected"), [(None, "1.0"), ("3.8", "2.0")])
def test_an_sdist_named_for_one_python_is_its_version_there(
    fake_index: FakeIndex, tmp_path: Path, python: str | None, expected: str
) -> None:
    # pip 23.2 reads foo-2.0-py3.8.tar.gz as foo 2.0 for Python 3.8 only; skipping it had us scan 1.0 for
    # `--python-version 3.8` while pip installs 2.0.
    stem = "foo-2.0-py3.8"
    members = {"backend.py": BACKEND, "pyproject.toml": PYPROJECT, "NV": b"foo 2.0"}
    sdist = (f"{stem}.tar.gz", tar_gz_bytes({f"{stem}/{path}": data for path, data in members.items()}))
    fake_index.add("foo", wheel("foo", "1.0", {"m.py": b"pass\n"}), sdist)
    release = PyPIClient(fake_index.url, python_version=target_python(python)).resolve("foo")
    picked = "foo-1.0-py3-none-any.whl" if expected == "1.0" else sdist[0]
    assert (release.version, [f.filename for f in release.files]) == (expected, [picked])
    assert _pip_pick(fake_index, tmp_path, "foo", python) == [picked]
