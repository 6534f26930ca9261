"""Resolving releases on a PEP 691 simple index and downloading their distributions.

``name==version`` selects every version PEP 440's ``==`` matches: that version and its local variants
(``1.0+build``), one of which pip picks; yanked files included (an exact pin may select a yanked release,
PEP 592). A bare ``name`` selects the highest version that is not a pre-release and has a file pip could
install: not yanked, Requires-Python admitting the running Python or the one asked for, and an sdist or a
wheel whose tags this platform supports (pre-releases only when nothing else exists); of it, the files
not yanked whose Requires-Python admits that Python. Files are named and versioned as pip names them, from
their URLs (:mod:`.pip_names`). Project names are normalized per PEP 503 before the index is asked; a
project is looked up on the index and every extra index, and their files are merged (pip's rule), with
those of pip's ``find-links`` (:meth:`PyPIClient.find_links_packages`: a directory's files, a page's links,
a file or URL itself, named and versioned pip's way; a location that cannot be read makes the release
incomplete). Where the indexes and the network settings come from: :mod:`dragonfly_hybrid.pypi.pipconfig`.

Downloads are streamed, capped while streaming (never truncated silently), checked against the sha256 the
index publishes, and retried with exponential backoff on 429 and 5xx answers and connection errors; after a
429 or 503, at least as long as its ``Retry-After`` asks (seconds or an HTTP date, as pip waits it), up to
:data:`MAX_RETRY_AFTER`. Every error is a
:class:`PyPIError` whose message names the project, version or file concerned; URLs in messages never carry
the credentials that an index URL may embed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urljoin, urlsplit

from packaging.version import InvalidVersion, Version

from dragonfly_hybrid.bounds import DEFAULT_MAX_DOWNLOAD_SIZE as DEFAULT_MAX_DOWNLOAD_SIZE  # re-exported
from dragonfly_hybrid.http_client import NetworkSettings, asked_wait, new_client, redact_url
from dragonfly_hybrid.pypi.pipconfig import DEFAULT_INDEX_URL as DEFAULT_INDEX_URL  # re-exported
from dragonfly_hybrid.pypi.pipconfig import CandidateFiles, Constraint, ReleaseControl
from dragonfly_hybrid.pypi.pipconfig import configured_index_url as configured_index_url
from dragonfly_hybrid.redaction import describe_error as describe_error  # re-exported
from dragonfly_hybrid.redaction import userinfo_spills

if TYPE_CHECKING:
    # httpx (~40 ms) and pypi_simple (requests and BeautifulSoup, ~0.2 s) are imported where the index is
    # read, so that commands that never read one (``scan`` of local files, ``--version``) do not pay for them.
    import httpx
    from packaging.specifiers import SpecifierSet
    from pypi_simple import DistributionPackage, ProjectPage

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
MAX_RETRY_AFTER = 60.0
"""The longest wait a ``Retry-After`` gets before a retry (index lookups, downloads, ``watch``'s polls): a
longer one (a day, a date years ahead) is cut to it, as the mainframe client cuts it to its backoff's cap.
These retries have no cap of their own (a few, doubling from :data:`DEFAULT_BACKOFF`); 60 s is the longest
``watch`` backs off between failed polls, and the default timeout."""

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes received so far, total size when known) while a file downloads."""

# Bytes asked of the socket per read: large reads keep Python's per-chunk work small.
_CHUNK_SIZE = 1 << 20
MAX_PAGE_SIZE = 256 * 1024 * 1024
"""Largest index page read (a project page, the project list ``watch`` reads), in bytes as decoded. PyPI's
largest are a few tens of MB (projects with tens of thousands of wheels; the JSON list of every project), so
256 MiB leaves them a wide margin, while a hostile index can no longer make a page take the host's memory (a
1 GiB page took 2.1 GB)."""
_JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")


class PyPIError(Exception):
    """Base class of every error raised while resolving or downloading from an index."""


class ProjectNotFound(PyPIError):
    """The index has no project of that name (HTTP 404)."""


class VersionNotFound(PyPIError):
    """The project exists but has no distribution file for the requested version."""


class IndexUnavailable(PyPIError):
    """The index could not be reached or gave an unusable answer (after retries)."""

    retry_after: float | None = None
    """What the last answer's ``Retry-After`` asked (:func:`capped_wait`): before asking that index again."""


class PageTooLarge(IndexUnavailable):
    """An index page is larger than the cap on pages (:data:`MAX_PAGE_SIZE`): asking again will not help."""


class NotAProjectList(IndexUnavailable):
    """The index answered its root with something other than the PEP 691 JSON project list with
    ``_last-serial`` (an HTML page, truncated or other JSON): asking again will not help."""


class DownloadError(PyPIError):
    """A distribution file could not be downloaded (by :class:`PyPIClient` or the node's
    :class:`~dragonfly_hybrid.pypi.download.Downloader`).

    ``permanent`` is True when trying again cannot help (404, over the size cap, wrong digest): the node
    then reports the release as a failure; a transient error leaves the job to be claimed again.
    """

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


class DownloadTooLarge(DownloadError):
    """A distribution file is larger than the download cap."""


class DigestMismatch(DownloadError):
    """A downloaded file does not have the sha256 digest the index published for it."""


def normalize_name(name: str) -> str:
    """The PEP 503 normalized form of a project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class DistributionFile:
    """One file of a release, as listed by the index."""

    filename: str
    url: str
    sha256: str | None
    size: int | None
    yanked: bool
    digests: tuple[tuple[str, str], ...] = ()
    """Every ``(algorithm, hex digest)`` the index lists (sha256 included), lower case."""
    requires_python: str | None = None
    """The Requires-Python the index lists for it."""


@dataclass(frozen=True)
class ProjectList:
    """The index's project list: normalized name -> ``_last-serial``, the index's serial, its clock."""

    projects: dict[str, int]
    serial: int
    server_time: datetime | None


@dataclass(frozen=True)
class IndexPage:
    """An index answer read whole (at most the page cap): what parsing it needs."""

    url: str
    """Where it was served from, after redirects: the base of its relative links."""
    headers: httpx.Headers
    charset: str | None
    """The charset its content type names, if any."""
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters ("" when not given)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


# A find-links location's files (``(normalized name, URL)``), its pages of links (with how they are shown),
# and whether it is local.
_Listing = tuple[list[tuple[str, str]], list[tuple[IndexPage, str]], bool]


@dataclass(frozen=True)
class Release:
    """A resolved release: its project name as the index spells it, its version and its files."""

    name: str
    version: str
    files: tuple[DistributionFile, ...]
    problems: tuple[str, ...] = ()
    """Find-links locations that could not be read: files pip may take were not seen (an incomplete scan)."""


def _parse_version(text: str | None) -> Version | None:
    if text is None:
        return None
    try:
        return Version(text)
    except (InvalidVersion, ValueError):  # ValueError: a number past Python's 4300 digits
        return None


# pip's digest in a link's URL (``#sha256=...``, or ``&sha256=...`` anywhere in it: the leftmost), which wins
# over the ``hashes`` of a JSON page (pip 23.2 and 26.3, ``Link.__init__``).
_URL_DIGEST = re.compile(r"[#&](sha512|sha384|sha256|sha224|sha1|md5)=([^&]*)")


def _file_of(package: DistributionPackage) -> DistributionFile:
    digests = {alg.lower(): value.lower() for alg, value in package.digests.items()}
    if in_url := _URL_DIGEST.search(package.url):
        digests[in_url[1]] = in_url[2].lower()
    return DistributionFile(
        filename=package.filename,
        url=package.url,
        sha256=digests.get("sha256") or None,
        size=package.size,
        yanked=package.is_yanked,
        digests=tuple(sorted(digests.items())),
        requires_python=package.requires_python,
    )


def _by_version(packages: Iterable[DistributionPackage]) -> dict[Version, list[DistributionPackage]]:
    versions: dict[Version, list[DistributionPackage]] = {}
    for package in packages:
        version = _parse_version(package.version)
        if version is not None:
            versions.setdefault(version, []).append(package)
    return versions


RUNNING_PYTHON = Version(platform.python_version())


def target_python(text: str | None) -> Version:
    """The Python a lookup selects files for: ``text`` as X.Y or X.Y.Z (``--python-version``,
    ``fetch_and_scan(python_version=...)``), the running one for None; ``ValueError`` otherwise."""
    if text is None:
        return RUNNING_PYTHON
    if not re.fullmatch(r"\d{1,9}\.\d{1,9}(\.\d{1,9})?", text.strip()):
        raise ValueError(f"{text!r}: expected X.Y or X.Y.Z, such as 3.11")
    return Version(text.strip())


PIP_DEFAULTS = CandidateFiles()
"""pip's candidates and preferences when none of its settings changes them."""


def _installable(
    package: DistributionPackage,
    python: Version,
    *,
    ignore_requires_python: bool = False,
    yanked: bool = False,
) -> bool:
    """Not yanked (unless ``yanked``), and its Requires-Python admits ``python`` (or is ignored)."""
    return (yanked or not package.is_yanked) and (
        ignore_requires_python or _admits(package.requires_python, python)
    )


def _pins(specifier: SpecifierSet | None) -> bool:
    """Whether pip's constraints pin a version (``==`` but a wildcard, or ``===``): pip then takes a yanked
    release when every candidate they admit is yanked (PEP 592), with a warning."""
    return specifier is not None and any(
        s.operator == "===" or (s.operator == "==" and not s.version.endswith(".*")) for s in specifier
    )


def _admits(requires_python: str | None, python: Version) -> bool:
    """Whether a Requires-Python admits ``python`` (an invalid one is ignored, as pip 24.1 and later ignore
    it: pip before 24.1 compared a clause such as ``>=3.6.*`` as a legacy version)."""
    if not requires_python:
        return True
    from packaging.specifiers import InvalidSpecifier, SpecifierSet  # ~6 ms: only when a release is chosen

    try:
        return SpecifierSet(requires_python).contains(python, prereleases=True)
    except (InvalidSpecifier, ValueError):  # ValueError: a number past Python's 4300 digits
        return True


def pip_candidate(
    file: DistributionFile, python: Version, project: str = "", candidates: CandidateFiles = PIP_DEFAULTS
) -> bool:
    """Whether pip takes ``file`` of ``project`` (canonical) as a candidate on ``python`` here, yanked or
    not: an sdist or a wheel for this platform that ``candidates`` (pip's ``no-binary``/``only-binary``)
    lets in, its Requires-Python admitting ``python`` (unless pip's ``ignore-requires-python``)."""
    return _takes(file.filename, file.requires_python, python, project, candidates)


def _takes(
    filename: str, requires_python: str | None, python: Version, project: str, candidates: CandidateFiles
) -> bool:
    from dragonfly_hybrid.pypi.pip_names import runs_on

    return (
        runs_on(filename, python)
        and candidates.formats.takes(project, wheel=filename.endswith(".whl"))
        and (candidates.ignore_requires_python or _admits(requires_python, python))
    )


def _latest(
    versions: dict[Version, list[DistributionPackage]],
    python: Version,
    pre: bool | None = None,
    project: str = "",
    candidates: CandidateFiles = PIP_DEFAULTS,
    specifier: SpecifierSet | None = None,
    yanked: bool = False,
) -> Version | None:
    """pip's choice: the newest final release with a file pip could install here (not yanked, unless
    ``yanked``, its Requires-Python admitting ``python``, an sdist or a wheel for this platform: a
    release of only Windows wheels is not pip's choice on Linux; of the formats ``candidates`` lets in);
    a pre-release only when there is no such final release (``pre`` None), or whenever newer (True: pip's
    ``--pre``, ``all-releases``), or never (False: ``only-final``). With pip's ``prefer-binary``, the
    newest of those with such a wheel, if one has any (pip sorts every wheel above every sdist).
    ``specifier``: pip's constraints on the project; only versions it admits, an explicit pre-release in
    it admitting pre-releases when ``pre`` is None (pip's ``SpecifierSet.filter``)."""

    def has_file(version: Version, yanked_too: bool = yanked, wheel: bool = False) -> bool:
        return any(
            not (p.is_yanked and not yanked_too)
            and (p.filename.endswith(".whl") or not wheel)
            and _takes(p.filename, p.requires_python, python, project, candidates)
            for p in versions[version]
        )

    if specifier is not None:
        if pre is None and specifier.prereleases:
            pre = True
        versions = {v: files for v, files in versions.items() if specifier.contains(v, prereleases=True)}
    live = [v for v in versions if has_file(v)]
    finals = [v for v in live if not v.is_prerelease]
    if pre is None and not finals and any(not v.is_prerelease and has_file(v, True) for v in versions):
        # pip keeps pre-releases only when no final version has a file here, yanked ones counted; then it
        # drops the yanked ones (PEP 592): nothing is left (pip 23.2 and 26.3: "No matching distribution").
        return None
    pool = live if pre else finals if pre is False else finals or live
    if candidates.prefer_binary:
        pool = [v for v in pool if has_file(v, wheel=True)] or pool
    return max(pool, default=None)


def _latest_by_hashes(
    versions: dict[Version, list[DistributionPackage]],
    hashes: frozenset[str],
    python: Version,
    pre: bool | None,
    project: str,
    candidates: CandidateFiles,
    specifier: SpecifierSet | None,
    yanked: bool = False,
) -> Version | None:
    """pip 26.3's choice for a bare name with ``hashes``: its candidates (files pip could take here, yanked
    too) of the versions its specifier filter keeps (a pre-release only without a final one, but for
    ``pre``), then ``filter_unallowed_hashes`` (when one lists an allowed digest, those that do or list
    none), then the best not yanked (unless ``yanked``) by its sort key, whose first term is "lists an
    allowed digest": an older release with one is taken over a newer whose files list none."""

    def listed(package: DistributionPackage) -> set[str]:
        # As pip's Link holds them: the page's spelling (pip compares it case-sensitively), the URL's wins.
        digests = dict(package.digests)
        if in_url := _URL_DIGEST.search(package.url):
            digests[in_url[1]] = in_url[2]
        return {f"{alg}:{value}" for alg, value in digests.items()}

    if pre is None and specifier is not None and specifier.prereleases:
        pre = True
    files = [
        (v, p)
        for v, packages in versions.items()
        if specifier is None or specifier.contains(v, prereleases=True)
        for p in packages
        if _takes(p.filename, p.requires_python, python, project, candidates)
    ]
    if pre is False or (pre is None and any(not v.is_prerelease for v, _ in files)):  # SpecifierSet.filter
        files = [(v, p) for v, p in files if not v.is_prerelease]
    if any(listed(p) & hashes for _, p in files):
        files = [(v, p) for v, p in files if listed(p) & hashes or not listed(p)]
    binary = candidates.prefer_binary
    ranked = [
        (bool(listed(p) & hashes), binary and p.filename.endswith(".whl"), v)
        for v, p in files
        if yanked or not p.is_yanked
    ]
    best = max(ranked, default=None)
    return None if best is None else best[2]


def _formats_left_out(project: str, candidates: CandidateFiles) -> str:
    """What pip's ``no-binary``/``only-binary`` leave out of ``project``'s candidates, for a message."""
    if not candidates.formats.takes(project, wheel=True):
        return " that pip's no-binary lets in: its wheels are no candidates"
    if not candidates.formats.takes(project, wheel=False):
        return " that pip's only-binary lets in: its sdists are no candidates"
    return ""


_ONLY_FINAL = "; pip's only-final allows no pre-release of it: pip finds no final version that satisfies it"


def select_release(
    page: ProjectPage,
    version: str | None,
    python: Version = RUNNING_PYTHON,
    *,
    pre: bool | None = None,
    candidates: CandidateFiles = PIP_DEFAULTS,
    specifier: SpecifierSet | None = None,
    hashes: frozenset[str] = frozenset(),
) -> Release:
    """Pick the files of ``version`` from a parsed project page, or, when ``version`` is None, the
    installable files (not yanked, Requires-Python admitting ``python``) of the latest version pip would
    install on ``python``. ``pre``: pip's ``allows_prereleases`` for the project (True: ``--pre`` or
    ``all-releases``, the newest may be a pre-release; False: ``only-final``, no pre-release is a
    candidate, not even pinned; None: pip's default). ``candidates``: pip's settings that decide which
    files are candidates and which release it prefers (a bare name's); ``specifier``: the versions pip's
    constraints admit (a pin none of whose versions they admit is :class:`VersionNotFound`: pip refuses
    it); ``hashes``: the requirement's, which choose among a bare name's releases (:func:`_latest_by_hashes`;
    the caller keeps the files they allow)."""
    versions = _by_version(page.packages)
    status = f" (the index marks the project {page.status.value})" if page.status is not None else ""
    if version is None:
        project = normalize_name(page.project)

        def choose(yanked: bool) -> Version | None:
            if hashes:
                return _latest_by_hashes(
                    versions, hashes, python, pre, project, candidates, specifier, yanked
                )
            return _latest(versions, python, pre, project, candidates, specifier, yanked)

        chosen = choose(False)
        # PEP 592: a pin of pip's constraints whose candidates are all yanked takes them (pip 23.2, 26.3).
        yanked = chosen is None and _pins(specifier)
        if yanked:
            chosen = choose(True)
        if chosen is None and pre is False:
            raise VersionNotFound(
                f"project {page.project!r} has no installable final release for Python {python} here"
                f"{_ONLY_FINAL}{status}"
            )
        if (
            chosen is None
            and pre is None
            and _latest(versions, python, True, project, candidates, specifier) is not None
        ):
            raise VersionNotFound(
                f"project {page.project!r} has no installable release for Python {python} here: its final "
                "releases are yanked, and pip takes no pre-release while a final release exists (pin one "
                f"with name==version){status}"
            )
        if chosen is None:
            raise VersionNotFound(
                f"project {page.project!r} has no installable release for Python {python} here (every "
                "release is yanked, requires another Python, or has no sdist or wheel for this platform"
                f"{_formats_left_out(project, candidates)}; pin one with name==version){status}"
            )
        ignore = candidates.ignore_requires_python
        packages = [
            p
            for p in versions[chosen]
            if _installable(p, python, ignore_requires_python=ignore, yanked=yanked)
        ]
    else:
        from packaging.specifiers import Specifier

        wanted = _parse_version(version)
        if wanted is None:
            raise VersionNotFound(f"{version!r} is not a valid version (PEP 440)")
        # PEP 440's `==`: `==1.0` also matches `1.0+anything`, which pip prefers as the higher version.
        pinned = Specifier(f"=={wanted}")
        matching = sorted(v for v in versions if pinned.contains(v, prereleases=True))
        if pre is False and matching and all(v.is_prerelease for v in matching):
            raise VersionNotFound(
                f"project {page.project!r} has no final version {version} (it is a pre-release){_ONLY_FINAL}"
                f"{status}"
            )
        if not matching:
            known = ", ".join(str(v) for v in sorted(versions)[-5:]) or "none"
            raise VersionNotFound(
                f"project {page.project!r} has no files for version {version}{status}; "
                f"latest versions on the index: {known}"
            )
        if specifier is not None and not (matching := [v for v in matching if specifier.contains(v, True)]):
            # pip finds no candidate both admit (ResolutionImpossible): it installs nothing.
            raise VersionNotFound(
                f"pip's constraints do not admit {page.project}=={version}: pip refuses to install it"
            )
        chosen = wanted if wanted in matching else matching[-1]
        packages = [p for v in matching for p in versions[v]]
    packages.sort(key=lambda p: p.filename)
    # The version as the index spells it (a file's of that version), not a re-normalized form.
    spelled = next((p.version for p in packages if _parse_version(p.version) == chosen), None) or str(chosen)
    return Release(name=page.project, version=spelled, files=tuple(_file_of(p) for p in packages))


def uploaded_before(
    page: ProjectPage, cutoff: datetime, python: Version, candidates: CandidateFiles = PIP_DEFAULTS
) -> ProjectPage:
    """``page`` without the files uploaded at or after ``cutoff`` (pip's ``uploaded-prior-to``), local
    (``file:``) ones kept, as pip keeps them. A file pip would consider (an sdist, even under pip's
    ``only-binary``, which pip 26.3 checks after the upload time; a wheel for this platform, unless pip's
    ``no-binary`` leaves wheels out, checked before) without an upload time makes pip refuse to install:
    :class:`IndexUnavailable` (PEP 700 gives it in JSON pages only: an HTML page never has one)."""
    from dragonfly_hybrid.pypi.pip_names import SDIST_EXTENSIONS, runs_on

    kept = []
    for package in page.packages:
        if urlsplit(package.url).scheme.lower() == "file":
            kept.append(package)
            continue
        uploaded = package.upload_time
        if uploaded is None:
            wheel = runs_on(package.filename, python) and package.filename.endswith(".whl")
            if package.filename.endswith(SDIST_EXTENSIONS) or (
                wheel and candidates.formats.takes(normalize_name(page.project), wheel=True)
            ):
                raise IndexUnavailable(
                    f"the index gives no upload time for {package.filename} (from {redact_url(package.url)}; "
                    "PEP 700's upload-time, in JSON pages only), which pip's uploaded-prior-to needs: pip "
                    "refuses to install from it"
                )
            continue  # a file pip never considers
        if uploaded.tzinfo is None:  # PEP 700's times are UTC (pip would fail comparing a naive one)
            uploaded = uploaded.replace(tzinfo=timezone.utc)
        if uploaded < cutoff:
            kept.append(package)
    return dataclasses.replace(page, packages=kept)


def _is_retryable(response: httpx.Response) -> bool:
    return response.status_code >= 500 or response.status_code == 429


def capped_wait(status: int, value: str | None) -> float | None:
    """What a 429 or 503 answer's ``Retry-After`` (``value``: seconds or an HTTP date) asks, at most
    :data:`MAX_RETRY_AFTER`; None without a usable one."""
    asked = asked_wait(status, value)
    return None if asked is None else min(asked, MAX_RETRY_AFTER)


class PyPIClient:
    """A small client for simple indexes: resolve releases, download their files.

    A project is looked up on ``index_url`` and every extra index, and the files of all of them are
    merged (pip's rule). Use it as a context manager (it owns an ``httpx.Client``, which is thread-safe,
    so files can be downloaded from several threads at once).
    """

    def __init__(
        self,
        index_url: str | None = None,
        *,
        extra_index_urls: Sequence[str] = (),
        network: NetworkSettings | None = None,
        python_version: Version = RUNNING_PYTHON,
        max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE,
        max_page_size: int = MAX_PAGE_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        find_links: Sequence[str] = (),
        uploaded_prior_to: datetime | None = None,
        release_control: ReleaseControl | None = None,
        candidate_files: CandidateFiles = PIP_DEFAULTS,
        constraints: Sequence[Constraint] = (),
    ) -> None:
        self._options = {
            "constraints": constraints,
            "find_links": find_links,
            "uploaded_prior_to": uploaded_prior_to,
            "release_control": release_control,
            "candidate_files": candidate_files,
            "network": network,
            "python_version": python_version,
            "max_download_size": max_download_size,
            "max_page_size": max_page_size,
            "timeout": timeout,
            "retries": retries,
            "backoff": backoff,
            "transport": transport,
        }
        urls = [index_url or configured_index_url(), *extra_index_urls]
        self.index_urls = list(dict.fromkeys(u if u.endswith("/") else u + "/" for u in urls))
        self.index_url = self.index_urls[0]
        self.find_links = tuple(find_links)
        self.release_control = release_control
        """pip's ``pre``/``all-releases``/``only-final``: whether a project's pre-releases are candidates."""
        self.candidate_files = candidate_files
        """pip's ``no-binary``/``only-binary``/``prefer-binary``/``ignore-requires-python``."""
        self.constraints = tuple(constraints)
        """pip's named constraints (its ``constraint`` files', -R files' ``-c``): a bare name's release."""
        self.hash_mode: str | None = None
        """What turns pip's hash-checking mode on for the command line's requirements (None: off)."""
        if uploaded_prior_to is not None and uploaded_prior_to.tzinfo is None:  # as pip: local time
            uploaded_prior_to = uploaded_prior_to.astimezone()  # (compared with an aware one: TypeError)
        self.uploaded_prior_to = uploaded_prior_to
        """pip's ``uploaded-prior-to`` (aware): index files uploaded at or after it are not candidates."""
        self._local: dict[str, Path] = {}
        """``file:`` URL -> path of each file found through find-links: read from disk (never an index's
        ``file:`` link: a remote page does not choose what local file is read)."""
        self._listings: dict[str, _Listing | OSError | PyPIError] = {}
        """find-links location -> what it holds (:meth:`_listed_at`), or why it could not be read."""
        self.python_version = python_version
        self.max_download_size = max_download_size
        self.max_page_size = max_page_size
        self.retries = max(1, retries)
        self.backoff = backoff
        self._client = new_client(timeout=timeout, transport=transport, network=network)

    def __enter__(self) -> PyPIClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def on_index(self, index_url: str) -> PyPIClient:
        """A client of ``index_url`` alone with this one's settings (a lock file's source index), without
        find-links (a lock names its own index, and this client's downloads would not read their files) or
        ``uploaded_prior_to``, ``release_control``, ``candidate_files`` or ``constraints`` (a lock's
        installer does not read pip's settings)."""
        options = {
            **self._options,
            "constraints": (),
            "find_links": (),
            "uploaded_prior_to": None,
            "release_control": None,
            "candidate_files": PIP_DEFAULTS,
        }
        return PyPIClient(index_url, **options)  # type: ignore[arg-type]

    def _pause(self, attempt: int, asked: float | None) -> None:
        """Before attempt number ``attempt`` (from 0), but the first: exponential backoff, or what the last
        answer's ``Retry-After`` asked (``asked``, :func:`capped_wait`) when longer. A signal ends the sleep
        (the scan's main thread; ``watch`` leaves the thread asking behind)."""
        if attempt:
            time.sleep(max(self.backoff * 2 ** (attempt - 1), asked or 0.0))

    def _get(self, url: str, accept: str) -> IndexPage | None:
        """A 200 answer read whole, or None for 404; retries 5xx, 429 and network errors, else
        IndexUnavailable (:class:`PageTooLarge` past ``max_page_size``)."""
        import httpx

        shown = redact_url(url)
        problem = ""
        asked: float | None = None
        for attempt in range(self.retries):
            self._pause(attempt, asked)
            asked = None
            try:
                with self._client.stream("GET", url, headers={"Accept": accept}) as response:
                    if response.status_code == 404:
                        return None
                    if _is_retryable(response):
                        problem = f"HTTP {response.status_code}"
                        asked = capped_wait(response.status_code, response.headers.get("retry-after"))
                        continue
                    if response.status_code in (401, 403):
                        raise IndexUnavailable(
                            f"index refused access (HTTP {response.status_code}) to {shown}; "
                            "check its credentials"
                        )
                    if response.status_code != 200:
                        raise IndexUnavailable(f"index answered HTTP {response.status_code} for {shown}")
                    body = _read_page(response, shown, self.max_page_size)
                    return IndexPage(str(response.url), response.headers, response.charset_encoding, body)
            except httpx.UnsupportedProtocol as err:
                raise IndexUnavailable(
                    f"could not fetch {shown}: {describe_error(err)} (an index URL starts with http:// or "
                    "https://)"
                ) from None
            except httpx.TransportError as err:
                problem = describe_error(err)
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as err:
                # A redirect loop, a body that does not decode, a URL httpx refuses: no retry helps.
                raise IndexUnavailable(f"could not fetch {shown}: {describe_error(err)}") from None
        failed = IndexUnavailable(f"could not fetch {shown} after {self.retries} attempts ({problem})")
        failed.retry_after = asked
        raise failed

    def project_page(self, name: str, extra: Sequence[DistributionPackage] = ()) -> ProjectPage:
        """Fetch and parse the project page of ``name`` (JSON preferred, HTML accepted) on every index,
        merged: the files of all of them, in index order, then ``extra`` (find-links files)."""
        from pypi_simple import ACCEPT_JSON_PREFERRED, ProjectPage

        pages = []
        for index_url in self.index_urls:
            if userinfo_spills(index_url):  # joined to a path, it would lose its host, and show the password
                raise IndexUnavailable(
                    f"the index URL {redact_url(index_url)} is not a valid URL: a character of its user name "
                    "or password is not percent-encoded (write / ? # @ as %2F %3F %23 %40)"
                )
            url = urljoin(index_url, normalize_name(name) + "/")
            page = self._get(url, ACCEPT_JSON_PREFERRED)
            if page is not None:
                pages.append(parse_project_page(page, name, redact_url(url)))
        if not pages and not extra:
            where = ", ".join(redact_url(u) for u in [*self.index_urls, *self.find_links])
            raise ProjectNotFound(f"no project named {name!r} on {where}")
        merged = [p for page in pages for p in page.packages] + list(extra)
        return dataclasses.replace(pages[0] if pages else ProjectPage(name, [], None, None), packages=merged)

    def find_links_packages(self, name: str) -> tuple[list[DistributionPackage], list[str]]:
        """The files of project ``name`` that pip's find-links offer, as pip finds them: a directory's
        files (and the links of its HTML files), a local file itself, an http(s) URL's page links (or the
        URL itself when it names a file); named and versioned as pip reads them. Also a problem for each
        location that cannot be read (pip warns and goes on: the scan must not)."""
        found: list[DistributionPackage] = []
        problems: list[str] = []
        for location in self.find_links:
            try:
                found += self._found_at(location, name)
            except (OSError, PyPIError) as err:
                detail = (err.strerror or str(err)) if isinstance(err, OSError) else str(err)
                problems.append(f"find-links {redact_url(location)} could not be read: {detail}")
        return found, problems

    def _found_at(self, location: str, name: str) -> list[DistributionPackage]:
        from packaging.utils import canonicalize_name

        from dragonfly_hybrid.pypi.pip_names import SDIST_EXTENSIONS

        listing = self._listings.get(location)
        if listing is None:
            listing = self._listings[location] = self._listed_at(location)
        if isinstance(listing, Exception):
            raise listing
        files, pages, local = listing
        # A file of the project has a name whose normalized form starts so (the rest is read pip's way).
        wanted = canonicalize_name(name) + "-"
        found = _links_of(name, [url for normal, url in files if normal.startswith(wanted)])
        for page, shown in pages:
            found += parse_project_page(page, name, shown).packages
        if not local:
            return found
        # pip takes a wheel or an archive only (an ``.egg`` is not read): nothing else is read from disk.
        found = [p for p in found if p.filename.endswith((".whl", *SDIST_EXTENSIONS))]
        for package in found:  # local files, and those a local page links to
            if urlsplit(package.url).scheme.lower() == "file":
                self._local[package.url] = _local_path(package.url)
        return found

    def _listed_at(self, location: str) -> _Listing | OSError | PyPIError:
        """What the find-links ``location`` holds (its error when it cannot be read), read once per client
        as pip reads it once per run: ``(normalized name, URL)`` of its files, its pages of links, and
        whether it is local (a remote page's ``file:`` links are never read)."""
        import mimetypes

        import httpx
        from packaging.utils import canonicalize_name
        from pypi_simple import ACCEPT_JSON_PREFERRED

        from dragonfly_hybrid.pypi.pip_names import SDIST_EXTENSIONS, url_filename

        try:
            scheme = urlsplit(location).scheme.lower()
            if scheme in ("http", "https"):
                if userinfo_spills(location):  # httpx would take part of the password for the host
                    raise IndexUnavailable("a character of its user name or password is not percent-encoded")
                if url_filename(location).endswith((".whl", *SDIST_EXTENSIONS)):
                    # a file (another project's: none)
                    return [(canonicalize_name(url_filename(location)), location)], [], False
                page = self._get(location, ACCEPT_JSON_PREFERRED)
                if page is None:
                    raise IndexUnavailable("HTTP 404")
                return [], [(page, redact_url(location))], False
            if scheme not in ("", "file") and "://" in location:
                raise IndexUnavailable("neither an existing path nor an http(s) or file: URL")
            expanded = os.path.expanduser(location)  # pip expands ``~``
            path = _local_path(location) if scheme == "file" else Path(expanded)
            mode = path.stat().st_mode  # a missing path: an OSError naming why
            entries = sorted(path.iterdir()) if stat.S_ISDIR(mode) else [path]
            # pip reads a directory's (or the given) HTML files as pages of links, every other file as one.
            html = {p for p in entries if mimetypes.guess_type(p.name, strict=False)[0] == "text/html"}
            files: list[tuple[str, str]] = [
                (canonicalize_name(p.name), p.absolute().as_uri()) for p in entries if p not in html
            ]
            pages = []
            for page_path in (p for p in entries if p in html):
                if page_path.stat().st_size > self.max_page_size:
                    raise PageTooLarge(
                        _page_too_large(str(page_path), self.max_page_size, "its size on disk")
                    )
                headers = httpx.Headers({"content-type": "text/html"})
                body = page_path.read_bytes()
                pages.append((IndexPage(page_path.absolute().as_uri(), headers, None, body), str(page_path)))
            return files, pages, True
        except (OSError, PyPIError) as err:
            return err

    def project_list(self) -> ProjectList:
        """Every project with its ``_last-serial`` (PEP 691 JSON, as PyPI serves it: ``watch`` needs it)."""
        shown = redact_url(self.index_url)
        page = self._get(self.index_url, _JSON_TYPE)
        if page is None:
            raise IndexUnavailable(f"index answered HTTP 404 for {shown}")
        content_type = page.content_type
        expected = (
            f"the PEP 691 JSON project list with each project's _last-serial ({_JSON_TYPE}, as PyPI serves)"
        )
        if content_type not in (_JSON_TYPE, "application/json"):
            raise NotAProjectList(
                f"{shown} answered {content_type or 'without a content type'}, not {expected}; "
                "an index that serves only the HTML (PEP 503) list cannot be watched"
            )
        try:
            data = json.loads(page.body)
            projects = {normalize_name(p["name"]): int(p["_last-serial"]) for p in data["projects"]}
            meta_serial = data.get("meta", {}).get("_last-serial")
            serial = int(meta_serial) if meta_serial is not None else max(projects.values(), default=0)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError) as err:
            # OverflowError: a serial of 1e400 (infinity); ValueError: one past Python's 4300 digits
            raise NotAProjectList(
                f"{shown} answered {content_type} that is not {expected}: {type(err).__name__}: {err}"
            ) from None
        server_time = None
        if page.headers.get("date"):
            from email.utils import parsedate_to_datetime  # the email package: only the watcher needs it

            try:
                server_time = parsedate_to_datetime(page.headers["date"])
            except (TypeError, ValueError):
                server_time = None
            if server_time is not None and server_time.tzinfo is None:
                # "-0000" (RFC 5322: UTC, local offset unknown) parses without a zone; HTTP dates are UTC.
                server_time = server_time.replace(tzinfo=timezone.utc)
        return ProjectList(projects, serial, server_time)

    def resolve(
        self,
        name: str,
        version: str | None = None,
        *,
        find_links: bool = True,
        hashes: frozenset[str] = frozenset(),
    ) -> Release:
        """The files of ``name==version``, or of the latest version of ``name`` that pip would install on
        ``python_version`` when version is None: the indexes' and find-links' (pip's candidates are all of
        them; the indexes' alone without ``find_links``: a lock's entry, which takes none of pip's settings).
        With ``uploaded_prior_to``, pip's candidates are those files uploaded before it, but local files
        (:func:`uploaded_before`). Find-links that cannot be read are the release's ``problems``; without
        them, a project or version not found is :class:`IndexUnavailable` (pip might find it there), naming
        them. A bare name's release is one pip's ``constraints`` admit; a pinned one they do not admit is
        :class:`VersionNotFound`, as is one of a URL constraint (pip installs it from there) or of one with
        ``--hash`` when the requirement has no ``hashes`` (its own or its constraints',
        :meth:`constraint_hashes`: the caller checks the files against them). With ``hashes``, a bare
        name's release is the newest with a candidate file the index lists an allowed digest for, as pip
        26.3 chooses it."""
        specifier, constrained = self._constrained(name, bool(hashes)) if find_links else (None, "")
        found, problems = self.find_links_packages(name) if find_links else ([], [])
        cutoff = self.uploaded_prior_to if find_links else None
        try:
            page = self.project_page(name, found)
            if cutoff is not None:
                page = uploaded_before(page, cutoff, self.python_version, self.candidate_files)
            control = self.release_control if find_links else None
            pre = control.allows_prereleases(normalize_name(name)) if control is not None else None
            candidates = self.candidate_files if find_links else PIP_DEFAULTS
            release = select_release(
                page,
                version,
                self.python_version,
                pre=pre,
                candidates=candidates,
                specifier=specifier,
                hashes=hashes,
            )
        except (ProjectNotFound, VersionNotFound) as err:
            if cutoff is not None:  # which files were left out, as the note of every such lookup
                err.args = (f"{err} (pip's uploaded-prior-to: only files uploaded before {cutoff} count)",)
            if constrained and isinstance(err, VersionNotFound):
                err.args = (f"{err} (pip's constraints: only versions {constrained} admit count)",)
            if not problems:
                raise
            raise IndexUnavailable(f"{err}; {'; '.join(problems)}") from None
        return dataclasses.replace(release, problems=tuple(problems))

    def _constrained(self, name: str, hashed: bool = False) -> tuple[SpecifierSet | None, str]:
        """The versions of ``name`` pip's constraints admit (None: no constraint names it, its markers
        evaluated on ``python_version`` as pip on it evaluates them) and which constraints (for messages).
        Raises :class:`VersionNotFound` for a URL constraint (pip installs ``name`` from there) or one with
        ``--hash``, unless the requirement is ``hashed``."""
        from packaging.specifiers import SpecifierSet

        from dragonfly_hybrid.report import printable

        applying = self._applying(name)
        for constraint in applying:
            if constraint.url is not None:
                raise VersionNotFound(
                    f"pip's constraint at {constraint.origin} makes pip install {name} from "
                    f"{printable(constraint.url)}, not from an index: scan that file by its path"
                )
            if constraint.hashes and not hashed:
                # A requirement takes the hashes its constraints all allow (constraint_hashes, read_pins):
                # none left, pip 26.3 installs no file of it in hash-checking mode. Refused: loud.
                raise VersionNotFound(
                    f"pip's constraint at {constraint.origin} has --hash options, and {name} has no hash "
                    "that its constraints all allow: give it its own --hash options in a -R file"
                )
        if not applying:
            return None, ""
        where = ", ".join(f"{c.name}{c.specifier} ({c.origin})" for c in applying)
        return SpecifierSet("".join(f",{c.specifier}" for c in applying).strip(",")), where

    def _applying(self, name: str) -> list[Constraint]:
        """pip's constraints on ``name`` whose markers hold on ``python_version``."""
        project = normalize_name(name)
        return [c for c in self.constraints if c.name == project and c.applies(self.python_version)]

    def constraint_hashes(self, name: str) -> frozenset[str]:
        """The hashes pip 26.3 checks a requirement of ``name`` without ``--hash`` against: those its
        applying hashed constraints all allow (empty: none, or none in common)."""
        hashed = [c.hashes for c in self._applying(name) if c.hashes]
        return frozenset.intersection(*hashed) if hashed else frozenset()

    def download(
        self,
        file: DistributionFile,
        sink: BinaryIO,
        progress: ProgressCallback | None = None,
        *,
        listed_digest: bool = True,
    ) -> None:
        """Stream ``file`` into ``sink``: size-capped, checked against the sha256 the index lists (not with
        ``listed_digest=False``: a requirement's own hashes decide, as in pip, and the caller checks them),
        retried on transient errors.

        ``sink`` must be seekable: a retry starts again from its beginning. Every failure is a
        :class:`DownloadError`, but for an ``OSError`` of ``sink``; what ``sink`` holds then is not the file.
        """
        expected = file.sha256 if listed_digest else None
        if file.size is not None and file.size > self.max_download_size:
            raise DownloadTooLarge(
                too_large(file.filename, self.max_download_size, f"the index lists {file.size} bytes")
            )
        local = self._local.get(file.url)
        if local is not None:
            digest = self._copy_local(file.filename, local, sink, progress)
            if expected is not None and digest != expected:
                raise digest_mismatch(file.filename, expected, digest, file.url)
            return
        if urlsplit(file.url).scheme.lower() == "file":
            # Not a local find-links location's file: no retry reads it (httpx has no file: transport).
            raise DownloadError(
                f"could not download {file.filename} from {redact_url(file.url)}: a remote page's file: "
                "link is not read (only the files of a local find-links location are)"
            )
        import httpx

        problem = ""
        asked: float | None = None
        for attempt in range(self.retries):
            self._pause(attempt, asked)
            asked = None
            sink.seek(0)
            sink.truncate()
            try:
                digest = self._stream(file, sink, progress)
            except Retryable as err:
                problem = str(err)
                asked = err.retry_after
                continue
            except httpx.TransportError as err:
                problem = describe_error(err)
                continue
            except (DownloadError, OSError):
                raise  # OSError: writing ``sink`` failed (the caller's to report)
            except Exception as err:
                # Anything else (a redirect loop, a URL httpx refuses) would fail again: the file is not
                # downloaded, and the bytes written so far must never count as it.
                raise DownloadError(
                    f"could not download {file.filename} from {redact_url(file.url)}: {describe_error(err)}"
                ) from None
            if expected is not None and digest != expected:
                raise digest_mismatch(file.filename, expected, digest, file.url)
            return
        raise DownloadError(
            f"could not download {file.filename} from {redact_url(file.url)} "
            f"after {self.retries} attempts ({problem})",
            permanent=False,
        )

    def _copy_local(self, name: str, path: Path, sink: BinaryIO, progress: ProgressCallback | None) -> str:
        """A find-links file read from disk into ``sink``, capped as downloads are; its sha256 hex digest."""
        hasher = hashlib.sha256()
        received = 0
        cap = self.max_download_size
        for chunk in _file_chunks(name, path):
            received += len(chunk)
            if received > cap:
                raise DownloadTooLarge(too_large(name, cap, f"more than {cap} bytes in {path}"))
            hasher.update(chunk)
            sink.write(chunk)  # its OSError is the caller's (the sink's), not the file's
            if progress is not None:
                progress(received, None)
        return hasher.hexdigest()

    def _stream(self, file: DistributionFile, sink: BinaryIO, progress: ProgressCallback | None) -> str:
        """One download attempt; returns the sha256 hex digest of what was written."""
        return stream_download(
            self._client, file.url, file.filename, self.max_download_size, sink.write, progress=progress
        )


