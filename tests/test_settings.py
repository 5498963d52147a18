"""Configuration: precedence, names, and errors a user can act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from minut2mqtt.settings import ConfigError, leaf_fields, load_settings, require

REQUIRED_KEYS = {
    "minut.api_url",
    "minut.client_id",
    "minut.client_secret",
    "minut.poll_interval",
    "mqtt.host",
    "mqtt.port",
    "mqtt.username",
    "mqtt.password",
    "mqtt.client_id",
    "mqtt.base_topic",
    "mqtt.discovery_prefix",
    "webhook.host",
    "webhook.port",
    "webhook.secret",
    "state_dir",
    "log_level",
}
EXAMPLE = Path(__file__).parent.parent / "config" / "minut2mqtt.yaml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("MINUT2MQTT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults():
    settings = load_settings()
    assert settings.minut.api_url == "https://api.minut.com/v8"
    assert settings.minut.poll_interval == 300
    assert (settings.mqtt.host, settings.mqtt.port) == ("localhost", 1883)
    assert (settings.mqtt.base_topic, settings.mqtt.discovery_prefix) == (
        "minut2mqtt",
        "homeassistant",
    )
    assert (settings.webhook.host, settings.webhook.port) == ("0.0.0.0", 8000)
    assert settings.webhook.secret is None
    assert settings.log_level == "INFO"


def test_every_documented_key_exists():
    assert {key for key, _ in leaf_fields()} >= REQUIRED_KEYS


def test_precedence_cli_over_environment_over_file(tmp_path, monkeypatch):
    config = write(tmp_path, "mqtt:\n  host: from-file\n  port: 1111\n  base_topic: file\n")
    monkeypatch.setenv("MINUT2MQTT_MQTT__HOST", "from-env")
    monkeypatch.setenv("MINUT2MQTT_MQTT__PORT", "2222")
    settings = load_settings(config, {"mqtt.port": "3333"})
    assert settings.mqtt.host == "from-env"
    assert settings.mqtt.port == 3333
    assert settings.mqtt.base_topic == "file"


def test_every_bad_key_is_named_in_one_message(tmp_path):
    config = write(tmp_path, "mqtt:\n  port: 0\n  hots: typo\nminut:\n  poll_interval: fast\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "mqtt.port" in message and "greater than or equal to 1" in message
    assert "mqtt.hots: unknown key (did you mean mqtt.host?)" in message
    assert "minut.poll_interval" in message


def test_a_bad_key_from_the_environment_names_its_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MINUT2MQTT_WEBHOOK__PROT", "9000")
    monkeypatch.setenv("MINUT2MQTT_MQTT__PORT", "huge")
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "minut:\n  client_secert: x\n"))
    message = str(caught.value)
    assert (
        "webhook.prot: unknown key (did you mean webhook.port?) (set by MINUT2MQTT_WEBHOOK__PROT)"
        in message
    )
    assert "mqtt.port: " in message and "(set by MINUT2MQTT_MQTT__PORT)" in message
    assert "minut.client_secert: unknown key (did you mean minut.client_secret?)" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("mqtt: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_broken_file_is_reported(tmp_path, content, expected):
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, content))


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_secrets_are_not_echoed_in_errors(tmp_path):
    config = write(tmp_path, "minut:\n  client_secret: [hunter2]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "hunter2" not in str(caught.value)


def test_run_requires_client_credentials():
    with pytest.raises(ConfigError) as caught:
        require(load_settings(), "minut.client_id", "minut.client_secret", purpose="run")
    assert "minut.client_id: required for run" in str(caught.value)
    assert "MINUT2MQTT_MINUT__CLIENT_SECRET" in str(caught.value)


def test_example_config_is_complete_and_valid():
    settings = load_settings(EXAMPLE)
    text = EXAMPLE.read_text()
    for key, _ in leaf_fields():
        assert key.split(".")[-1] + ":" in text, f"{key} is not in the example config"
    assert settings.mqtt.base_topic == "minut2mqtt"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "minut2mqtt", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment,
    )


def test_cli_bad_config_exits_with_a_message_and_no_traceback(tmp_path):
    config = write(tmp_path, "mqtt:\n  port: 99999\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "mqtt.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_run_without_credentials_says_what_to_set():
    result = run_cli("run")
    assert result.returncode == 2
    assert "minut.client_id: required for run" in result.stderr


def test_cli_version_and_help():
    assert run_cli("--version").stdout.startswith("minut2mqtt ")
    help_text = run_cli("run", "--help").stdout
    assert "--mqtt.host" in help_text and "MINUT2MQTT_MQTT__HOST" in help_text


def test_cli_demo_with_a_bad_option_exits_cleanly():
    result = run_cli("demo", "--mqtt.port", "0", "--duration", "1")
    assert result.returncode == 2
    assert "mqtt.port" in result.stderr and "Traceback" not in result.stderr


def test_cli_options_are_the_key_names(tmp_path):
    result = run_cli("run", "--state_dir", str(tmp_path), "--log_level", "debug")
    assert "unrecognized arguments" not in result.stderr
    assert "minut.client_id: required for run" in result.stderr
