"""Pass 44: pip's settings as pip 23.2 reads them. The environment and later files override earlier ones key
by key, a boolean turned off as well as on; a value pip refuses (a boolean that is not one, a file pip cannot
load) is refused, not dropped; an empty value in a later file unsets the key; pip's other spellings
(``pypi-url``, ``PIP_Index_Url``, ``--index-url =``) and ``$XDG_CONFIG_DIRS`` count.

Real files, the fake index on 127.0.0.1, the CLI; real ``pip`` says what pip does. Each test sets its PIP_*
variables itself (``conftest`` clears the machine's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, sdist, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_review_pass42 import pip_download
from tests.test_review_pass43 import pip_install

NO_FILES: dict[str, str | None] = {"PIP_CONFIG_FILE": None, "XDG_CONFIG_HOME": None, "XDG_CONFIG_DIRS": None}


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    return fake_index


@pytest.mark.parametrize("off", ["0", "false", "no", "OFF"])
def test_pip_no_index_false_in_the_environment_lifts_a_config_files_true(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, off: str
) -> None:
    """pip's environment overrides its files key by key: ``PIP_NO_INDEX=0`` over pip.conf's ``no-index =
    true`` installs from the index. ``scan`` only accumulated refusals: exit 2 "no-index is set"."""
    conf = write(tmp_path / "pip.conf", b"[global]\nno-index = true\n")
    env: dict[str, str | None] = {"PIP_CONFIG_FILE": str(conf), "PIP_NO_INDEX": off}
    result, _ = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 0, result.output
    env["PIP_NO_INDEX"] = ""  # empty: pip ignores it, and the file's true holds
    result, _ = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 2 and f"no-index is set ({conf})" in result.stderr, result.output


@pytest.mark.parametrize("layout", ["later file", "install section"])
def test_pip_no_index_false_in_a_later_file_or_install_section_lifts_a_true(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, layout: str
) -> None:
    """``no-index = false`` in the user's ``~/.config/pip/pip.conf`` over ``~/.pip/pip.conf``'s ``true``, or
    under ``[install]`` over ``[global]``'s ``true``: pip installs (checked), and so does ``scan`` (this held
    before pass 44: a guard for the key-by-key merge of the files)."""
    home = tmp_path / "home"
    if layout == "later file":
        write(home / ".pip" / "pip.conf", b"[global]\nno-index = true\n")
        write(home / ".config" / "pip" / "pip.conf", b"[global]\nno-index = false\n")
    else:
        write(home / ".pip" / "pip.conf", b"[global]\nno-index = true\n[install]\nno-index = false\n")
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    pip = pip_install([requirements], index, {"HOME": str(home)})
    assert pip.returncode == 0, pip.stderr
    result, _ = scan(
        "-R", requirements, "-r", rules_dir, "--index-url", index.url, env={"HOME": str(home), **NO_FILES}
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("environment", "require-hashes", "bogus"),
        ("pip.conf", "no-index", "maybe"),
        ("environment", "no-index", " 1"),
    ],
)
def test_a_boolean_pip_refuses_is_a_usage_error_naming_key_value_and_where(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, where: str, key: str, value: str
) -> None:
    """pip refuses to run on ``PIP_REQUIRE_HASHES=bogus`` or ``no-index = maybe`` (exit 2, checked); ``scan``
    ignored the value and went on (exit 0). Now: exit 2, one line naming the key, the value and where."""
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    if where == "environment":
        env = {"PIP_CONFIG_FILE": "/dev/null", f"PIP_{key.upper().replace('-', '_')}": value}
        place = "environment"
    else:
        conf = write(tmp_path / "pip.conf", f"[global]\n{key} = {value}\n".encode())
        env, place = {"PIP_CONFIG_FILE": str(conf)}, str(conf)
    pip = pip_install([requirements], index, env)
    assert pip.returncode == 2 and "is not a valid value for" in pip.stderr, pip.stderr
    for args in (["-R", requirements], ["pkg==1.0"]):
        result, _ = scan(*args, "-r", rules_dir, "--index-url", index.url, env={**env})
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.splitlines()
        assert key in line and repr(value) in line and f"({place})" in line and "Traceback" not in line


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[global]\nno-index = true\nno-index = false\n", "already exists"),
        (b"[global]\nindex-url = https://a/simple/\n[global]\nproxy = http://p:3128\n", "already exists"),
        (b"index-url = https://alice:s3cret@private.example/simple/\n", "no section headers"),
        (b"[global]\nindex-url = https://alice:s3cret@private.example/simple/\njunk\n", "line 3: neither"),
        (b"[global]\n# caf\xe9\nextra-index-url = https://b/simple/\n", "not valid UTF-8"),
    ],
)
def test_a_pip_conf_pip_cannot_load_is_refused_not_skipped(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, content: bytes, reason: str
) -> None:
    """A duplicate key or section, no section header, a line that is no ``key = value``, bytes not in the
    locale's encoding: pip refuses to run (exit 2, checked). ``scan`` dropped the whole file silently and
    scanned with the other settings; then named a line that is no ``key = value`` by the file only, twice."""
    conf = write(tmp_path / "pip.conf", content)
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    pip = pip_install([requirements], index, {"PIP_CONFIG_FILE": str(conf), "LC_ALL": "C.UTF-8"})
    assert pip.returncode == 2 and "Configuration file" in pip.stderr + pip.stdout, pip.stderr
    env: dict[str, str | None] = {"PIP_CONFIG_FILE": str(conf), "LC_ALL": "C.UTF-8"}
    result, _ = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert str(conf) in line and reason.lower() in line.lower() and "s3cret" not in line
    assert line.count(str(conf)) == 1, line  # configparser's "While reading from PosixPath(...)" dropped


def test_an_empty_value_in_a_later_file_unsets_the_key(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip merges its files before it drops empty values: ``extra-index-url =`` in ``~/.config/pip/pip.conf``
    unsets ``~/.pip/pip.conf``'s, and pip looks at the main index only (checked). ``scan`` skipped the empty
    value, so the earlier extra index was asked too and its file (with a finding) scanned: exit 1."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    with FakeIndex() as extra:
        extra.add("pkg", sdist("pkg", "1.0", BAD))
        home = tmp_path / "home"
        write(home / ".pip" / "pip.conf", f"[global]\nextra-index-url = {extra.url}\n".encode())
        write(home / ".config" / "pip" / "pip.conf", b"[global]\nextra-index-url =\n")
        pip = pip_download(tmp_path, {"HOME": str(home)}, "--index-url", fake_index.url, "pkg==1.0")
        assert pip.returncode == 0 and extra.url not in pip.stdout, pip.stdout
        env = {"HOME": str(home), **NO_FILES}
        result, report = scan("pkg==1.0", "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 0, result.output
    assert [d["name"] for d in report["targets"][0]["distributions"]] == ["pkg-1.0-py3-none-any.whl"]


@pytest.mark.parametrize(
    ("variable", "conf"),
    [
        ("PIP_PYPI_URL", None),
        ("PIP_Index_Url", None),
        (None, "[global]\npypi-url = {url}\n"),
        (None, "[global]\n--index-url = {url}\n"),
        ("XDG_CONFIG_DIRS", "[global]\nindex-url = {url}\n"),
    ],
)
def test_pips_other_spellings_and_xdg_config_dirs_set_the_index(
    index: FakeIndex, tmp_path: Path, variable: str | None, conf: str | None
) -> None:
    """pip takes ``PIP_PYPI_URL`` (``--pypi-url`` is ``--index-url``'s other name), ``PIP_Index_Url`` (any
    case), ``pypi-url``/``--index-url`` keys and ``pip/pip.conf`` under ``$XDG_CONFIG_DIRS``: it downloads
    from the fake index (checked). ``scan`` ignored them and would have fetched from PyPI instead."""
    from dragonfly_hybrid.pypi.pipconfig import pip_settings

    env: dict[str, str] = {"HOME": str(tmp_path / "home")}
    if conf is not None:
        base = tmp_path / "xdg"
        path = write(
            base / "pip" / "pip.conf" if variable else tmp_path / "pip.conf",
            conf.format(url=index.url).encode(),
        )
        env.update({variable: str(base)} if variable else {"PIP_CONFIG_FILE": str(path)})
    else:
        assert variable is not None
        env.update({variable: index.url, "PIP_CONFIG_FILE": "/dev/null"})
    pip = pip_download(tmp_path, env, "pkg==1.0")
    assert pip.returncode == 0 and index.url in pip.stdout, pip.stdout + pip.stderr
    assert pip_settings(env, Path(env["HOME"])).index_urls == [index.url]


def test_pip_expands_the_home_directory_in_cert_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip's ``cert`` and ``client-cert`` are paths whose ``~`` pip expands (``os.path.expanduser``);
    ``scan`` looked for a file named ``~/ca.pem`` and could not load the trust store."""
    from dragonfly_hybrid.pypi.pipconfig import pip_settings

    monkeypatch.setenv("HOME", str(tmp_path))
    conf = write(tmp_path / "pip.conf", b"[global]\nclient-cert = ~/client.pem\n")
    settings = pip_settings({"PIP_CONFIG_FILE": str(conf), "PIP_CERT": "~/ca.pem"}, tmp_path)
    assert (settings.cert, settings.client_cert) == (str(tmp_path / "ca.pem"), str(tmp_path / "client.pem"))


