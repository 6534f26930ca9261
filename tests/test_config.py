"""Node settings: reference defaults, sources and their precedence, validation messages, secrets masked."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest
from dragonfly_hybrid import Limits
from dragonfly_hybrid.node.settings import (
    MASK,
    ConfigError,
    NodeSettings,
    available_cores,
    env_var,
    load_settings,
)

SECRET = "sup3r-s3cret-value-1234"
PASSWORD = "hunter2-password-5678"


pytestmark = pytest.mark.usefixtures("clean_env")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_reference_nodes() -> None:
    settings = load_settings()
    assert settings.base_url == "https://dragonfly.vipyrsec.com"
    assert settings.client_id is None and settings.client_secret is None
    assert settings.auth0_domain == "vipyrsec.us.auth0.com"
    assert settings.audience == "https://dragonfly.vipyrsec.com"
    assert settings.username is None and settings.password is None
    assert settings.threads == available_cores() >= 1
    assert settings.load_duration == 60
    assert settings.bulk_size == 20
    assert settings.max_scan_size == 128_000_000


def test_our_defaults() -> None:
    settings = load_settings()
    assert settings.job_timeout == 120
    assert settings.limits() == Limits()
    assert (settings.download_concurrency, settings.submit_concurrency) == (8, 4)
    assert settings.grace_period == 60
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9100)
    assert (settings.log_format, settings.log_level) == ("text", "INFO")
    assert settings.http_timeout == 30
    assert settings.rules_cache_dir.parts[-2:] == ("dragonfly-hybrid", "rules")


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGONFLY_BASE_URL", "https://mainframe.example.test/")
    monkeypatch.setenv("DRAGONFLY_BULK_SIZE", "7")
    monkeypatch.setenv("dragonfly_threads", "3")  # names are case-insensitive
    monkeypatch.setenv("DRAGONFLY_CLIENT_ID", "node.access")
    monkeypatch.setenv("DRAGONFLY_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("DRAGONFLY_LOG_FORMAT", "json")
    settings = load_settings()
    assert settings.base_url == "https://mainframe.example.test"  # trailing slash stripped
    assert (settings.bulk_size, settings.threads, settings.log_format) == (7, 3, "json")
    assert settings.client_id == "node.access"
    assert settings.client_secret is not None and settings.client_secret.get_secret_value() == SECRET
    assert settings.auth_scheme() == "cloudflare"


def test_precedence_overrides_env_dotenv_toml_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toml = write(
        tmp_path / "node.toml",
        "bulk_size = 1\nthreads = 1\nload_duration = 1\nmax_scan_size = 1\njob_timeout = 1\n",
    )
    write(
        tmp_path / ".env",
        "DRAGONFLY_THREADS=2\nDRAGONFLY_LOAD_DURATION=2\nDRAGONFLY_MAX_SCAN_SIZE=2\nDRAGONFLY_JOB_TIMEOUT=2\n",
    )
    monkeypatch.setenv("DRAGONFLY_LOAD_DURATION", "3")
    monkeypatch.setenv("DRAGONFLY_MAX_SCAN_SIZE", "3")
    monkeypatch.setenv("DRAGONFLY_JOB_TIMEOUT", "3")
    settings = load_settings(toml, {"max_scan_size": 4, "job_timeout": None})
    assert settings.bulk_size == 1  # TOML over the default
    assert settings.threads == 2  # .env over TOML
    assert settings.load_duration == 3  # environment over .env
    assert settings.max_scan_size == 4  # override over everything
    assert settings.job_timeout == 3  # a None override is a flag that was not given
    assert settings.http_timeout == 30  # default


def test_env_file_can_be_chosen_or_disabled(tmp_path: Path) -> None:
    env_file = write(tmp_path / "custom.env", "DRAGONFLY_BULK_SIZE=9\n")
    write(tmp_path / ".env", "DRAGONFLY_BULK_SIZE=8\n")
    assert load_settings().bulk_size == 8
    assert load_settings(env_file=env_file).bulk_size == 9
    assert load_settings(env_file=None).bulk_size == 20


def test_config_file_from_dragonfly_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = write(tmp_path / "node.toml", 'base_url = "http://127.0.0.1:8000/"\nBULK_SIZE = 5\n')
    monkeypatch.setenv("DRAGONFLY_CONFIG", str(toml))
    settings = load_settings()
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.bulk_size == 5  # TOML keys are case-insensitive too


def test_reference_cloudflare_variable_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The current reference node calls them DRAGONFLY_CF_ACCESS_CLIENT_ID / _SECRET: accepted as well."""
    monkeypatch.setenv("DRAGONFLY_CF_ACCESS_CLIENT_ID", "ref.access")
    monkeypatch.setenv("DRAGONFLY_CF_ACCESS_CLIENT_SECRET", SECRET)
    settings = load_settings()
    assert settings.client_id == "ref.access" and settings.auth_scheme() == "cloudflare"
    monkeypatch.delenv("DRAGONFLY_CF_ACCESS_CLIENT_ID")
    monkeypatch.delenv("DRAGONFLY_CF_ACCESS_CLIENT_SECRET")
    toml = write(
        tmp_path / "c.toml", f'cf_access_client_id = "toml.access"\ncf_access_client_secret = "{SECRET}"\n'
    )
    assert load_settings(toml).client_id == "toml.access"
    # The prefixed name wins over the TOML file, and an override over both.
    monkeypatch.setenv("DRAGONFLY_CLIENT_ID", "env.access")
    assert load_settings(toml).client_id == "env.access"
    assert load_settings(toml, {"client_id": "flag.access"}).client_id == "flag.access"


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENT_ID", "not-ours")
    monkeypatch.setenv("BULK_SIZE", "3")
    settings = load_settings()
    assert settings.client_id is None and settings.bulk_size == 20


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGONFLY_BULK_SIZE", "0")
    monkeypatch.setenv("DRAGONFLY_THREADS", "many")
    monkeypatch.setenv("DRAGONFLY_LOG_FORMAT", "xml")
    monkeypatch.setenv("DRAGONFLY_BASE_URL", "ftp://example.test")
    monkeypatch.setenv("DRAGONFLY_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert "DRAGONFLY_BULK_SIZE: Input should be greater than or equal to 1" in lines
    assert any(line.startswith("DRAGONFLY_THREADS: Input should be a valid integer") for line in lines)
    assert any(line.startswith("DRAGONFLY_LOG_FORMAT: Input should be 'text' or 'json'") for line in lines)
    assert "DRAGONFLY_BASE_URL: must be an http:// or https:// URL" in lines
    assert any(line.startswith("DRAGONFLY_LOG_LEVEL: must be one of") for line in lines)
    assert len(lines) == 6  # a heading and one line per problem


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRAGONFLY_LOAD_DURATION", "-1"),
        ("DRAGONFLY_MAX_SCAN_SIZE", "0"),
        ("DRAGONFLY_JOB_TIMEOUT", "0"),
        ("DRAGONFLY_MAX_DEPTH", "-1"),
        ("DRAGONFLY_SCAN_TIMEOUT", "0"),
        ("DRAGONFLY_DOWNLOAD_CONCURRENCY", "0"),
        ("DRAGONFLY_METRICS_PORT", "70000"),
        ("DRAGONFLY_HTTP_TIMEOUT", "soon"),
        ("DRAGONFLY_AUTH0_DOMAIN", " "),
    ],
)
def test_each_invalid_value_is_reported(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"(?m)^{variable}: "):
        load_settings()


