"""Our one webhook at Minut: reuse it, drop its duplicates, replace it when its secret is lost."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..statefiles import read_json, write_json
from .client import MinutApiError, MinutClient

log = logging.getLogger(__name__)

HOOK_FILE = "webhook.json"


@dataclass(frozen=True)
class HookCredentials:
    """What Minut sends with every delivery of our hook, kept in state_dir."""

    hook_id: str
    url: str
    hook_secret: str
    token: str

    def signature_valid(self, body: bytes, signature: str | None) -> bool:
        expected = hmac.new(self.hook_secret.encode(), body, hashlib.sha256).hexdigest()
        return signature is not None and hmac.compare_digest(expected, signature.strip().lower())

    def token_valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())


def stored_credentials(state_dir: Path) -> HookCredentials | None:
    content = read_json(state_dir / HOOK_FILE)
    if content is None:
        return None
    try:
        return HookCredentials(
            hook_id=str(content["hook_id"]),
            url=str(content["url"]),
            hook_secret=str(content["hook_secret"]),
            token=str(content["token"]),
        )
    except KeyError as missing:
        log.error("%s lacks %s: the webhook will be registered anew", HOOK_FILE, missing)
        return None


def ensure_webhook(client: MinutClient, url: str, state_dir: Path) -> HookCredentials:
    """Exactly one hook at Minut for `url`, whose secret we hold; registered if need be."""
    stored = stored_credentials(state_dir)
    answer = client.request("GET", "/webhooks")
    hooks = answer.get("hooks") if isinstance(answer, dict) else None
    ours = [
        hook["hook_id"]
        for hook in (hooks if isinstance(hooks, list) else [])
        if isinstance(hook, dict)
        and hook.get("url") == url
        and isinstance(hook.get("hook_id"), str)
    ]
    keep = stored.hook_id if stored and stored.url == url and stored.hook_id in ours else None
    for hook_id in ours:
        if hook_id != keep:
            log.info("deleting webhook %s at Minut: a duplicate, or its secret is lost", hook_id)
            client.request("DELETE", f"/webhooks/{hook_id}")
    if keep is not None and stored is not None:
        log.info("webhook %s at Minut is ours and in place", keep)
        return stored
    token = secrets.token_urlsafe(24)
    created: Any = client.request(
        "POST", "/webhooks", json={"url": url, "events": ["*"], "token": token}
    )
    if not isinstance(created, dict) or not isinstance(created.get("hook_secret"), str):
        raise MinutApiError("POST /webhooks: the answer has no hook_secret")
    credentials = HookCredentials(str(created["hook_id"]), url, created["hook_secret"], token)
    write_json(state_dir / HOOK_FILE, credentials.__dict__)
    log.info("registered webhook %s at Minut", credentials.hook_id)
    return credentials
