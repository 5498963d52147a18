"""Our one webhook at Minut: reuse it, drop its duplicates, replace it when its secret is lost."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from ..storage import read_json, write_json
from .client import MinutApiError, MinutClient
from .models import HookCredentials

log = logging.getLogger(__name__)

HOOK_FILE = "webhook.json"


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


class WebhookRegistration:
    """Our hook at Minut for `url`: ensured once per run, before the first poll.

    `credentials` is what every delivery must prove (None until a hook is known): the stored
    ones at start, the registered ones once `ensure` ran.
    """

    def __init__(self, client: MinutClient, url: str, state_dir: Path) -> None:
        self._client = client
        self.url = url
        self._state_dir = state_dir
        self.credentials: HookCredentials | None = stored_credentials(state_dir)
        self._ensured = False

    def ensure(self) -> None:
        if not self._ensured:
            self.credentials = ensure_webhook(self._client, self.url, self._state_dir)
            self._ensured = True
