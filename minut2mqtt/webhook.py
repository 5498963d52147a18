"""The webhook listener: check the delivery, parse the event, hand it over, answer at once."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .minut.models import Event, MinutDataError, parse_event
from .minut.webhooks import HookCredentials

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def create_app(
    secret: str,
    on_event: Callable[[Event], None],
    health: Callable[[], tuple[dict[str, Any], bool]],
    *,
    hook: Callable[[], HookCredentials | None] = lambda: None,
    signature_header: str = "X-Minut-Signature",
    token_header: str = "X-Minut-Token",
) -> Flask:
    """`on_event` must return quickly (queue the event); `health` gives (document, healthy).

    Once our hook is registered at Minut (`hook` gives its credentials), a delivery must also
    carry the registration token and the HMAC of its raw body, or it is refused (401).
    """
    app = Flask("minut2mqtt.webhook")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.post("/webhook/<path_secret>")
    def receive(path_secret: str) -> Response:
        if not hmac.compare_digest(path_secret.encode(), secret.encode()):
            log.warning("webhook delivery with a wrong path secret rejected")
            return _json({"error": "not found"}, 404)
        body = request.get_data(cache=False)
        credentials = hook()
        if credentials is not None and not (
            credentials.token_valid(request.headers.get(token_header))
            and credentials.signature_valid(body, request.headers.get(signature_header))
        ):
            log.warning("webhook delivery without a valid token and signature rejected")
            return _json({"error": "delivery not authenticated"}, 401)
        try:
            event = _parse_delivery(body)
        except ValueError as error:
            log.warning("webhook delivery rejected: %s", error)
            return _json({"error": str(error)}, 400)
        on_event(event)
        return _json({"status": "accepted", "event_id": event.id}, 202)

    @app.get("/healthz")
    def healthz() -> Response:
        document, healthy = health()
        return _json(document, 200 if healthy else 503)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return _json({"error": (error.name or "error").lower()}, error.code or 500)

    return app


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


def _json(document: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json")
