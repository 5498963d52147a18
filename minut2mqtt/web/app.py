"""The web listener's Flask app: webhook intake, /healthz, /metrics and the bridge's page.

It depends on narrow interfaces only (where events go, how to read the status, the page's
sources), never on the daemon.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from ..core.status import Status, health_document
from .intake import MAX_BODY_BYTES, WebhookIntake, add_webhook_routes, json_response
from .metrics import metrics_view
from .page import PageOptions, add_page_routes


def create_app(
    intake: WebhookIntake,
    status: Callable[[], Status],
    *,
    page: PageOptions | None = None,
) -> Flask:
    """The whole listener; `page` adds the status page and account connect."""
    app = webhook_app("minut2mqtt.web", intake)

    @app.get("/healthz")
    def healthz() -> Response:
        now = status()
        return json_response(health_document(now), 200 if now.healthy else 503)

    app.add_url_rule("/metrics", "metrics", metrics_view(status))
    if page is not None:
        add_page_routes(app, page)
    return app


def webhook_app(name: str, intake: WebhookIntake) -> Flask:
    """An app that takes deliveries (of at most MAX_BODY_BYTES) and answers every refusal,
    its own and Flask's (413, 405, 404), as `{"error": …}`."""
    app = Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    add_webhook_routes(app, intake)
    _answer_errors_in_json(app)
    return app


def _answer_errors_in_json(app: Flask) -> None:

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return json_response({"error": (error.name or "error").lower()}, error.code or 500)
