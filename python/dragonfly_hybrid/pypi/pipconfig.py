"""pip's index and network settings, read from where pip reads them, so that ``scan`` fetches what pip
would install from where pip would fetch it.

Sources, lowest priority first (each one overrides the ones before it, key by key):

1. pip's configuration files, in pip's order: ``pip/pip.conf`` in each of ``$XDG_CONFIG_DIRS``
   (``/etc/xdg``; ``~`` expanded), ``/etc/pip.conf``, the user files ``~/.pip/pip.conf`` and
   ``$XDG_CONFIG_HOME/pip/pip.conf`` (``~/.config`` when blank; both skipped when ``PIP_CONFIG_FILE``
   names an existing file, as pip does), the site file ``$VIRTUAL_ENV/pip.conf``, then
   ``PIP_CONFIG_FILE`` (``os.devnull``: no files at all). ``[install]`` in any of them overrides
   ``[global]`` in all; a later file's empty ``key =`` unsets an earlier one's (``pypi-url`` and
   ``index-url`` are two keys, as in pip). A file pip cannot load (a duplicate key, no section header,
   a line that is no ``key = value``, not in the locale's encoding) is refused, as pip refuses to run.
2. The environment: ``PIP_INDEX_URL`` (or ``PIP_PYPI_URL``), ``PIP_EXTRA_INDEX_URL`` (a
   whitespace-separated list), ``PIP_CERT``, ``PIP_CLIENT_CERT``, ``PIP_TRUSTED_HOST`` (whitespace-separated),
   ``PIP_PROXY``, ``PIP_NO_INDEX``, ``PIP_FIND_LINKS``, ``PIP_REQUIRE_HASHES``, ``PIP_NO_REQUIRE_HASHES``,
   ``PIP_PRE``, ``PIP_ALL_RELEASES``, ``PIP_ONLY_FINAL``, ``PIP_UPLOADED_PRIOR_TO``, ``PIP_NO_BINARY``,
   ``PIP_ONLY_BINARY``, ``PIP_PREFER_BINARY``, ``PIP_IGNORE_REQUIRES_PYTHON``, ``PIP_CONSTRAINT``,
   ``PIP_REQUIREMENT``; an empty one sets nothing.
   Booleans (``no-index``, ``require-hashes``, ``no-require-hashes``, ``pre``, ``prefer-binary``,
   ``ignore-requires-python``) are pip's:
   ``1``/``0``, ``true``/``false``, ``yes``/``no``, ``on``/``off`` turn them on and off again over a lower
   source; any other value is refused, as pip refuses it. The standard ``HTTPS_PROXY``/``HTTP_PROXY``/
   ``ALL_PROXY``/``NO_PROXY`` variables are honoured by the HTTP client whenever no ``proxy`` setting is
   given.
3. Option lines of the requirements files given to ``-R`` (``--index-url``, ``--extra-index-url``,
   ``--trusted-host``, ``--no-index``, ``--find-links``, ``--pre``, ``--all-releases``, ``--only-final``,
   ``--no-binary``, ``--only-binary``, ``--prefer-binary``;
   ``--require-hashes`` and ``--no-require-hashes``, read by :mod:`requirements`).
4. The command line (``scan --index-url``/``--extra-index-url``).

The index URL of the highest-priority source that sets one is used; extra indexes and trusted hosts of
sources 3 and 4 are added to those of 1 and 2 (a project is looked up on every index, and the files of
all of them are merged, as pip does).
Keys with several values (``extra-index-url``, ``trusted-host``) are whitespace-separated, as pip reads
them, as are ``find-links`` values. ``find-links`` in pip's configuration or environment adds candidates to
every release, as pip takes them: the files of those directories and pages are scanned with the index's
(:meth:`dragonfly_hybrid.pypi.index.PyPIClient.resolve`). ``no-index`` (when on in the source that
wins) and ``--find-links`` in a requirements file are refused (:class:`PipConfigError`; scan local
distributions by giving their paths as targets). ``require-hashes`` turns on pip's hash-checking mode for
requirements files, as a ``--require-hashes`` line does (:attr:`PipSettings.require_hashes`); pip 26's
``no-require-hashes`` keeps a ``--hash`` from turning it on (:attr:`PipSettings.no_require_hashes`), and
is refused with ``require-hashes``, as pip 26.3 refuses both (:func:`check_hash_mode`).
``pre`` lets a bare name's newest release be a pre-release, as pip's ``--pre`` does
(:attr:`PipSettings.pre`). pip 26's ``all-releases`` and ``only-final`` (:class:`ReleaseControl`, as pip
26.3 reads them) decide it name by name: a pre-release is then pip's choice for a bare name, or never a
candidate, not even pinned; ``pre`` is ``all-releases = :all:``, and refused with either one, as pip
refuses it (:attr:`PipSettings.release_control`).
``uploaded-prior-to`` (as pip 26.3 reads it: an ISO 8601 datetime, local time without a zone, or ``PnD``,
n days ago; any other value refused, as pip refuses it) keeps index files uploaded at or after it out of
every release (:attr:`PipSettings.uploaded_prior_to`).
``no-binary``/``only-binary`` (:class:`FormatControl`, read as ``all-releases``/``only-final`` are: pip
shares the code), ``prefer-binary`` and ``ignore-requires-python`` decide which files are pip's candidates
and which release a bare name installs (:attr:`PipSettings.candidate_files`). ``constraint`` names files
pip reads into every install as ``-c`` files (:attr:`PipSettings.constraint_files`, read by
:mod:`requirements`); ``requirement`` names files whose requirements pip installs too, which ``scan`` does
not scan: a lookup that reads pip's settings refuses it (:meth:`PipSettings.check`).
"""

