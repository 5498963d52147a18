"""Webhook intake: Minut's deliveries are checked, parsed, handed over and answered at once.

A delivery must come to `/webhook/<path secret>` (the default account's) or
`/webhook/<path secret>/<account>`, so that it is attributed to the account whose hook sent it;
once that account's hook is registered at Minut, it must also prove it comes from that hook
(`verification.py`). What is accepted is handed to `on_event` with the account's name, which only
queues it; a refusal is counted and reported through `on_refused`.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request

from ..minut.models import Event, HookCredentials, MinutDataError, parse_event
from ..settings import DEFAULT_ACCOUNT, WebhookVerification
from .verification import Proofs, Refusal, RefusalReport, refusal

log = logging.getLogger("minut2mqtt.web")

MAX_BODY_BYTES = 64 * 1024
WEBHOOK_PREFIX = "/webhook/"


def _no_hook(account: str) -> HookCredentials | None:
    return None


def _default_account_only(part: str | None) -> str | None:
    return DEFAULT_ACCOUNT if part is None else None


@dataclass(frozen=True)
class WebhookIntake:
    """Where deliveries come in, what they must prove, and where accepted events go."""

    secret: str
    """The path secret: deliveries come to /webhook/<secret>[/<account>]."""
    on_event: Callable[[str, Event], None]
    """Hears the account and its event; must return quickly (queue the event)."""
    account_of_path: Callable[[str | None], str | None] = _default_account_only
    """The account a delivery to /webhook/<secret>[/<part>] is for (part None: the bare path);
    None: no such account (404)."""
    hook: Callable[[str], HookCredentials | None] = _no_hook
    """An account's hook credentials once it is registered at Minut; None: the path secret
    suffices."""
    signature_header: str = "X-Minut-Signature"
    token_header: str = "X-Minut-Token"
    verification: WebhookVerification = "any"
    on_answered: Callable[[bool], None] = lambda accepted: None
    """Hears of every request to the webhook path, accepted or not (for counting)."""
    on_refused: Callable[[str, Refusal], None] = lambda account, reason: None
    """Hears why a delivery with the right path secret did not prove it comes from our hook."""


def add_webhook_routes(app: Flask, intake: WebhookIntake) -> None:
    report = RefusalReport(
        intake.signature_header, intake.token_header, verification=intake.verification
    )

    @app.post(WEBHOOK_PREFIX + "<path_secret>")
    @app.post(WEBHOOK_PREFIX + "<path_secret>/<part>")
    def receive(path_secret: str, part: str | None = None) -> Response:
        if not hmac.compare_digest(path_secret.encode(), intake.secret.encode()):
            log.warning("webhook delivery with a wrong path secret rejected")
            return json_response({"error": "not found"}, 404)
        account = intake.account_of_path(part)
        if account is None:
            log.warning("webhook delivery for an account this bridge does not read rejected")
            return json_response({"error": "not found"}, 404)
        body = request.get_data(cache=False)
        credentials = intake.hook(account)
        if credentials is not None:
            headers = dict(request.headers.items())
            proofs = Proofs.of(body, headers, intake.signature_header, intake.token_header)
            reason = refusal(credentials, body, proofs, intake.verification)
            if reason is not None:
                report.refused(reason, proofs)
                intake.on_refused(account, reason)
                return json_response({"error": "delivery not authenticated"}, 401)
        try:
            event = _parse_delivery(body)
        except ValueError as error:
            log.warning("webhook delivery rejected: %s", error)
            return json_response({"error": str(error)}, 400)
        intake.on_event(account, event)
        return json_response({"status": "accepted", "event_id": event.id}, 202)

    @app.after_request
    def note_delivery(response: Response) -> Response:
        if request.path.startswith(WEBHOOK_PREFIX):  # refusals by Flask (413, 405) included
            intake.on_answered(response.status_code < 400)
        return response


def _parse_delivery(body: bytes) -> Event:
    """The event of one delivery `{"hook_id": …, "event": {id, type, …}}`, or ValueError why not."""
    if not body:
        raise ValueError("empty body")
    try:
        delivery = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite:
        raise ValueError("numbers must be finite (NaN and Infinity are not JSON)") from None
    except (ValueError, RecursionError):
        raise ValueError("body is not JSON") from None
    try:
        # What is accepted is published as UTF-8 JSON: a lone surrogate (`"\ud800"` parses)
        # would fail there, far from the request, and take the MQTT sender thread with it.
        json.dumps(delivery, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError("strings must be valid Unicode (no lone surrogates)") from None
    except RecursionError:
        raise ValueError("body is nested too deeply") from None
    if not isinstance(delivery, dict):
        raise ValueError("body must be a JSON object")
    event = delivery.get("event")
    if not isinstance(event, dict):
        raise ValueError("'event' must be an object")
    hook_id = delivery.get("hook_id")
    if hook_id is not None and not isinstance(hook_id, str):
        raise ValueError("'hook_id' must be a string")
    try:
        return parse_event(event)
    except MinutDataError as error:
        raise ValueError(str(error)) from None


class _NotFinite(Exception):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotFinite(text)
    return value


def json_response(document: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json")
