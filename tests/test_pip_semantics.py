"""``scan`` fetches what pip would install, from where pip would fetch it (issue 18): hash-checking mode,
indexes and extra indexes from pip's configuration, environment, requirements files and the command line,
pip's cert/client-cert/trusted-host/proxy, Requires-Python for bare names, the shadow note, skipped
``-R`` entries, the ``-r`` hint and the requirements-file line of each target.

Everything runs against real servers on 127.0.0.1 (the fake index, over HTTPS with a CA made here, and a
forwarding proxy), through the CLI.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeFile, FakeIndex, sdist, validate_sarif, wheel

BAD = b"import os\n# " + MARKER + b"\n"


def run(*args: object, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def scan_json(*args: object, env: dict[str, str | None] | None = None) -> tuple[Result, dict]:
    result = run("scan", *args, "-f", "json", "-q", env=env)
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


@pytest.fixture
def release(fake_index: FakeIndex) -> FakeIndex:
    """``pkg==1.0``: a clean wheel and an sdist with the marker (so scanning the sdist is a finding)."""
    fake_index.add(
        "pkg", wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"}), sdist("pkg", "1.0", {"setup.py": BAD})
    )
    return fake_index


def files_of(index: FakeIndex, project: str) -> dict[str, FakeFile]:
    return {f.filename: f for f in index.projects[project]}


# ------------------------------------------------------------------------------------------------ hashes


def test_a_wrong_hash_is_incomplete_not_clean(release: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("pkg==1.0 --hash=sha256:" + "0" * 64 + "\n")
    result, report = scan_json("-R", req, "-r", rules_dir, "--index-url", release.url)
    assert result.exit_code == 3, result.output
    (target,) = report["targets"]
    assert target["verdict"] == "incomplete"
    assert "no file of pkg==1.0 has a hash allowed" in target["error"] and f"{req}:1" in target["error"]
    # No file lists an allowed digest: pip keeps every candidate and checks the bytes of the one it downloads
    # (filter_unallowed_hashes), so each candidate is downloaded and checked; none is scanned.
    assert not target["distributions"]
    assert "matches no file" not in result.stderr  # the error says it already


def test_only_the_files_the_hashes_allow_are_downloaded_and_scanned(
    release: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    files = files_of(release, "pkg")
    wheel_file = files["pkg-1.0-py3-none-any.whl"]
    req = tmp_path / "requirements.txt"
    req.write_text(f"pkg==1.0 \\\n    --hash=sha256:{wheel_file.sha256}\n")
    result, report = scan_json("-R", req, "-r", rules_dir, "--index-url", release.url)
    assert result.exit_code == 0, result.output  # the sdist with the marker is not what pip installs
    (target,) = report["targets"]
    assert [d["name"] for d in target["distributions"]] == [wheel_file.filename]
    assert [r for r in release.requests if r.startswith("/files/")] == [f"/files/pkg/{wheel_file.filename}"]
    assert target["origin"] == {"path": str(req), "line": 1}


def test_sha512_hashes_are_checked_on_the_downloaded_bytes(
    release: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    sdist_file = files_of(release, "pkg")["pkg-1.0.tar.gz"]
    req = tmp_path / "requirements.txt"
    req.write_text(f"pkg==1.0 --hash=sha512:{hashlib.sha512(sdist_file.content).hexdigest()}\n")
    result, report = scan_json("-R", req, "-r", rules_dir, "--index-url", release.url)
    # The index lists sha256 only: both files are fetched, the one whose sha512 matches is scanned.
    assert result.exit_code == 1, result.output
    assert [d["name"] for d in report["targets"][0]["distributions"]] == [sdist_file.filename]
    # Mixed algorithms on one requirement: the wheel by its listed sha256, the sdist by its bytes' sha512.
    wheel_file = files_of(release, "pkg")["pkg-1.0-py3-none-any.whl"]
    req.write_text(req.read_text().strip() + f" --hash=sha256:{wheel_file.sha256}\n")
    result, report = scan_json("-R", req, "-r", rules_dir, "--index-url", release.url)
    assert result.exit_code == 1, result.output
    assert len(report["targets"][0]["distributions"]) == 2


def test_bytes_that_do_not_match_the_allowed_hash_make_the_target_incomplete(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    name, content = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})
    promised = hashlib.sha256(b"the bytes the lock file was made from").hexdigest()
    fake_index.add("pkg", FakeFile(name, content, listed_sha256=promised))
    req = tmp_path / "requirements.txt"
    req.write_text(f"pkg==1.0 --hash=sha256:{promised}\n")
    result, report = scan_json("-R", req, "-r", rules_dir, "--index-url", fake_index.url)
    assert result.exit_code == 3, result.output
    error = report["targets"][0]["error"]
    assert name in error and promised in error and hashlib.sha256(content).hexdigest() in error


def test_an_allowed_hash_that_matches_no_file_is_noted(
    release: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    wheel_file = files_of(release, "pkg")["pkg-1.0-py3-none-any.whl"]
    stale = "sha256:" + "a" * 64
    req = tmp_path / "requirements.txt"
    req.write_text(f"pkg==1.0 --hash=sha256:{wheel_file.sha256} --hash={stale}\n")
    result = run("scan", "-R", req, "-r", rules_dir, "--index-url", release.url, "-q")
    assert result.exit_code == 0, result.output
    assert f"hash {stale} matches no file of pkg==1.0" in result.stderr


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("pkg==1.0 --hash=sha256:{h}\nother==2.0\n", 2),
        ("--require-hashes\npkg==1.0\n", 2),
        ("pkg>=1.0 --hash=sha256:{h}\n", 1),
        ("pkg==1.0 --hash=md5:abcd\n", 1),
    ],
)
def test_hash_checking_mode_follows_pips_rules(tmp_path: Path, rules_dir: Path, text: str, line: int) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(text.format(h="b" * 64))
    result = run("scan", "-R", req, "-r", rules_dir, "--index-url", "http://127.0.0.1:9/simple/")
    assert result.exit_code == 2, result.output
    assert f"requirements.txt:{line}:" in result.stderr


# ----------------------------------------------------------------------------------------------- indexes


@pytest.fixture
def two_indexes(fake_index: FakeIndex) -> Iterator[tuple[FakeIndex, FakeIndex]]:
    """``common`` on the main index; ``private`` (with the marker) only on the extra one."""
    fake_index.add("common", wheel("common", "1.0", {"common/__init__.py": b""}))
    with FakeIndex() as extra:
        extra.add("private", sdist("private", "1.0", {"setup.py": BAD}))
        yield fake_index, extra


def test_extra_index_from_the_environment(two_indexes: tuple[FakeIndex, FakeIndex], rules_dir: Path) -> None:
    main, extra = two_indexes
    env: dict[str, str | None] = {
        "PIP_INDEX_URL": main.url,
        "PIP_EXTRA_INDEX_URL": f"http://127.0.0.1:9/x/ {extra.url}",
    }
    env["PIP_EXTRA_INDEX_URL"] = extra.url
    result, report = scan_json("private==1.0", "common", "-r", rules_dir, env=env)
    assert result.exit_code == 1, result.output
    assert [t["verdict"] for t in report["targets"]] == ["findings", "clean"]


def test_extra_index_from_the_command_line(two_indexes: tuple[FakeIndex, FakeIndex], rules_dir: Path) -> None:
    main, extra = two_indexes
    result = run("scan", "private", "-r", rules_dir, "--index-url", main.url, "-q")
    assert result.exit_code == 2 and "no project named 'private'" in result.stderr
    result = run(
        "scan", "private", "-r", rules_dir, "--index-url", main.url, "--extra-index-url", extra.url, "-q"
    )
    assert result.exit_code == 1, result.output


def test_indexes_from_requirements_file_option_lines(
    two_indexes: tuple[FakeIndex, FakeIndex], tmp_path: Path, rules_dir: Path
) -> None:
    main, extra = two_indexes
    req = tmp_path / "requirements.txt"
    req.write_text(f"--index-url {main.url}\n--extra-index-url {extra.url}\ncommon==1.0\nprivate==1.0\n")
    result, report = scan_json("-R", req, "-r", rules_dir)
    assert result.exit_code == 1, result.output
    assert [(t["target"], t["origin"]["line"]) for t in report["targets"]] == [
        ("common==1.0", 3),
        ("private==1.0", 4),
    ]


def test_indexes_from_a_pip_configuration_file(
    two_indexes: tuple[FakeIndex, FakeIndex], tmp_path: Path, rules_dir: Path
) -> None:
    main, extra = two_indexes
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex-url = {main.url}\n[install]\nextra-index-url =\n    {extra.url}\n")
    result = run("scan", "private==1.0", "-r", rules_dir, "-q", env={"PIP_CONFIG_FILE": str(config)})
    assert result.exit_code == 1, result.output


def test_the_files_of_every_index_are_merged(fake_index: FakeIndex, rules_dir: Path) -> None:
    fake_index.add("split", wheel("split", "1.0", {"split/__init__.py": b""}))
    with FakeIndex() as extra:
        extra.add("split", sdist("split", "1.0", {"setup.py": BAD}))
        result, report = scan_json(
            "split==1.0", "-r", rules_dir, "--index-url", fake_index.url, "--extra-index-url", extra.url
        )
    assert result.exit_code == 1, result.output
    assert len(report["targets"][0]["distributions"]) == 2


def test_credentials_in_index_urls_never_appear_in_errors(fake_index: FakeIndex, rules_dir: Path) -> None:
    secret_url = fake_index.url.replace("http://", "http://alice:s3cret-token@")
    result = run(
        "scan", "absent", "-r", rules_dir, "--index-url", fake_index.url, "--extra-index-url", secret_url
    )
    assert result.exit_code == 2
    assert "no project named 'absent'" in result.stderr and "s3cret-token" not in result.output


def test_no_index_is_refused_and_find_links_read(release: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    result = run("scan", "pkg", "-r", rules_dir, "--index-url", release.url, env={"PIP_NO_INDEX": "1"})
    assert result.exit_code == 2 and "no-index is set (environment)" in result.stderr
    req = tmp_path / "requirements.txt"
    req.write_text("--find-links ./wheels\npkg==1.0\n")
    result = run("scan", "-R", req, "-r", rules_dir, "--index-url", release.url)
    assert result.exit_code == 2 and f"--find-links ({req}:1)" in result.stderr
    result = run(
        "scan",
        "pkg==1.0",
        "-r",
        rules_dir,
        "--index-url",
        release.url,
        "-q",
        "-f",
        "json",
        env={"PIP_FIND_LINKS": "/opt/w"},
    )
    # find-links are read (tests/test_find_links.py): one that cannot be read leaves the release incomplete,
    # its findings still exit 1.
    assert result.exit_code == 1, result.output
    assert "find-links /opt/w could not be read" in json.loads(result.stdout)["targets"][0]["error"]
    local = tmp_path / "local.py"
    local.write_text("print(1)\n")
    env: dict[str, str | None] = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/opt/w", "PIP_CERT": "/nonexistent"}
    result = run("scan", local, "-r", rules_dir, "-q", env=env)  # nothing fetched: pip's settings unused
    assert result.exit_code == 0 and result.stderr == "", result.output


# ------------------------------------------------------------------------------------ TLS and proxies


def _tls_index(pki: dict[str, Path], *, require_client_cert: bool = False) -> FakeIndex:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"])
    if require_client_cert:
        context.load_verify_locations(pki["ca"])
        context.verify_mode = ssl.CERT_REQUIRED
    index = FakeIndex(tls=context)
    index.add("pkg", sdist("pkg", "1.0", {"setup.py": BAD}))
    return index


def test_pip_cert_is_the_trust_store(pki: dict[str, Path], rules_dir: Path) -> None:
    with _tls_index(pki) as index:
        result = run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", index.url, "-q")
        assert result.exit_code == 3 and "CERTIFICATE_VERIFY_FAILED" in result.output  # not trusted
        result = run(
            "scan",
            "pkg==1.0",
            "-r",
            rules_dir,
            "--index-url",
            index.url,
            "-q",
            env={"PIP_CERT": str(pki["ca"])},
        )
        assert result.exit_code == 1, result.output


def test_pip_client_cert_is_presented(pki: dict[str, Path], tmp_path: Path, rules_dir: Path) -> None:
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\ncert = {pki['ca']}\n")
    with _tls_index(pki, require_client_cert=True) as index:
        env: dict[str, str | None] = {"PIP_CONFIG_FILE": str(config)}
        result = run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", index.url, "-q", env=env)
        assert result.exit_code == 3, result.output  # the server wants a client certificate
        config.write_text(f"[global]\ncert = {pki['ca']}\nclient-cert = {pki['client']}\n")
        result = run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", index.url, "-q", env=env)
        assert result.exit_code == 1, result.output
    result = run(
        "scan", "pkg==1.0", "-r", rules_dir, "-q", env={"PIP_CLIENT_CERT": str(tmp_path / "none.pem")}
    )
    assert result.exit_code == 2 and "cannot load the client certificate" in result.stderr


def test_pip_trusted_host_skips_verification_for_that_host_only(
    pki: dict[str, Path], rules_dir: Path
) -> None:
    with _tls_index(pki) as index:
        env: dict[str, str | None] = {"PIP_TRUSTED_HOST": f"127.0.0.1:{index.port}"}
        result = run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", index.url, "-q", env=env)
        assert result.exit_code == 1, result.output
        env = {"PIP_TRUSTED_HOST": "example.org"}
        result = run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", index.url, "-q", env=env)
        assert result.exit_code == 3, result.output


class _ForwardingProxy(ThreadingHTTPServer):
    """A plain HTTP proxy: absolute-form GETs forwarded to their origin, each one recorded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ForwardingProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        parts = urlsplit(self.path)
        upstream = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")
        }
        upstream.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()


