"""Pass 36: the index client, the downloads (``scan``'s, the node's on both paths) and ``watch``'s polls wait
what a 429/503's ``Retry-After`` asks (seconds or an HTTP date) before trying again, as pip does, up to
``MAX_RETRY_AFTER``, never past a download's deadline; a signal still ends such a wait. A file name taken
from a URL never carries its path parameters (``f.whl;token=SECRET``).

Real HTTP on 127.0.0.1 against the fake index, made to answer 429/503 with a ``Retry-After``; the times
requests arrive are recorded: a gap at least as long as the wait asked is what is checked (a lower bound,
not a performance target). Subprocesses and signals are real.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import signal
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from dragonfly_hybrid.node.jobs import MainframeError
from dragonfly_hybrid.pypi import index as index_module
from dragonfly_hybrid.pypi.direct import downloaded_bytes
from dragonfly_hybrid.pypi.download import Downloader, filename_of
from dragonfly_hybrid.pypi.index import DownloadError, PyPIClient
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.watch.source import PyPIWatchSource, WatchJob

from tests.fakes.pypi import FakeFile, FakeIndex, _Handler, sdist

SECRET = "S3CRETTOKEN"
SIGNAL_BOUND = 10.0
"""Seconds a process has to exit after a signal (a hang guard: the wait it is in lasts 60 s)."""


class _LimitingHandler(_Handler):
    """The fake index's handler, answering first what :attr:`LimitingIndex.answers` holds for a path."""

    def do_GET(self) -> None:
        index = self.server.index
        assert isinstance(index, LimitingIndex)
        index.arrivals.append((self.path, time.monotonic()))
        queued = index.answers.get(self.path)
        if queued:
            status, retry_after = queued[0] if self.path in index.always else queued.pop(0)
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            self._send(status, b"slow down", "text/plain", headers)
            return
        super().do_GET()


class LimitingIndex(FakeIndex):
    """A fake index that rate-limits: ``answers[path]`` are (status, Retry-After) answered before serving
    it (every time for a path in ``always``); ``arrivals`` are (path, ``time.monotonic()``) of each GET."""

    def __init__(self) -> None:
        super().__init__()
        self._server.RequestHandlerClass = _LimitingHandler
        self.answers: dict[str, list[tuple[int, str | None]]] = {}
        self.always: set[str] = set()
        self.arrivals: list[tuple[str, float]] = []

    def times(self, path: str) -> list[float]:
        return [at for arrived, at in self.arrivals if arrived == path]

    def gaps(self, path: str) -> list[float]:
        times = self.times(path)
        return [b - a for a, b in itertools.pairwise(times)]


@pytest.fixture
def index() -> LimitingIndex:
    with LimitingIndex() as started:
        filename, content = sdist("pkg", "1.0", {"setup.py": b"print('hi')\n"})
        started.add("pkg", FakeFile(filename, content))
        yield started  # type: ignore[misc]


def _file_path(index: FakeIndex) -> str:
    return f"/files/pkg/{index.projects['pkg'][0].filename}"


# ------------------------------------------------------------------------------------- index lookups


@pytest.mark.parametrize("status", [429, 503])
def test_a_lookup_waits_the_seconds_a_retry_after_asks(index: LimitingIndex, status: int) -> None:
    index.answers["/simple/pkg/"] = [(status, "2")]
    with PyPIClient(index.url, backoff=0.01) as pypi:
        release = pypi.resolve("pkg", "1.0")
    assert [f.filename for f in release.files] == ["pkg-1.0.tar.gz"]
    (gap,) = index.gaps("/simple/pkg/")
    assert gap >= 2.0


def test_a_lookup_waits_until_the_http_date_a_retry_after_names(index: LimitingIndex) -> None:
    index.answers["/simple/pkg/"] = [(503, formatdate(time.time() + 3, usegmt=True))]
    with PyPIClient(index.url, backoff=0.01) as pypi:
        pypi.resolve("pkg", "1.0")
    (gap,) = index.gaps("/simple/pkg/")
    assert gap >= 1.5  # a whole-second date, up to a second early


