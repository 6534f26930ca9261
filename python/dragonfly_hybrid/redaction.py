"""What may be shown of a secret: nothing. The one place that makes text safe to print, log or store.

* :func:`redact_url`: a URL without the credentials it embeds (user name and password, also when the
  password was written with an unencoded ``/``, ``?`` or ``#``), with every value of its query, its path
  parameters (``;token=...``) and its fragment (but a ``#sha256=...`` digest) replaced by :data:`REDACTED`.
* :func:`redact_text`: free text (an error message, a log line, a traceback, a server's answer) with every
  secret the process was told about (:func:`remember_secret`: the node's client secret and password, its
  session tokens) replaced, and every URL in it redacted.
* :func:`describe_error`: ``Type: message`` of an exception, redacted.

Kept free of heavy imports (no ``logging``, ``json`` or ``httpx`` at import): a ``scan`` of a local file
loads it.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

REDACTED = "<redacted>"
"""What is shown in place of a secret: each query value, path parameter, credential, remembered secret."""

UNPARSABLE_URL = "<unparsable URL>"

_MASKS = frozenset({REDACTED, "***"})
"""What stands for a value already hidden (``***``: how ``watch`` shows a webhook URL's query), kept as is."""

MIN_SECRET_LENGTH = 4
"""Shorter values are not remembered: scrubbing every ``abc`` from every message would garble them."""

_LASTING_LIMIT = 64
_RECENT_LIMIT = 32
_lock = threading.Lock()
# pip's ``${VARIABLE}`` placeholders (expanded from the environment by pip, not by this package): they name
# a secret without holding it, and an error about them must show them.
_PLACEHOLDERS = re.compile(r"(?:\$\{[A-Za-z0-9_]+\}|:)+")
_lasting: tuple[str, ...] = ()
_recent: tuple[str, ...] = ()
_scrubbed: tuple[str, ...] = ()
"""Every form of every remembered secret, longest first (rebuilt, never mutated: read without the lock)."""

# Fragment keys whose values are kept: file digests (``#sha256=...``, pip's hash fragments) and pip's
# ``egg``/``subdirectory``; every other fragment value may be a token.
_KEPT_FRAGMENT_KEYS = frozenset(
    {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s", "egg", "subdirectory"}
    | {"sha3_224", "sha3_256", "sha3_384", "sha3_512"}
)


def remember_secret(value: str | None, *, lasting: bool = True) -> None:
    """Have :func:`redact_text` hide ``value`` (and its percent-encoded and JSON-escaped forms) from now on.

    ``lasting``: a configured secret (client secret, password; the last 64 are kept); else a session
    token, one of the 32 most recent (tokens are renewed every few minutes, for weeks on end).
    Values shorter than :data:`MIN_SECRET_LENGTH` are ignored."""
    global _lasting, _recent, _scrubbed
    if value is None or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _lasting or value in _recent:
            return
        if lasting:
            _lasting = (*_lasting, value)[-_LASTING_LIMIT:]
        else:
            _recent = (*_recent, value)[-_RECENT_LIMIT:]
        _scrubbed = _forms(_lasting + _recent)


def forget_secrets() -> None:
    """Forget every remembered secret (tests)."""
    global _lasting, _recent, _scrubbed
    with _lock:
        _lasting = _recent = _scrubbed = ()


def _forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    import json

    forms: set[str] = set()
    for secret in secrets:
        escaped = (json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])
        # Percent-encoded as a URL's part or a form's field (``+`` for a space), in upper- and lower-case
        # hex; JSON-escaped, also with escaped slashes (``\/``, as PHP and others write them).
        encoded = (quote(secret, safe=""), quote_plus(secret, safe=""))
        lower = tuple(re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in encoded)
        slashes = tuple(form.replace("/", "\\/") for form in escaped)
        forms.update((secret, *encoded, *lower, *escaped, *slashes))
    return tuple(sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True))


_SCHEME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_WHITESPACE = re.compile(r"\s")
_URL_END = re.compile(r"[\s'\"<>]")
_AT = re.compile("@")
_AUTHORITY_END = re.compile("[?#@]")
_AUTHORITY_CUT = re.compile("[/?#]")
_LABEL = re.compile(r"[^\W_]+(?:-+[^\W_]+)*")
"""A host name's label: letters and digits (any script), hyphens inside."""


class _NextMatch:
    """Where ``pattern`` next matches in ``text`` at or after a position. A match found is reused for later
    positions up to it, so positions asked in increasing order search the text once (one asked before the
    last is searched again)."""

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self._pattern, self._text = pattern, text
        self._found = -1
        self._from = len(text) + 1  # nothing asked yet

    def at_or_after(self, position: int) -> int:
        """The next match's start (``len(text)`` when none is left)."""
        if not (self._from <= position <= self._found):
            match = self._pattern.search(self._text, position)
            self._found = match.start() if match else len(self._text)
        self._from = position
        return self._found


