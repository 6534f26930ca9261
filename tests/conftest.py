"""Shared fixtures. Archive builders and the fake index live in ``tests/fakes/pypi.py``."""

from __future__ import annotations

import datetime
import gc
import ipaddress
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.pypi import LIGHT_RULE, MARKER_RULE, FakeIndex


@pytest.fixture(autouse=True, scope="session")
def _rules_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands cache compiled rules (``rules_loader.rules_cache_dir``): in a directory of the test session,
    never the user's, shared by the session's tests (and their subprocesses) as it is by a user's commands."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRAGONFLY_RULES_CACHE_DIR", str(tmp_path_factory.mktemp("rules-cache")))
        yield


@pytest.fixture
def fake_index() -> Iterator[FakeIndex]:
    """A started fake simple index on 127.0.0.1 (see ``tests/fakes/pypi.py``)."""
    with FakeIndex() as index:
        yield index


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A rule directory: ``test_marker`` (weight 5) and, in a subdirectory, ``light_marker`` (weight 1)."""
    directory = tmp_path / "rules"
    (directory / "sub").mkdir(parents=True)
    (directory / "marker.yar").write_text(MARKER_RULE)
    (directory / "sub" / "light.yara").write_text(LIGHT_RULE)
    return directory


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DRAGONFLY_* variable from the outside, and a working directory without a .env (for the settings
    tests: ``pytestmark = pytest.mark.usefixtures("clean_env")``)."""
    for name in list(os.environ):
        if name.upper().startswith("DRAGONFLY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _package_logging_restored() -> Iterator[None]:
    """In-process ``watch``/``node`` runs route the package's logs to the stderr of their CliRunner (closed
    afterwards) and stop propagation: undo that, so later tests log normally and ``caplog`` sees them."""
    logger = logging.getLogger("dragonfly_hybrid")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(autouse=True)
def _no_outside_pip_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``scan`` reads pip's configuration and PIP_* variables (as pip does): tests start from none, so that
    a find-links, cert or index of the machine running them changes nothing; tests set what they test."""
    for name in list(os.environ):
        if name.upper().startswith("PIP_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


# ------------------------------------------------------------------------------------ TLS


def _certificate(
    subject: str, key: object, issuer: tuple[object, object] | None, *, ca: bool, ip: str | None = None
) -> object:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else name)  # type: ignore[attr-defined]
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if ip else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA made for the test, a server certificate for 127.0.0.1 and a client certificate (PEM files)."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = tmp_path_factory.mktemp("pki")

    def pem(cert: object, key: object) -> tuple[bytes, bytes]:
        return (
            cert.public_bytes(serialization.Encoding.PEM),  # type: ignore[attr-defined]
            key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("dragonfly test CA", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("127.0.0.1", server_key, (ca, ca_key), ca=False, ip="127.0.0.1")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("scanner", client_key, (ca, ca_key), ca=False)
    paths = {
        "ca": directory / "ca.pem",
        "server": directory / "server.pem",
        "client": directory / "client.pem",
    }
    paths["ca"].write_bytes(pem(ca, ca_key)[0])
    paths["server"].write_bytes(b"".join(pem(server, server_key)))
    paths["client"].write_bytes(b"".join(pem(client, client_key)))
    return paths


@pytest.fixture
def empty_download_pool() -> Iterator[None]:
    """Nothing in ``DownloadBuffer``'s pool at the start, and nothing added meanwhile but what the test
    drops: other tests' downloads leave arrays in it, and buffers in their garbage (a traceback's frames)
    could be collected into it at any moment, so the cyclic collector waits until the test is over."""
    from dragonfly_hybrid._core import DownloadBuffer

    gc.collect()
    gc.disable()
    try:
        DownloadBuffer.free_pooled()
        assert DownloadBuffer.pooled() == (0, 0)
        yield
    finally:
        gc.enable()
