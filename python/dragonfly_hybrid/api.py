"""Fetching a release from an index and scanning it, as ``dragonfly-hybrid scan name==version`` does."""

from __future__ import annotations

from collections.abc import Sequence

from packaging.version import InvalidVersion, Version

from dragonfly_hybrid._core import Rules, Scanner
from dragonfly_hybrid.bounds import MAX_BYTES
from dragonfly_hybrid.errors import NoRulesError
from dragonfly_hybrid.pypi.index import DEFAULT_MAX_DOWNLOAD_SIZE, RUNNING_PYTHON
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
    ``trusted-host`` and ``proxy``); a project is looked up on all of them. A bare name selects the
    latest release that is not yanked and whose Requires-Python admits ``python_version`` (``"3.11"``;
    default: the running Python). Scanned with ``scanner``, else a new Scanner of ``rules`` (default:
    the bundled rule set).

    A download that fails or bytes that do not match the index's sha256 make the result incomplete
    (``verdict == "incomplete"``, ``error`` says why) rather than raising. Raises ``ValueError`` for a
    string that is not a requirement or a version that is not X.Y[.Z], ``ProjectNotFound`` /
    ``VersionNotFound`` (from :mod:`dragonfly_hybrid.pypi.index`) when the index has no such project or
    version, ``PipConfigError`` for pip settings that cannot be honoured (``no-index``) and
    ``NetworkSettingsError`` for a certificate file that cannot be loaded, and
    :class:`~dragonfly_hybrid.errors.NoRulesError` for a rule set that defines no rule.
    ``max_download_size`` is an ``int`` from 1 to 64 GB, as ``--max-download-size`` and
    ``DRAGONFLY_MAX_SCAN_SIZE`` are (else ``TypeError`` or ``ValueError``).
    """
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
    try:
        python = Version(python_version) if python_version is not None else RUNNING_PYTHON
    except (InvalidVersion, ValueError):  # ValueError: a number past Python's 4300 digits
        raise TargetError(f"python_version {python_version!r}: expected X.Y or X.Y.Z") from None
    # Not `rules or ...`: a set of no rule is falsy (its len() is 0), and fell back to the bundled rules.
    engine = scanner if scanner is not None else Scanner(rules if rules is not None else bundled_rules())
    if engine.rules.count == 0:
        raise NoRulesError("the rule set defines no rule: it would match nothing")
    settings = index_settings(index_url, extra_index_urls)
    with open_index(settings, python_version=python, max_download_size=max_download_size) as pypi:
        targets = TargetScanner(engine, pypi)
        return targets.scan(targets.resolve(target))
