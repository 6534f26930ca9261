"""Structured logging for the node: human-readable text or one JSON object per line. Every line is redacted
(:func:`~dragonfly_hybrid.redaction.redact_text`): the secrets the process remembers and the credentials and
query values of URLs never reach a log, whatever message, field or traceback carried them. httpx's and
httpcore's own records are redacted where they are created (:func:`redact_http_library_logs`), for an
application that embeds the package and routes those loggers to its own handlers."""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Literal

from dragonfly_hybrid.redaction import redact_text

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


# Loggers of the HTTP libraries whose records quote URLs: httpx's INFO line (``HTTP Request: GET <URL>``,
# credentials and query tokens included) and httpcore's traces (per module: a logger's filters apply only
# to the records created on it, never to a child's, so each is named).
_HTTP_LIBRARY_LOGGERS = (
    "httpx",
    "httpcore",
    *(f"httpcore.{part}" for part in ("connection", "http11", "http2", "proxy", "socks")),
)


class RedactingFilter(logging.Filter):
    """Redacts each record it sees, in place (:func:`~dragonfly_hybrid.redaction.redact_text`): its message
    (formatted, then kept as the message with no arguments), traceback and stack. Attached to a logger, it
    applies to every record created there, whatever handlers and formatters the application installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not format: a filter must not raise into the caller
            message = f"{_as_text(record.msg)} {_as_text(record.args)}"
        record.msg, record.args = redact_text(message), None
        if record.exc_info:
            # Formatters show ``exc_text`` when set; without ``exc_info``, none formats the traceback anew.
            record.exc_text = redact_text(
                record.exc_text or logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__: its type says what it was
        return f"<{type(value).__name__}>"


_REDACTING_FILTER = RedactingFilter()
_attaching = threading.Lock()  # addFilter's own check is not atomic: clients may be built on two threads


def redact_http_library_logs() -> None:
    """Attach :class:`RedactingFilter` to httpx's and httpcore's loggers (their levels untouched), so that an
    application embedding the package, routing those loggers to its own handlers, gets their records
    redacted. Idempotent (``addFilter`` skips a filter already there); loggers under ``httpx.`` or
    ``httpcore.`` that exist already (a later version's) get it too. Called when a client is built."""
    names = set(_HTTP_LIBRARY_LOGGERS)
    names.update(n for n in list(logging.root.manager.loggerDict) if n.startswith(("httpx.", "httpcore.")))
    with _attaching:
        for name in names:
            logging.getLogger(name).addFilter(_REDACTING_FILTER)


def _redacted(value: object) -> object:
    """A log field's value with every string in it redacted (containers walked; other values as text)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (list, tuple)):
        return [_redacted(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _redacted(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


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
        return json.dumps({key: _redacted(value) for key, value in entry.items()})


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        text = super().format(record)
        return redact_text(f"{text} [{fields}]" if fields else text)


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