def test_invalid_secrets_are_never_echoed(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "c.toml", f'password = ["{PASSWORD}"]\nclient_secret = {{ value = "{SECRET}" }}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(toml)
    error = caught.value
    assert "DRAGONFLY_PASSWORD: Input should be a valid string" in str(error)
    assert "DRAGONFLY_CLIENT_SECRET: Input should be a valid string" in str(error)
    printed = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for text in (str(error), repr(error), printed):
        assert PASSWORD not in text and SECRET not in text


def test_toml_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path / "bad.toml", "bulk_size = = 3\n"))
    with pytest.raises(ConfigError, match=r"unknown setting.*bulk_sise"):
        load_settings(write(tmp_path / "typo.toml", "bulk_sise = 3\n"))
    with pytest.raises(ConfigError, match="DRAGONFLY_BULK_SIZE: Input should be a valid integer"):
        load_settings(write(tmp_path / "type.toml", 'bulk_size = "lots"\n'))


def test_a_settings_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """Both were internal errors (exit 3, a traceback) where any other unreadable file is a usage error."""
    toml = tmp_path / "node.toml"
    toml.write_bytes(b'client_id = "\xff"\n')
    with pytest.raises(ConfigError, match=rf"{re.escape(str(toml))} is not UTF-8 text \(byte 13: invalid"):
        load_settings(toml, env_file=None)
    env = tmp_path / ".env"
    env.write_bytes(b"DRAGONFLY_CLIENT_ID=\xff\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(env))} is not UTF-8 text \(byte 20: invalid"):
        load_settings(env_file=env)


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting.*bulksize"):
        load_settings(overrides={"bulksize": 3})


