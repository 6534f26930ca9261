"""Pass 45: a review of pass 44's pip settings against pip 23.2. pip keeps ``pypi-url`` and ``index-url``
apart; ``$XDG_CONFIG_DIRS`` and ``$XDG_CONFIG_HOME`` are read as pip's platformdirs reads them; commands that
look nothing up on an index work with pip settings pip refuses, and those that do refuse them in one line.

Real files, real ``pip download`` against the fake index on 127.0.0.1 says what pip does; the CLI in process
(``node`` in a subprocess). ``conftest`` clears the machine's PIP_* variables; each test sets its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import CLEAN
from tests.test_review_pass42 import pip_download

DEAD = "http://127.0.0.1:9/simple/"  # nothing listens: pip fails if it asks this index
SECRET_CONF = b"[global]\nindex-url = https://alice:s3cret@private.example/simple/\nindex-url = x\n"


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    return fake_index


@pytest.mark.parametrize(
    ("site", "user"),
    [
        ("[global]\npypi-url = {url}\n", "[global]\nindex-url =\n"),
        (f"[global]\nindex-url = {DEAD}\npypi-url = {{url}}\n", f"[global]\nindex-url = {DEAD}x/\n"),
    ],
    ids=["empty index-url leaves pypi-url", "pypi-url after index-url in pip's key order"],
)
def test_pypi_url_and_index_url_are_two_keys_as_pip_merges_them(
    index: FakeIndex, tmp_path: Path, site: str, user: str
) -> None:
    """pip merges ``pypi-url`` and ``index-url`` as two keys and applies them in the order they first
    appear: the user's ``index-url =`` unsets that key only (the site file's ``pypi-url`` holds), and a
    ``pypi-url`` after ``index-url`` wins over a later file's ``index-url``; pip downloads from the fake
    index (checked). ``scan`` folded ``pypi-url`` into ``index-url`` per file: PyPI, or the dead index."""
    from dragonfly_hybrid.pypi.pipconfig import pip_settings

    home, xdg = tmp_path / "home", tmp_path / "xdg"
    write(xdg / "pip" / "pip.conf", site.format(url=index.url).encode())
    write(home / ".config" / "pip" / "pip.conf", user.encode())
    env = {"HOME": str(home), "XDG_CONFIG_DIRS": str(xdg)}
    pip = pip_download(tmp_path / "pip", env, "pkg==1.0")
    assert pip.returncode == 0 and index.url in pip.stdout, pip.stdout + pip.stderr
    assert pip_settings(env, home).index_urls == [index.url]


@pytest.mark.parametrize(
    ("variable", "value", "conf"),
    [
        ("XDG_CONFIG_DIRS", "~/xdg", "home/xdg/pip/pip.conf"),  # pip expands ~ in each directory
        ("XDG_CONFIG_HOME", " ", "home/.config/pip/pip.conf"),  # blank: pip's default ~/.config
        ("XDG_CONFIG_DIRS", ":/nonexistent:", "cwd/pip/pip.conf"),  # empty: the working directory
        ("XDG_CONFIG_DIRS", "relative", "cwd/relative/pip/pip.conf"),
    ],
)
def test_xdg_directories_are_read_as_pip_reads_them(
    index: FakeIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    conf: str,
) -> None:
    """Where pip looks with these ``$XDG_*`` values: it downloads from the index the file there names
    (checked). ``scan`` looked for a directory named ``~`` and for ``" "/pip/pip.conf``, and fetched from
    PyPI (the last two held: guards)."""
    from dragonfly_hybrid.pypi.pipconfig import pip_settings

    home = tmp_path / "home"
    write(tmp_path / conf, f"[global]\nindex-url = {index.url}\n".encode())
    (tmp_path / "cwd").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(home))  # os.path.expanduser's, as pip's
    env = {"HOME": str(home), variable: value}
    pip = pip_download(tmp_path / "pip", env, "pkg==1.0")
    assert pip.returncode == 0 and index.url in pip.stdout, pip.stdout + pip.stderr
    assert pip_settings(env, home).index_urls == [index.url]


def refusing_env(tmp_path: Path, where: str) -> dict[str, str | None]:
    """pip settings pip refuses to run with: a pip.conf it cannot load (a duplicate key, a password on
    another line) found through ``where``, or ``PIP_NO_INDEX=maybe``."""
    unset: dict[str, str | None] = {"PIP_CONFIG_FILE": None, "XDG_CONFIG_DIRS": None, "XDG_CONFIG_HOME": None}
    if where == "PIP_NO_INDEX":
        return {"PIP_NO_INDEX": "maybe"}
    if where == "PIP_CONFIG_FILE":
        return {**unset, "PIP_CONFIG_FILE": str(write(tmp_path / "broken.conf", SECRET_CONF))}
    if where == "XDG_CONFIG_DIRS":
        write(tmp_path / "xdg" / "pip" / "pip.conf", SECRET_CONF)
        return {**unset, "XDG_CONFIG_DIRS": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    write(tmp_path / "home" / ".pip" / "pip.conf", SECRET_CONF)
    return {**unset, "HOME": str(tmp_path / "home")}


@pytest.mark.parametrize("where", ["PIP_NO_INDEX", "PIP_CONFIG_FILE", "XDG_CONFIG_DIRS", "HOME"])
def test_pip_settings_pip_refuses_stop_only_what_looks_releases_up(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, where: str
) -> None:
    """Local files and directories (``scan``, ``diff``), ``rules check`` and ``report`` never read pip's
    settings: they work. A release (``scan``, ``diff``, the API) is refused: exit 2 in one line without the
    password of the file's other line, and ``PipConfigError`` (a ``ValueError``) from ``fetch_and_scan``.
    (This held: a guard for pass 44's refusals.)"""
    import dragonfly_hybrid as dh
    from dragonfly_hybrid.pypi.pipconfig import PipConfigError

    env = refusing_env(tmp_path, where)
    name, content = wheel("pkg", "1.0", CLEAN)
    local = write(tmp_path / "local" / name, content)
    store = tmp_path / "store.db"
    runner = CliRunner()
    for args in (
        ["scan", local, "-r", rules_dir, "--store", store, "-q"],
        ["scan", local.parent, "-r", rules_dir, "-q"],
        ["diff", local, local, "-r", rules_dir, "--store", store],
        ["rules", "check", rules_dir],
        ["report", "--store", store],
    ):
        done = runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
        assert done.exit_code == 0, (args, done.output)
    for args in (["scan", "pkg==1.0", "-q"], ["diff", local, "pkg==1.0"]):
        done = runner.invoke(
            app,
            [*map(str, args), "-r", str(rules_dir), "--index-url", index.url],
            env=env,
            catch_exceptions=False,
        )
        assert done.exit_code == 2, (args, done.output)
        (line,) = done.stderr.splitlines()
        assert "pip" in line and "s3cret" not in line and "Traceback" not in done.output, line
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in env.items():
            patch.delenv(variable, raising=False) if value is None else patch.setenv(variable, value)
        with pytest.raises(PipConfigError) as raised:
            dh.fetch_and_scan("pkg==1.0", rules=dh.load_rules([rules_dir]), index_url=index.url)
    assert isinstance(raised.value, ValueError) and "s3cret" not in str(raised.value)


def test_node_with_an_empty_jobs_file_reads_no_pip_settings(tmp_path: Path, rules_dir: Path) -> None:
    """``node --jobs-file`` of a file with no job looks nothing up: it runs (exit 0, no result) with a
    pip.conf pip refuses. It opened pip's index client anyway and exited 2 on the file."""
    from tests.test_node_pass33 import node

    jobs = write(tmp_path / "jobs.txt", b"# none today\n")
    conf = write(tmp_path / "pip.conf", SECRET_CONF)
    done = node("--jobs-file", str(jobs), "-r", str(rules_dir), cwd=tmp_path, PIP_CONFIG_FILE=str(conf))
    assert done.returncode == 0 and done.stdout == "", done.stderr
