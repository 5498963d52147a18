"""With webhook.public_url, the bridge keeps exactly one hook at Minut and verifies deliveries."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests
from conftest import IN_BOTH_PROCESS_MODES, webhook_url

from minut2mqtt.web.verification import Proofs, Refusal, RefusalReport

DEV1_EVENT = "minut2mqtt/device/dev1/event"


def test_registers_one_hook_and_keeps_its_secret_privately(
    start_registering_daemon, account, tmp_path
):
    daemon = start_registering_daemon()
    hooks = [hook for hook in account.list_webhooks() if hook["url"] == webhook_url(daemon)]
    assert len(hooks) == 1 and hooks[0]["events"] == ["*"]
    stored_file = tmp_path / "state" / "webhook.json"
    stored = json.loads(stored_file.read_text())
    assert stored["hook_id"] == hooks[0]["hook_id"] and stored["hook_secret"]
    assert stored_file.stat().st_mode & 0o777 == 0o600


def test_duplicates_and_hooks_whose_secret_is_lost_are_replaced(
    start_registering_daemon, account, broker
):
    port_probe = start_registering_daemon()
    url = webhook_url(port_probe)
    port_probe.stop()
    for hook in account.list_webhooks():
        account.delete_webhook(hook["hook_id"])
    strays = [account.register_webhook(url)["hook_id"] for _ in range(2)]
    daemon = start_registering_daemon(**{"mqtt.client_id": "second"})
    hooks = [hook["hook_id"] for hook in account.list_webhooks() if hook["url"] == url]
    assert len(hooks) == 1 and hooks[0] not in strays
    assert daemon.hook is not None and daemon.hook.hook_id == hooks[0]


def test_a_restart_reuses_the_hook(start_registering_daemon, account):
    first = start_registering_daemon()
    hook_id = first.hook.hook_id if first.hook else None
    first.stop()
    second = start_registering_daemon(**{"mqtt.client_id": "second"})
    assert second.hook is not None and second.hook.hook_id == hook_id
    assert len(account.list_webhooks()) == 1


@IN_BOTH_PROCESS_MODES
def test_signed_deliveries_pass_and_unauthenticated_ones_are_refused(
    start_registering_daemon, account, recorder, caplog, event_process
):
    caplog.set_level(logging.WARNING, logger="minut2mqtt.web")
    daemon = start_registering_daemon(**{"webhook.event_process": event_process})
    sent = account.inject_event("pir_motion", home_id="home1", device_id="dev1")
    received = recorder.wait_for_topic(DEV1_EVENT)
    assert json.loads(received.payload)["id"] == sent["id"]
    assert account.wait_deliveries()
    recorder.clear()
    forged = {
        "event": {"id": "forged", "type": "alarm_heard", "home_id": "home1", "device_id": "dev1"}
    }
    body = json.dumps(forged).encode()
    assert requests.post(webhook_url(daemon), data=body, timeout=5).status_code == 401
    wrong = {"X-Minut-Token": daemon.hook.token if daemon.hook else "", "X-Minut-Signature": "00"}
    assert (
        requests.post(webhook_url(daemon), data=body, headers=wrong, timeout=5).status_code == 401
    )
    time.sleep(0.5)
    assert not [m for m in recorder.messages if m.topic == DEV1_EVENT]
    assert daemon.status.snapshot().webhook_refusals == {"no_signature": 1, "signature_mismatch": 1}
    if event_process:
        return  # its log lines are the event process's own, not caplog's
    # the log line names the reason as /metrics counts it
    [line] = [r.getMessage() for r in caplog.records if "delivery refused" in r.getMessage()]
    assert "delivery refused (no_signature): no signature in header X-Minut-Signature" in line
    assert "and no registration token" in line


PROOFS = Proofs(signature=None, token=None, hook_id=None, header_names=(), body_keys=())


@pytest.mark.parametrize("reason", list(Refusal))
def test_the_refusal_log_line_names_its_reason(caplog, reason):
    caplog.set_level(logging.WARNING, logger="minut2mqtt.web")
    RefusalReport("X-Sig", "X-Tok").refused(reason, PROOFS)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"webhook delivery refused ({reason.value}): ")


@pytest.mark.parametrize("verification", ["both", "signature"])
def test_no_signature_where_the_signature_is_required_says_so(caplog, verification):
    caplog.set_level(logging.WARNING, logger="minut2mqtt.web")
    report = RefusalReport("X-Sig", "X-Tok", verification=verification)
    report.refused(Refusal.NO_SIGNATURE, PROOFS)
    [line] = [r.getMessage() for r in caplog.records]
    assert "no signature in header X-Sig (webhook.signature_header), required with " in line
    assert f"webhook.verification: {verification}" in line and "token" not in line
