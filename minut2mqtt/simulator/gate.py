"""What every request to the simulated API passes through, and how errors are answered.

Before an endpoint runs: a scripted failure if one is planned for the path, then (for known API
paths but the OAuth endpoints) the bearer token and the client's request budget; writes pass
the same way as reads. After it: the request log, and the write log for every POST, PUT, PATCH
and DELETE but the OAuth ones. Every HTTP error is answered as JSON `{"error", "message"}`, like
Minut does (a 405 keeps its `Allow` header).
"""

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES

from .account import SimulatedAccount
from .api import OAUTH_PATHS, WRITE_METHODS, JsonObject


def error_response(
    status: int, error: str, message: str | None = None, retry_after: int | None = None
) -> Response:
    body: JsonObject = {"error": error}
    if message:
        body["message"] = message
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if status == 401 and error == "invalid_token":
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def install_gate(app: Flask, account: SimulatedAccount) -> None:
    @app.before_request
    def guard_request() -> ResponseReturnValue | None:
        failure = account.take_planned_failure(request.path)
        if failure is not None:
            return error_response(
                failure.status,
                _error_name(failure.status),
                "simulated failure",
                failure.retry_after,
            )
        if request.url_rule is None or request.path in OAUTH_PATHS:
            return None
        client_id = account.client_for_token(_bearer_token())
        if client_id is None:
            return error_response(401, "invalid_token", "missing, unknown or expired access token")
        retry_after = account.admit_request(client_id)
        if retry_after is not None:
            return error_response(429, "too_many_requests", "rate limit exceeded", retry_after)
        return None

    @app.after_request
    def log_request(response: Response) -> Response:
        account.record_request(request.method, request.path, response.status_code)
        if request.method in WRITE_METHODS and request.path not in OAUTH_PATHS:
            body = request.get_json(silent=True)
            account.record_write(request.method, request.path, body, response.status_code)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        response = error_response(status, _error_name(status), error.description)
        if isinstance(error, MethodNotAllowed) and error.valid_methods is not None:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _error_name(status: int) -> str:
    """Turn a status's reason phrase into an error code: 429 -> "too_many_requests"."""
    reason = HTTP_STATUS_CODES.get(status, "error")
    return reason.lower().replace("'", "").replace("-", "_").replace(" ", "_")
