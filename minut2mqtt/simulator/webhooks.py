"""The account's webhooks: registration as POST /webhooks does it, and for every event one
HMAC-signed delivery to each hook that wants it (posted in order by a DeliveryWorker).

`WebhookRegistry` is not thread-safe: SimulatedAccount holds its lock around every call but
`wait_idle`, and records each delivery's outcome (under that lock) through `on_delivered`.
"""

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from .api import DeliveryStyle, JsonObject
from .delivery import DELIVERY_TIMEOUT_SECONDS, DeliveryOutcome, DeliveryWorker, PendingDelivery
from .timefmt import format_time, utc_now

SIGNATURE_HEADER: Final = DeliveryStyle.signature_header
TOKEN_HEADER: Final = DeliveryStyle.token_header


@dataclass(frozen=True)
class Webhook:
    hook_id: str
    url: str
    events: tuple[str, ...]
    created_at: str
    token: str | None
    hook_secret: str

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    def listing(self) -> JsonObject:
        return {
            "hook_id": self.hook_id,
            "url": self.url,
            "events": list(self.events),
            "created_at": self.created_at,
        }


class WebhookRegistry:
    """The registered hooks by id, and the worker that posts their deliveries."""

    def __init__(self, on_delivered: Callable[[PendingDelivery, DeliveryOutcome], None]) -> None:
        self._hooks: dict[str, Webhook] = {}
        self._worker = DeliveryWorker(on_delivered, DELIVERY_TIMEOUT_SECONDS)
        self.style = DeliveryStyle()

    def register(self, url: str, events: Sequence[str], token: str | None) -> JsonObject:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        if isinstance(events, str) or not events or not all(events):
            raise ValueError("events must be a non-empty list of event types")
        if "*" in events and len(events) > 1:
            raise ValueError('"*" must be the only element of events')
        hook = Webhook(
            hook_id=secrets.token_hex(12),
            url=url,
            events=tuple(events),
            created_at=format_time(utc_now()),
            token=token,
            hook_secret=secrets.token_hex(32),
        )
        self._hooks[hook.hook_id] = hook
        return hook.listing() | {"token": token is not None, "hook_secret": hook.hook_secret}

    def listing(self) -> list[JsonObject]:
        return [hook.listing() for hook in self._hooks.values()]

    def delete(self, hook_id: str) -> bool:
        return self._hooks.pop(hook_id, None) is not None

    def deliver(self, event_type: str, event: JsonObject) -> None:
        """Queue a signed delivery of `event` to every hook that wants `event_type`."""
        for hook in self._hooks.values():
            if hook.wants(event_type):
                self._worker.submit(_signed_delivery(hook, event, self.style))

    def wait_idle(self, timeout: float) -> bool:
        return self._worker.wait_idle(timeout)


def _signed_delivery(hook: Webhook, event: JsonObject, style: DeliveryStyle) -> PendingDelivery:
    delivery: JsonObject = {"hook_id": hook.hook_id, "event": event}
    headers = {"Content-Type": "application/json"}
    if hook.token is not None and style.token_in == "body":
        delivery["token"] = hook.token
    elif hook.token is not None and style.token_in == "header":
        headers[style.token_header] = hook.token
    raw_body = json.dumps(delivery, separators=(",", ":")).encode()
    digest = hmac.new(hook.hook_secret.encode(), raw_body, hashlib.sha256).digest()
    if style.signature_format == "hex":
        headers[style.signature_header] = digest.hex()
    elif style.signature_format == "sha256=hex":
        headers[style.signature_header] = f"sha256={digest.hex()}"
    elif style.signature_format == "base64":
        headers[style.signature_header] = base64.b64encode(digest).decode()
    return PendingDelivery(hook.hook_id, hook.url, raw_body, headers)
