"""``watch --webhook``: a JSON summary of each stored release with findings, POSTed to a URL that is never
logged whole (webhooks carry their secret in the URL)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from dragonfly_hybrid.http_client import new_async_client
from dragonfly_hybrid.report import TargetResult

log = logging.getLogger("dragonfly_hybrid.watch")


WEBHOOK_URL_PROBLEM = (
    "must be an http:// or https:// URL with a host (the value is not shown: it may hold a token)"
)


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook, or None. Only http(s) URLs with a host are accepted (never
    ``file:`` or other schemes, never a bare word), so a bad one is refused at start, not at the first
    finding. The reason never quotes the URL: webhooks carry their secret in the path or the query."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return WEBHOOK_URL_PROBLEM
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return WEBHOOK_URL_PROBLEM
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url.strip()):
        return WEBHOOK_URL_PROBLEM
    try:
        # The request the POST builds: a host httpx cannot encode (``xn--``, a zero-width character) raised
        # at the first finding, after the release was stored (a traceback, the round left unfinished).
        httpx.Request("POST", url.strip())
    except (httpx.InvalidURL, ValueError):
        return WEBHOOK_URL_PROBLEM
    return None


def redact_webhook_url(url: str) -> str:
    """What of a webhook URL may be logged: its scheme, host and port. Webhooks carry their secret in the
    path (``https://discord.com/api/webhooks/ID/TOKEN``, ``https://hooks.slack.com/services/T/B/TOKEN``)
    or the query (``?token=...``), and user:password may be in the authority: the path becomes ``/***``,
    the query ``?***``; the user part and the fragment are dropped."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    path = "/***" if parts.path not in ("", "/") else parts.path
    return urlunsplit((parts.scheme, netloc, path, "***" if parts.query else "", ""))


def _scrub(text: str, url: str) -> str:
    """``text`` (an error message) with the webhook URL, its path, query and credentials blanked."""
    parts = urlsplit(url.strip())
    userinfo = parts.netloc.rpartition("@")[0]
    secrets = [url, url.strip(), userinfo, *userinfo.split(":"), parts.path, parts.query, parts.fragment]
    secrets += [segment for segment in parts.path.split("/") if len(segment) >= 4]
    secrets += [value for _, _, value in (item.partition("=") for item in parts.query.split("&"))]
    for secret in sorted(
        {s for s in secrets if len(s) >= 4 and s not in ("http", "https")}, key=len, reverse=True
    ):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Webhook:
    """POST a JSON summary of every stored release whose score is at least ``min_score``.

    ``url`` must be http(s) (ValueError otherwise); it is never shown whole: logs and reprs use
    :func:`redact_webhook_url`."""

    url: str
    min_score: int = 5
    attempts: int = 3

    def __post_init__(self) -> None:
        problem = webhook_url_problem(self.url)
        if problem is not None:
            raise ValueError(f"webhook URL {problem}")
        object.__setattr__(self, "url", self.url.strip())

    def __repr__(self) -> str:
        shown = redact_webhook_url(self.url)
        return f"Webhook(url={shown!r}, min_score={self.min_score}, attempts={self.attempts})"

    async def post(self, payload: dict[str, object], http: httpx.AsyncClient | None = None) -> None:
        """POST ``payload``; retry 5xx, 429 and network errors; log (never raise) when it cannot."""
        shown = redact_webhook_url(self.url)
        client = http or new_async_client(timeout=15.0, follow_redirects=False)
        try:
            for attempt in range(1, self.attempts + 1):
                try:
                    response = await client.post(
                        self.url,
                        content=json.dumps(payload).encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    if response.status_code < 300:
                        return
                    problem = f"HTTP {response.status_code}"
                    if 400 <= response.status_code < 500 and response.status_code != 429:
                        break
                except httpx.HTTPError as err:  # some messages quote the URL: scrub its secrets
                    problem = _scrub(f"{type(err).__name__}: {err}", self.url)
                if attempt < self.attempts:
                    await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            # Named: with several findings under way, a line without the release left which one was
            # never announced to be guessed.
            about = {"project": payload.get("name"), "version": payload.get("version")}
            log.error("webhook failed", extra={"url": shown, "error": problem, **about})
        finally:
            if http is None:
                await client.aclose()


def webhook_payload(result: TargetResult, scan_id: int, rules_hash: str) -> dict[str, object]:
    return {
        "event": "findings",
        "name": result.name,
        "version": result.version,
        "verdict": result.verdict,
        "score": result.score,
        "rules_matched": list(result.rules_matched),
        "inspector_url": result.inspector_url,
        "rules_hash": rules_hash,
        "scan_id": scan_id,
        "files": [
            {
                "distribution": dist.name,
                "path": file.path,
                "score": file.score,
                "rules": [m.identifier for m in file.matches],
            }
            for dist in result.distributions
            for file in dist.files
        ],
    }
