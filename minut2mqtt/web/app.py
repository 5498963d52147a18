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
    app = Flask("minut2mqtt.web")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    add_webhook_routes(app, intake)

    @app.get("/healthz")
    def healthz() -> Response:
        now = status()
        return json_response(health_document(now), 200 if now.healthy else 503)

    app.add_url_rule("/metrics", "metrics", metrics_view(status))
    answer_errors_in_json(app)
    if page is not None:
        add_page_routes(app, page)
    return app


def answer_errors_in_json(app: Flask) -> None:
    """Flask's own refusals (413, 405, 404) as `{"error": …}`, as the webhook's are."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return json_response({"error": (error.name or "error").lower()}, error.code or 500)