def test_scan_with_requirements_reads_pips_configuration_once(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scan -R`` read pip's files twice (once for require-hashes, once for the indexes): a file changed in
    between gave two views of pip's settings. Now once per command."""
    from dragonfly_hybrid.pypi import pipconfig

    reads: list[Path] = []
    real = pipconfig._read_config

    def counted(path: Path) -> dict[str, dict[str, str]]:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(pipconfig, "_read_config", counted)
    conf = write(tmp_path / "pip.conf", b"[global]\nproxy =\n")
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    env: dict[str, str | None] = {
        "PIP_CONFIG_FILE": str(conf),
        **{k: v for k, v in NO_FILES.items() if k != "PIP_CONFIG_FILE"},
    }
    result, _ = scan("-R", requirements, "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 0, result.output
    assert reads.count(conf) == 1, reads


def test_the_standalone_node_refuses_a_pip_conf_pip_refuses_in_one_line(tmp_path: Path) -> None:
    """``node --job`` without ``--index-url`` resolves releases on pip's configured index: a pip.conf pip
    refuses (here a boolean that is not one) is a usage error naming it, not a traceback."""
    from tests.test_node_pass33 import node

    conf = write(tmp_path / "pip.conf", b"[global]\nno-index = maybe\n")
    done = node("--job", "pkg==1.0", cwd=tmp_path, PIP_CONFIG_FILE=str(conf))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "no-index" in done.stderr and "'maybe'" in done.stderr and str(conf) in done.stderr
