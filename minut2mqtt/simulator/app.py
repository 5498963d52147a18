"""The Flask app serving a SimulatedAccount as the Minut v8 HTTP API."""

import base64
import binascii
import html
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, jsonify, redirect, request
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.http import HTTP_STATUS_CODES

from .account import (
    API_PREFIX,
    AUTHORIZE_PATH,
    OAUTH_PATHS,
    TOKEN_PATH,
    JsonObject,
    OAuthGrantError,
    SimulatedAccount,
)
from .timefmt import parse_time, utc_now
from .timeseries import SERIES_SENSORS, sample_times, synthetic_series

HOME_EVENT_NAME_BY_TYPE: Final = {
    "disturbance_first_notice": "noise_detected",
    "disturbance_ended": "noise_quieted",
}
DEFAULT_EVENT_PAGE: Final = 50
MAX_EVENT_PAGE: Final = 500
DEFAULT_SERIES_SPAN: Final = timedelta(days=1)
DEFAULT_SERIES_RESOLUTION_SECONDS: Final = 3600
MIN_SERIES_RESOLUTION_SECONDS: Final = 60

GrantHandler = Callable[[SimulatedAccount, str, "MultiDict[str, str]"], JsonObject]
"""Turns an authenticated client's token request form into the token answer.

Raises OAuthGrantError for a request the grant's rules refuse."""


def _client_credentials_grant(
    account: SimulatedAccount, client_id: str, form: "MultiDict[str, str]"
) -> JsonObject:
    return account.issue_token(client_id)


def _authorization_code_grant(
    account: SimulatedAccount, client_id: str, form: "MultiDict[str, str]"
) -> JsonObject:
    code = form.get("code")
    if not code:
        raise OAuthGrantError("invalid_request", "code is required")
    return account.exchange_code(client_id, code, form.get("redirect_uri"))


def _refresh_token_grant(
    account: SimulatedAccount, client_id: str, form: "MultiDict[str, str]"
) -> JsonObject:
    refresh_token = form.get("refresh_token")
    if not refresh_token:
        raise OAuthGrantError("invalid_request", "refresh_token is required")
    return account.refresh(client_id, refresh_token)


GRANT_HANDLERS: Final[Mapping[str, GrantHandler]] = {
    "client_credentials": _client_credentials_grant,
    "authorization_code": _authorization_code_grant,
    "refresh_token": _refresh_token_grant,
}