def too_large(name: str, cap: int, detail: str) -> str:
    """The message of :class:`DownloadTooLarge`, wherever the cap was found exceeded."""
    return f"{name} exceeds the download size cap of {cap} bytes ({detail})"


def digest_mismatch(name: str, listed: str, actual: str, url: str) -> DigestMismatch:
    """Bytes that do not hash to the digest the index lists: never scanned."""
    return DigestMismatch(
        f"sha256 of {name} is {actual}, but the index lists {listed} (from {redact_url(url)})"
    )


def stream_download(
    client: httpx.Client,
    url: str,
    name: str,
    cap: int,
    write: Callable[[bytes], object],
    *,
    digest: bool = True,
    progress: ProgressCallback | None = None,
    opened: Callable[[httpx.Response], object] | None = None,
    trace: Callable[[str, dict[str, Any]], object] | None = None,
) -> str:
    """One download attempt of the file ``name`` at ``url``, every byte handed to ``write``: capped at ``cap``
    bytes while streaming (never trusting a header), as stored (identity encoding: the cap and the digest
    apply to the file, never to a re-encoding). Returns the sha256 hex digest (empty without ``digest``).
    ``opened`` is called with the response once its head has arrived, before the body is read; ``trace`` is
    httpcore's ``trace`` extension, called at each step of the request (connections opened included).

    Raises :class:`Retryable` for an answer worth retrying (429, 5xx), :class:`DownloadError` for any other
    HTTP error, :class:`DownloadTooLarge` past the cap; transport errors propagate (retried by the caller).
    """
    hasher = hashlib.sha256() if digest else None
    extensions = {} if trace is None else {"trace": trace}
    with client.stream(
        "GET", url, headers={"Accept-Encoding": "identity"}, extensions=extensions
    ) as response:
        if _is_retryable(response):
            raise Retryable(
                f"HTTP {response.status_code}",
                capped_wait(response.status_code, response.headers.get("retry-after")),
            )
        if response.status_code != 200:
            raise DownloadError(
                f"could not download {name}: HTTP {response.status_code} from {redact_url(url)}"
            )
        total = _content_length(response)
        if total is not None and total > cap:
            raise DownloadTooLarge(too_large(name, cap, f"the server announces {total} bytes"))
        if opened is not None:
            opened(response)
        received = 0
        for chunk in response.iter_raw(_CHUNK_SIZE):
            received += len(chunk)
            if received > cap:
                raise DownloadTooLarge(too_large(name, cap, f"more than {cap} bytes received"))
            if hasher is not None:
                hasher.update(chunk)
            write(chunk)
            if progress is not None:
                progress(received, total)
    return hasher.hexdigest() if hasher is not None else ""


