"""The event process's listener hands every request but a webhook delivery to the main process.

The status page, account connect, /healthz and /metrics stay where the bridge's state is; they
answer on the inner listener (loopback only), which takes requests only from the event process:
each carries a token made at start. The browser's own address travels with it, so the page's
"only from this machine" rule still sees who asks.
"""

from __future__ import annotations

import hmac
import http.client
import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request

from .intake import json_response

log = logging.getLogger("minut2mqtt.web")

TOKEN_HEADER = "X-Minut2mqtt-Forward-Token"
PEER_HEADER = "X-Minut2mqtt-Peer"
FORWARD_TIMEOUT_SECONDS = 30.0
NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"}
    | {TOKEN_HEADER.lower(), PEER_HEADER.lower()}
)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def add_forwarding_routes(app: Flask, inner_port: int, token: str) -> None:
    """Every path the app has no route for goes to `127.0.0.1:<inner_port>`."""

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def forward(path: str) -> Response:
        headers = _kept(request.headers.items())
        headers[TOKEN_HEADER] = token
        headers[PEER_HEADER] = request.remote_addr or ""
        query = request.query_string.decode()
        target = request.path + (f"?{query}" if query else "")
        connection = http.client.HTTPConnection(
            "127.0.0.1", inner_port, timeout=FORWARD_TIMEOUT_SECONDS
        )
        try:
            connection.request(request.method, target, request.get_data(), headers)
            answer = connection.getresponse()
            body = answer.read()
        except OSError as error:
            log.error("the main process did not answer %s %s: %s", request.method, target, error)
            return json_response({"error": "the bridge is not answering"}, 502)
        finally:
            connection.close()
        kept = [(name, value) for name, value in answer.getheaders() if _kept_header(name)]
        return Response(body, status=answer.status, headers=kept)


def _kept(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name: value for name, value in headers if _kept_header(name)}


def _kept_header(name: str) -> bool:
    return name.lower() not in NOT_FORWARDED


class ForwardedOnly:
    """WSGI middleware of the inner listener: a request without the token is refused; one with
    it is seen as coming from the browser's own address."""

    def __init__(self, app: Callable[..., Any], token: str) -> None:
        self._app = app
        self._token = token.encode()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        given = environ.pop("HTTP_" + _wsgi_name(TOKEN_HEADER), "")
        peer = environ.pop("HTTP_" + _wsgi_name(PEER_HEADER), "")
        if not hmac.compare_digest(given.encode(), self._token):
            start_response("403 Forbidden", [("Content-Type", "application/json")])
            return [b'{"error": "forbidden"}']
        environ["REMOTE_ADDR"] = peer
        return self._app(environ, start_response)


def _wsgi_name(header: str) -> str:
    return header.upper().replace("-", "_")