@pytest.mark.parametrize(
    "value",
    [
        *("9" * 500, "12345678901234567890", "-5", "1e9", "soon", "\u00b2", ""),
        *("Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 99999 23:59:59 GMT", "Mon, 32 Foo 2024 99:99:99 GMT"),
    ],
)
def test_hostile_retry_after_values_neither_hang_nor_crash_nor_hammer(
    index: LimitingIndex, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A huge one is cut to the cap (made 1 s here); a negative one, a date long past or garbage ask for
    nothing: the backoff alone applies. Each lookup ends with the release."""
    monkeypatch.setattr(index_module, "MAX_RETRY_AFTER", 1.0, raising=False)
    index.answers["/simple/pkg/"] = [(429, value), (429, value)]
    with PyPIClient(index.url, backoff=0.01) as pypi:
        assert pypi.resolve("pkg", "1.0").version == "1.0"
    gaps = index.gaps("/simple/pkg/")
    assert len(gaps) == 2
    if value.isascii() and value.isdigit():
        assert min(gaps) >= 1.0


def test_the_last_attempt_is_not_followed_by_a_wait(index: LimitingIndex) -> None:
    """Out of attempts, the lookup fails at once: a wait then would ask nothing of the index."""
    index.answers["/simple/pkg/"] = [(429, "1")]
    index.always.add("/simple/pkg/")
    with PyPIClient(index.url, backoff=0.01, retries=2) as pypi:
        with pytest.raises(index_module.IndexUnavailable, match=r"after 2 attempts \(HTTP 429\)"):
            pypi.resolve("pkg", "1.0")
    (gap,) = index.gaps("/simple/pkg/")
    assert gap >= 1.0


def test_a_scan_download_waits_what_the_retry_after_asks(index: LimitingIndex) -> None:
    index.answers[_file_path(index)] = [(503, "2")]
    with PyPIClient(index.url, backoff=0.01) as pypi:
        (file,) = pypi.resolve("pkg", "1.0").files
        sink = io.BytesIO()
        pypi.download(file, sink)
    assert sink.getvalue() == index.projects["pkg"][0].content
    (gap,) = index.gaps(_file_path(index))
    assert gap >= 2.0


# -------------------------------------------------------------------------------- the node's downloads


def _download(downloader: Downloader, url: str, **options: object) -> bytes:
    async def run() -> bytes:
        try:
            data = await downloader.download(url, 1 << 20, backoff=0.01, **options)  # type: ignore[arg-type]
            return bytes(downloaded_bytes(data))
        finally:
            downloader.close()

    return asyncio.run(run())


@pytest.mark.parametrize("path", ["direct", "httpx"])
def test_a_node_download_waits_what_the_retry_after_asks(index: LimitingIndex, path: str) -> None:
    index.answers[_file_path(index)] = [(429, "2")]
    downloader = Downloader(1) if path == "direct" else Downloader(1, client=httpx.Client())
    url = index.file_url("pkg", index.projects["pkg"][0].filename)
    assert _download(downloader, url, deadline=time.monotonic() + 30) == index.projects["pkg"][0].content
    (gap,) = index.gaps(_file_path(index))
    assert gap >= 2.0


def test_a_retry_after_past_the_download_deadline_fails_it_now_as_late(index: LimitingIndex) -> None:
    """A wait that ends after the job's lease: never asked again, a transient failure (leased again)."""
    index.answers[_file_path(index)] = [(503, "30")]
    url = index.file_url("pkg", index.projects["pkg"][0].filename)
    with pytest.raises(DownloadError) as failed:
        _download(Downloader(1), url, deadline=time.monotonic() + 8)
    assert "not downloaded by its deadline" in str(failed.value)
    assert "Retry-After of 30 s ends too late" in str(failed.value)
    assert not failed.value.permanent
    assert len(index.times(_file_path(index))) == 1


# ----------------------------------------------------------------------------------------------- watch


def test_watch_polls_no_sooner_than_the_last_retry_after_asked(index: LimitingIndex, tmp_path: Path) -> None:
    """The node backs off 1 s after a failed poll; the index asked for 2 s: the next poll waits for it."""
    index.answers["/simple/"] = [(429, "2")]
    with Store(tmp_path / "store.db") as store, PyPIClient(index.url, retries=1) as pypi:
        source = PyPIWatchSource(store, "rules", index_url=index.url, pypi=pypi)

        async def poll_twice() -> None:
            with pytest.raises(MainframeError, match="HTTP 429"):
                await source.claim(10)
            assert await source.claim(10) == []  # the baseline

        asyncio.run(poll_twice())
        assert store.get_state("serial") is not None
    (gap,) = index.gaps("/simple/")
    assert gap >= 2.0


def test_a_signal_ends_watchs_wait_for_a_retry_after(index: LimitingIndex, tmp_path: Path) -> None:
    index.answers["/simple/"] = [(503, "3600")]
    index.always.add("/simple/")
    with Store(tmp_path / "store.db") as store, PyPIClient(index.url, retries=1) as pypi:

        async def stopped_while_waiting() -> list[WatchJob]:
            stop = asyncio.Event()
            source = PyPIWatchSource(store, "rules", index_url=index.url, pypi=pypi, stop=stop)
            with pytest.raises(MainframeError, match="Retry-After"):
                await source.claim(10)
            asyncio.get_running_loop().call_later(0.5, stop.set)
            return await asyncio.wait_for(source.claim(10), SIGNAL_BOUND)  # a hang guard

        assert asyncio.run(stopped_while_waiting()) == []
    assert len(index.times("/simple/")) == 1  # stopped before asking again


# ------------------------------------------------------------------------------------ signals in scan


@pytest.mark.parametrize(
    ("stage", "signum", "code"),
    [("lookup", signal.SIGINT, 130), ("lookup", signal.SIGTERM, 143), ("download", signal.SIGINT, 130)],
)
def test_a_signal_ends_a_scans_wait_for_a_retry_after(
    index: LimitingIndex, tmp_path: Path, stage: str, signum: int, code: int
) -> None:
    path = "/simple/pkg/" if stage == "lookup" else _file_path(index)
    index.answers[path] = [(429, "3600")]
    index.always.add(path)
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "pkg==1.0", "--index-url", index.url]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        while not index.times(path) and process.poll() is None:
            time.sleep(0.05)
        time.sleep(2)  # into the wait (without it, 3 attempts take 1.5 s and fail the scan)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=SIGNAL_BOUND)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert len(index.times(path)) == 1


