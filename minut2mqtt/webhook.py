"""The web listener: Minut's webhook deliveries, /healthz, and the bridge's own page.

A delivery is checked, parsed, handed over and answered at once. The page at `/` shows the
bridge's status and, with `minut.auth: authorization_code`, connects a Minut account
(`POST /connect` → Minut's authorize page → `GET /api/minut`). The page and those two routes are
for the bridge's owner: without `webhook.page_password` they answer only a browser on this
machine (at http://localhost:<port>/); with it, whoever gives it (HTTP Basic, any user name).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .http_server import WILDCARD_HOSTS
from .minut.models import Event, MinutDataError, parse_event
from .minut.tokens import AuthorizationCodeTokens, ConnectError
from .minut.webhooks import HookCredentials
from .settings import CALLBACK_PATH, WebhookSettings
from .status_page import StatusSnapshot, render, render_message, snapshot_of

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CONNECT_WAITS_FOR_POLL_SECONDS = 5.0
"""After a connect, how long the browser's redirect waits for the account's first poll."""
LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
"""A request carrying one of these came through a proxy: it is not a local browser's."""
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class PageOptions:
    """The status page and account connect, served next to the webhook."""

    snapshot: Callable[[], StatusSnapshot]
    account: AuthorizationCodeTokens | None
    """The tokens a connect stores; None with client credentials (nothing to connect)."""
    password: str | None
    redirect_uri: str | None
    """The callback sent to Minut; None: derived from the address the browser used."""
    on_connected: Callable[[], None]
    local_host: str
    """The name under which the page answers without a password (with the listening port)."""


def page_url(webhook: WebhookSettings, port: int | None = None) -> str:
    """The page's address on the bridge's own machine."""
    return f"http://{_local_host(webhook.host)}:{webhook.port if port is None else port}/"


def _local_host(listening_host: str) -> str:
    if listening_host in WILDCARD_HOSTS or _is_loopback(listening_host):
        return "localhost"
    return f"[{listening_host}]" if ":" in listening_host else listening_host


def page_options_for(daemon: Daemon) -> PageOptions:
    settings = daemon.settings
    tokens = daemon.minut.tokens
    password = settings.webhook.page_password
    return PageOptions(
        snapshot=lambda: snapshot_of(daemon),
        account=tokens if isinstance(tokens, AuthorizationCodeTokens) else None,
        password=password.get_secret_value() if password else None,
        redirect_uri=settings.minut.redirect_uri,
        on_connected=daemon.request_poll,
        local_host=_local_host(settings.webhook.host),
    )


def create_app(
    secret: str,
    on_event: Callable[[Event], None],
    health: Callable[[], tuple[dict[str, Any], bool]],
    *,
    hook: Callable[[], HookCredentials | None] = lambda: None,
    signature_header: str = "X-Minut-Signature",
    token_header: str = "X-Minut-Token",
    page: PageOptions | None = None,
    on_delivery: Callable[[bool], None] = lambda accepted: None,
    metrics: Callable[[], Response] | None = None,
) -> Flask:
    """`on_event` must return quickly (queue the event); `health` gives (document, healthy).

    `on_delivery` hears of every request to the webhook path, accepted or not (for counting);
    `metrics`, when given, serves `/metrics`.

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

    @app.after_request
    def note_delivery(response: Response) -> Response:
        if request.path.startswith("/webhook/"):  # refusals by Flask (413, 405) included
            on_delivery(response.status_code < 400)
        return response

    if metrics is not None:
        app.add_url_rule("/metrics", "metrics", metrics)

    if page is not None:
        _add_page_routes(app, page)
    return app


def _add_page_routes(app: Flask, page: PageOptions) -> None:
    @app.before_request
    def owner_only() -> Response | None:
        if request.path in ("/", "/connect", CALLBACK_PATH):
            return _refusal(page)
        return None

    @app.get("/")
    def status() -> Response:
        return _html(render(page.snapshot()), 200)

    @app.post("/connect")
    def connect() -> Response:
        if page.account is None:
            return _not_connectable()
        redirect_uri = page.redirect_uri or request.url_root.rstrip("/") + CALLBACK_PATH
        return _see_other(page.account.authorization_url(redirect_uri))

    @app.get(CALLBACK_PATH)
    def minut_callback() -> Response:
        if page.account is None:
            return _not_connectable()
        try:
            page.account.complete(
                request.args.get("state"), request.args.get("code"), request.args.get("error")
            )
        except ConnectError as error:
            log.warning("connecting a Minut account failed: %s", error)
            return _html(render_message("Minut account not connected", str(error), back="../"), 400)
        page.on_connected()
        # Land on a page that shows the account's Points: the first poll takes a moment.
        give_up_at = time.monotonic() + CONNECT_WAITS_FOR_POLL_SECONDS
        while page.snapshot().awaiting_first_poll and time.monotonic() < give_up_at:
            time.sleep(0.1)
        return _see_other("../")  # the status page, without the code in the address bar


def _refusal(page: PageOptions) -> Response | None:
    """None when the owner asks; else why not (403 for a remote browser, 401 for a password)."""
    if page.password is None:
        if _from_this_machine():
            return None
        here = f"http://{page.local_host}:{request.environ.get('SERVER_PORT', '')}/"
        message = (
            f"This page answers only at {here} on the bridge's own machine. To open it "
            "from elsewhere, set webhook.page_password (MINUT2MQTT_WEBHOOK__PAGE_PASSWORD) and "
            "log in with any user name and that password.\n"
        )
        return Response(message, 403, mimetype="text/plain")
    given = request.authorization.password if request.authorization else None
    if given is not None and _same_secret(given, page.password):
        return None
    return Response(
        "This page needs the password in webhook.page_password (any user name).\n",
        401,
        {"WWW-Authenticate": 'Basic realm="minut2mqtt", charset="UTF-8"'},
        mimetype="text/plain",
    )


def _from_this_machine() -> bool:
    """A browser on this machine: a loopback peer, asking for a loopback name, not proxied.

    The name matters too: a web page elsewhere could point its own name at 127.0.0.1 (DNS
    rebinding) and read this page through the visitor's browser, under that name.
    """
    if any(header in request.headers for header in FORWARDING_HEADERS):
        return False
    host_name = urlsplit(f"//{request.host}").hostname or ""
    return _is_loopback(request.remote_addr or "") and (
        host_name in LOCAL_HOST_NAMES or _is_loopback(host_name)
    )


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _same_secret(given: str, expected: str) -> bool:
    """Constant time, whatever the lengths."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _not_connectable() -> Response:
    message = (
        "This bridge reads the account of its OAuth client (minut.auth: client_credentials): "
        "there is no account to connect. Set minut.auth: authorization_code to connect one here."
    )
    return _html(render_message("Nothing to connect", message, back="../"), 400)


def _see_other(location: str) -> Response:
    return Response(status=303, headers={"Location": location, **PAGE_HEADERS})


def _html(text: str, status: int) -> Response:
    return Response(text, status, headers=PAGE_HEADERS, mimetype="text/html")


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