def _redact_urls(text: str, separator: str = "://") -> str:
    """``text`` with every URL in it as :func:`redact_url` shows it. A URL: a scheme, ``://``, then,
    optionally, credentials up to an ``@`` (they may hold quotes, ``/``, ``?`` or ``#`` written unencoded)
    before the next white space, then anything up to a white space, a quote or an angle bracket, or up to
    the next URL's scheme when one starts in its host or path (``https://a/x,https://user:pass@b/``: two
    URLs; one in its query or fragment is hidden with it).

    ``separator``: ``:\\/\\/`` for URLs in JSON text that escapes its slashes
    (``https:\\/\\/user:pass@host``): each is unescaped, redacted, and escaped again.

    Found by hand in one pass: a regular expression for it backtracked quadratically over hostile text (a
    96 kB line took 6 s), and this runs on whatever a package or a server said."""
    escaped = separator != "://"
    width = len(separator)
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    spaces, ends, ats = (_NextMatch(pattern, text) for pattern in (_WHITESPACE, _URL_END, _AT))
    separators = _NextMatch(re.compile(re.escape(separator)), text)
    found = text.find(separator)
    while found != -1:
        start = _scheme_start(text, done, found)
        body = found + width
        end = ends.at_or_after(body) if start < found else body
        at = ats.at_or_after(body)
        # (Not in JSON text: a quote in a string is escaped there.)
        if not escaped and end <= at < spaces.at_or_after(body) and _credentials_cut_short(text[body:end]):
            # Credentials holding a quote or an angle bracket: the URL goes on after their "@" (if
            # anything follows it), unless another URL starts before that "@" (JSON text: "url","url").
            after = ends.at_or_after(at + 1)
            if after > at + 1 and _next_url(text, body, at, separators, width, True) == -1:
                end = after
        if end == body or start == found:  # no scheme, or nothing after it
            found = text.find(separator, body)
            continue
        cut = _next_url(text, body, end, separators, width, at < end)
        end = end if cut == -1 else cut
        url = text[start:end]
        if escaped:
            url = redact_url(url.replace("\\/", "/")).replace("/", "\\/")
        else:
            url = redact_url(url)
        parts += (text[done:start], url)
        done = end
        found = text.find(separator, end)
    parts.append(text[done:])
    return "".join(parts)


def _credentials_cut_short(head: str) -> bool:
    """``head``, what follows a URL's ``://`` up to a quote or an angle bracket, may be the start of
    credentials that hold one. Not when it names a host and then a path (``host/x?t=1`` of JSON text
    ``"https://host/x?t=1","b":"u@h"``: the ``@`` that follows is not that URL's): a password with an
    unencoded ``/`` reads as a host with a port that is not one (``user:pa`` of ``user:pa/ss``), or as a
    bare name and a port (``user:123`` of ``user:123/ss``; :func:`_starts_credentials`)."""
    authority, slash, _ = head.partition("/")
    return (
        not slash
        or not authority
        or _AUTHORITY_END.search(authority) is not None
        or _starts_credentials(authority)
    )


def _scheme_start(text: str, floor: int, separator: int) -> int:
    """Where the scheme before ``text[separator:]``'s ``://`` starts (not before ``floor``; it starts with a
    letter): ``separator`` when there is none."""
    start = separator
    while start > floor and text[start - 1] in _SCHEME_CHARACTERS:
        start -= 1
    while start < separator and not text[start].isalpha():
        start += 1
    return start


def _next_url(text: str, body: int, end: int, separators: _NextMatch, width: int, at: bool) -> int:
    """Where the next URL starts in ``text[body:end]``, the host and path of a URL (-1 when none does).
    One in its query or fragment (after a ``?`` or ``#``) is not cut off: the query's and fragment's
    values are redacted with it. Nor is a ``://`` in credentials (``user:pa://ss@host``,
    ``user:pa/x://ss@host``, ``user:123/x://ss@host``: :func:`redact_url` drops them whole; a URL cut
    there would show them), which there may be only when an ``@`` stands in ``text[body:end]`` (``at``),
    after it: else ``https://devpi:3141/a,https://devpi:3141/b`` is two URLs."""
    position = separators.at_or_after(body)
    while position + width <= end:
        scheme = _scheme_start(text, body, position)
        if body < scheme < position:
            before = text[body:scheme]
            if "?" in before or "#" in before:
                return -1
            authority, slash, _ = before.partition("/")
            if "@" not in authority and not slash:
                return -1
            # In credentials only while no "@" has ended them (``u:pa/SEC'@h/,x://...``: a URL in the path).
            if slash and at and "@" not in before and _starts_credentials(authority):
                return -1
            return scheme
        position = separators.at_or_after(position + width)
    return -1


