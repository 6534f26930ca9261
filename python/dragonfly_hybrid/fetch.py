"""Downloading distributions for the node: streamed, size-capped while streaming, retried when transient,
and checked against the sha256 the index lists when the job carries one (``watch``)."""

from __future__ import annotations

import asyncio
import hashlib
import random

import httpx

from dragonfly_hybrid.pypi import redact_url

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class FetchError(Exception):
    """A distribution could not be downloaded.

    ``permanent`` is True when trying again cannot help (404, over the size cap): the release is then
    reported as a failure. A transient error leaves the job to the server, which leases it again.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def filename_of(url: str) -> str:
    """The last path segment of a download URL: the distribution's file name."""
    path = httpx.URL(url).path
    return path.rstrip("/").rsplit("/", 1)[-1] or "distribution"


async def _download_once(client: httpx.AsyncClient, url: str, cap: int, sha256: str | None) -> bytes:
    shown = redact_url(url)
    async with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
        if response.status_code in RETRY_STATUSES:
            raise FetchError(f"{shown}: HTTP {response.status_code}", permanent=False)
        if response.status_code != 200:
            raise FetchError(f"{shown}: HTTP {response.status_code}", permanent=True)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(
                f"{shown}: {declared} bytes, over the download limit of {cap} bytes", permanent=True
            )
        chunks: list[bytes] = []
        received = 0
        hasher = hashlib.sha256()
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > cap:
                raise FetchError(
                    f"{shown}: more than the download limit of {cap} bytes (stopped while streaming)",
                    permanent=True,
                )
            chunks.append(chunk)
            hasher.update(chunk)
    if sha256 is not None and hasher.hexdigest() != sha256.lower():
        # The whole body arrived (httpx checks Content-Length): these are not the bytes the index lists.
        raise FetchError(
            f"sha256 mismatch for {filename_of(url)}: the index lists {sha256.lower()}, the downloaded "
            f"file ({received} bytes) hashes to {hasher.hexdigest()} (from {shown})",
            permanent=True,
        )
    return b"".join(chunks)


async def download(
    client: httpx.AsyncClient,
    url: str,
    cap: int,
    *,
    sha256: str | None = None,
    attempts: int = 3,
    backoff: float = 0.5,
) -> bytes:
    """Download ``url`` into memory, at most ``cap`` bytes; retry transient errors with jittered backoff.

    With ``sha256`` (hex), bytes that do not hash to it are a permanent :class:`FetchError` naming the
    file, the listed digest and the actual one: they are never scanned, and the release is a failure.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await _download_once(client, url, cap, sha256)
        except FetchError as err:
            if err.permanent or attempt == attempts:
                raise
        except (httpx.TransportError, httpx.StreamError) as err:
            if attempt == attempts:
                raise FetchError(
                    f"{redact_url(url)}: {type(err).__name__} after {attempts} tries", permanent=False
                ) from None
        await asyncio.sleep(random.uniform(0, backoff * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")
