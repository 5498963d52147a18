"""The simulated API's data endpoints: the user, homes, devices (and their sensor history),
events (per home and for the account) and webhooks; what changes homes, devices and guests is
in write_endpoints.py.

They run behind gate.py (token, budget, failures) and answer from the SimulatedAccount.
"""

from datetime import datetime, timedelta
from typing import Any, Final

from flask import Flask, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, NotFound

from .account import SimulatedAccount
from .api import API_PREFIX, JsonObject, Paging
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


def add_data_routes(app: Flask, account: SimulatedAccount) -> None:
    _add_user_routes(app, account)
    _add_home_routes(app, account)
    _add_device_routes(app, account)
    _add_event_routes(app, account)
    _add_webhook_routes(app, account)


def _add_user_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.get(f"{API_PREFIX}/users/me")
    def current_user() -> ResponseReturnValue:
        return {"user_id": account.user_id, "email": account.email}


def _add_home_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.get(f"{API_PREFIX}/homes")
    def list_homes() -> ResponseReturnValue:
        return paged("homes", account.list_homes(), account.homes_paging)

    @app.get(f"{API_PREFIX}/homes/<home_id>")
    def get_home(home_id: str) -> ResponseReturnValue:
        return found(account.get_home(home_id), "home", home_id)


def _add_device_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.get(f"{API_PREFIX}/devices")
    def list_devices() -> ResponseReturnValue:
        return paged("devices", account.list_devices(), account.devices_paging)

    @app.get(f"{API_PREFIX}/devices/<device_id>")
    def get_device(device_id: str) -> ResponseReturnValue:
        return found(account.get_device(device_id), "device", device_id)

    @app.get(f"{API_PREFIX}/devices/<device_id>/<sensor>")
    def sensor_series(device_id: str, sensor: str) -> ResponseReturnValue:
        if sensor not in SERIES_SENSORS:
            raise NotFound(f"unknown sensor {sensor!r}")
        device = found(account.get_device(device_id), "device", device_id)
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
        found(account.get_home(home_id), "home", home_id)
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
        events = _events_in_window(account, request.args.get("home_id"))
        if order == "desc":
            events.reverse()
        return paged("events", events, account.events_paging)


def _add_webhook_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.post(f"{API_PREFIX}/webhooks")
    def register_webhook() -> ResponseReturnValue:
        body = json_object()
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


def paged(key: str, items: list[JsonObject], paging: Paging) -> JsonObject:
    limit = _int_arg("limit", 0, minimum=1) if request.args.get("limit") else None
    answer = paging.page(items, limit, _int_arg("offset", 0, minimum=0))
    return {key: answer.pop("items"), **answer}


def found(item: JsonObject | None, kind: str, item_id: str) -> JsonObject:
    if item is None:
        raise NotFound(f"no {kind} {item_id!r}")
    return item


def json_object() -> dict[str, Any]:
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