from __future__ import annotations

import configparser
import locale
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from dragonfly_hybrid.http_client import NetworkSettings
from dragonfly_hybrid.redaction import redact_text

if TYPE_CHECKING:
    from packaging.version import Version

DEFAULT_INDEX_URL = "https://pypi.org/simple/"


class PipConfigError(ValueError):
    """A pip setting the scanner cannot honour (``no-index``, ``--find-links`` in a requirements file) or an
    unreadable value."""


def _mutually_excluded(
    key: str, value: str, where: str, target: frozenset[str], other: frozenset[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """``(target, other)`` under one more value of ``key`` (pip's ``handle_mutual_excludes``, shared by its
    ``no-binary``/``only-binary`` and pip 26's ``all-releases``/``only-final``): comma-separated names go
    to ``target`` and leave ``other``, ``:all:`` empties both and stands for every project (the names
    after it are ignored, but after a ``:none:``), ``:none:`` empties ``target``. A value starting with
    ``-`` is refused, as pip refuses it."""
    from packaging.utils import canonicalize_name

    if value.startswith("-"):
        raise PipConfigError(
            f"pip's {key} is {value!r} ({where}): not a list of project names, :all: or :none:; "
            "pip refuses it"
        )
    into, out = set(target), set(other)
    new = value.split(",")  # as pip: not stripped (" foo" names no project)
    while ":all:" in new:
        into, out = {":all:"}, set()
        del new[: new.index(":all:") + 1]
        if ":none:" not in new:
            new = []
    for name in new:
        if name == ":none:":
            into.clear()
        else:
            out.discard(canonicalize_name(name))
            into.add(canonicalize_name(name))
    return frozenset(into), frozenset(out)


@dataclass(frozen=True)
class ReleaseControl:
    """pip 26's ``all-releases`` and ``only-final`` (its ``ReleaseControl``): canonical project names,
    ``:all:`` for every project."""

    all_releases: frozenset[str] = frozenset()
    only_final: frozenset[str] = frozenset()
    sources: tuple[str, ...] = field(default=(), compare=False)
    """``key (where)`` of each value applied, in order (for messages)."""

    def apply(self, key: str, value: str, where: str) -> ReleaseControl:
        """These under one more ``all-releases``/``only-final`` value (:func:`_mutually_excluded`)."""
        if key == "all-releases":
            all_releases, only_final = _mutually_excluded(
                key, value, where, self.all_releases, self.only_final
            )
        else:
            only_final, all_releases = _mutually_excluded(
                key, value, where, self.only_final, self.all_releases
            )
        return ReleaseControl(
            all_releases, only_final, tuple(dict.fromkeys((*self.sources, f"{key} ({where})")))
        )

    def with_pre(self) -> ReleaseControl:
        """pip's ``pre`` turned into ``all-releases = :all:`` (added; the names of ``only-final`` stay)."""
        return replace(self, all_releases=self.all_releases | {":all:"})

    def allows_prereleases(self, name: str) -> bool | None:
        """pip's answer for project ``name`` (canonical): True, a pre-release is a candidate (and the newest
        one pip's choice); False, never; None, pip's default (a pre-release only when pinned or when
        there is no final release)."""
        for names, allowed in ((self.all_releases, True), (self.only_final, False)):
            if name in names:
                return allowed
        for names, allowed in ((self.all_releases, True), (self.only_final, False)):
            if ":all:" in names:
                return allowed
        return None


@dataclass(frozen=True)
class FormatControl:
    """pip's ``no-binary`` and ``only-binary`` (its ``FormatControl``): canonical project names, ``:all:``
    for every project."""

    no_binary: frozenset[str] = frozenset()
    only_binary: frozenset[str] = frozenset()

    def apply(self, key: str, value: str, where: str) -> FormatControl:
        """These under one more ``no-binary``/``only-binary`` value (:func:`_mutually_excluded`)."""
        if key == "no-binary":
            no_binary, only_binary = _mutually_excluded(key, value, where, self.no_binary, self.only_binary)
        else:
            only_binary, no_binary = _mutually_excluded(key, value, where, self.only_binary, self.no_binary)
        return FormatControl(no_binary, only_binary)

    def takes(self, name: str, *, wheel: bool) -> bool:
        """Whether pip takes a wheel (``wheel``) or an sdist of project ``name`` (canonical) as a candidate:
        its ``get_allowed_formats``, a name before ``:all:``."""
        for key in (name, ":all:"):
            if key in self.only_binary:
                return wheel
            if key in self.no_binary:
                return not wheel
        return True


@dataclass(frozen=True)
class CandidateFiles:
    """pip's settings that decide which files of a release are its candidates, and which release it then
    prefers: ``no-binary``/``only-binary`` (:class:`FormatControl`), ``prefer-binary`` (the newest release
    with a wheel pip takes here, over any newer one with only sdists) and ``ignore-requires-python`` (no
    file is left out for its Requires-Python)."""

    formats: FormatControl = FormatControl()
    prefer_binary: bool = False
    ignore_requires_python: bool = False


@dataclass(frozen=True)
class Constraint:
    """A named line of a constraints file: pip installs ``name`` at a version ``specifier`` admits, or from
    ``url`` (redacted, for messages), where ``marker`` (None: always) holds."""

    name: str
    """Canonical."""
    specifier: str
    marker: str | None
    url: str | None
    origin: str
    """``file:line``."""
    hashes: frozenset[str] = frozenset()
    """``algorithm:hex`` of the line's ``--hash`` options (pip 26.3 installs ``name`` only from a file with
    one of them, but a requirement's own)."""

    def applies(self, python: Version) -> bool:
        """Whether its marker holds on ``python`` (pip evaluates it for the target Python)."""
        if self.marker is None:
            return True
        from packaging.markers import Marker

        from dragonfly_hybrid.pypi.dependencies import marker_environment

        return Marker(self.marker).evaluate({**marker_environment(python), "extra": ""})


@dataclass(frozen=True)
class PipSettings:
    """The index and network settings pip would use (None: not set anywhere)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    cert: str | None = None
    """A CA bundle (file or directory) that replaces the default trust store."""
    client_cert: str | None = None
    """A PEM file with the client certificate and its private key."""
    trusted_hosts: tuple[str, ...] = ()
    """``host`` or ``host:port`` whose TLS certificate is not verified (pip's ``--trusted-host``)."""
    proxy: str | None = None
    find_links: tuple[str, ...] = ()
    """pip's ``find-links``: directories, files and pages (paths or URLs) whose files are candidates too."""
    require_hashes: str | None = None
    """``require-hashes (where)`` when pip's ``require-hashes`` is on (pip then refuses a requirements file
    whose requirements are not all pinned with ``--hash``), else None."""
    no_require_hashes: str | None = None
    """``no-require-hashes (where)`` when pip 26's ``no-require-hashes`` is on (a ``--hash`` no longer
    turns on hash-checking mode for every requirement), else None."""
    pre: str | None = None
    """``pre (where)`` when pip's ``pre`` is on (a bare name's newest release may be a pre-release), else
    None."""
    release_control: ReleaseControl = ReleaseControl()
    """pip 26's ``all-releases``/``only-final``, with ``pre`` as ``all-releases = :all:``."""
    uploaded_prior_to: datetime | None = None
    """pip's ``uploaded-prior-to`` (time zone aware): only index files uploaded before it are candidates
    (:meth:`dragonfly_hybrid.pypi.index.PyPIClient.resolve`)."""
    format_control: FormatControl = FormatControl()
    """pip's ``no-binary``/``only-binary``."""
    prefer_binary: str | None = None
    """``prefer-binary (where)`` when pip's ``prefer-binary`` is on, else None."""
    ignore_requires_python: str | None = None
    """``ignore-requires-python (where)`` when pip's ``ignore-requires-python`` is on, else None."""
    refused: tuple[str, ...] = field(default=())
    """``what (where)`` of every setting that cannot be honoured (``no-index``, ``--find-links`` in a
    requirements file)."""
    added_files: tuple[str, ...] = ()
    """``requirement (where): files`` of pip's ``requirement`` setting: files pip reads into every install
    (their option lines, constraints and requirements), which ``scan`` does not read."""
    constraint_files: tuple[str, ...] = ()
    """pip's ``constraint`` setting (relative to the working directory): files pip reads into every
    install as it reads a ``-c FILE`` line (:func:`dragonfly_hybrid.pypi.requirements.read_constraints`).
    In the settings of requirements files: the ones read into them."""
    constraints: tuple[Constraint, ...] = ()
    """The named constraints of the constraints files read (``-c`` lines', pip's ``constraint``)."""

    @property
    def candidate_files(self) -> CandidateFiles:
        """Which files pip takes as candidates, and which release it prefers, under these settings."""
        return CandidateFiles(
            self.format_control, bool(self.prefer_binary), bool(self.ignore_requires_python)
        )

    @property
    def index_urls(self) -> list[str]:
        """Every index to look a project up on: the index URL (PyPI by default), then the extras."""
        urls = [self.index_url or DEFAULT_INDEX_URL, *self.extra_index_urls]
        return list(dict.fromkeys(urls))

    def check(self, *, reads_pip: bool = True) -> None:
        """Raise :class:`PipConfigError` when a setting cannot be honoured (``reads_pip``: for a release
        looked up as pip looks it up, not a lock file's entry)."""
        if self.refused:
            raise PipConfigError(
                f"{'; '.join(self.refused)}: scan looks releases up on package indexes only; to scan "
                "local distributions, give their files or directory as targets (and unset this for scan)"
            )
        if reads_pip and self.added_files:
            raise PipConfigError(
                f"pip's {'; '.join(self.added_files)}: pip installs these files' requirements too, which "
                "scan does not scan; unset it for scan, and give the files with -R (or a -R file with a "
                "'-r FILE' line, read as pip reads it)"
            )

    def overlay(
        self,
        *,
        index_url: str | None = None,
        extra_index_urls: tuple[str, ...] = (),
        trusted_hosts: tuple[str, ...] = (),
        refused: tuple[str, ...] = (),
        release_control: ReleaseControl | None = None,
        format_control: FormatControl | None = None,
        prefer_binary: str | None = None,
        constraints: tuple[Constraint, ...] = (),
    ) -> PipSettings:
        """These settings under a higher-priority source: its index URL wins, its extra indexes, trusted
        hosts and constraints are added, its release and format control (requirements files': pip's under
        their lines) replace this one's, its ``prefer-binary`` turns pip's on."""
        return replace(
            self,
            constraints=(*self.constraints, *constraints),
            release_control=self.release_control if release_control is None else release_control,
            format_control=self.format_control if format_control is None else format_control,
            prefer_binary=prefer_binary or self.prefer_binary,
            index_url=index_url or self.index_url,
            extra_index_urls=tuple(dict.fromkeys((*self.extra_index_urls, *extra_index_urls))),
            trusted_hosts=tuple(dict.fromkeys((*self.trusted_hosts, *trusted_hosts))),
            refused=(*self.refused, *refused),
        )


def config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """pip's configuration files, lowest priority first (the order pip applies them)."""
    config_file = env.get("PIP_CONFIG_FILE")
    if config_file == os.devnull:
        return []
    name = "pip.ini" if os.name == "nt" else "pip.conf"
    # pip's site-wide directories: $XDG_CONFIG_DIRS (/etc/xdg when blank), each with pip/, then /etc. As
    # pip's platformdirs: a component's ~ is expanded, an empty one is the working directory.
    dirs = env.get("XDG_CONFIG_DIRS") or ""
    dirs = dirs if dirs.strip() else "/etc/xdg"
    files = [
        *(Path(os.path.expanduser(d)) / "pip" / name for d in dirs.split(os.pathsep)),
        Path("/etc") / name,
    ]
    if not (config_file and Path(config_file).exists()):
        xdg = env.get("XDG_CONFIG_HOME") or ""
        files += [home / ".pip" / name, (Path(xdg) if xdg.strip() else home / ".config") / "pip" / name]
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / name)
    if config_file:
        files.append(Path(config_file))
    return files


_KEYS = (
    "index-url",
    "pypi-url",  # pip's other name of --index-url
    "extra-index-url",
    "cert",
    "client-cert",
    "trusted-host",
    "proxy",
    "no-index",
    "find-links",
    "require-hashes",
    "no-require-hashes",
    "pre",
    "all-releases",
    "only-final",
    "uploaded-prior-to",
    "no-binary",
    "only-binary",
    "prefer-binary",
    "ignore-requires-python",
    "constraint",
    "requirement",
)
# pip's boolean values (its ``strtobool``); pip refuses any other.
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")
_SECTIONS = ("global", "install")
_ENVIRONMENT = "environment"


def _key(name: str) -> str:
    """A setting's name as pip matches it: any case, ``_`` for ``-``, an optional leading ``--``."""
    return name.lower().replace("_", "-").removeprefix("--")


def _read_config(path: Path) -> dict[str, dict[str, str]]:
    """The recognised keys of one file's ``[global]`` and ``[install]``, empty values kept (a later file's
    ``key =`` unsets an earlier one's). A file pip cannot load (not in the locale's encoding, a duplicate
    key or section, no section header, a line that is no ``key = value``) makes pip refuse to run:
    :class:`PipConfigError`, naming the file once and the line, never quoting it. A missing or
    unreadable file is skipped, as pip skips it."""
    parser = configparser.RawConfigParser()
    encoding = locale.getpreferredencoding(False)  # pip's
    try:
        parser.read(path, encoding=encoding)
    except UnicodeDecodeError:
        raise PipConfigError(
            f"pip configuration file {path} is not valid {encoding}: pip refuses it"
        ) from None
    except configparser.Error as err:
        # The first line only: the others may quote the file's lines (an index URL with a password).
        reason = redact_text(str(err).splitlines()[0])
        # "While reading from PosixPath('...') [line  3]: option ..." names the file again: its line only.
        reason = re.sub(r"^While reading from .*? \[line\s+(\d+)\]: ", r"line \1: ", reason)
        if errors := getattr(err, "errors", None):  # "Source contains parsing errors: PosixPath(...)"
            reason = f"line {errors[0][0]}: neither a [section] header nor a 'key = value' line"
        raise PipConfigError(f"pip configuration file {path} cannot be loaded: {reason}") from None
    found: dict[str, dict[str, str]] = {}
    for section in _SECTIONS:
        if parser.has_section(section):
            for name, value in parser.items(section):
                if (key := _key(name)) in _KEYS:
                    found.setdefault(section, {})[key] = value.strip()
    return found


def _flag(key: str, value: str, where: str) -> bool:
    """pip's boolean (``strtobool``, not stripped); pip refuses to run on any other value."""
    if value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise PipConfigError(
        f"pip's {key} is {value!r} ({where}): not a boolean (true/false, yes/no, on/off, 1/0, y/n, t/f); "
        "pip refuses it"
    )


def _cutoff(value: str, where: str) -> datetime:
    """pip's ``uploaded-prior-to`` (its ``_handle_uploaded_prior_to``): ``PnD`` is n days before now, else an
    ISO 8601 datetime, in the local time zone when it names none; pip refuses any other value."""
    try:
        if days := re.match(r"^P(\d+)D$", value, re.ASCII):
            return datetime.now(timezone.utc) - timedelta(days=int(days[1]))
        text = value
        if sys.version_info < (3, 11) and text.endswith("Z") and ("T" in text or " " in text.strip()):
            text = text.replace("Z", "+00:00")  # as pip: Python 3.10's fromisoformat takes no Z
        cutoff = datetime.fromisoformat(text)
        return cutoff if cutoff.tzinfo is not None else cutoff.astimezone()
    except (ValueError, OverflowError):  # OverflowError: more days than a datetime reaches back
        raise PipConfigError(
            f"pip's uploaded-prior-to is {value!r} ({where}): not an ISO 8601 datetime (such as 2023-01-01 "
            "or 2023-01-01T00:00:00Z) nor a number of days (such as P3D); pip refuses it"
        ) from None


def _apply(settings: PipSettings, values: Mapping[str, tuple[str, str]]) -> PipSettings:
    """``settings`` under one of pip's layers (``[global]``, ``[install]``, the environment): each key it
    sets, to ``(value, where)``, replaces the one before, a boolean turned off as well as on."""

    def text(key: str) -> str | None:
        return (values[key][0].strip() or None) if key in values else None

    def words(key: str, before: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(values[key][0].split()) if key in values else before

    def flag(key: str, before: str | None) -> str | None:
        if key not in values:
            return before
        value, where = values[key]
        return f"{key} ({where})" if _flag(key, value, where) else None

    def cutoff(before: datetime | None) -> datetime | None:
        return _cutoff(*values["uploaded-prior-to"]) if "uploaded-prior-to" in values else before

    def path(key: str, before: str | None) -> str | None:
        value = text(key)
        return before if value is None else os.path.expanduser(value)  # pip expands ``~`` in its paths

    # pip keeps ``index-url`` and ``pypi-url`` apart (an empty one unsets that name only) and applies them
    # in the order of its merged keys: the later one wins.
    names = [key for key in values if key in ("index-url", "pypi-url")]
    control, formats = settings.release_control, settings.format_control
    for key in values:  # in pip's order of its keys
        if key in ("all-releases", "only-final"):
            control = control.apply(key, *values[key])
        elif key in ("no-binary", "only-binary"):
            formats = formats.apply(key, *values[key])
    # pip's lists of files: a later layer's replaces the earlier.
    added, constraint_files = settings.added_files, settings.constraint_files
    if "requirement" in values and values["requirement"][0].split():
        value, where = values["requirement"]
        added = (f"requirement ({where}): {' '.join(value.split())}",)
    if "constraint" in values and values["constraint"][0].split():
        constraint_files = tuple(values["constraint"][0].split())
    refused = settings.refused
    if "no-index" in values:  # a later layer's false lifts an earlier one's refusal, as pip takes it
        value, where = values["no-index"]
        refused = (f"no-index is set ({where})",) if _flag("no-index", value, where) else ()
    return replace(
        settings,
        index_url=(text(names[-1]) if names else None) or settings.index_url,
        extra_index_urls=words("extra-index-url", settings.extra_index_urls),
        cert=path("cert", settings.cert),
        client_cert=path("client-cert", settings.client_cert),
        trusted_hosts=words("trusted-host", settings.trusted_hosts),
        proxy=text("proxy") or settings.proxy,
        find_links=words("find-links", settings.find_links),
        require_hashes=flag("require-hashes", settings.require_hashes),
        no_require_hashes=flag("no-require-hashes", settings.no_require_hashes),
        pre=flag("pre", settings.pre),
        release_control=control,
        uploaded_prior_to=cutoff(settings.uploaded_prior_to),
        format_control=formats,
        prefer_binary=flag("prefer-binary", settings.prefer_binary),
        ignore_requires_python=flag("ignore-requires-python", settings.ignore_requires_python),
        added_files=added,
        constraint_files=constraint_files,
        refused=refused,
    )


def pip_settings(env: Mapping[str, str] | None = None, home: Path | None = None) -> PipSettings:
    """pip's settings from its configuration files and the environment (sources 1 and 2 above). Raises
    :class:`PipConfigError` where pip refuses to run (a file it cannot load, a value that is not a
    boolean)."""
    env = os.environ if env is None else env
    files = [(str(path), _read_config(path)) for path in config_files(env, home or Path.home())]
    # As pip: the files are merged key by key, later files winning (an empty value too, which then sets
    # nothing); then every [global] key is applied, then every [install] one (an [install] key of any file
    # over a [global] one of any other), then the environment's PIP_* (any case), each over the one before.
    layers: list[dict[str, tuple[str, str]]] = []
    for section in _SECTIONS:
        merged = {k: (v, where) for where, sections in files for k, v in sections.get(section, {}).items()}
        layers.append({k: vw for k, vw in merged.items() if vw[0]})
    variables = ((_key(n[4:]), v) for n, v in env.items() if n.startswith("PIP_"))
    layers.append({k: (v, _ENVIRONMENT) for k, v in variables if k in _KEYS and v})
    settings = PipSettings()
    for values in layers:
        settings = _apply(settings, values)
    control = settings.release_control
    if settings.pre is not None:  # as pip 26 (check_release_control_exclusive), once all are read
        names = {"all-releases": control.all_releases, "only-final": control.only_final}
        if set_by := [s for s in control.sources if names[s.split(" ", 1)[0]]]:  # ":none:" sets nothing
            raise PipConfigError(
                f"pip's {settings.pre} cannot be used with {', '.join(set_by)}: pip refuses it "
                "(unset one of them for scan)"
            )
        settings = replace(settings, release_control=control.with_pre())
    check_hash_mode(settings.require_hashes, settings.no_require_hashes)
    return settings


def hash_checking_mode(
    require_hashes: str | None,
    no_require_hashes: str | None,
    constraints: Sequence[Constraint],
    requirement_hash: str | None = None,
) -> str | None:
    """What turns pip's hash-checking mode on for every requirement (None: off): its ``require-hashes``,
    else (unless ``no-require-hashes``) a requirement's ``--hash`` (``requirement_hash``: where, a
    ``file:line``) or a constraint's (pip counts constraints among the requirements)."""
    if require_hashes is not None:
        return require_hashes
    if no_require_hashes is not None:
        return None
    if requirement_hash is not None:
        return f"--hash options ({requirement_hash})"
    hashed = next((c for c in constraints if c.hashes), None)
    return None if hashed is None else f"--hash options of a constraint ({hashed.origin})"


def check_hash_mode(require_hashes: str | None, no_require_hashes: str | None) -> None:
    """pip 26's refusal (``CommandError``) of ``require-hashes`` with ``no-require-hashes``, each ``name
    (where)`` of a setting or a requirements file's line, once all are read."""
    if require_hashes and no_require_hashes:
        raise PipConfigError(
            f"{require_hashes} and {no_require_hashes} are mutually exclusive: pip refuses them together "
            "(unset one of them for scan)"
        )


def configured_index_url(env: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """The index pip would use: ``PIP_INDEX_URL``, else ``index-url`` in pip's config files, else PyPI."""
    return pip_settings(env, home).index_url or DEFAULT_INDEX_URL


def network_of(settings: PipSettings) -> NetworkSettings:
    """The HTTP client settings among ``settings``."""
    return NetworkSettings(settings.cert, settings.client_cert, settings.trusted_hosts, settings.proxy)