APPROVE_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Minut (simulated): authorize {client_id}</title>
<style>body{{font-family:sans-serif;max-width:30em;margin:2em auto;padding:0 1em}}
button{{font-size:1.1em;padding:.5em 1.2em;margin-right:1em}}</style></head>
<body><h1>Minut (simulated)</h1>
<p>The application <strong>{client_id}</strong> asks for access to the Minut account of
<strong>{email}</strong>: its homes, Points and events.</p>
<p>It will return to <code>{redirect_uri}</code>.</p>
<form method="post" action="{action}">
<input type="hidden" name="client_id" value="{client_id}">
<input type="hidden" name="redirect_uri" value="{redirect_uri}">
<input type="hidden" name="state" value="{state}">
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form></body></html>
"""


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


def create_app(account: SimulatedAccount) -> Flask:
    app = Flask(__name__)
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    _install_guards(app, account)
    _add_oauth_routes(app, account)
    _add_home_routes(app, account)
    _add_device_routes(app, account)
    _add_event_routes(app, account)
    _add_webhook_routes(app, account)
    return app


def _install_guards(app: Flask, account: SimulatedAccount) -> None:
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
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        return error_response(status, _error_name(status), error.description)


def _add_oauth_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.post(TOKEN_PATH)
    def oauth_token() -> ResponseReturnValue:
        credentials = _client_credentials()
        if credentials is None or not account.client_credentials_valid(*credentials):
            return error_response(401, "invalid_client", "client authentication failed")
        grant_type = request.form.get("grant_type")
        if not grant_type:
            return error_response(400, "invalid_request", "grant_type is required")
        handler = GRANT_HANDLERS.get(grant_type)
        if handler is None:
            return error_response(400, "unsupported_grant_type", f"{grant_type} is not supported")
        account.note_oauth_request("token", request.form)
        try:
            answer = handler(account, credentials[0], request.form)
        except OAuthGrantError as refused:
            return error_response(400, refused.error, str(refused))
        return answer, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"}

    @app.get(AUTHORIZE_PATH)
    def authorize_page() -> ResponseReturnValue:
        """What the user sees at Minut: approve or deny the application."""
        client_id, redirect_uri = _authorization_request(account, request.args)
        account.note_oauth_request("authorize", request.args)
        if request.args.get("response_type") != "code":
            return _back_to_client(redirect_uri, request.args, error="unsupported_response_type")
        page = APPROVE_PAGE.format(
            client_id=html.escape(client_id),
            email=html.escape(account.email),
            redirect_uri=html.escape(redirect_uri),
            state=html.escape(request.args.get("state", "")),
            action=html.escape(AUTHORIZE_PATH),
        )
        return page, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.post(AUTHORIZE_PATH)
    def authorize_decision() -> ResponseReturnValue:
        client_id, redirect_uri = _authorization_request(account, request.form)
        if request.form.get("decision") != "approve":
            return _back_to_client(redirect_uri, request.form, error="access_denied")
        code = account.authorize(client_id, redirect_uri)
        return _back_to_client(redirect_uri, request.form, code=code)

    @app.get(f"{API_PREFIX}/users/me")
    def current_user() -> ResponseReturnValue:
        return {"user_id": account.user_id, "email": account.email}


def _add_home_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.get(f"{API_PREFIX}/homes")
    def list_homes() -> ResponseReturnValue:
        homes = account.list_homes()
        offset = _int_arg("offset", 0, minimum=0)
        limit = _int_arg("limit", len(homes), minimum=1)
        return {"homes": homes[offset : offset + limit]}

    @app.get(f"{API_PREFIX}/homes/<home_id>")
    def get_home(home_id: str) -> ResponseReturnValue:
        return _found(account.get_home(home_id), "home", home_id)

    @app.route(f"{API_PREFIX}/homes/<home_id>/alarm", methods=["PATCH", "PUT"])
    def set_alarm(home_id: str) -> ResponseReturnValue:
        body = _json_object()
        status = body.get("alarm_status")
        if status not in ("on", "off"):
            raise BadRequest('alarm_status must be "on" or "off"')
        _found(account.get_home(home_id), "home", home_id)
        return account.set_alarm_status(home_id, status)


def _add_device_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.get(f"{API_PREFIX}/devices")
    def list_devices() -> ResponseReturnValue:
        return {"devices": account.list_devices()}

    @app.get(f"{API_PREFIX}/devices/<device_id>")
    def get_device(device_id: str) -> ResponseReturnValue:
        return _found(account.get_device(device_id), "device", device_id)

    @app.put(f"{API_PREFIX}/devices/<device_id>")
    def update_device(device_id: str) -> ResponseReturnValue:
        settings = _json_object()
        _found(account.get_device(device_id), "device", device_id)
        try:
            return account.update_device(device_id, settings)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @app.get(f"{API_PREFIX}/devices/<device_id>/<sensor>")
    def sensor_series(device_id: str, sensor: str) -> ResponseReturnValue:
        if sensor not in SERIES_SENSORS:
            raise NotFound(f"unknown sensor {sensor!r}")
        device = _found(account.get_device(device_id), "device", device_id)
        end = _time_arg("end_at") or utc_now()
        start = _time_arg("start_at") or end - DEFAULT_SERIES_SPAN
        resolution = timedelta(
            seconds=_int_arg(
                "time_resolution",
                DEFAULT_SERIES_RESOLUTION_SECONDS,
                minimum=MIN_SERIES_RESOLUTION_SECONDS,
            )
        )
        motion_times = [
            parse_time(event["created_at"])
            for event in account.list_events()
            if event["type"] == "pir_motion" and event.get("device_id") == device_id
        ]
        times = sample_times(start, end, resolution)
        return {"values": synthetic_series(device, sensor, times, resolution, motion_times)}


def _add_event_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.get(f"{API_PREFIX}/homes/<home_id>/events")
    def home_events(home_id: str) -> ResponseReturnValue:
        _found(account.get_home(home_id), "home", home_id)
        wanted_types = _csv_arg("event_type")
        offset = _int_arg("offset", 0, minimum=0)
        limit = _int_arg("limit", DEFAULT_EVENT_PAGE, minimum=1, maximum=MAX_EVENT_PAGE)
        matching = [
            home_event
            for home_event in map(_as_home_event, _events_in_window(account, home_id))
            if not wanted_types or home_event["event_type"] in wanted_types
        ]
        return {
            "home_events": matching[offset : offset + limit],
            "paging": {"total_count": len(matching), "limit": limit, "offset": offset},
        }

    @app.get(f"{API_PREFIX}/events")
    def account_events() -> ResponseReturnValue:
        order = request.args.get("order", "desc")
        if order not in ("asc", "desc"):
            raise BadRequest('order must be "asc" or "desc"')
        limit = _int_arg("limit", DEFAULT_EVENT_PAGE, minimum=1, maximum=MAX_EVENT_PAGE)
        events = _events_in_window(account, request.args.get("home_id"))
        if order == "desc":
            events.reverse()
        return {"events": events[:limit]}


def _add_webhook_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.post(f"{API_PREFIX}/webhooks")
    def register_webhook() -> ResponseReturnValue:
        body = _json_object()
        url, events, token = body.get("url"), body.get("events", ["*"]), body.get("token")
        if not isinstance(url, str):
            raise BadRequest("url is required")
        if not isinstance(events, list) or not all(isinstance(kind, str) for kind in events):
            raise BadRequest("events must be a list of event types")
        if token is not None and not isinstance(token, str):
            raise BadRequest("token must be a string")
        try:
            return account.register_webhook(url, events, token), 201
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @app.get(f"{API_PREFIX}/webhooks")
    def list_webhooks() -> ResponseReturnValue:
        return {"hooks": account.list_webhooks()}

    @app.delete(f"{API_PREFIX}/webhooks/<hook_id>")
    def delete_webhook(hook_id: str) -> ResponseReturnValue:
        if not account.delete_webhook(hook_id):
            raise NotFound(f"no webhook {hook_id!r}")
        return "", 204


def _as_home_event(event: JsonObject) -> JsonObject:
    home_event: JsonObject = {
        "event_id": event["id"],
        "event_type": HOME_EVENT_NAME_BY_TYPE.get(event["type"], event["type"]),
        "event_time": event["created_at"],
    }
    home_event.update(
        (key, value) for key, value in event.items() if key not in ("id", "type", "created_at")
    )
    return home_event


def _events_in_window(account: SimulatedAccount, home_id: str | None) -> list[JsonObject]:
    """The account's events (of one home if given) between start_at and end_at, oldest first."""
    start, end = _time_arg("start_at"), _time_arg("end_at")
    selected = []
    for event in account.list_events():
        created = parse_time(event["created_at"])
        if home_id is not None and event["home_id"] != home_id:
            continue
        if (start is None or created >= start) and (end is None or created <= end):
            selected.append(event)
    return selected


