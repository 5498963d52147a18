"""Small files the bridge keeps in `state_dir`: written atomically, readable by its owner only."""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WEBHOOK_SECRET_FILE = "webhook_secret"


def write_private(path: Path, content: str) -> None:
    """Replace `path` in one step (never half-written) with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def webhook_secret(state_dir: Path) -> str:
    """The path secret kept in `state_dir`, created on first use."""
    path = state_dir / WEBHOOK_SECRET_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    secret = secrets.token_urlsafe(24)
    write_private(path, secret + "\n")
    log.info("generated a webhook path secret in %s", path)
    return secret


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object kept in `path`; None when there is none yet.

    A file that is not such an object (cut short by a crash of the disk, edited by hand) is
    reported and moved aside as `<name>.corrupt-<time>`, so the daemon starts afresh and the
    evidence is kept.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        _set_aside(path, f"cannot be read ({error})")
        return None
    try:
        content = json.loads(text)
    except ValueError as error:
        _set_aside(path, f"is not valid JSON ({error})")
        return None
    if not isinstance(content, dict):
        _set_aside(path, "does not hold a JSON object")
        return None
    return content


def write_json(path: Path, content: dict[str, Any]) -> None:
    write_private(path, json.dumps(content, separators=(",", ":")) + "\n")


def _set_aside(path: Path, problem: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        path.replace(aside)
        log.error("state file %s %s: moved aside to %s, starting afresh", path, problem, aside)
    except OSError as error:
        log.error("state file %s %s, and cannot be moved aside: %s", path, problem, error)