def test_pip_proxy_setting_routes_every_request(release: FakeIndex, rules_dir: Path) -> None:
    proxy = _ForwardingProxy()
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        env: dict[str, str | None] = {"PIP_PROXY": f"http://127.0.0.1:{proxy.server_address[1]}"}
        result = run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", release.url, "-q", env=env)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert result.exit_code == 1, result.output
    assert f"{release.url}pkg/" in proxy.seen
    assert sum("/files/pkg/" in seen for seen in proxy.seen) == 2


# --------------------------------------------------------------------------------- unpinned names


def test_a_bare_name_respects_requires_python_and_python_version(
    fake_index: FakeIndex, rules_dir: Path
) -> None:
    fake_index.add("numpyish", FakeFile(*wheel("numpyish", "1.0", {"n.py": b""}), requires_python=">=3.8"))
    fake_index.add(
        "numpyish", FakeFile(*sdist("numpyish", "2.0", {"setup.py": BAD}), requires_python=">=3.99")
    )
    fake_index.add("numpyish", FakeFile(*sdist("numpyish", "3.0", {"setup.py": b""}), yanked=True))
    result, report = scan_json("numpyish", "-r", rules_dir, "--index-url", fake_index.url)
    assert result.exit_code == 0, result.output
    assert report["targets"][0]["version"] == "1.0"
    result, report = scan_json(
        "numpyish", "-r", rules_dir, "--index-url", fake_index.url, "--python-version", "3.99"
    )
    assert result.exit_code == 1 and report["targets"][0]["version"] == "2.0"
    fake_index.faults.html_only = True  # data-requires-python on PEP 503 pages too
    result, report = scan_json("numpyish", "-r", rules_dir, "--index-url", fake_index.url)
    assert result.exit_code == 0 and report["targets"][0]["version"] == "1.0"
    result = run("scan", "numpyish", "-r", rules_dir, "--python-version", "three")
    assert result.exit_code == 2 and "--python-version" in result.stderr


