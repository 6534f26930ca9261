"""Fetching a release from an index and scanning it, as ``dragonfly-hybrid scan name==version`` does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dragonfly_hybrid._core import Rules, Scanner
from dragonfly_hybrid.bounds import MAX_BYTES
from dragonfly_hybrid.errors import NoRulesError
from dragonfly_hybrid.pypi.index import DEFAULT_MAX_DOWNLOAD_SIZE, target_python
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.rules_loader import bundled_rules
from dragonfly_hybrid.targets import (
    INDEX_PREFIX,
    TargetError,
    TargetScanner,
    index_settings,
    open_index,
    release_target,
)


def _require(name: str, value: object, kind: type) -> None:
    """``TypeError`` naming ``name`` unless ``value`` is a ``kind`` or None."""
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__} or None, not {type(value).__name__}")


def _strings(values: Iterable[object]) -> tuple[str, ...] | None:
    """``values`` as a tuple (read once: it may be a generator), or None unless an iterable of str."""
    try:
        items = tuple(values)
    except TypeError:  # not iterable (None)
        return None
    strings = tuple(item for item in items if isinstance(item, str))
    return strings if len(strings) == len(items) else None


def fetch_and_scan(
    requirement: str,
    *,
    rules: Rules | None = None,
    scanner: Scanner | None = None,
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    python_version: str | None = None,
    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE,
) -> TargetResult:
    """Fetch ``name==version`` (or the latest release of a bare ``name``) from the index and scan every
    file of it, with the semantics of ``dragonfly-hybrid scan``; returns the object the CLI reports.

    The indexes are pip's: ``index_url`` and ``extra_index_urls`` if given, on top of ``PIP_INDEX_URL``,
    ``PIP_EXTRA_INDEX_URL`` and pip's configuration files (with pip's ``cert``, ``client-cert``,
    ``trusted-host``, ``proxy``, ``find-links`` and ``uploaded-prior-to``); a project is looked up on all of
    them. A bare name selects the latest release that is not yanked, whose Requires-Python admits
    ``python_version`` (``"3.11"``; default: the running Python) and, with ``uploaded-prior-to``, that has a
    file uploaded before it. Scanned with ``scanner``, else a new Scanner of ``rules`` (default:
    the bundled rule set). pip's hash-checking mode (``PIP_REQUIRE_HASHES``, a constraint with ``--hash``)
    does not refuse the requirement, as ``scan`` refuses a name given without hashes: the release asked for
    is scanned, as ``diff`` scans it (the hashes of constraints on its name still choose its files).

    A download that fails or bytes that do not match the index's sha256 make the result incomplete (``verdict
    == "incomplete"``, ``error`` says why) rather than raising. Raises ``ValueError`` for a string that is not
    a requirement or a version that is not X.Y[.Z], ``ProjectNotFound`` / ``VersionNotFound`` (from
    :mod:`dragonfly_hybrid.pypi.index`) when the index has no such project or version, ``PipConfigError`` for
    pip settings that cannot be honoured (``no-index``, pip's ``requirement`` files; a ``constraint`` file
    that cannot be read) or that pip refuses, and ``NetworkSettingsError`` for a certificate file that cannot
    be loaded, and :class:`~dragonfly_hybrid.errors.NoRulesError` for a rule set that defines no rule.
    ``max_download_size`` is an ``int`` from 1 to 64 GB, as ``--max-download-size`` and
    ``DRAGONFLY_MAX_SCAN_SIZE`` are (else ``TypeError`` or ``ValueError``). An argument of the wrong type
    (``extra_index_urls`` given one str rather than a list of them) is a ``TypeError`` naming it.
    """
    # Checked first: None or bytes raised an AttributeError or a TypeError that named nothing, and a str
    # as extra_index_urls was one index per character ("could not fetch h/pkg/": an incomplete result).
    if not isinstance(requirement, str):
        raise TypeError(f"requirement must be a str, not {type(requirement).__name__}")
    for name, value, kind in [
        ("index_url", index_url, str),
        ("python_version", python_version, str),
        ("rules", rules, Rules),
        ("scanner", scanner, Scanner),
    ]:
        _require(name, value, kind)
    if isinstance(extra_index_urls, str | bytes):
        raise TypeError(
            f"extra_index_urls must be a list of index URLs, not a {type(extra_index_urls).__name__}"
        )
    extra = _strings(extra_index_urls)
    if extra is None:  # not the value: a URL may hold a password
        raise TypeError("extra_index_urls must be a list of index URLs, each a str")
    # Checked before anything is fetched: 0 or a bool failed every download ("cap of True bytes"), NaN
    # capped nothing, and a str or None failed each download with a TypeError as its reason.
    if isinstance(max_download_size, bool) or not isinstance(max_download_size, int):
        raise TypeError(f"max_download_size must be an int, not {type(max_download_size).__name__}")
    if not 1 <= max_download_size <= MAX_BYTES:
        raise ValueError(f"max_download_size must be from 1 to {MAX_BYTES} bytes")
    try:
        target = release_target(requirement.removeprefix(INDEX_PREFIX))
    except TargetError:
        # release_target words it for the CLI, where the string may also have been a path.
        raise TargetError(f"{requirement!r} is not a PyPI project name or name==version") from None
    # As --python-version: "3", "3.11rc1" or "v3.11" were taken though neither the CLI nor the docstring do.
    try:
        python = target_python(python_version)
    except ValueError as err:
        raise TargetError(f"python_version {err}") from None
    # Not `rules or ...`: a set of no rule is falsy (its len() is 0), and fell back to the bundled rules.
    engine = scanner if scanner is not None else Scanner(rules if rules is not None else bundled_rules())
    if engine.rules.count == 0:
        raise NoRulesError("the rule set defines no rule: it would match nothing")
    settings = index_settings(index_url, extra)
    with open_index(settings, python_version=python, max_download_size=max_download_size) as pypi:
        # Not refused in pip's hash-checking mode (as `diff`): the caller asks for a release, installs none,
        # and has no -R file to give it --hash options; a hashed constraint's hashes still pick its files.
        targets = TargetScanner(engine, pypi, refuses_unhashed=False)
        return targets.scan(targets.resolve(target))