class Retryable(Exception):
    """A download answer worth retrying (429, 5xx): raised by :func:`stream_download`, caught by the retry
    loops of its callers. ``retry_after``: what its ``Retry-After`` asked (:func:`capped_wait`)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _read_page(response: httpx.Response, shown: str, cap: int) -> bytes:
    """The body of the index page at ``shown``: refused past ``cap`` bytes (as decoded) without reading on."""
    announced = _content_length(response)
    if announced is not None and announced > cap:
        raise PageTooLarge(_page_too_large(shown, cap, f"the server announces {announced} bytes"))
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > cap:
            raise PageTooLarge(_page_too_large(shown, cap, f"more than {cap} bytes received"))
        chunks.append(chunk)
    return b"".join(chunks)


def _page_too_large(shown: str, cap: int, detail: str) -> str:
    return f"the index page {shown} exceeds the cap on index pages of {cap} bytes ({detail})"


def _local_path(url: str) -> Path:
    """The path of a find-links ``file:`` URL; :class:`IndexUnavailable` for another host's, which pip
    refuses (the local path of that name is another file)."""
    from urllib.request import url2pathname

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):  # pip's url_to_path: exactly these are local
        raise IndexUnavailable(f"{redact_url(url)} is a file: URL of another host, which pip does not read")
    path = url2pathname(parts.path)
    if "\0" in path:  # ``%00``: no file has that name (pip ignores the location); stat() raised ValueError
        raise IndexUnavailable(f"{redact_url(url)} names no file: its path holds an encoded NUL (%00)")
    return Path(path)


def _file_chunks(name: str, path: Path) -> Iterator[bytes]:
    """The bytes of the find-links file ``path``; :class:`DownloadError` when it cannot be read."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read for ever
            raise DownloadError(f"could not read {name} at {path}: not a regular file")
        with path.open("rb") as source:
            while chunk := source.read(_CHUNK_SIZE):
                yield chunk
    except OSError as err:
        raise DownloadError(f"could not read {name} at {path}: {err.strerror or err}") from None