# ---------------------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (f"https://h.example/f-1.0.whl;token={SECRET}", "f-1.0.whl"),
        (f"https://h.example/f-1.0.whl;token={SECRET};expires=1/", "f-1.0.whl"),
        (f"https://h.example/d;token={SECRET}/f-1.0.tar.gz?sig={SECRET}", "f-1.0.tar.gz"),
        (f"https://h.example/;token={SECRET}", "distribution"),
        ("https://h.example/f-1.0.whl", "f-1.0.whl"),
    ],
)
def test_a_file_name_from_a_url_has_no_path_parameters(url: str, name: str) -> None:
    assert filename_of(url) == name


def test_no_token_of_a_path_parameter_in_download_errors_or_unscanned_files(index: LimitingIndex) -> None:
    """The node's errors name the file (logged, submitted) and the URL (redacted); watch stores the name."""
    signed = f"pkg-1.0.tar.gz;token={SECRET}"
    index.add("pkg", FakeFile(signed, b"not the listed bytes"))
    url = index.file_url("pkg", signed)
    with pytest.raises(DownloadError) as mismatch:
        _download(Downloader(1), url, sha256="0" * 64)
    assert "sha256 of pkg-1.0.tar.gz is" in str(mismatch.value)
    missing = index.file_url("pkg", f"gone-1.0.whl;token={SECRET}")
    with pytest.raises(DownloadError) as absent:
        _download(Downloader(1), missing)
    assert "could not download gone-1.0.whl: HTTP 404" in str(absent.value)
    unscanned = WatchJob("pkg", "1.0", (url,), {}).unscanned(url, "HTTP 404")
    assert unscanned.filename == "pkg-1.0.tar.gz"
    for shown in (str(mismatch.value), str(absent.value), unscanned.filename, unscanned.url):
        assert SECRET not in shown