# Where a URL's authority ends is the question a secret hangs on: a password may hold an unencoded "/", "?"
# or "#", which a parser takes for the authority's end (``https://user:123/x@host/``: host "user", port
# 123, path "/x@host/", and the password "123/x" shown). So, when an "@" follows what a parser reads as
# the authority ("[userinfo@]host[:port]", up to the first "/", "?" or "#"), that authority is read as
# the start of credentials (everything up to the URL's last "@" is hidden) unless its host part, after its
# last "@", reads as a host and a port:
# * no colon: a host, and the "@" is the path's (``https://host/@scope/pkg``, ``host/u@domain/``);
# * a colon and no port (``user:pa/x@h``, ``user:/x@h``): credentials;
# * a colon and a port after a host name (``localhost``, a dotted name or IPv4 address, a bracketed IPv6
#   address: ``h.example:8080/simple/@scope/``, ``git.example:8443/r.git@v1``): a path;
# * a colon and a port after a bare name (``user:123/x@h``, ``user:8080?x@h``, ``devpi:3141/@x``): as
#   likely a user name as a host: credentials. A single-label host with a port and an "@" later in its
#   path is shown without it (what a log loses there is less than a password it would show).
# Left: a user name that reads as a dotted host name (``first.last:123/x@h``, ``me@corp.example:123/x@h``)
# keeps the path reading.


def _starts_credentials(authority: str) -> bool:
    """``authority`` (``[userinfo@]host[:port]``, no "/", "?" nor "#"), followed in its URL by an ``@``, is
    the start of credentials cut short by an unencoded ``/``, ``?`` or ``#`` (the rule above)."""
    head, bracket, tail = authority.rpartition("@")[2].rpartition("]")
    name, colon, port = tail.rpartition(":")
    if not colon:
        return False
    if not _is_port(port):
        return True
    if bracket:  # [IPv6]:port, unless something stands between the bracket and the colon
        return bool(name) or not head.startswith("[")
    return not _names_a_host(name)


def _is_port(text: str) -> bool:
    """A TCP port, as written (leading zeros allowed). Its length is checked before ``int()``: a long run of
    digits raises there (Python's limit on digits converted), and redaction must not raise."""
    digits = text.lstrip("0")
    return text.isascii() and text.isdigit() and len(digits) <= 5 and int(digits or "0") <= 65535


def _names_a_host(name: str) -> bool:
    """``name`` reads as a host name: ``localhost``, or dotted labels of letters, digits and inner hyphens
    (a DNS name, an IPv4 address; one trailing dot allowed). A bare word may as well be a user name."""
    if name.lower() == "localhost":
        return True
    labels = name.removesuffix(".").split(".")
    return len(labels) > 1 and all(_LABEL.fullmatch(label) for label in labels)


def redact_text(text: str) -> str:
    """``text`` safe to print, log or store: every remembered secret (:func:`remember_secret`) replaced by
    :data:`REDACTED`, and every URL it quotes as :func:`redact_url` shows it."""
    for secret in _scrubbed:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(_hide_credentials, text)
    if ":\\/\\/" in text:
        text = _redact_urls(text, ":\\/\\/")
    return _redact_urls(text) if "://" in text else text


# An ``Authorization:`` or ``Proxy-Authorization:`` header a server echoes back (also as a JSON member or a
# ``key=value``): its credentials (``Basic <base64 of user:password>``, a bearer token) are hidden, its
# scheme shown. Every repetition is bounded: linear on any text.
_AUTHORIZATION = re.compile(
    r"""\b((?:proxy-)?authorization["']?[ \t]{0,8}[:=][ \t]{0,8}["']?"""
    r"(?:(?:basic|bearer|digest|token|negotiate|ntlm)[ \t]{1,8})?)[^\s\"',;]+",
    re.IGNORECASE,
)


