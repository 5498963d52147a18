"""The one settings model (CLI > environment > YAML > defaults): `model.py` loads it, `minut.py`
and `sections.py` hold its sections. Everything is importable from here."""

from .controls import ControlsSettings
from .minut import (
    CONNECTED_PREFIX,
    DEFAULT_ACCOUNT,
    AccountConfig,
    AccountSettings,
    MinutSettings,
    account_in_webhook_path,
)
from .model import Settings, env_name, leaf_fields, load_settings, nest, require
from .sections import (
    CALLBACK_PATH,
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    NO_KEY_PASSPHRASE,
    TOPIC_SEGMENT,
    ConfigError,
    MqttProtocol,
    MqttSettings,
    Section,
    TlsSettings,
    WebhookSettings,
    WebhookVerification,
)

__all__ = [
    "CALLBACK_PATH",
    "CONNECTED_PREFIX",
    "DEFAULT_ACCOUNT",
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "NO_KEY_PASSPHRASE",
    "TOPIC_SEGMENT",
    "AccountConfig",
    "AccountSettings",
    "ConfigError",
    "ControlsSettings",
    "MinutSettings",
    "MqttProtocol",
    "MqttSettings",
    "Section",
    "Settings",
    "TlsSettings",
    "WebhookSettings",
    "WebhookVerification",
    "account_in_webhook_path",
    "env_name",
    "leaf_fields",
    "load_settings",
    "nest",
    "require",
]
