"""The one configuration model: CLI > environment (MINUT2MQTT_…) > YAML file > defaults."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from .logs import LogFormat

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


class MinutSettings(Section):
    api_url: str = "https://api.minut.com/v8"
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    auth: Literal["client_credentials", "authorization_code"] = Field(
        "client_credentials",
        description="client_credentials: the account that owns the OAuth client; "
        "authorization_code: an account connected on the bridge's page (partner clients)",
    )
    redirect_uri: str | None = Field(
        None,
        description="OAuth callback for authorization_code, <address of the page>/api/minut; "
        "null: derived from the browser's request (set it behind a reverse proxy)",
    )
    poll_interval: float = Field(300, ge=10, description="seconds between polls")
    stale_after: float = Field(
        7200,
        ge=60,
        description="seconds after which a reading without a newer one is published as stale",
    )
    request_timeout: float = Field(20, gt=0, description="seconds before an API request gives up")
    requests_per_minute: int = Field(
        100, ge=1, le=120, description="request budget the bridge allows itself (the API's is 120)"
    )
    pull_events_after_silence: float = Field(
        900,
        ge=0,
        description="seconds without a webhook delivery after which missed events are pulled "
        "from the homes' histories (0: only at startup and after outages)",
    )

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("redirect_uri")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with https:// (or http://), got {value!r}")
        if not value.rstrip("/").endswith(CALLBACK_PATH):
            raise ValueError(
                f"must end with {CALLBACK_PATH} (the bridge's callback), got {value!r}"
            )
        return value.rstrip("/")


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
        "or per device (device: Home Assistant 2024.11+, openHAB 5.1+; 20 times fewer messages)",
    )
    keepalive: int = Field(60, ge=5, le=3600)
    momentary_seconds: float = Field(
        30, gt=0, description="how long a momentary state (motion, button…) stays on"
    )
    messages_per_second: float = Field(
        500,
        ge=10,
        description="publish rate after a burst of 200, so that slow subscribers lose nothing",
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    minut: MinutSettings = MinutSettings()
    mqtt: MqttSettings = MqttSettings()
    webhook: WebhookSettings = WebhookSettings()
    state_dir: Path = Path("./data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = Field(
        "text", description="text: one readable line per message; json: one JSON object per line"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def leaf_fields(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every configurable key as a dotted path with its field info, in declaration order."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaf_fields(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def env_name(dotted_key: str) -> str:
    return ENV_PREFIX + dotted_key.upper().replace(".", ENV_NESTED_DELIMITER)


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"mqtt.host": "x"} → {"mqtt": {"host": "x"}}."""
    nested: dict[str, Any] = {}
    for dotted_key, value in flat.items():
        *parents, leaf = dotted_key.split(".")
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return nested


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build the settings from every source, or raise ConfigError naming each bad key."""
    if config_file is not None:
        _check_yaml_file(config_file)
    settings_cls: type[Settings] = type(
        "Settings",
        (Settings,),
        {"model_config": {**Settings.model_config, "yaml_file": config_file}},
    )
    try:
        return settings_cls(**nest(overrides or {}))
    except ValidationError as error:
        raise ConfigError(_describe(error, config_file)) from None


def require(settings: Settings, *dotted_keys: str, purpose: str) -> None:
    """Raise ConfigError for each of the keys that is empty although `purpose` needs it."""
    missing = []
    for dotted_key in dotted_keys:
        value: Any = settings
        for part in dotted_key.split("."):
            value = getattr(value, part)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not value:
            missing.append(
                f"  {dotted_key}: required for {purpose} "
                f"(set it in the config file or as {env_name(dotted_key)})"
            )
    if missing:
        raise ConfigError("invalid configuration:\n" + "\n".join(missing))


def _check_yaml_file(config_file: Path) -> None:
    if config_file.is_dir():
        raise ConfigError(f"config file {config_file}: is a directory, expected a YAML file")
    if not config_file.is_file():
        raise ConfigError(f"config file {config_file}: not found")
    try:
        content = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {config_file}: not valid YAML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {config_file}: cannot be read: {error}") from None
    if content is not None and not isinstance(content, dict):
        raise ConfigError(
            f"config file {config_file}: must be a mapping of keys (minut:, mqtt:, …), "
            f"got {type(content).__name__}"
        )


def _describe(error: ValidationError, config_file: Path | None) -> str:
    file_part = f"file {config_file}, " if config_file else ""
    source = f" ({file_part}environment {ENV_PREFIX}*, or command line)"
    lines = [f"invalid configuration{source}:"]
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        reason = problem["msg"]
        if problem["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling)"
        elif problem["type"] == "value_error":
            # Our own validators' messages say what is wrong and show the value themselves.
            reason = str(problem.get("ctx", {}).get("error", reason))
        elif "input" in problem and not isinstance(problem["input"], dict | SecretStr):
            shown = "***" if _looks_secret(key) else repr(problem["input"])
            reason = f"{reason}, got {shown}"
        lines.append(f"  {key}: {reason}")
    return "\n".join(lines)


def _looks_secret(key: str) -> bool:
    return any(word in key for word in ("secret", "password", "token"))
