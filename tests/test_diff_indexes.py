"""``diff`` looks releases up where ``scan`` does: pip's index and extra indexes (command line,
environment, configuration files) and pip's network settings (cert, trusted-host), through the same
code path. Real indexes on 127.0.0.1 (one over HTTPS with a CA made here), through the CLI."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"


@pytest.fixture(autouse=True)
def _no_default_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRAGONFLY_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def run(*args: object, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def diff_json(*args: object, env: dict[str, str | None] | None = None) -> tuple[int, dict[str, Any]]:
    result = run("diff", *args, "-f", "json", env=env)
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def two_indexes() -> Iterator[tuple[FakeIndex, FakeIndex]]:
    """The main index with clean pkg 1.0 and 1.1; an extra index with a flagged pkg 1.1 wheel (which pip,
    merging both, may install)."""
    with FakeIndex() as main, FakeIndex() as extra:
        main.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
        main.add("pkg", sdist("pkg", "1.1", {"pkg/a.py": b"a = 2\n"}))
        extra.add("pkg", wheel("pkg", "1.1", {"pkg/a.py": BAD}))
        yield main, extra


WHEEL_FINDING = ["pkg-1.1-py3-none-any.whl/pkg/a.py"]


def test_pip_environment_indexes_are_used(two_indexes: tuple[FakeIndex, FakeIndex], rules_dir: Path) -> None:
    main, extra = two_indexes
    env: dict[str, str | None] = {"PIP_INDEX_URL": main.url, "PIP_EXTRA_INDEX_URL": extra.url}
    code, data = diff_json("pkg==1.0", "pkg==1.1", "-r", rules_dir, env=env)
    assert code == 1
    assert [f["file"] for f in data["new_findings"]] == WHEEL_FINDING
    assert any(path.startswith("/files/pkg/") for path in extra.requests)


def test_extra_index_url_option(two_indexes: tuple[FakeIndex, FakeIndex], rules_dir: Path) -> None:
    main, extra = two_indexes
    code, data = diff_json(
        "pkg==1.0", "pkg==1.1", "-r", rules_dir, "--index-url", main.url, "--extra-index-url", extra.url
    )
    assert code == 1 and [f["file"] for f in data["new_findings"]] == WHEEL_FINDING


def test_pip_configuration_files_are_read(
    two_indexes: tuple[FakeIndex, FakeIndex], rules_dir: Path, tmp_path: Path
) -> None:
    main, extra = two_indexes
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex-url = {main.url}\n[install]\nextra-index-url = {extra.url}\n")
    code, data = diff_json("pkg==1.0", "pkg==1.1", "-r", rules_dir, env={"PIP_CONFIG_FILE": str(config)})
    assert code == 1 and [f["file"] for f in data["new_findings"]] == WHEEL_FINDING


def test_settings_scan_refuses_are_usage_errors_only_when_an_index_is_needed(
    two_indexes: tuple[FakeIndex, FakeIndex], rules_dir: Path, tmp_path: Path
) -> None:
    main, _ = two_indexes
    result = run("diff", "pkg==1.0", "pkg==1.1", "-r", rules_dir, "--index-url", main.url,
                 env={"PIP_NO_INDEX": "1"})  # fmt: skip
    assert result.exit_code == 2 and "no-index is set (environment)" in result.stderr
    result = run("diff", "pkg", "pkg==1.1", "-r", rules_dir, "--index-url", main.url, "--python-version", "3")
    assert result.exit_code == 2 and "--python-version" in result.stderr
    old, new = tmp_path / "old", tmp_path / "new"
    for side in (old, new):
        side.mkdir()
        (side / "a.py").write_text("a = 1\n")
    env: dict[str, str | None] = {"PIP_NO_INDEX": "1", "PIP_CERT": "/nonexistent"}
    result = run("diff", old, new, "-r", rules_dir, env=env)  # two local sides: no index, no settings
    assert result.exit_code == 0 and result.stderr == "", result.output


def _tls_index(pki: dict[str, Path]) -> FakeIndex:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"])
    index = FakeIndex(tls=context)
    index.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
    index.add("pkg", sdist("pkg", "1.1", {"pkg/a.py": BAD}))
    return index


def test_pip_cert_and_trusted_host_are_honoured(pki: dict[str, Path], rules_dir: Path) -> None:
    with _tls_index(pki) as index:
        common = ("pkg==1.0", "pkg==1.1", "-r", rules_dir, "--index-url", index.url)
        code, data = diff_json(*common)
        assert code == 3 and "CERTIFICATE_VERIFY_FAILED" in (data["new"]["error"] or "")  # not trusted
        code, data = diff_json(*common, env={"PIP_CERT": str(pki["ca"])})
        assert code == 1 and data["new_rules"] == ["test_marker"]
        code, data = diff_json(*common, env={"PIP_TRUSTED_HOST": f"127.0.0.1:{index.port}"})
        assert code == 1 and data["new_rules"] == ["test_marker"]
