"""Downloading distributions for the node: streamed into memory, size-capped while streaming, retried when
transient, over by a deadline when given one (the job's lease), and checked against the sha256 the index
lists when the job carries one (``watch``). Errors are the package's one download error model
(:class:`~dragonfly_hybrid.pypi.index.DownloadError`).

The deadline bounds the whole of a download, from the connect to the last byte: on the direct path
(:mod:`.direct`: every download, redirects and credentials in the URL included), and through httpx (a
proxy named by the environment), where each connection the download opens (to the proxy or the host, each
redirect's) is put under the deadline as it is opened, so a proxy, or a host behind it, dripping a TLS
handshake or the head a byte at a time is cut off there too. The httpx client made here keeps no
connection alive for that reason: a request on a pooled connection opens none, and until its head arrives
nothing would tell which socket to end. With a client given by the caller, a pooled connection comes
under the deadline only once its answer's head has arrived. Either way, a download whose deadline passed
never succeeds: it fails as late, whatever was read."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import unquote

import httpx

from dragonfly_hybrid.futures import take_outcome
from dragonfly_hybrid.http_client import environment_names_a_proxy, new_client, redact_url
from dragonfly_hybrid.pypi.direct import (
    DeadlinePassed,
    DirectDownloads,
    DownloadDeadline,
    Downloaded,
    UseHttpx,
    downloaded_bytes,
)
from dragonfly_hybrid.pypi.index import (
    DownloadError,
    Retryable,
    describe_error,
    digest_mismatch,
    stream_download,
)


def filename_of(url: str) -> str:
    """The distribution's file name: the last path segment of its download URL, without the segment's
    parameters (``f.whl;token=S`` is ``f.whl``). pip's name keeps them, but this one is logged, reported and
    stored, and a signed URL may carry its token there (the URL is only ever shown redacted). Cut before it
    is percent-decoded: an encoded ``%3B`` is part of the name, as pip and the index name it (``watch``
    finds a file stored by that name), and as :func:`redact_url` leaves it."""
    raw = httpx.URL(url).raw_path.decode("ascii").partition("?")[0]
    segment = raw.rstrip("/").rsplit("/", 1)[-1].partition(";")[0]
    return unquote(segment).rstrip("/").rsplit("/", 1)[-1] or "distribution"


def _download_once(
    httpx_client: Callable[[], httpx.Client],
    direct: DirectDownloads | None,
    url: str,
    cap: int,
    sha256: str | None,
    deadline: DownloadDeadline | None,
) -> Downloaded:
    name = filename_of(url)
    data: Downloaded | None = None
    if direct is not None:
        try:
            data = direct.get(url, name, cap, deadline)
        except UseHttpx:
            pass
    if data is None:
        chunks: list[bytes] = []
        opened = None if deadline is None else partial(_attach_body_socket, deadline)
        connections = None if deadline is None else _ConnectionsUnderDeadline(deadline)
        try:
            stream_download(
                httpx_client(), url, name, cap, chunks.append, digest=False, opened=opened, trace=connections
            )
        finally:
            if connections is not None:
                connections.close()
        data = b"".join(chunks)
    if deadline is not None and deadline.passed:
        raise DeadlinePassed("the download's deadline passed")  # what was read may be cut short
    if sha256 is not None:
        digest = hashlib.sha256(downloaded_bytes(data)).hexdigest()
        if digest != sha256.lower():
            # The whole body arrived (its length was checked): these are not the bytes the index lists.
            raise digest_mismatch(name, sha256.lower(), digest, url)
    return data


def _attach_body_socket(deadline: DownloadDeadline, response: httpx.Response) -> None:
    """An expiry of ``deadline`` ends the body ``response`` reads (until the answer's head arrived, the
    client's own timeouts apply: connect, and read per silence)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    deadline.attach(None if sock is None else lambda: sock)


class _ConnectionsUnderDeadline:
    """httpcore's ``trace`` hook for one download: each connection it opens (to the host, to a proxy, each
    redirect's) is put under ``deadline`` as it opens, the head's reads and any TLS handshake included.
    Through a duplicate of its socket: the TLS handshake that follows detaches the socket object httpcore
    holds (its descriptor moves to the TLS socket), so shutting that one down ended nothing, where
    shutting down a duplicate ends the connection. :meth:`close` closes the duplicates."""

    def __init__(self, deadline: DownloadDeadline) -> None:
        self._deadline = deadline
        self._held: list[socket.socket] = []

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if not event.endswith(".connect_tcp.complete"):
            return
        stream = info.get("return_value")
        opened = stream.get_extra_info("socket") if stream is not None else None
        if opened is not None:
            held = opened.dup()
            self._held.append(held)
            self._deadline.attach(lambda: held)

    def close(self) -> None:
        for held in self._held:
            held.close()
        self._held.clear()


class Downloader:
    """Downloads into memory on a thread pool of its own: one buffer per file, read straight from the
    socket (:mod:`.direct`, which follows redirects and sends credentials in the URL itself), or through a
    blocking ``httpx.Client`` where that path does not apply (a proxy named by the environment, or a
    ``client`` given by the caller).

    Why not the async client: on a 2-core host, downloading 67 MB over loopback cost ~0.75 CPU-seconds
    through httpx's async stack against ~0.3 for the same client used from threads, and every CPU-second
    spent there is taken from the scanners. The threads wait on sockets with the GIL released.

    Why HTTP/1.1 (as pip): over TLS, receiving 86 MB cost ~0.33 CPU-seconds through httpx's HTTP/2 (framing
    and flow control in Python) against ~0.14 over HTTP/1.1, and PyPI's file host speaks both. Each
    concurrent download then has a connection of its own.
    """

    def __init__(self, concurrency: int, *, client: httpx.Client | None = None) -> None:
        self._direct = None if client is not None or environment_names_a_proxy() else DirectDownloads()
        # Made on first use: most downloads never need it, and making it (httpcore's import, a TLS context)
        # held a fresh node up for ~60 ms before its first claim.
        self._client = client
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="dragonfly-fetch")
        self._closed = False

    async def download(
        self,
        url: str,
        cap: int,
        *,
        sha256: str | None = None,
        attempts: int = 3,
        backoff: float = 0.5,
        deadline: float | None = None,
    ) -> Downloaded:
        """Download ``url``, at most ``cap`` bytes; retry transient errors with jittered backoff, after a 429
        or 503 at least what its ``Retry-After`` asks (up to :data:`~.index.MAX_RETRY_AFTER`).

        With ``sha256`` (hex), bytes that do not hash to it are a permanent :class:`DigestMismatch` naming the
        file, the listed digest and the actual one: they are never scanned, and the release is a failure.
        With ``deadline`` (``time.monotonic()``), a download not over by then is ended there, and not tried
        again: a transient error (whatever held it up may not be there next time). A retry whose wait would
        end past it fails at once, as late.
        Every failure is a :class:`DownloadError`.
        """
        if deadline is not None and time.monotonic() >= deadline:
            raise DownloadError(
                f"{redact_url(url)}: not started: its deadline (the job's lease) had passed", permanent=False
            )
        loop = asyncio.get_running_loop()
        for attempt in range(1, attempts + 1):
            asked: float | None = None
            limit = None if deadline is None else DownloadDeadline(deadline)
            try:
                done = loop.run_in_executor(
                    self._pool, _download_once, self._httpx_client, self._direct, url, cap, sha256, limit
                )
                # Left behind when the caller is cancelled (the node stops), the download still ends in its
                # thread, failing once the downloader closes: its error is taken, not logged as never
                # retrieved.
                done.add_done_callback(take_outcome)
                if limit is not None and not (await asyncio.wait({done}, timeout=limit.remaining()))[0]:
                    limit.expire()  # the read under way fails at once; its error is explained below
                data = await done
                if limit is not None and limit.passed:
                    # Expired, yet read as whole: a head cut short reads as an empty body (never scanned).
                    raise DeadlinePassed("the download's deadline passed")
                return data
            except DeadlinePassed:
                raise self._late(url, attempt) from None
            except DownloadError as err:
                if err.permanent or attempt == attempts or self._closed:
                    raise
            except httpx.UnsupportedProtocol as err:
                # A URL of a scheme no download takes (`file:`, `ftp:`, none at all): no retry fetches it, and
                # a job left to be leased again would only fail again.
                raise self._failed(url, err) from None
            except (
                Retryable,
                httpx.TransportError,
                httpx.StreamError,
                OSError,
                http.client.HTTPException,
            ) as err:
                if limit is not None and (limit.passed or limit.remaining() <= 0):
                    raise self._late(url, attempt) from None
                if isinstance(err, Retryable):
                    asked = err.retry_after
                # Once closed, the download is not tried again: the failure it met is the answer.
                if attempt == attempts or self._closed:
                    reason = str(err) if isinstance(err, Retryable) else type(err).__name__
                    raise DownloadError(
                        f"{redact_url(url)}: {reason} after {attempt} tries", permanent=False
                    ) from None
            except Exception as err:
                # Anything else (a redirect loop, a URL httpx refuses) would fail again.
                raise self._failed(url, err) from None
            pause = max(random.uniform(0, backoff * 2 ** (attempt - 1)), asked or 0.0)
            if deadline is not None and time.monotonic() + pause >= deadline:
                # Never asked again before the wait a Retry-After asks is over: that would end too late.
                raise self._late(url, attempt, asked if asked == pause else None)
            await asyncio.sleep(pause)
            if self._closed:
                raise DownloadError(f"{redact_url(url)}: stopped after {attempt} tries", permanent=False)
        raise AssertionError("unreachable")

    def _failed(self, url: str, err: Exception) -> DownloadError:
        """The failure of a download that no retry would fix: permanent, unless the downloader was closed
        under it (then the job is left to be claimed again)."""
        return DownloadError(f"{redact_url(url)}: {describe_error(err)}", permanent=not self._closed)

    @staticmethod
    def _late(url: str, attempt: int, asked: float | None = None) -> DownloadError:
        why = "" if asked is None else f"; its Retry-After of {asked:.0f} s ends too late"
        return DownloadError(
            f"{redact_url(url)}: not downloaded by its deadline (the job's lease), after {attempt} tries"
            + why,
            permanent=False,
        )

    def _httpx_client(self) -> httpx.Client:
        """The blocking client of the downloads the direct path does not take (made on the first)."""
        with self._client_lock:
            if self._closed:
                raise Retryable("the downloader is closed")
            if self._client is None:
                # No connection kept alive: every download opens its own, put under its deadline as it
                # opens (module docstring).
                self._client = new_client(http2=False, keep_alive=False)
            return self._client

    def close(self) -> None:
        """Stop: queued downloads are dropped and the connections closed, so that downloads under way fail
        at once instead of holding up the exit, and none is tried again."""
        with self._client_lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._direct is not None:
            self._direct.close()
        if self._client is not None:
            self._client.close()
