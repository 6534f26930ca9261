"""Node configuration: the reference node's ``DRAGONFLY_*`` variables (same names, same defaults) plus ours.

Sources, highest priority first: explicit overrides (CLI flags) > environment variables > a ``.env`` file >
a TOML file (``load_settings(config_file=...)`` or the path in ``DRAGONFLY_CONFIG``) > defaults. In the TOML
file keys are the lower-case setting names without the prefix (``bulk_size = 20``); an unknown key is an
error, so a typo cannot silently leave a default in place.

Every invalid value fails at start-up with a :class:`ConfigError` holding one line per problem, each naming
the environment variable (``DRAGONFLY_BULK_SIZE: Input should be greater than or equal to 1``), and the CLI
flag too when the value came from one. Values are never echoed, so a misplaced secret cannot leak through an
error message. Every number has a finite range (see the ``MAX_*`` constants): NaN, infinity, and values the
scanner cannot honour (a nesting depth above the core's, a size above what it can count) are refused here,
at start-up, rather than met later as an internal error or a node that starts and hangs.

Secrets are ``SecretStr``: they show as ``**********`` in reprs and as ``********`` in
:meth:`NodeSettings.masked`.

Credentials are only required by what needs them: :meth:`NodeSettings.auth_scheme` raises when the node
cannot authenticate, while ``dragonfly-hybrid scan`` never asks.

The current reference node names the Cloudflare Access service token ``DRAGONFLY_CF_ACCESS_CLIENT_ID`` /
``DRAGONFLY_CF_ACCESS_CLIENT_SECRET``; those names are accepted as alternatives of ``DRAGONFLY_CLIENT_ID`` /
``DRAGONFLY_CLIENT_SECRET`` (and ``cf_access_client_id`` / ``cf_access_client_secret`` in TOML). Both
spellings of one setting with different values in one source (the environment, the ``.env`` file, the TOML
file) is an error, as is a TOML key written twice in different cases; between sources the precedence holds.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from dragonfly_hybrid._core import MAX_NESTING_DEPTH, Limits
from dragonfly_hybrid.bounds import (
    DEFAULT_LIMITS,
    MAX_BULK_SIZE,
    MAX_BYTES,
    MAX_CONCURRENCY,
    MAX_LEASE,
    MAX_MEMBERS,
    MAX_RATIO,
    MAX_SCAN_TIMEOUT,
    MAX_WAIT,
    MIN_SCAN_TIMEOUT,
    available_cores,
    threads_problem,
)
from dragonfly_hybrid.pypi.index import DEFAULT_MAX_DOWNLOAD_SIZE
from dragonfly_hybrid.redaction import redact_url
from dragonfly_hybrid.rules_loader import configured_cache_dir, default_rules_cache_dir
from dragonfly_hybrid.toml_reader import TomlError, read_toml

ENV_PREFIX = "DRAGONFLY_"
CONFIG_ENV_VAR = "DRAGONFLY_CONFIG"
"""Environment variable holding the path of the TOML configuration file."""
MASK = "********"

AuthScheme = Literal["cloudflare", "auth0"]

_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_TOML_ALIASES = {"cf_access_client_id": "client_id", "cf_access_client_secret": "client_secret"}
_OFF = ("", "0", "off", "none", "false", "no")
_URL_FIELDS = frozenset({"base_url", "auth0_domain", "audience"})
"""Settings that are URLs (or may be written as one): a user name and password in them are never shown."""

logger = logging.getLogger("dragonfly_hybrid.config")

# Values read from the TOML file by ``load_settings``, handed to ``settings_customise_sources`` (a classmethod
# with no access to constructor arguments). A ContextVar keeps concurrent loads in threads independent.
_toml_values: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "dragonfly_hybrid_toml_values", default=None
)


class ConfigError(ValueError):
    """The configuration is invalid or incomplete; the message names every offending variable."""


def env_var(field: str) -> str:
    """The environment variable that sets ``field`` (``bulk_size`` -> ``DRAGONFLY_BULK_SIZE``)."""
    name = field.upper()
    return name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name


def _secret_is_set(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value() != ""


def header_safe(value: str) -> bool:
    """Whether ``value`` can go out as an HTTP header value as it is: printable ASCII (tabs too), and no
    whitespace at either end (a server strips it). A line break (a secret read from a file with its
    newline), another control character or a non-ASCII one cannot be sent at all."""
    return value == value.strip(" \t") and all(ch == "\t" or " " <= ch <= "~" for ch in value)


def _http_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an address the node calls (None when it can). The port is read here: the
    standard parser reads it only when asked, and httpx refused it at the first call, a crash."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError for a port that is not a number up to 65535
    except ValueError:
        return "must be an http:// or https:// URL with a valid host and port"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    if parts.port == 0:  # the node's transport called the scheme's default port instead
        return "must not name port 0"
    if "?" in url or "#" in url:  # paths are appended to it: `https://h/?x=1/jobs` calls `https://h/`
        return "must not have a query string (?) or a fragment (#)"
    if not url.isprintable():
        return "must not contain control characters"
    return None


class NodeSettings(BaseSettings):
    """Settings of the scanning node. Build with :func:`load_settings` to include the TOML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # The reference node's variables, with its defaults.
    base_url: str = "https://dragonfly.vipyrsec.com"
    client_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DRAGONFLY_CLIENT_ID", "DRAGONFLY_CF_ACCESS_CLIENT_ID"),
    )
    client_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DRAGONFLY_CLIENT_SECRET", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET"),
    )
    auth0_domain: str = "vipyrsec.us.auth0.com"
    audience: str = "https://dragonfly.vipyrsec.com"
    username: str | None = None
    password: SecretStr | None = None
    threads: int = Field(default_factory=available_cores, ge=1)  # at most max_threads(): _check_threads
    load_duration: float = Field(default=60.0, ge=0, le=MAX_WAIT, allow_inf_nan=False)
    bulk_size: int = Field(default=20, ge=1, le=MAX_BULK_SIZE)
    max_scan_size: int = Field(default=DEFAULT_MAX_DOWNLOAD_SIZE, ge=1, le=MAX_BYTES)

    # Ours.
    job_timeout: float = Field(default=120.0, gt=0, le=MAX_LEASE, allow_inf_nan=False)
    max_member_size: int = Field(default=DEFAULT_LIMITS.max_member_size, ge=1, le=MAX_BYTES)
    max_total_size: int = Field(default=DEFAULT_LIMITS.max_total_size, ge=1, le=MAX_BYTES)
    max_members: int = Field(default=DEFAULT_LIMITS.max_members, ge=1, le=MAX_MEMBERS)
    max_ratio: int = Field(default=DEFAULT_LIMITS.max_ratio, ge=1, le=MAX_RATIO)
    max_depth: int = Field(default=DEFAULT_LIMITS.max_depth, ge=0, le=MAX_NESTING_DEPTH)
    scan_timeout: float = Field(
        default=DEFAULT_LIMITS.timeout, ge=MIN_SCAN_TIMEOUT, le=MAX_SCAN_TIMEOUT, allow_inf_nan=False
    )
    download_concurrency: int = Field(default=8, ge=1, le=MAX_CONCURRENCY)
    submit_concurrency: int = Field(default=4, ge=1, le=MAX_CONCURRENCY)
    grace_period: float = Field(default=60.0, ge=0, le=MAX_WAIT, allow_inf_nan=False)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=9100, ge=1, le=65535)
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    rules_cache_dir: Path | None = Field(default_factory=default_rules_cache_dir)
    http_timeout: float = Field(default=30.0, gt=0, le=MAX_WAIT, allow_inf_nan=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        problems: list[str] = []
        for source in (env_settings, dotenv_settings):
            if isinstance(source, EnvSettingsSource):  # each source on its own: between them, precedence
                where = source.env_file if isinstance(source, DotEnvSettingsSource) else "the environment"
                problems += _spelling_conflicts(settings_cls, source.env_vars, f"in {where}")
        if problems:
            raise ConfigError("invalid configuration:\n" + "\n".join(problems))
        toml = InitSettingsSource(settings_cls, init_kwargs=dict(_toml_values.get() or {}))
        return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    @field_validator("threads")
    @classmethod
    def _check_threads(cls, value: int) -> int:
        problem = threads_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        problem = _http_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("auth0_domain")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            raise ValueError("must not be empty")
        problem = _http_url_problem(value if "://" in value else f"https://{value}")
        if problem is not None:
            raise ValueError(problem.replace("URL", "URL (or a host name)", 1))
        return value

    @field_validator("audience", "metrics_host")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _port_off(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() in _OFF) or value == 0:
            return None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_log_level(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        level = value.strip().upper()
        level = "WARNING" if level == "WARN" else level
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @field_validator("rules_cache_dir", mode="before")
    @classmethod
    def _cache_dir(cls, value: object) -> object:
        # `off` turns the cache off, as for the commands (it named a directory `off`).
        if isinstance(value, str):
            return configured_cache_dir(value)
        if value is False:  # `rules_cache_dir = false` in the TOML file
            return None
        return value.expanduser() if isinstance(value, Path) else value

    def auth_scheme(self) -> AuthScheme:
        """How the node logs in: ``"auth0"`` when a user name or password is configured (the password
        grant, which also needs the client id and secret), else ``"cloudflare"`` (service token).

        Raises ConfigError naming the variables that are missing.
        """
        has = {
            "client_id": bool(self.client_id),
            "client_secret": _secret_is_set(self.client_secret),
            "username": bool(self.username),
            "password": _secret_is_set(self.password),
        }
        if has["username"] or has["password"]:
            scheme: AuthScheme = "auth0"
            needed: tuple[str, ...] = ("client_id", "client_secret", "username", "password")
        elif has["client_id"] or has["client_secret"]:
            scheme = "cloudflare"
            needed = ("client_id", "client_secret")
        else:
            raise ConfigError(
                "no mainframe credentials: set DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET (Cloudflare "
                "Access service token), plus DRAGONFLY_USERNAME and DRAGONFLY_PASSWORD for the Auth0 "
                "password grant"
            )
        missing = [env_var(name) for name in needed if not has[name]]
        if missing:
            raise ConfigError(f"{scheme} authentication needs {', '.join(missing)} (not set or empty)")
        if scheme == "cloudflare":
            # The service token travels in two headers (Auth0's credentials go in a JSON body: anything
            # goes there). One that cannot be sent failed every login, or crashed the node at its first.
            assert self.client_id is not None and self.client_secret is not None
            sent = {"client_id": self.client_id, "client_secret": self.client_secret.get_secret_value()}
            unsendable = [env_var(name) for name, value in sent.items() if not header_safe(value)]
            if unsendable:
                raise ConfigError(
                    f"{', '.join(unsendable)}: cannot be sent in the HTTP header that carries it (the "
                    "Cloudflare Access service token): it holds a line break (a trailing newline?), another "
                    "control character, a non-ASCII character, or whitespace at an end"
                )
        return scheme

    def auth0_token_url(self) -> str:
        """``https://{auth0_domain}/oauth/token``; a domain given with a scheme keeps it (tests use http)."""
        domain = self.auth0_domain
        origin = domain if "://" in domain else f"https://{domain}"
        return f"{origin}/oauth/token"

    def limits(self) -> Limits:
        """The scanner's hostile-input limits from these settings (ConfigError if the core refuses them)."""
        try:
            return Limits(
                max_member_size=self.max_member_size,
                max_total_size=self.max_total_size,
                max_members=self.max_members,
                max_ratio=self.max_ratio,
                max_depth=self.max_depth,
                timeout=self.scan_timeout,
            )
        except (ValueError, OverflowError) as err:  # settings built without validation (model_construct)
            raise ConfigError(f"invalid limits: {err}") from None

    def masked(self) -> dict[str, object]:
        """Every setting by name, secrets replaced by ``"********"`` (None when unset), URLs as
        :func:`redact_url` shows them (``https://user:pass@host`` as ``https://host``); safe to print."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown[name] = MASK if value.get_secret_value() else None
            elif isinstance(value, Path):
                shown[name] = str(value)
            elif name in _URL_FIELDS and isinstance(value, str):
                shown[name] = redact_url(value)
            else:
                shown[name] = value
        return shown

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """As pydantic's, with the URLs redacted (the secrets are ``SecretStr``: masked already)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in _URL_FIELDS and isinstance(value, str) else value


def _spelling_conflicts(
    settings_cls: type[BaseSettings], values: Mapping[str, str | None], where: str
) -> list[str]:
    """A line per setting that one source (``values``: its variables by lower-case name) gives under two
    spellings with different values. pydantic took the first spelling it knew: a leftover
    ``DRAGONFLY_CLIENT_ID`` and a new ``DRAGONFLY_CF_ACCESS_CLIENT_ID`` pair made a mixed id and secret,
    refused at every login. The values are secrets: never shown."""
    problems = []
    for field in settings_cls.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names = [str(choice) for choice in alias.choices]
            given = [value for name in names if (value := values.get(name.lower())) is not None]  # None: no =
            # The first is the one taken; an empty other one is not set (a compose file's `${OLD:-}`: it
            # was refused where it had been ignored), but an empty first one hides the other: an error.
            if any(value and value != given[0] for value in given[1:]):
                problems.append(
                    f"{' and '.join(names)} ({where}): two spellings of one setting with different values; "
                    "set one of them (or both the same)"
                )
    return problems


def _describe(error: Mapping[str, Any], flags: Mapping[str, str]) -> str:
    """``DRAGONFLY_X: message`` for one pydantic error (the input value is deliberately left out);
    ``DRAGONFLY_X (--x): message`` when the value came from the CLI flag ``flags[field]``."""
    loc = error.get("loc") or ("?",)
    field = str(loc[0])
    where = env_var(field)
    if field in flags:
        where += f" ({flags[field]})"
    if len(loc) > 1:
        where += "." + ".".join(str(part) for part in loc[1:])
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return f"{where}: {message}"


def _read_toml(path: Path) -> dict[str, object]:
    try:
        data = read_toml(path)
    except TomlError as err:
        raise ConfigError(f"{CONFIG_ENV_VAR}: configuration file {err}") from None
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = _TOML_ALIASES.get(key.lower(), key.lower())
        if name in values and values[name] != value:
            # Two spellings (`client_id`, `cf_access_client_id`; `bulk_size`, `BULK_SIZE`): the last won.
            raise ConfigError(
                f"{CONFIG_ENV_VAR}: {spelled[name]} and {key} in {path} are one setting with different "
                "values; keep one of them"
            )
        values[name] = value
        spelled.setdefault(name, key)
    unknown = sorted(set(values) - set(NodeSettings.model_fields))
    if unknown:
        raise ConfigError(f"{CONFIG_ENV_VAR}: unknown setting(s) in {path}: {', '.join(unknown)}")
    return values


def _keyed_for_validation(values: Mapping[str, object]) -> dict[str, Any]:
    """``values`` with aliased fields keyed by their alias (``client_id`` -> ``DRAGONFLY_CLIENT_ID``).

    Older pydantic-settings releases let an environment alias beat an init value given by field name; keyed
    by the alias, overrides and TOML values take their documented place in the precedence everywhere.
    """
    keyed: dict[str, Any] = {}
    for key, value in values.items():
        alias = NodeSettings.model_fields[key].validation_alias
        keyed[str(alias.choices[0]) if isinstance(alias, AliasChoices) else key] = value
    return keyed


def _toml_path(config_file: Path | str | None) -> Path | None:
    if config_file is not None:
        return Path(config_file).expanduser()
    from_env = os.environ.get(CONFIG_ENV_VAR, "").strip()
    return Path(from_env).expanduser() if from_env else None


def load_settings(
    config_file: Path | str | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    env_file: Path | str | None = ".env",
    flags: Mapping[str, str] | None = None,
) -> NodeSettings:
    """Build the node settings from every source (see the module docstring for the precedence).

    ``overrides`` maps setting names to values (CLI flags); entries whose value is None are ignored (a
    flag that was not given). ``flags`` maps setting names to the CLI flags that set them, so that a
    problem with a value given by a flag names the flag too. ``env_file`` is the ``.env`` file to read
    (None: none). Raises ConfigError.
    """
    given: dict[str, Any] = {key: value for key, value in (overrides or {}).items() if value is not None}
    named = {key: flag for key, flag in (flags or {}).items() if key in given}
    unknown = sorted(set(given) - set(NodeSettings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    path = _toml_path(config_file)
    token = _toml_values.set(_keyed_for_validation(_read_toml(path)) if path is not None else {})
    try:
        return NodeSettings(_env_file=env_file, **_keyed_for_validation(given))  # type: ignore[call-arg]
    except ValidationError as err:
        problems = [_describe(e, named) for e in err.errors(include_input=False, include_url=False)]
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None
    except SettingsError as err:
        raise ConfigError(f"invalid configuration: {err}") from None
    except UnicodeDecodeError as err:  # the .env file: the TOML file was read above
        raise ConfigError(f"{env_file} is not UTF-8 text (byte {err.start}: {err.reason})") from None
    finally:
        _toml_values.reset(token)
