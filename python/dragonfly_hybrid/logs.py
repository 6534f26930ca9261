"""Structured logging for the node: human-readable text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Literal

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


_VERBOSE_HTTP_LOGGERS = ("httpcore", "h2", "hpack")


def quiet_http_debug_logs() -> None:
    """Keep httpcore, h2 and hpack below DEBUG: their debug logs print raw headers (``Set-Cookie`` with the
    session token, ``Authorization``, ``Cookie``). Called by the mainframe client and by the logging set-up.
    A logger explicitly set to a level above NOTSET and at least INFO is left alone."""
    for name in _VERBOSE_HTTP_LOGGERS:
        chosen = logging.getLogger(name)
        if chosen.level < logging.INFO:
            chosen.setLevel(logging.INFO)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        text = super().format(record)
        return f"{text} [{fields}]" if fields else text


LogFormat = Literal["text", "json"]
"""The ``--log-format`` choices."""


def setup_logging(fmt: LogFormat = "text", level: str = "INFO") -> None:
    """Route the package's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("dragonfly_hybrid")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # HTTP libraries' debug logs print raw headers (cookies, tokens): never let them through.
    quiet_http_debug_logs()
