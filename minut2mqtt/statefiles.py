"""Small files the bridge keeps in `state_dir`: written atomically, readable by its owner only."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from pathlib import Path

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
