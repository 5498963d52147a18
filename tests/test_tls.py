"""MQTT over TLS against a real Mosquitto: the broker is verified unless the user says otherwise.

One Mosquitto serves every case on its own TLS listener, with certificates from a test CA made
here by `openssl`: one for `localhost`/127.0.0.1, one for another name only, and one listener
that requires a client certificate. A plain listener lets an independent subscriber watch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from brokers import MosquittoBroker, MqttRecorder, find_mosquitto, random_free_port
from conftest import daemon_overrides

from minut2mqtt.daemon import Daemon
from minut2mqtt.settings import ConfigError, load_settings
from minut2mqtt.simulator import SimulatorServer

pytestmark = [
    pytest.mark.xdist_group("tls"),  # one certificate authority and broker for the module
    pytest.mark.skipif(
        find_mosquitto() is None or shutil.which("openssl") is None,
        reason="needs mosquitto and the openssl command",
    ),
]

PUBLISHER_LOG = "minut2mqtt.mqtt.publisher"


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path
    unrelated_ca: Path
    client_cert: Path
    client_key: Path

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _openssl_req(directory: Path, name: str, subject: str, *options: str) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-days", "2", "-noenc",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.crt"),
            "-subj", f"/CN={subject}",
            *options,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_extensions = [
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]  # fmt: skip

    def signed_by_test_ca(*extensions: str) -> list[str]:
        leaf = ["-addext", "basicConstraints=critical,CA:FALSE"]
        signer = ["-CA", str(directory / "ca.crt"), "-CAkey", str(directory / "ca.key")]
        return [*signer, *leaf, *(part for ext in extensions for part in ("-addext", ext))]

    _openssl_req(directory, "ca", "minut2mqtt test CA", *ca_extensions)
    _openssl_req(directory, "unrelated-ca", "unrelated CA", *ca_extensions)
    _openssl_req(
        directory,
        "localhost",
        "localhost",
        *signed_by_test_ca(
            "subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"
        ),
    )
    _openssl_req(
        directory,
        "elsewhere",
        "broker.example",
        *signed_by_test_ca("subjectAltName=DNS:broker.example", "extendedKeyUsage=serverAuth"),
    )
    _openssl_req(
        directory, "client", "minut2mqtt", *signed_by_test_ca("extendedKeyUsage=clientAuth")
    )
    return Pki(
        directory=directory,
        ca=directory / "ca.crt",
        unrelated_ca=directory / "unrelated-ca.crt",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


@dataclass(frozen=True)
class TlsBroker:
    mosquitto: MosquittoBroker
    verified_port: int
    """Certificate for localhost and 127.0.0.1."""
    elsewhere_port: int
    """Certificate for broker.example only."""
    mutual_port: int
    """Certificate for localhost; requires a client certificate from the test CA."""

    def log_lines(self, fragment: str) -> int:
        return self.mosquitto.log_path.read_text(errors="replace").count(fragment)


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    ports = [random_free_port() for _ in range(3)]
    verified_port, elsewhere_port, mutual_port = ports

    def listener(port: int, server: str, *extra: str) -> list[str]:
        return [
            f"listener {port} 127.0.0.1",
            f"cafile {pki.ca}",
            f"certfile {pki.cert(server)}",
            f"keyfile {pki.key(server)}",
            *extra,
        ]

    mosquitto = MosquittoBroker(
        tmp_path_factory.mktemp("mosquitto-tls"),
        extra_config=[
            *listener(verified_port, "localhost"),
            *listener(elsewhere_port, "elsewhere"),
            *listener(mutual_port, "localhost", "require_certificate true"),
        ],
    )
    with mosquitto:
        yield TlsBroker(mosquitto, verified_port, elsewhere_port, mutual_port)


@pytest.fixture
def start_tls_daemon(
    tmp_path: Path,
    tls_broker: TlsBroker,
    simulator: SimulatorServer,
) -> Iterator[Callable[..., Daemon]]:
    """Start the real daemon on one TLS port with `mqtt.tls.*` settings; it may fail to connect."""
    started: list[Daemon] = []

    def start(port: int, **tls: Any) -> Daemon:
        overrides = {
            **daemon_overrides(tmp_path, tls_broker.mosquitto, simulator),
            "mqtt.port": port,
            **{f"mqtt.tls.{key}": value for key, value in tls.items()},
        }
        daemon = Daemon(load_settings(None, overrides))
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def wait_for_error(caplog: pytest.LogCaptureFixture, fragment: str, timeout: float = 5.0) -> str:
    """The first ERROR of the publisher that contains `fragment`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := publisher_errors(caplog, fragment):
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no error with {fragment!r} logged; got {caplog.messages}")


def publisher_errors(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == PUBLISHER_LOG
        and record.levelno == logging.ERROR
        and fragment in record.getMessage()
    ]


@pytest.fixture(autouse=True)
def isolated(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("MINUT2MQTT_")]:
        monkeypatch.delenv(name)
    caplog.set_level(logging.INFO, logger="minut2mqtt")


# -- verified connections ---------------------------------------------------------------------