def _authorization_request(
    account: SimulatedAccount, parameters: "MultiDict[str, str]"
) -> tuple[str, str]:
    """The client and redirect_uri of an authorize request; a bad one is never redirected to."""
    client_id = parameters.get("client_id", "")
    redirect_uri = parameters.get("redirect_uri", "")
    if client_id != account.client_id:
        raise BadRequest("unknown client_id")
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
        raise BadRequest("redirect_uri must be an absolute http(s) URL")
    return client_id, redirect_uri


def _back_to_client(
    redirect_uri: str, parameters: "MultiDict[str, str]", **answer: str
) -> ResponseReturnValue:
    """Send the browser back to the client with `answer` and the request's `state`."""
    query = dict(answer)
    state = parameters.get("state")
    if state is not None:
        query["state"] = state
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return redirect(redirect_uri + separator + urlencode(query), code=302)


def _client_credentials() -> tuple[str, str] | None:
    """The client id and secret from HTTP Basic auth, else from the form body."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, separator, client_secret = decoded.partition(":")
        return (client_id, client_secret) if separator else None
    form_client_id = request.form.get("client_id")
    form_client_secret = request.form.get("client_secret")
    if form_client_id is None or form_client_secret is None:
        return None
    return form_client_id, form_client_secret


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _found(item: JsonObject | None, kind: str, item_id: str) -> JsonObject:
    if item is None:
        raise NotFound(f"no {kind} {item_id!r}")
    return item


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _int_arg(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as error:
        raise BadRequest(f"{name} must be an integer, got {text!r}") from error
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise BadRequest(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def _time_arg(name: str) -> datetime | None:
    text = request.args.get(name)
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as error:
        raise BadRequest(f"{name} must be an ISO-8601 time, got {text!r}") from error


def _csv_arg(name: str) -> set[str]:
    return {part.strip() for part in request.args.get(name, "").split(",") if part.strip()}


def _error_name(status: int) -> str:
    """Turn a status's reason phrase into an error code: 429 -> "too_many_requests"."""
    reason = HTTP_STATUS_CODES.get(status, "error")
    return reason.lower().replace("'", "").replace("-", "_").replace(" ", "_")
