"""Why the broker cannot be reached, in words a user can act on, said once per kind of trouble."""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as mqtt

from .tls import describe_tls_error

log = logging.getLogger("minut2mqtt.mqtt.publisher")

KEPT = "retrying, messages are kept meanwhile"
SHORT_LIVED_SECONDS = 10.0
TAKEN_OVER_AFTER = 3
"""Accepted connections in a row that lasted less than SHORT_LIVED_SECONDS: then the broker is
most likely handing our session to another client with our client id, and back, each second."""
SESSION_TAKEN_OVER = 142
"""MQTT 5's reason code for it, from brokers that say so (Mosquitto 2.0 just closes)."""
RECONNECT_MAX_SECONDS = 30
"""The longest wait between two tries to connect."""


class ConnectionTrouble:
    """Logs a failure to connect once, not on every retry, until it changes or we connect."""

    def __init__(self, where: str, *, tls: bool, client_id: str) -> None:
        self._where = where
        self._tls = tls
        self._client_id = client_id
        self._reported: str | None = None
        self._last_paho_error: str | None = None
        self._short_lived = 0
        self._said_taken_over = False

    def connected(self) -> None:
        self._reported = None

    def refused(self, reason: object) -> None:
        self._report("refused", f"MQTT broker {self._where} refused the connection: {reason}")

    def connect_failed(self, error: BaseException | None) -> None:
        """paho could not connect; `error` is the exception it swallowed, if any."""
        # A plain MQTT listener hangs up on the TLS hello: a reset means a handshake gone wrong.
        if self._tls and isinstance(error, ssl.SSLError | ConnectionResetError):
            self._report(
                "tls",
                f"MQTT TLS handshake with {self._where} failed: {describe_tls_error(error)}; "
                f"{KEPT}",
            )
        else:
            reason = f" ({error.strerror or error})" if isinstance(error, OSError) else ""
            self._report(
                "unreachable",
                f"cannot reach the MQTT broker at {self._where}{reason} "
                f"(check mqtt.host and mqtt.port); {KEPT}",
            )

    def lost(self, reason: object, lasted: float) -> None:
        """An accepted connection ended after `lasted` seconds: say so if it keeps happening
        soon after each connect (said once, until a connection lasts)."""
        if lasted >= SHORT_LIVED_SECONDS:
            self._short_lived, self._said_taken_over = 0, False
            return
        self._short_lived += 1
        taken_over = getattr(reason, "value", None) == SESSION_TAKEN_OVER
        if (taken_over or self._short_lived >= TAKEN_OVER_AFTER) and not self._said_taken_over:
            self._said_taken_over = True
            what = (
                "gave our session to another client"
                if taken_over
                else f"closed our connection soon after accepting it, {self._short_lived} times "
                "in a row"
            )
            log.error(
                "MQTT broker %s %s: another client is most likely connected with our client id "
                "%r (a second minut2mqtt?), and the broker hands the session from one to the "
                "other. Give each bridge its own mqtt.client_id (and base_topic and state_dir); %s",
                self._where,
                what,
                self._client_id,
                KEPT,
            )

    @property
    def reconnect_delay(self) -> int:
        """Seconds to wait before connecting again after losing an accepted connection: 1,
        doubled for each further one in a row that ended soon after it began (up to
        RECONNECT_MAX_SECONDS). Two bridges with one client id would otherwise take the session
        from each other every second, each sending everything again each time."""
        doublings = min(max(0, self._short_lived - 1), RECONNECT_MAX_SECONDS.bit_length())
        return min(RECONNECT_MAX_SECONDS, 1 << doublings)

    def closed_before_accepting(self) -> None:
        """The connection ended before the broker accepted it: say what paho last logged."""
        error, self._last_paho_error = self._last_paho_error, None
        if error is None or self._reported == "refused":
            return
        # Under TLS 1.3 the broker judges our client certificate after the handshake, so
        # its refusal arrives as a failed read, which paho only logs.
        hint = (
            " (does the broker require a client certificate? mqtt.tls.cert_file)"
            if self._tls and "certificate" in error
            else ""
        )
        self._report(
            "dropped",
            f"MQTT broker {self._where} closed the connection before accepting it: "
            f"{error}{hint}; {KEPT}",
        )

    def paho_logged(self, level: int, message: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._last_paho_error = message

    def forget_paho_error(self) -> None:
        self._last_paho_error = None

    def _report(self, kind: str, message: str) -> None:
        if kind != self._reported:
            self._reported = kind
            log.error("%s", message)