# --------------------------------------------------------------------------- targets and -R entries


def test_a_local_path_shadowing_a_name_is_noted_and_pypi_prefix_forces_the_index(
    release: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("print(1)\n")
    result, report = scan_json("pkg", "-r", rules_dir, "--index-url", release.url)
    assert result.exit_code == 0 and report["targets"][0]["kind"] == "directory"
    assert (
        "note: scanning the local directory pkg; for the project on the index, write pypi:pkg"
        in result.stderr
    )
    result, report = scan_json("pypi:pkg", "-r", rules_dir, "--index-url", release.url)
    assert result.exit_code == 1 and report["targets"][0]["kind"] == "release"
    result = run("scan", "./pkg", "-r", rules_dir, "-q")
    assert result.exit_code == 0 and "note:" not in result.stderr


def test_skipped_requirements_entries_make_the_scan_incomplete_unless_allowed(
    release: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    wheel_file = files_of(release, "pkg")["pkg-1.0-py3-none-any.whl"]
    req = tmp_path / "requirements.txt"
    req.write_text(
        "-e ./local\nother @ https://example.invalid/o.tar.gz\ngit+https://example.invalid/x#egg=x\n"
        "./vendored/dir\npkg==1.0\n"
    )
    args = ("scan", "-R", req, "-r", rules_dir, "--index-url", release.url, "-q")
    result = run(*args)
    assert result.exit_code == 1, result.output  # findings still win
    lines = [line for line in result.stderr.splitlines() if line.startswith("note: skipped")]
    assert [line.rsplit(": ", 1)[1] for line in lines] == [
        "an editable project, not an index release",
        "a URL, not an index release",
        "a VCS checkout, not an index release",
        "a local path, not an index release",
    ]
    req.write_text(f"-e ./local\npkg==1.0 --hash=sha256:{wheel_file.sha256}\n")
    result = run(*args)
    assert result.exit_code == 2 and "hash-checking mode" in result.stderr  # pip refuses editables there
    req.write_text("-e ./local\n")
    hashed = tmp_path / "hashed.txt"
    hashed.write_text(f"pkg==1.0 --hash=sha256:{wheel_file.sha256}\n")
    result = run(*args, "-R", hashed)  # another file's --hash: pip's mode covers every file (pass 43)
    assert result.exit_code == 2 and "hash-checking mode" in result.stderr, result.output
    release.add("clean", wheel("clean", "1.0", {"clean/__init__.py": b"pass\n"}))
    req.write_text("-e ./local\nclean==1.0\n")
    result = run(*args)
    assert result.exit_code == 3, result.output
    assert "1 -R entry was not scanned" in result.stderr and "--allow-skipped" in result.stderr
    assert run(*args, "--allow-skipped").exit_code == 0


def test_rules_option_given_a_requirements_file_hints_at_requirements(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("# deps\nrequests==2.31.0 \\\n    --hash=sha256:" + "c" * 64 + "\nsix\n")
    result = run("scan", "-r", req, "six")
    assert result.exit_code == 2
    assert (
        "looks like a requirements file" in result.stderr
        and "did you mean -R/--requirements" in result.stderr
    )
    rules = tmp_path / "rules.txt"
    rules.write_text("rule x { condition: true }\n")
    assert "did you mean" not in run("scan", "-r", rules, str(rules)).stderr


# ----------------------------------------------------------------------------------------------- API


def test_fetch_and_scan_has_the_semantics_of_the_scan_command(
    release: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dragonfly_hybrid as dh
    from dragonfly_hybrid.pypi.index import ProjectNotFound, VersionNotFound
    from dragonfly_hybrid.report import TargetResult

    from tests.fakes.pypi import MARKER_RULE

    rules = dh.Rules.compile({"marker.yar": MARKER_RULE})
    result = dh.fetch_and_scan("pkg==1.0", rules=rules, index_url=release.url)
    assert isinstance(result, TargetResult)
    assert (result.verdict, result.kind, result.version, len(result.distributions)) == (
        "findings", "release", "1.0", 2,
    )  # fmt: skip
    release.add("pkg", wheel("pkg", "1.1", {"pkg/__init__.py": b""}))
    release.add("pkg", FakeFile(*wheel("pkg", "1.2", {"pkg/__init__.py": b""}), requires_python=">=3.99"))
    latest = dh.fetch_and_scan("pkg", rules=rules, index_url=release.url)
    assert (latest.verdict, latest.version) == ("clean", "1.1")
    scanner = dh.Scanner(rules, threads=1)
    newer = dh.fetch_and_scan("pypi:pkg", scanner=scanner, index_url=release.url, python_version="3.99")
    assert newer.version == "1.2"
    with FakeIndex() as extra:
        extra.add("private", sdist("private", "1.0", {"setup.py": BAD}))
        monkeypatch.setenv("PIP_EXTRA_INDEX_URL", extra.url)
        assert dh.fetch_and_scan("private==1.0", rules=rules, index_url=release.url).verdict == "findings"
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL")
    with pytest.raises(ProjectNotFound):
        dh.fetch_and_scan("absent", rules=rules, index_url=release.url)
    with pytest.raises(VersionNotFound):
        dh.fetch_and_scan("pkg==9", rules=rules, index_url=release.url)
    with pytest.raises(ValueError, match="not a PyPI project name"):
        dh.fetch_and_scan("no such thing", rules=rules, index_url=release.url)
    # A set of no rule is refused, not replaced by the bundled rules (it is falsy: len() 0).
    nothing = dh.Rules.compile({"notes.yar": "// no rule yet\n"})
    for given in ({"rules": nothing}, {"scanner": dh.Scanner(nothing)}):
        with pytest.raises(dh.NoRulesError, match="defines no rule"):
            dh.fetch_and_scan("pkg==1.0", index_url=release.url, **given)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- pip's settings


@pytest.mark.parametrize("requirement", ["not a req!!", "./pkg==1.0", "pkg>=1.0"])
def test_fetch_and_scan_names_what_is_not_a_requirement_without_the_cli_words(requirement: str) -> None:
    """The CLI's words ("no such file or directory") read oddly where no path was ever accepted."""
    import dragonfly_hybrid as dh

    with pytest.raises(ValueError) as raised:
        dh.fetch_and_scan(requirement)
    assert str(raised.value) == f"{requirement!r} is not a PyPI project name or name==version"


def test_pip_settings_layer_config_files_environment_requirements_and_command_line(tmp_path: Path) -> None:
    from dragonfly_hybrid.pypi.pipconfig import PipSettings, pip_settings

    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nindex_url = https://user.example/simple/\ncert = /user/ca.pem\n"
        "trusted-host = a.example\n    b.example:8443\n"
    )
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pip.conf").write_text(
        "[global]\nextra-index-url = https://g.example/simple/\n"
        "[install]\nextra-index-url = https://x1.example/simple/ https://x2.example/simple/\nproxy = http://p:3128\n"
    )
    settings = pip_settings({"VIRTUAL_ENV": str(venv)}, home)
    assert settings.index_urls == [
        "https://user.example/simple/", "https://x1.example/simple/", "https://x2.example/simple/",
    ]  # fmt: skip
    assert (settings.cert, settings.proxy) == ("/user/ca.pem", "http://p:3128")
    assert settings.trusted_hosts == ("a.example", "b.example:8443")
    env = {
        "VIRTUAL_ENV": str(venv),
        "PIP_EXTRA_INDEX_URL": " https://e.example/simple/ ",
        "PIP_CERT": "/env/ca",
    }
    settings = pip_settings(env, home)
    assert settings.extra_index_urls == ("https://e.example/simple/",) and settings.cert == "/env/ca"
    layered = settings.overlay(
        index_url="https://req.example/simple/", extra_index_urls=("https://r.example/",)
    )
    layered = layered.overlay(index_url="https://cli.example/simple/")
    assert layered.index_urls == [
        "https://cli.example/simple/", "https://e.example/simple/", "https://r.example/",
    ]  # fmt: skip
    assert PipSettings().index_urls == ["https://pypi.org/simple/"]
    # An existing PIP_CONFIG_FILE replaces the user files, as in pip.
    config = tmp_path / "only.conf"
    config.write_text("[global]\nno-index = true\n")
    settings = pip_settings({"PIP_CONFIG_FILE": str(config)}, home)
    assert settings.index_url is None and settings.refused == (f"no-index is set ({config})",)


def test_sarif_points_at_the_requirements_line_of_a_flagged_release(
    release: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("requirements.txt").write_text("# pinned\n\npkg==1.0\n")
    result = run(
        "scan", "-R", "requirements.txt", "-r", rules_dir, "--index-url", release.url, "-f", "sarif", "-q"
    )
    assert result.exit_code == 1, result.output
    sarif = json.loads(result.stdout)
    validate_sarif(sarif)
    results = sarif["runs"][0]["results"]

    def uri(location: dict) -> str:
        return str(location["physicalLocation"]["artifactLocation"]["uri"])

    findings = [r for r in results if uri(r["locations"][0]) != "requirements.txt"]
    assert findings
    for finding in findings:  # each finding in the archive also points at the line that asked for it
        [origin] = [loc for loc in finding["relatedLocations"] if uri(loc) == "requirements.txt"]
        assert origin["physicalLocation"]["region"]["startLine"] == 3
    placed = [
        r
        for r in results
        if r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "requirements.txt"
    ]
    assert placed and placed[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 3