def _hide_credentials(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def describe_error(err: BaseException) -> str:
    """``Type: message`` of an error, redacted (:func:`redact_text`). httpx's ``InvalidURL`` quotes the part
    of the URL it could not read (``Invalid port: 'S3'``: the start of a password with an unencoded ``/``):
    what it quotes is hidden."""
    text = str(err)
    if type(err).__name__ == "InvalidURL":
        text = re.sub(r"'[^']*'|\"[^\"]*\"", REDACTED, text)
    text = redact_text(text)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def redact_url(url: str) -> str:
    """``url`` safe to print, log or store: without the user name and password it may embed, and with
    every query value replaced by :data:`REDACTED`, as signed download URLs carry their token there:
    ``https://host/f.whl?token=SECRET&expires=1`` is shown as
    ``https://host/f.whl?token=<redacted>&expires=<redacted>``.

    The keys stay, as written (``&``-separated); a query item with no ``=`` (it may be a bare token)
    becomes :data:`REDACTED` whole; an empty value stays empty. Path parameters are redacted alike
    (``/f.whl;token=SECRET`` -> ``/f.whl;token=<redacted>``), and so are the fragment's values but a file
    digest's and pip's ``egg``/``subdirectory`` (``#sha256=...`` is kept; never sent to a server, it says
    which file is meant). Credentials whose password holds an unencoded ``/``, ``?`` or ``#`` (which end
    the host part, so that a parser reads ``user:pa`` as a host and a port that is not a number, or
    ``user:123`` as a bare name and a port) are dropped up to the URL's last ``@`` (the rule, and what
    it leaves, above :func:`_starts_credentials`). The scheme, host and path are kept; a URL with nothing
    to hide comes back unchanged; one the standard parser refuses is cut by hand (as
    :func:`_redact_unparsable`).
    pip's ``${VARIABLE}`` placeholders are shown (``https://${TOKEN}@host``): they hold no secret.
    Idempotent."""
    if userinfo_spills(url):
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://{rest.rpartition('@')[2]}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_unparsable(url)
    fragment = _redact_fragment(parts.fragment)
    userinfo, _, host = parts.netloc.rpartition("@")
    if _PLACEHOLDERS.fullmatch(userinfo):
        host = parts.netloc  # ${TOKEN}@host: pip's placeholder of a variable, not a secret
    if host == parts.netloc and not parts.query and ";" not in parts.path and fragment == parts.fragment:
        return url
    path = _redact_path(parts.path)
    return urlunsplit((parts.scheme, host, path, _redact_query(parts.query), fragment))


def _redact_unparsable(url: str) -> str:
    """:func:`redact_url` of a URL the standard parser refuses (``http://[::1/x``): cut by hand, the
    credentials dropped up to the last ``@``, the query, path parameters and fragment redacted; without
    ``://``, :data:`UNPARSABLE_URL`."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return UNPARSABLE_URL
    rest = rest.rpartition("@")[2]
    rest, hash_sign, fragment = rest.partition("#")
    rest, question_mark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    return (
        f"{scheme}://{netloc}{_redact_path(slash + path)}{question_mark}{_redact_query(query)}"
        f"{hash_sign}{_redact_fragment(fragment)}"
    )


def userinfo_spills(url: str) -> bool:
    """True when ``url``'s credentials hold an unencoded ``/``, ``?`` or ``#`` (see :func:`redact_url`): the
    URL names a host that is not the one meant, and joining a path to it drops the rest. The authority is
    cut by hand, as a parser would (up to the first ``/``, ``?`` or ``#``), then read by the rule of
    :func:`_starts_credentials`: an ``@`` follows it, and it does not end in a host and a port
    (``user:pa`` and ``user:123`` of ``https://user:pa/ss@host/``, ``https://user:123/x@host/``)."""
    _, separator, rest = url.partition("://")
    cut = _AUTHORITY_CUT.search(rest)
    end = cut.start() if cut else len(rest)
    return bool(separator) and "@" in rest[end:] and _starts_credentials(rest[:end])


def _redact_items(text: str, separator: str) -> str:
    items = []
    for item in text.split(separator):
        key, equals, value = item.partition("=")
        if not equals:
            items.append(REDACTED if key and key not in _MASKS else key)
        else:
            kept = not value or value in _MASKS or _PLACEHOLDERS.fullmatch(value)
            items.append(f"{key}={value if kept else REDACTED}")
    return separator.join(items)


def _redact_query(query: str) -> str:
    return _redact_items(query, "&")


def _redact_path(path: str) -> str:
    """Each segment's parameters (``;key=value``) with their values redacted."""
    if ";" not in path:
        return path
    segments = []
    for segment in path.split("/"):
        name, semicolon, parameters = segment.partition(";")
        segments.append(f"{name};{_redact_items(parameters, ';')}" if semicolon else segment)
    return "/".join(segments)


def _redact_fragment(fragment: str) -> str:
    if not fragment:
        return fragment
    items = []
    for item in fragment.split("&"):
        key, equals, value = item.partition("=")
        if equals and (not value or (key.lower() in _KEPT_FRAGMENT_KEYS and _plain(value))):
            items.append(item)
        elif not equals and not key:
            items.append(item)
        else:
            items.append(f"{key}={REDACTED}" if equals else REDACTED)
    return "&".join(items)


def _plain(value: str) -> bool:
    """A kept fragment value (a digest, an egg name, a subdirectory) that holds no URL nor credentials."""
    return "@" not in value and "://" not in value and ":\\/\\/" not in value