def test_masked_output_and_repr_hide_secrets() -> None:
    settings = load_settings(
        overrides={"client_id": "node.access", "client_secret": SECRET, "username": "u", "password": PASSWORD}
    )
    masked = settings.masked()
    assert masked["client_secret"] == MASK and masked["password"] == MASK
    assert masked["client_id"] == "node.access" and masked["bulk_size"] == 20
    assert isinstance(masked["rules_cache_dir"], str)
    assert set(masked) == set(NodeSettings.model_fields)
    for text in (repr(settings), str(settings), str(masked), settings.model_dump_json()):
        assert SECRET not in text and PASSWORD not in text
    assert load_settings().masked()["password"] is None


def test_auth_scheme_selection() -> None:
    def scheme(**values: object) -> str:
        return load_settings(overrides=values).auth_scheme()

    assert scheme(client_id="a", client_secret="b") == "cloudflare"
    assert scheme(client_id="a", client_secret="b", username="u", password="p") == "auth0"
    with pytest.raises(ConfigError, match="DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET"):
        scheme()
    with pytest.raises(ConfigError, match=r"cloudflare authentication needs DRAGONFLY_CLIENT_SECRET \("):
        scheme(client_id="a")
    with pytest.raises(ConfigError, match=r"cloudflare authentication needs DRAGONFLY_CLIENT_SECRET \("):
        scheme(client_id="a", client_secret="")  # empty counts as missing
    with pytest.raises(ConfigError, match="auth0 authentication needs DRAGONFLY_PASSWORD"):
        scheme(client_id="a", client_secret="b", username="u")
    with pytest.raises(
        ConfigError, match="auth0 authentication needs DRAGONFLY_CLIENT_ID, DRAGONFLY_CLIENT_SECRET"
    ):
        scheme(username="u", password="p")


def test_metrics_port_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", "0", "off", "none"):
        monkeypatch.setenv("DRAGONFLY_METRICS_PORT", value)
        assert load_settings().metrics_port is None
    monkeypatch.setenv("DRAGONFLY_METRICS_PORT", "9200")
    assert load_settings().metrics_port == 9200


def test_normalisation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRAGONFLY_LOG_LEVEL", "warn")
    monkeypatch.setenv("DRAGONFLY_RULES_CACHE_DIR", "~/rules-cache")
    monkeypatch.setenv("DRAGONFLY_AUTH0_DOMAIN", "http://127.0.0.1:9999/")
    settings = load_settings()
    assert settings.log_level == "WARNING"
    assert settings.rules_cache_dir == Path.home() / "rules-cache"
    assert settings.auth0_token_url() == "http://127.0.0.1:9999/oauth/token"
    assert load_settings(
        env_file=None, overrides={"auth0_domain": "vipyrsec.us.auth0.com"}
    ).auth0_token_url() == ("https://vipyrsec.us.auth0.com/oauth/token")


def test_rules_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert load_settings().rules_cache_dir == tmp_path / "xdg" / "dragonfly-hybrid" / "rules"


@pytest.mark.parametrize("word", ["off", "OFF", " none ", "0", ""])
def test_a_rules_cache_dir_of_off_turns_the_node_cache_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, word: str
) -> None:
    """As for the commands: the node used to take `off` as a directory and write its blobs to `./off`."""
    monkeypatch.setenv("DRAGONFLY_RULES_CACHE_DIR", word)
    assert load_settings().rules_cache_dir is None
    config = tmp_path / "node.toml"
    config.write_text(f'rules_cache_dir = "{word}"\n', encoding="utf-8")
    monkeypatch.delenv("DRAGONFLY_RULES_CACHE_DIR")
    monkeypatch.setenv("DRAGONFLY_CONFIG", str(config))
    assert load_settings().rules_cache_dir is None
    config.write_text("rules_cache_dir = false\n", encoding="utf-8")  # TOML's own word for it
    assert load_settings().rules_cache_dir is None


def test_limits_from_settings() -> None:
    overrides = {
        "max_member_size": 10,
        "max_total_size": 20,
        "max_members": 30,
        "max_ratio": 40,
        "max_depth": 1,
    }
    limits = load_settings(overrides={**overrides, "scan_timeout": 2.5}).limits()
    assert limits == Limits(
        max_member_size=10, max_total_size=20, max_members=30, max_ratio=40, max_depth=1, timeout=2.5
    )


def test_env_var_names() -> None:
    assert env_var("bulk_size") == "DRAGONFLY_BULK_SIZE"
    assert env_var("DRAGONFLY_CF_ACCESS_CLIENT_ID") == "DRAGONFLY_CF_ACCESS_CLIENT_ID"
