"""pip's index and network settings, read from where pip reads them, so that ``scan`` fetches what pip
would install from where pip would fetch it.

Sources, lowest priority first (each one overrides the ones before it, key by key):

1. pip's configuration files, in pip's order: ``/etc/xdg/pip/pip.conf``, ``/etc/pip.conf``, the user
   files ``~/.pip/pip.conf`` and ``$XDG_CONFIG_HOME/pip/pip.conf`` (skipped when ``PIP_CONFIG_FILE``
   names an existing file, as pip does), the site file ``$VIRTUAL_ENV/pip.conf``, then ``PIP_CONFIG_FILE``
   (``os.devnull``: no files at all). ``[install]`` in any of them overrides ``[global]`` in all.
2. The environment: ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL`` (a space-separated list), ``PIP_CERT``,
   ``PIP_CLIENT_CERT``, ``PIP_TRUSTED_HOST`` (space-separated), ``PIP_PROXY``, ``PIP_NO_INDEX``,
   ``PIP_FIND_LINKS``, ``PIP_REQUIRE_HASHES``. The standard ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/
   ``NO_PROXY`` variables are honoured by the HTTP client whenever no ``proxy`` setting is given.
3. Option lines of the requirements files given to ``-R`` (``--index-url``, ``--extra-index-url``,
   ``--trusted-host``, ``--no-index``, ``--find-links``).
4. The command line (``scan --index-url``/``--extra-index-url``).

The index URL of the highest-priority source that sets one is used; extra indexes and trusted hosts of
sources 3 and 4 are added to those of 1 and 2 (a project is looked up on every index, and the files of
all of them are merged, as pip does).
Keys with several values (``extra-index-url``, ``trusted-host``) are whitespace-separated, as pip reads
them, as are ``find-links`` values. ``find-links`` in pip's configuration or environment adds candidates to
every release, as pip takes them: the files of those directories and pages are scanned with the index's
(:meth:`dragonfly_hybrid.pypi.index.PyPIClient.resolve`). ``no-index`` (anywhere) and ``--find-links`` in
a requirements file are refused (:class:`PipConfigError`; scan local distributions by giving their paths
as targets). ``require-hashes`` turns on pip's hash-checking mode for requirements files, as a
``--require-hashes`` line does (:attr:`PipSettings.require_hashes`).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dragonfly_hybrid.http_client import NetworkSettings

DEFAULT_INDEX_URL = "https://pypi.org/simple/"


class PipConfigError(ValueError):
    """A pip setting the scanner cannot honour (``no-index``, ``--find-links`` in a requirements file) or an
    unreadable value."""


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
    refused: tuple[str, ...] = field(default=())
    """``what (where)`` of every setting that cannot be honoured (``no-index``, ``--find-links`` in a
    requirements file)."""

    @property
    def index_urls(self) -> list[str]:
        """Every index to look a project up on: the index URL (PyPI by default), then the extras."""
        urls = [self.index_url or DEFAULT_INDEX_URL, *self.extra_index_urls]
        return list(dict.fromkeys(urls))

    def check(self) -> None:
        """Raise :class:`PipConfigError` when a setting cannot be honoured."""
        if self.refused:
            raise PipConfigError(
                f"{'; '.join(self.refused)}: scan looks releases up on package indexes only; to scan "
                "local distributions, give their files or directory as targets (and unset this for scan)"
            )

    def overlay(
        self,
        *,
        index_url: str | None = None,
        extra_index_urls: tuple[str, ...] = (),
        trusted_hosts: tuple[str, ...] = (),
        refused: tuple[str, ...] = (),
    ) -> PipSettings:
        """These settings under a higher-priority source: its index URL wins, its extra indexes and
        trusted hosts are added."""
        return replace(
            self,
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
    files = [Path("/etc/xdg/pip") / name, Path("/etc") / name]
    if not (config_file and Path(config_file).exists()):
        xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        files += [home / ".pip" / name, xdg / "pip" / name]
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / name)
    if config_file:
        files.append(Path(config_file))
    return files


_KEYS = (
    "index-url",
    "extra-index-url",
    "cert",
    "client-cert",
    "trusted-host",
    "proxy",
    "no-index",
    "find-links",
    "require-hashes",
)
# pip's boolean values (its ``strtobool``); pip refuses any other.
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")
_SECTIONS = ("global", "install")


def _read_config(path: Path) -> dict[str, dict[str, str]]:
    """The recognised keys of one file's ``[global]`` and ``[install]`` (``index_url`` = ``index-url``)."""
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError):
        return {}
    found: dict[str, dict[str, str]] = {}
    for section in _SECTIONS:
        if not parser.has_section(section):
            continue
        for key, value in parser.items(section):
            key = key.replace("_", "-")
            if key in _KEYS and value.strip():
                found.setdefault(section, {})[key] = value.strip()
    return found


def _apply(settings: PipSettings, values: Mapping[str, str], where: str) -> PipSettings:
    refused = [f"no-index is set ({where})"] if values.get("no-index", "").lower() in _TRUE else []
    # A later source turns it off as well as on (``PIP_REQUIRE_HASHES=0`` over pip.conf's ``true``).
    require_hashes = values.get("require-hashes", "").lower()
    return replace(
        settings,
        index_url=values.get("index-url") or settings.index_url,
        extra_index_urls=tuple(values["extra-index-url"].split())
        if "extra-index-url" in values
        else settings.extra_index_urls,
        cert=values.get("cert") or settings.cert,
        client_cert=values.get("client-cert") or settings.client_cert,
        trusted_hosts=tuple(values["trusted-host"].split())
        if "trusted-host" in values
        else settings.trusted_hosts,
        proxy=values.get("proxy") or settings.proxy,
        find_links=tuple(values["find-links"].split()) if "find-links" in values else settings.find_links,
        require_hashes=f"require-hashes ({where})"
        if require_hashes in _TRUE
        else None
        if require_hashes in _FALSE
        else settings.require_hashes,
        refused=(*settings.refused, *refused),
    )


def pip_settings(env: Mapping[str, str] | None = None, home: Path | None = None) -> PipSettings:
    """pip's settings from its configuration files and the environment (sources 1 and 2 above)."""
    env = os.environ if env is None else env
    settings = PipSettings()
    files = [(path, _read_config(path)) for path in config_files(env, home or Path.home())]
    # pip merges the files, then applies [global] and then [install]: an [install] key in any file wins
    # over a [global] one in any other (a user's [install] over PIP_CONFIG_FILE's [global]). Only each
    # key's winning value counts (a ``no-index = true`` it overrides refuses nothing).
    winners: dict[str, tuple[str, str]] = {}
    for section in _SECTIONS:
        for path, sections in files:
            winners.update((key, (value, str(path))) for key, value in sections.get(section, {}).items())
    for where in dict.fromkeys(where for _, where in winners.values()):
        settings = _apply(settings, {k: v for k, (v, w) in winners.items() if w == where}, where)
    values = {
        key: env[variable].strip()
        for key in _KEYS
        if (variable := f"PIP_{key.upper().replace('-', '_')}") in env and env[variable].strip()
    }
    return _apply(settings, values, "environment")


def configured_index_url(env: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """The index pip would use: ``PIP_INDEX_URL``, else ``index-url`` in pip's config files, else PyPI."""
    return pip_settings(env, home).index_url or DEFAULT_INDEX_URL


def network_of(settings: PipSettings) -> NetworkSettings:
    """The HTTP client settings among ``settings``."""
    return NetworkSettings(settings.cert, settings.client_cert, settings.trusted_hosts, settings.proxy)