def test_daemon_publishes_discovery_over_tls_verified_by_the_ca_file(
    start_tls_daemon, tls_broker, pki, caplog
):
    plain = tls_broker.mosquitto
    with MqttRecorder(plain.host, plain.port, topics=["homeassistant/#"]) as recorder:
        daemon = start_tls_daemon(tls_broker.verified_port, ca_file=pki.ca)
        assert daemon.publisher.wait_connected(10)
        config = recorder.wait_for(lambda message: "minut2mqtt_dev1/" in message.topic)
    assert json.loads(config.payload)["unique_id"].startswith("minut2mqtt_dev1_")
    assert f"connecting to MQTT broker 127.0.0.1:{tls_broker.verified_port} over TLS" in (
        caplog.messages
    )
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_broker_signed_by_another_ca_is_refused_and_reported_once(
    start_tls_daemon, tls_broker, pki, caplog
):
    daemon = start_tls_daemon(tls_broker.verified_port, ca_file=pki.unrelated_ca)
    report = wait_for_error(caplog, "TLS handshake")
    assert report.startswith(
        f"MQTT TLS handshake with 127.0.0.1:{tls_broker.verified_port} failed: "
        "certificate verify failed: self-signed certificate in certificate chain"
    )
    assert "mqtt.tls.ca_file" in report
    # paho retries after 0 s, then 3 s: wait until the broker saw the second attempt.
    deadline = time.monotonic() + 8
    while tls_broker.log_lines("alert unknown ca") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tls_broker.log_lines("alert unknown ca") >= 2, "the daemon did not retry"
    assert not daemon.publisher.connected
    assert len(publisher_errors(caplog, "TLS handshake")) == 1


def test_certificate_for_another_name_is_refused(start_tls_daemon, tls_broker, pki, caplog):
    daemon = start_tls_daemon(tls_broker.elsewhere_port, ca_file=pki.ca)
    report = wait_for_error(caplog, "TLS handshake")
    assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in report
    assert "mqtt.host" in report
    assert not daemon.publisher.connected


def test_tls_to_a_plain_listener_points_at_the_port(start_tls_daemon, tls_broker, pki, caplog):
    start_tls_daemon(tls_broker.mosquitto.port, ca_file=pki.ca)
    report = wait_for_error(caplog, "TLS handshake")
    assert "is mqtt.port the broker's TLS port?" in report


# -- insecure: only when asked ----------------------------------------------------------------


def test_insecure_connects_despite_wrong_ca_and_name_and_warns(
    start_tls_daemon, tls_broker, pki, caplog
):
    daemon = start_tls_daemon(tls_broker.elsewhere_port, ca_file=pki.unrelated_ca, insecure=True)
    assert daemon.publisher.wait_connected(10)
    warnings = [
        record.getMessage() for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert any("certificate and hostname are not checked" in warning for warning in warnings)
    assert not publisher_errors(caplog, "")


# -- mutual TLS -------------------------------------------------------------------------------


def test_client_certificate_is_accepted_by_a_broker_that_requires_one(
    start_tls_daemon, tls_broker, pki
):
    daemon = start_tls_daemon(
        tls_broker.mutual_port, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
    )
    assert daemon.publisher.wait_connected(10)


def test_without_a_client_certificate_the_broker_refuses_and_it_is_reported(
    start_tls_daemon, tls_broker, pki, caplog
):
    daemon = start_tls_daemon(tls_broker.mutual_port, ca_file=pki.ca)
    report = wait_for_error(caplog, "closed the connection before accepting it")
    assert "certificate required" in report
    assert "mqtt.tls.cert_file" in report
    assert not daemon.publisher.connected


# -- configuration ----------------------------------------------------------------------------


def test_missing_ca_file_is_a_configuration_error(tmp_path):
    missing = tmp_path / "nowhere.crt"
    with pytest.raises(ConfigError) as error:
        load_settings(None, {"mqtt.tls.ca_file": missing})
    assert f"mqtt.tls.ca_file: file not found: {missing}" in str(error.value)


def test_ca_file_without_a_certificate_is_a_configuration_error(pki):
    with pytest.raises(ConfigError) as error:
        load_settings(None, {"mqtt.tls.ca_file": pki.client_key})
    assert f"mqtt.tls.ca_file: no usable PEM certificate in {pki.client_key}" in str(error.value)


@pytest.mark.parametrize(
    ("given", "missing"), [("cert_file", "key_file"), ("key_file", "cert_file")]
)
def test_client_certificate_and_key_come_together(pki, given, missing):
    path = pki.client_cert if given == "cert_file" else pki.client_key
    with pytest.raises(ConfigError) as error:
        load_settings(None, {f"mqtt.tls.{given}": path})
    assert f"mqtt.tls.{given} is set without mqtt.tls.{missing}" in str(error.value)


def test_key_of_another_certificate_is_a_configuration_error(pki):
    overrides = {"mqtt.tls.cert_file": pki.client_cert, "mqtt.tls.key_file": pki.key("localhost")}
    with pytest.raises(ConfigError) as error:
        load_settings(None, overrides)
    assert "mqtt.tls.cert_file and mqtt.tls.key_file cannot be used together" in str(error.value)


def test_tls_settings_come_from_the_environment(pki, monkeypatch):
    monkeypatch.setenv("MINUT2MQTT_MQTT__TLS__CA_FILE", str(pki.ca))
    tls = load_settings().mqtt.tls
    assert tls.ca_file == pki.ca and tls.active and not tls.enabled


def test_plain_mqtt_by_default():
    tls = load_settings().mqtt.tls
    assert not tls.active and not tls.insecure
