"""A QoS 2 exchange that survives the bridge being killed: the session paho does not keep.

An event leaves the outbox exactly once only if a restart can pick up each exchange where it
stopped. The broker keeps its half in our persistent session (same client id, no clean start);
the outbox keeps ours: every row's packet id is derived from its row id (so it is the same after
a restart), and the row is marked *released* when the broker's PUBREC arrives, before paho
answers with PUBREL. After a restart, a released row is only released again (PUBREL: the broker
delivers it if it had not, and answers PUBCOMP either way); any other row is published again
with its own packet id, which the broker recognises as a repeat of a message it already holds.

paho 2.x has no public way to choose a packet id, to hear of a PUBREC, or to resume an exchange
at PUBREL, so `SessionClient` reaches into three of its internals, checked on import so that a
paho release that changed them fails loudly in the tests rather than quietly doubling events.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

ROW_PACKET_IDS = 60_000
"""Packet ids 1…60000 belong to outbox rows; paho's own messages (subscriptions, the bridge's
availability) take 60001…65535, so the two never collide."""
_PAHO_METHODS = ("_mid_generate", "_handle_pubrec", "_send_pubrel")
_PAHO_STATE = ("_out_messages", "_out_message_mutex", "_inflight_messages", "_mid_generate_mutex")


def packet_id_of(row_id: int) -> int:
    return (row_id - 1) % ROW_PACKET_IDS + 1


class SessionClient(mqtt.Client):
    """paho's client, publishing outbox rows under their own packet ids.

    `on_pubrec(packet_id)` runs on paho's network thread when the broker acknowledged a QoS 2
    PUBLISH, before paho sends PUBREL; it must record that durably and return.
    """

    def __init__(self, *args: Any, on_pubrec: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lacking = [name for name in _PAHO_METHODS + _PAHO_STATE if not hasattr(self, name)]
        if lacking:
            raise RuntimeError(
                f"this paho-mqtt lacks {', '.join(lacking)}, which minut2mqtt's QoS 2 session "
                "uses: install the paho-mqtt release pyproject.toml names"
            )
        self._on_pubrec = on_pubrec
        self._choosing = threading.Lock()
        self._chosen: tuple[int, int] | None = None
        """(thread, packet id) while `publish_as` runs: that thread's publish takes that id."""
        self._own_mid = ROW_PACKET_IDS

    def publish_as(
        self, packet_id: int, topic: str, payload: bytes, qos: int, retain: bool
    ) -> mqtt.MQTTMessageInfo:
        """publish() under `packet_id` (rc MQTT_ERR_QUEUE_SIZE while that id is still busy)."""
        with self._choosing:
            self._chosen = (threading.get_ident(), packet_id)
            try:
                return self.publish(topic, payload, qos=qos, retain=retain)
            finally:
                self._chosen = None

    def release(self, packet_id: int) -> MQTTErrorCode:
        """Resume a QoS 2 exchange at PUBREL; its PUBCOMP then calls on_publish(packet_id)."""
        message = mqtt.MQTTMessage(packet_id)
        message.qos = 2
        message.state = mqtt.mqtt_ms_wait_for_pubcomp
        with self._out_message_mutex:
            if packet_id in self._out_messages:
                return MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
            self._out_messages[packet_id] = message
            self._inflight_messages += 1
        return self._send_pubrel(packet_id)

    def _mid_generate(self) -> int:
        chosen = self._chosen
        if chosen is not None and chosen[0] == threading.get_ident():
            return chosen[1]
        with self._mid_generate_mutex:
            self._own_mid = self._own_mid + 1 if self._own_mid < 65535 else ROW_PACKET_IDS + 1
            return self._own_mid

    def _handle_pubrec(self) -> MQTTErrorCode:
        (packet_id,) = struct.unpack("!H", self._in_packet["packet"][:2])
        self._on_pubrec(packet_id)
        return super()._handle_pubrec()