def _links_of(name: str, urls: Sequence[str]) -> list[DistributionPackage]:
    """The files of project ``name`` among links to ``urls`` (a ``#sha256=`` fragment is a digest)."""
    from pypi_simple import DistributionPackage, Link, ProjectPage

    from dragonfly_hybrid.pypi.pip_names import as_pip_reads

    packages = [DistributionPackage.from_link(Link("", url, {}), name) for url in urls]
    return as_pip_reads(ProjectPage(name, packages, None, None)).packages


def parse_project_page(page: IndexPage, name: str, shown: str) -> ProjectPage:
    """A project page answer (PEP 691 JSON or PEP 503 HTML); :class:`IndexUnavailable` when unusable."""
    from pypi_simple import ProjectPage

    from dragonfly_hybrid.pypi.pip_names import as_pip_reads

    content_type = page.content_type or "text/html"
    try:
        if content_type == _JSON_TYPE:
            parsed = ProjectPage.from_json_data(json.loads(page.body), page.url)
        elif content_type in _HTML_TYPES:
            parsed = ProjectPage.from_html(name, page.body, page.url, page.charset)
        else:
            raise IndexUnavailable(f"unsupported content type {content_type!r} for {shown}")
    except IndexUnavailable:
        raise
    except Exception as err:  # pydantic, JSON and HTML parser errors: the page is unusable
        raise IndexUnavailable(f"malformed project page at {shown}: {err}") from err
    return as_pip_reads(parsed)
