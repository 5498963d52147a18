"""The generated parts of the docs are current, and the configuration reference is complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from minut2mqtt.reference import (
    COMMAND,
    CONFIGURATION_REFERENCE,
    GENERATED_SECTIONS,
    MISSING_DESCRIPTIONS,
    SECRET_DEFAULT,
    configuration_reference,
)
from minut2mqtt.settings import Settings, env_name, leaf_fields

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("section", GENERATED_SECTIONS, ids=lambda section: section.name)
def test_generated_section_is_current(section):
    document = (ROOT / section.path).read_text(encoding="utf-8")
    assert document == section.apply(document), (
        f"{section.path} is out of date: run `{COMMAND}` from the repository root "
        "and commit the result"
    )


def test_every_key_is_documented_with_its_environment_name_and_a_description():
    reference = configuration_reference()
    rows = {line.split(" | ")[0].strip("| `"): line for line in reference.splitlines()}
    for key, _ in leaf_fields():
        assert key in rows, f"{key} is missing from the configuration reference"
        assert f"`{env_name(key)}`" in rows[key]
        description = rows[key].rstrip(" |").rsplit(" | ", 1)[1]
        assert description, f"{key} has no description: give its Field one in settings.py"


def test_defaults_are_shown_as_written_in_the_yaml_file():
    rows = configuration_reference().splitlines()

    def row(key: str) -> str:
        return next(line for line in rows if line.startswith(f"| `{key}` |"))

    assert "| `300` |" in row("minut.poll_interval")
    assert "| `./data` |" in row("state_dir")
    assert "| `false` |" in row("mqtt.tls.enabled")
    assert "| `null` |" in row("mqtt.tls.ca_file")
    assert "integer 1 to 65535" in row("mqtt.port")
    assert "one of `DEBUG`, `INFO`, `WARNING`, `ERROR`" in row("log_level")


def test_secret_defaults_are_never_printed():
    class Section(BaseModel):
        api_secret: SecretStr = SecretStr("hunter2-secret-default")
        password: str = "plain-but-named-like-a-secret"
        token_header: str = Field("X-Visible", description="a header name, not a secret")

    class Model(BaseModel):
        section: Section = Section()

    reference = configuration_reference(Model)
    assert "hunter2" not in reference and "plain-but-named" not in reference
    assert reference.count(SECRET_DEFAULT) == 2
    assert "`X-Visible`" in reference


def test_real_secrets_are_hidden():
    reference = configuration_reference(Settings)
    for key in ("minut.client_secret", "mqtt.password", "webhook.secret"):
        line = next(line for line in reference.splitlines() if line.startswith(f"| `{key}` |"))
        assert SECRET_DEFAULT in line


def test_fallback_descriptions_name_existing_keys():
    keys = {key for key, _ in leaf_fields()}
    assert set(MISSING_DESCRIPTIONS) <= keys, "a key was renamed: update MISSING_DESCRIPTIONS"


def test_a_document_without_markers_is_reported():
    with pytest.raises(ValueError, match="lacks the markers"):
        CONFIGURATION_REFERENCE.apply("# no markers here\n")


def test_descriptions_cannot_break_the_table_or_turn_into_html():
    class Model(BaseModel):
        address: str = Field("x", description="a | b, at <address of the page>, `<kept>`")

    (row,) = [line for line in configuration_reference(Model).splitlines() if "`address`" in line]
    assert row.endswith("| a \\| b, at &lt;address of the page&gt;, `<kept>` |")


@pytest.mark.parametrize(
    "document", ["README.md", "docs/topics.md", "docs/configuration.md", "examples/README.md"]
)
def test_relative_links_point_at_existing_files(document):
    import re

    path = ROOT / document
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{document} links to missing {target}"
