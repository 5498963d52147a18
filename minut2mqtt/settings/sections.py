"""The sections of the settings model but `minut` (in minut.py): MQTT, its TLS, the webhook
listener; and what every section shares."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ENV_PREFIX = "MINUT2MQTT_"
ENV_NESTED_DELIMITER = "__"
TOPIC_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
CALLBACK_PATH = "/api/minut"
"""Where Minut sends the browser back after authorizing (the path Home Assistant used too)."""
MqttProtocol = Literal["5", "3.1.1"]
WebhookVerification = Literal["any", "both", "signature", "token"]
"""What a webhook delivery must prove: the signature or the token, both, or only one of them."""
NO_KEY_PASSPHRASE = ""
"""Given to load_cert_chain so that an encrypted key fails instead of prompting on the terminal."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names every bad key and why."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsSettings(Section):
    enabled: bool = Field(False, description="connect over TLS (implied by ca_file or cert_file)")
    ca_file: Path | None = Field(
        None, description="CA bundle that verifies the broker; null: the system's trusted CAs"
    )
    cert_file: Path | None = Field(
        None, description="client certificate for mutual TLS (needs key_file)"
    )
    key_file: Path | None = Field(None, description="private key of cert_file")
    insecure: bool = Field(
        False, description="skip certificate and hostname verification of the broker"
    )

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.exists():
            raise ValueError(f"file not found: {value}")
        if not value.is_file():
            raise ValueError(f"not a file: {value}")
        return value

    @field_validator("ca_file")
    @classmethod
    def _holds_certificates(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
            except (ssl.SSLError, OSError) as error:
                raise ValueError(f"no usable PEM certificate in {value} ({error})") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = (
                ("cert_file", "key_file") if self.key_file is None else ("key_file", "cert_file")
            )
            raise ValueError(
                f"mqtt.tls.{given} is set without mqtt.tls.{missing}: mutual TLS needs both"
            )
        if self.cert_file is not None and self.key_file is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    self.cert_file, self.key_file, password=NO_KEY_PASSPHRASE
                )
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"mqtt.tls.cert_file and mqtt.tls.key_file cannot be used together ({error}): "
                    "both must be PEM, the key unencrypted and matching the certificate"
                ) from None
        if self.insecure and not self.active:
            raise ValueError(
                "mqtt.tls.insecure only applies to TLS: set mqtt.tls.enabled (or ca_file) too"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether to connect over TLS at all."""
        return self.enabled or self.ca_file is not None or self.cert_file is not None


class MqttSettings(Section):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "minut2mqtt"
    base_topic: str = "minut2mqtt"
    discovery_prefix: str = "homeassistant"
    discovery: Literal["component", "device"] = Field(
        "component",
        description="Home Assistant discovery: a config per entity (component: any release), "
        "or per device (device: Home Assistant 2024.11+, openHAB only with openhab-addons #20225 "
        "of February 2026; 25 times fewer messages): see docs/scale.md",
    )
    keepalive: int = Field(60, ge=5, le=3600)
    momentary_seconds: float = Field(
        30, gt=0, description="how long a momentary state (motion, button…) stays on"
    )
    messages_per_second: float = Field(
        1500,
        ge=10,
        description="publish rate of states and of discovery configs after a burst of 200, so "
        "that slow subscribers lose nothing (events have a rate of their own): see docs/scale.md",
    )
    protocol: MqttProtocol = Field(
        "5",
        description="MQTT version to speak; with 5, a broker that refuses it (or never answers, "
        "like amqtt) is spoken to in 3.1.1",
    )
    session_expiry: int = Field(
        0xFFFFFFFF,
        ge=0,
        le=0xFFFFFFFF,
        description="seconds the broker keeps the bridge's MQTT 5 session while it is away "
        "(4294967295: for ever); a restart within it finishes every delivery exactly once",
    )
    outbox_limit: int = Field(
        100_000,
        ge=1000,
        description="messages kept on disk (state_dir/outbox.sqlite3) while the broker is away; "
        "beyond it, retained ones are dropped first (they are re-published anyway), then the "
        "oldest events",
    )
    tls: TlsSettings = TlsSettings()

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _topic_segment(cls, value: str) -> str:
        if not TOPIC_SEGMENT.match(value):
            raise ValueError(f"must be letters, digits, '_' or '-' only, got {value!r}")
        return value


class WebhookSettings(Section):
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    secret: SecretStr | None = Field(
        None, description="path secret; generated once and kept in state_dir when null"
    )
    public_url: str | None = Field(
        None,
        description="HTTPS address at which Minut reaches this listener; when set, the bridge "
        "registers its webhook at Minut and verifies every delivery",
    )
    signature_header: str = Field(
        "X-Minut-Signature",
        description="header with the HMAC-SHA256 of the raw body under the hook secret "
        "(hex, sha256=<hex> or base64)",
    )
    token_header: str = Field(
        "X-Minut-Token",
        description="header with the token given at registration (the body's `token` field "
        "is read too)",
    )
    verification: WebhookVerification = Field(
        "any",
        description="what a delivery to our registered hook must prove: any (the signature or "
        "the token), both, signature, or token; a proof that is checked and wrong refuses it",
    )
    event_process: bool = Field(
        False,
        description="receive webhook deliveries and publish their events in a process of its "
        "own, so that an event keeps its few milliseconds while the bridge publishes the "
        "discovery of thousands of Points (a second process: more memory)",
    )
    page_password: SecretStr | None = Field(
        None,
        description="password (HTTP Basic, any user name) of the status page and account "
        "connect; null: they answer only at http://localhost:<port>/ on this machine",
    )

    @field_validator("public_url")
    @classmethod
    def _public_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with https:// (or http://), got {value!r}")
        return value.rstrip("/") if value else None

    @field_validator("page_password")
    @classmethod
    def _empty_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None
