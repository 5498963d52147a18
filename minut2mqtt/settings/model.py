"""The one configuration model: CLI > environment (MINUT2MQTT_…) > YAML file > defaults."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ..logs import LogFormat
from .controls import ControlsSettings
from .minut import MinutSettings
from .sections import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    ConfigError,
    MqttSettings,
    WebhookSettings,
)


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
    controls: ControlsSettings = ControlsSettings()
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
            reason = _unknown_key(key)
        elif problem["type"] == "value_error":
            # Our own validators' messages say what is wrong and show the value themselves.
            reason = str(problem.get("ctx", {}).get("error", reason))
        elif "input" in problem and not isinstance(problem["input"], dict | SecretStr):
            shown = "***" if _looks_secret(key) else repr(problem["input"])
            reason = f"{reason}, got {shown}"
        if (variable := _set_in_environment(key)) is not None:
            reason = f"{reason} (set by {variable})"
        lines.append(f"  {key}: {reason}")
    return "\n".join(lines)


def _unknown_key(dotted_key: str) -> str:
    """Names the known key of the same section it most likely meant."""
    section, _, name = dotted_key.rpartition(".")
    siblings = {
        key.rpartition(".")[2]: key for key, _ in leaf_fields() if key.rpartition(".")[0] == section
    }
    if close := difflib.get_close_matches(name, siblings, n=1, cutoff=0.7):
        return f"unknown key (did you mean {siblings[close[0]]}?)"
    return "unknown key (check the spelling)"


def _set_in_environment(dotted_key: str) -> str | None:
    """The environment variable that set the key, if one did (its name is in no file)."""
    wanted = env_name(dotted_key)
    return next((name for name in os.environ if name.upper() == wanted), None)


def _looks_secret(key: str) -> bool:
    return any(word in key for word in ("secret", "password", "token"))
