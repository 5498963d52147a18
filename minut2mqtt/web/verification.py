"""Is a webhook delivery from our hook at Minut? And if not, why not, said briefly.

Where Minut puts the registration token and how it writes the signature are unknown, so a
delivery proves itself by whichever it carries: the HMAC-SHA256 of its raw body under the hook
secret (in the configured header: hex, `sha256=<hex>` or base64) and the registration token
(in the configured header or the body's `token` field). `webhook.verification` says which proofs
are checked and required; a proof that is checked and wrong always refuses the delivery.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..minut.models import HookCredentials
from ..settings import WebhookVerification

log = logging.getLogger("minut2mqtt.web")

REPORT_EVERY_SECONDS = 3600.0


class Refusal(StrEnum):
    """Why a delivery that knew the path secret was refused (labels in /metrics)."""

    NO_SIGNATURE = "no_signature"
    SIGNATURE_MISMATCH = "signature_mismatch"
    TOKEN_MISSING = "token_missing"
    TOKEN_MISMATCH = "token_mismatch"
    UNKNOWN_HOOK_ID = "unknown_hook_id"


@dataclass(frozen=True)
class Proofs:
    """What one delivery carries to prove where it comes from."""

    signature: str | None
    token: str | None
    hook_id: str | None
    header_names: tuple[str, ...]
    body_keys: tuple[str, ...]

    @classmethod
    def of(
        cls, body: bytes, headers: Mapping[str, str], signature_header: str, token_header: str
    ) -> Proofs:
        delivery = _json_object(body)
        body_token = delivery.get("token")
        hook_id = delivery.get("hook_id")
        by_name = {name.lower(): value for name, value in headers.items()}  # names ignore case
        header_token = by_name.get(token_header.lower())
        return cls(
            signature=by_name.get(signature_header.lower()),
            token=header_token or (body_token if isinstance(body_token, str) else None),
            hook_id=hook_id if isinstance(hook_id, str) else None,
            header_names=tuple(sorted(headers.keys())),
            body_keys=tuple(sorted(delivery)),
        )


def refusal(
    credentials: HookCredentials, body: bytes, proofs: Proofs, rule: WebhookVerification
) -> Refusal | None:
    """None for an authentic delivery, else the first check it failed."""
    if proofs.hook_id is not None and not hmac.compare_digest(
        proofs.hook_id.encode(), credentials.hook_id.encode()
    ):
        return Refusal.UNKNOWN_HOOK_ID
    check_signature = rule != "token"
    check_token = rule != "signature"
    signed = proofs.signature is not None and credentials.signature_valid(body, proofs.signature)
    tokened = proofs.token is not None and credentials.token_valid(proofs.token)
    if check_signature and proofs.signature is not None and not signed:
        return Refusal.SIGNATURE_MISMATCH
    if check_token and proofs.token is not None and not tokened:
        return Refusal.TOKEN_MISMATCH
    if rule == "any":
        return None if signed or tokened else Refusal.NO_SIGNATURE
    if check_signature and not signed:
        return Refusal.NO_SIGNATURE
    if check_token and not tokened:
        return Refusal.TOKEN_MISSING
    return None


class RefusalReport:
    """Logs the first refusal, then at most one an hour, in one line: the reason's name (its
    label in /metrics), which check failed and what the delivery carried (header names and body
    keys, never their values)."""

    def __init__(
        self,
        signature_header: str,
        token_header: str,
        monotonic: Callable[[], float] = time.monotonic,
        verification: WebhookVerification = "any",
    ) -> None:
        self._signature_header = signature_header
        self._token_header = token_header
        self._verification = verification
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._next_report_at: float | None = None
        self._unreported = 0

    def refused(self, reason: Refusal, proofs: Proofs) -> None:
        with self._lock:
            now = self._monotonic()
            if self._next_report_at is not None and now < self._next_report_at:
                self._unreported += 1
                return
            self._next_report_at = now + REPORT_EVERY_SECONDS
            earlier, self._unreported = self._unreported, 0
        since = f"; {earlier} more refused since the last report" if earlier else ""
        log.warning(
            "webhook delivery refused (%s): %s (it carried headers %s and body keys %s); see "
            "Troubleshooting in the README%s. Missed events are pulled from Minut meanwhile",
            reason.value,
            self._explain(reason),
            ", ".join(proofs.header_names) or "none",
            ", ".join(proofs.body_keys) or "none",
            since,
        )

    def _explain(self, reason: Refusal) -> str:
        signature, token = self._signature_header, self._token_header
        no_signature = f"no signature in header {signature} (webhook.signature_header)"
        if self._verification == "any":  # neither proof came: a wrong one has its own reason
            no_signature += f" and no registration token (header {token} or body field 'token')"
        else:  # `both` or `signature`: the signature is required whatever the token
            no_signature += f", required with webhook.verification: {self._verification}"
        return {
            Refusal.NO_SIGNATURE: no_signature,
            Refusal.SIGNATURE_MISMATCH: f"the signature in header {signature} is not the "
            "HMAC-SHA256 of the body under our hook secret",
            Refusal.TOKEN_MISSING: f"no registration token in header {token} "
            "(webhook.token_header) nor in the body field 'token'",
            Refusal.TOKEN_MISMATCH: "the registration token is not the one this bridge "
            "registered its hook with",
            Refusal.UNKNOWN_HOOK_ID: "its hook_id is not the hook this bridge registered",
        }[reason]


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        delivery = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return delivery if isinstance(delivery, dict) else {}
