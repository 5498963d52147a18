"""The bridge's own page: its status, and connecting a Minut account (owner only).

With `minut.auth: authorization_code` the page connects a Minut account (`POST /connect` →
Minut's authorize page → `GET /api/minut`). The page and those two routes are for the bridge's
owner: without `webhook.page_password` they answer only a browser on this machine (at
http://localhost:<port>/); with it, whoever gives it (HTTP Basic, any user name).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, Response, request

from ..minut.connect import AccountConnector, ConnectError
from ..settings import CALLBACK_PATH, WebhookSettings
from .server import WILDCARD_HOSTS
from .status_page import AccountView, PageSnapshot, render, render_message

log = logging.getLogger("minut2mqtt.web")

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

    snapshot: Callable[[], PageSnapshot]
    account: AccountConnector | None
    """The tokens a connect stores; None with client credentials (nothing to connect)."""
    password: str | None
    redirect_uri: str | None
    """The callback sent to Minut; None: derived from the address the browser used."""
    on_connected: Callable[[], None]
    local_host: str
    """The name under which the page answers without a password (with the listening port)."""
    disconnect: Callable[[str], bool] = lambda account: False
    """Stop reading an account connected on the page (by name); False: no such account."""


def page_url(webhook: WebhookSettings, port: int | None = None) -> str:
    """The page's address on the bridge's own machine."""
    return f"http://{local_host_name(webhook.host)}:{webhook.port if port is None else port}/"


def local_host_name(listening_host: str) -> str:
    if listening_host in WILDCARD_HOSTS or _is_loopback(listening_host):
        return "localhost"
    return f"[{listening_host}]" if ":" in listening_host else listening_host


def account_view(connector: AccountConnector | None) -> AccountView:
    """What the page says of the account: a connected one's status, or the client's own."""
    if connector is None:
        return AccountView("client_credentials", True)
    status = connector.status()
    return AccountView(
        "authorization_code", status.connected, status.user_id, status.since, status.problem
    )


def add_page_routes(app: Flask, page: PageOptions) -> None:
    @app.before_request
    def owner_only() -> Response | None:
        if request.path in ("/", "/connect", "/disconnect", CALLBACK_PATH):
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

    @app.post("/disconnect")
    def disconnect() -> Response:
        name = request.form.get("account", "")
        if not page.disconnect(name):
            message = f"There is no account {name!r} connected on this page to disconnect."
            return _html(render_message("Nothing to disconnect", message, back="./"), 400)
        return _see_other("./")

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
