"""Downloading distributions for the node: streamed into memory, size-capped while streaming, retried when
transient, and checked against the sha256 the index lists when the job carries one (``watch``). Errors are
the package's one download error model (:class:`~dragonfly_hybrid.pypi.index.DownloadError`)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from concurrent.futures import ThreadPoolExecutor

import httpx

from dragonfly_hybrid.http_client import new_client, redact_url
from dragonfly_hybrid.pypi.index import DigestMismatch, DownloadError, DownloadTooLarge

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Bytes asked of the socket per read: large reads keep Python's per-chunk work small.
READ_SIZE = 1 << 20


def filename_of(url: str) -> str:
    """The last path segment of a download URL: the distribution's file name."""
    path = httpx.URL(url).path
    return path.rstrip("/").rsplit("/", 1)[-1] or "distribution"


def _download_once(client: httpx.Client, url: str, cap: int, sha256: str | None) -> bytes:
    shown = redact_url(url)
    with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
        if response.status_code in RETRY_STATUSES:
            raise DownloadError(f"{shown}: HTTP {response.status_code}", permanent=False)
        if response.status_code != 200:
            raise DownloadError(f"{shown}: HTTP {response.status_code}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise DownloadTooLarge(f"{shown}: {declared} bytes, over the download limit of {cap} bytes")
        chunks: list[bytes] = []
        received = 0
        for chunk in response.iter_raw(READ_SIZE):
            received += len(chunk)
            if received > cap:
                raise DownloadTooLarge(
                    f"{shown}: more than the download limit of {cap} bytes (stopped while streaming)"
                )
            chunks.append(chunk)
    data = b"".join(chunks)
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256.lower():
            # The whole body arrived (httpx checks Content-Length): these are not the bytes the index lists.
            raise DigestMismatch(
                f"sha256 mismatch for {filename_of(url)}: the index lists {sha256.lower()}, the downloaded "
                f"file ({len(data)} bytes) hashes to {actual} (from {shown})"
            )
    return data


class Downloader:
    """Downloads into memory on a thread pool of its own, with a blocking ``httpx.Client``.

    Why not the async client: on a 2-core host, downloading 67 MB over loopback cost ~0.75 CPU-seconds
    through httpx's async stack against ~0.3 for the same client used from threads, and every CPU-second
    spent there is taken from the scanners. The threads wait on sockets with the GIL released.
    """

    def __init__(self, concurrency: int, *, client: httpx.Client | None = None) -> None:
        self._client = client or new_client(http2=True)
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="dragonfly-fetch")

    async def download(
        self,
        url: str,
        cap: int,
        *,
        sha256: str | None = None,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> bytes:
        """Download ``url``, at most ``cap`` bytes; retry transient errors with jittered backoff.

        With ``sha256`` (hex), bytes that do not hash to it are a permanent :class:`DigestMismatch` naming the
        file, the listed digest and the actual one: they are never scanned, and the release is a failure.
        """
        loop = asyncio.get_running_loop()
        for attempt in range(1, attempts + 1):
            try:
                return await loop.run_in_executor(self._pool, _download_once, self._client, url, cap, sha256)
            except DownloadError as err:
                if err.permanent or attempt == attempts:
                    raise
            except (httpx.TransportError, httpx.StreamError) as err:
                if attempt == attempts:
                    raise DownloadError(
                        f"{redact_url(url)}: {type(err).__name__} after {attempts} tries", permanent=False
                    ) from None
            await asyncio.sleep(random.uniform(0, backoff * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop: queued downloads are dropped and the connections closed, so that downloads under way fail
        at once instead of holding up the exit."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
