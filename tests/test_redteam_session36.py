"""Red-team pass 18 (session 36): each test failed on the code it was written against (HEAD 74d0c39).

* A rule set whose verdict depends on the time (YARA-X's ``time`` module, on by default): the content
  cache, keyed by ``Rules.hash`` and the engine version, answers a later run with the matches of an earlier
  time, so a cached run reports less than a fresh one.
* Downloads through httpx (a proxy named by the environment, or a client given): the deadline does not
  cover a TLS handshake under way (the plain socket put under the deadline is detached by ``wrap_socket``,
  and the TLS socket is attached only once the handshake is over), so a host, or an origin behind a
  CONNECT tunnel, dripping its handshake holds the download past its deadline for as long as it drips.
* ``diff`` took a stored scan for a file it could not download and whose digest the index does not list
  (matched by name alone, whatever bytes and URL the stored scan read): ``clean`` from the store where a
  fresh scan is ``incomplete``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.download import Downloader
from dragonfly_hybrid.pypi.index import DownloadError

from tests.fakes.pypi import MARKER, FakeFile, FakeIndex, sdist, write
from tests.test_content_cache_redteam import run, verdict_and_rules

BAD = b"import os\n# " + MARKER + b"\n"


# ------------------------------------------------------------------- rules that depend on the time


def test_a_rule_set_reading_the_time_is_never_answered_from_an_earlier_runs_content_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``import "time"`` compiles (the module is on by default in YARA-X), and ``time.now()`` is read at
    scan time: the same sources, so the same ``Rules.hash`` and the same content-cache entries, match other
    files at another moment. A "no match" stored before the moment kept answering after it: ``scan
    --store`` said ``clean`` where a fresh scan of the same file with the same rules said ``findings``.

    Such a set's answers are never kept nor taken (``RuleSet::reads_the_clock``): the cached run and the
    fresh run agree."""
    monkeypatch.setenv("DRAGONFLY_RULES_CACHE_DIR", str(tmp_path / "rules-cache"))
    moment = int(time.time()) + 4
    rules = write(
        tmp_path / "timed.yar",
        (
            'import "time"\n'
            "rule armed_after_a_moment {\n"
            '  strings: $a = "EVIL_PAYLOAD_MARKER"\n'
            f"  condition: $a and time.now() >= {moment}\n"
            "}\n"
        ).encode(),
    )
    filename, data = sdist("timed", "1.0", {"setup.py": b"print('EVIL_PAYLOAD_MARKER')\n"})
    archive = write(tmp_path / filename, data)
    store = tmp_path / "store.db"
    before = run("scan", "-r", rules, "--store", store, "-f", "json", archive)
    assert verdict_and_rules(before) == ("clean", [])  # before the moment (a precondition, not a timing)
    assert "0 new entries saved" in before.stderr
    while time.time() < moment + 1:
        time.sleep(0.2)
    cached = run("scan", "-r", rules, "--store", store, "-f", "json", archive)
    fresh = run("scan", "-r", rules, "-f", "json", archive)
    assert verdict_and_rules(fresh) == ("findings", ["armed_after_a_moment"])
    assert verdict_and_rules(cached) == verdict_and_rules(fresh)


# ------------------------------------------------------------------ a TLS handshake dripped by the host


class HandshakeDripper:
    """A TCP server that takes one connection (answering a proxy's ``CONNECT`` first when ``proxy``), reads
    the ClientHello, then sends a TLS handshake record a byte every 20 ms for 5 s, then closes. ``left`` is
    set when the client hangs up first."""

    def __init__(self, *, proxy: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.proxy = proxy
        self.left = threading.Event()
        self.dripped_all = threading.Event()
        self.first_line = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        try:
            if self.proxy:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        raise OSError("the client left before its CONNECT was whole")
                    head += chunk
                self.first_line = head.split(b"\r\n", 1)[0]
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            conn.recv(4096)  # the ClientHello
            record = b"\x16\x03\x03\x40\x00\x02" + bytes(16_000)  # a ServerHello never finished
            end = time.monotonic() + 5
            sent = 0
            while time.monotonic() < end:
                conn.send(record[sent : sent + 1])
                sent += 1
                time.sleep(0.02)
            self.dripped_all.set()
        except OSError:
            self.left.set()
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(10)


@pytest.mark.parametrize("route", ["through-a-connect-tunnel", "a-client-given"])
def test_a_tls_handshake_dripped_byte_by_byte_is_ended_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """The deadline is to cover the whole download through httpx, from the connect on
    (``pypi/download.py``). Its ``trace`` hook puts the plain socket under the deadline when the TCP
    connection opens and the TLS socket once ``start_tls`` is *complete*; between the two, ``wrap_socket``
    has detached the plain socket (shutting it down is EBADF, swallowed), so nothing ends a handshake
    under way: an origin behind an HTTP proxy's CONNECT tunnel (the node's path when ``HTTPS_PROXY`` is
    set), or a TLS host reached by a given client, dripping its ServerHello held a download due in 0.5 s
    for the whole 5 s drip (and would for as long as it drips: httpx's timeouts end only silence).

    A fixed product ends the handshake at the deadline: the host sees the client hang up before it is done
    dripping (no wall-clock assertion: the order of the two events)."""
    import httpx

    proxy = route == "through-a-connect-tunnel"
    dripper = HandshakeDripper(proxy=proxy)
    if proxy:
        for variable in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dripper.port}")
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{dripper.port}")
        url = "https://files.invalid/pkg/a.whl"
        downloader = Downloader(1)
    else:
        url = f"https://127.0.0.1:{dripper.port}/a.whl"
        downloader = Downloader(1, client=httpx.Client())

    async def download() -> object:
        return await downloader.download(
            url, 10_000_000, backoff=0.0, attempts=3, deadline=time.monotonic() + 0.5
        )

    try:
        with pytest.raises(DownloadError) as caught:
            asyncio.run(download())
    finally:
        downloader.close()
        dripper.close()
    if proxy:
        assert dripper.first_line == b"CONNECT files.invalid:443 HTTP/1.1"
    assert "not downloaded by its deadline" in str(caught.value)
    assert dripper.left.is_set() and not dripper.dripped_all.is_set()


# ------------------------------------------------------------------ diff: a file it could not download


def test_diff_never_takes_a_stored_scan_for_a_file_it_could_not_download_and_whose_digest_is_unknown(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """``scan pkg==2.0 --store`` reads ``pkg-2.0.tar.gz`` from one index (clean). Another index lists a
    file of that name with other bytes (flagged), without a digest, and its download fails. ``diff``
    against that index took the stored scan for the file: ``current_files`` gives a file neither downloaded
    nor listed with a digest as ``None``, which ``Store.scan_of_files`` matches by name alone, whatever
    bytes, from whatever URL, the stored scan read. The new side was ``clean``, ``from: store``, where a
    fresh scan is ``incomplete`` (the file could not be downloaded): a verdict for bytes nobody scanned.

    A fixed product scans (fails to download, and says ``incomplete``), or takes a stored scan only of
    bytes it can tell are these (the same URL at least, as ``StoredRelease`` settles an undigested file
    not downloaded)."""
    store = tmp_path / "s.db"
    fake_index.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
    name, clean = sdist("pkg", "2.0", {"pkg/a.py": b"a = 2\n"})
    fake_index.add("pkg", (name, clean))
    scanned = run("scan", "pkg==2.0", "-r", rules_dir, "--index-url", fake_index.url, "--store", store, "-q")
    assert scanned.exit_code == 0
    with FakeIndex() as mirror:
        mirror.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
        mirror.add("pkg", FakeFile(name, sdist("pkg", "2.0", {"pkg/a.py": BAD})[1], listed_sha256=""))
        mirror.faults.missing.add(name)  # 404
        common = ("-r", rules_dir, "--index-url", mirror.url)
        fresh = run("diff", "pkg==1.0", "pkg==2.0", *common, "-f", "json")
        stored = run("diff", "pkg==1.0", "pkg==2.0", *common, "--store", store, "-f", "json")
    fresh_new = json.loads(fresh.stdout)["new"]
    assert (fresh.exit_code, fresh_new["verdict"]) == (3, "incomplete")
    stored_new = json.loads(stored.stdout)["new"]
    assert (stored_new["verdict"], stored_new["from"]) == ("incomplete", "scan"), stored_new
    assert stored.exit_code == fresh.exit_code
