"""The simulated API's write side: arming and disarming a home (by whichever requests
`account.alarm_endpoints` lets work), home and device settings, and a home's guests.

They run behind gate.py like every endpoint: a write spends a request of the budget, planned
faults hit it, and the gate records it in `account.writes`. A refused write changes nothing.
"""

from collections.abc import Callable, Sequence
from typing import Final

from flask import Flask, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, MethodNotAllowed, NotFound

from .account import SimulatedAccount
from .api import API_PREFIX, EndpointAnswer, JsonObject
from .data_endpoints import found, json_object, paged

ALARM_FIELDS: Final = frozenset({"alarm_status", "alarm_mode"})


def add_write_routes(app: Flask, account: SimulatedAccount) -> None:
    _add_alarm_routes(app, account)
    _add_settings_routes(app, account)
    _add_guest_routes(app, account)


def _add_alarm_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.route(f"{API_PREFIX}/homes/<home_id>/alarm", methods=["PATCH", "PUT"])
    def set_alarm(home_id: str) -> ResponseReturnValue:
        endpoints = account.alarm_endpoints
        answers = {"PATCH": endpoints.patch_alarm, "PUT": endpoints.put_alarm}
        working = [method for method, answer in answers.items() if answer == "works"]
        _refuse_unless_works(answers[request.method], working)
        body = json_object()
        found(account.get_home(home_id), "home", home_id)
        if "alarm_status" not in body:
            raise BadRequest("alarm_status is required")
        unknown = set(body) - ALARM_FIELDS
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        return _applied(lambda: account.update_home(home_id, body))


def _add_settings_routes(app: Flask, account: SimulatedAccount) -> None:
    @app.put(f"{API_PREFIX}/homes/<home_id>")
    def update_home(home_id: str) -> ResponseReturnValue:
        settings = json_object()
        found(account.get_home(home_id), "home", home_id)
        if ALARM_FIELDS & settings.keys():
            answer = account.alarm_endpoints.put_home
            if answer == "ignored":
                settings = {
                    key: value for key, value in settings.items() if key not in ALARM_FIELDS
                }
            else:
                _refuse_unless_works(answer, ["GET"])
        return _applied(lambda: account.update_home(home_id, settings))

    @app.put(f"{API_PREFIX}/devices/<device_id>")
    def update_device(device_id: str) -> ResponseReturnValue:
        settings = json_object()
        found(account.get_device(device_id), "device", device_id)
        return _applied(lambda: account.update_device(device_id, settings))


def _add_guest_routes(app: Flask, account: SimulatedAccount) -> None:
    guests_path = f"{API_PREFIX}/homes/<home_id>/guests"
    guest_path = f"{guests_path}/<guest_id>"

    @app.get(guests_path)
    def list_guests(home_id: str) -> ResponseReturnValue:
        found(account.get_home(home_id), "home", home_id)
        style = account.guest_style
        guests = account.list_guests(home_id)
        if style.list_key is None:
            return guests
        if style.paging is None:
            return {style.list_key: guests}
        return paged(style.list_key, guests, style.paging)

    @app.post(guests_path)
    def create_guest(home_id: str) -> ResponseReturnValue:
        body = json_object()
        found(account.get_home(home_id), "home", home_id)
        return _applied(lambda: account.create_guest(home_id, body)), 201

    @app.get(guest_path)
    def get_guest(home_id: str, guest_id: str) -> ResponseReturnValue:
        found(account.get_home(home_id), "home", home_id)
        return found(account.get_guest(home_id, guest_id), "guest", guest_id)

    @app.route(guest_path, methods=["PUT", "PATCH"])
    def update_guest(home_id: str, guest_id: str) -> ResponseReturnValue:
        body = json_object()
        found(account.get_home(home_id), "home", home_id)
        replace = request.method == "PUT"
        return _applied(lambda: account.update_guest(home_id, guest_id, body, replace=replace))

    @app.delete(guest_path)
    def delete_guest(home_id: str, guest_id: str) -> ResponseReturnValue:
        found(account.get_home(home_id), "home", home_id)
        if not account.remove_guest(home_id, guest_id):
            raise NotFound(f"no guest {guest_id!r}")
        return "", 204


def _refuse_unless_works(answer: EndpointAnswer, working_methods: Sequence[str]) -> None:
    """Answer as an endpoint that is not there, if the account's style says it is not."""
    if answer == "not_found":
        raise NotFound("no such endpoint")
    if answer == "not_allowed":
        raise MethodNotAllowed(valid_methods=list(working_methods))


def _applied(change: Callable[[], JsonObject]) -> JsonObject:
    """The changed item; 400 for a value the API refuses, 404 for something gone meanwhile."""
    try:
        return change()
    except ValueError as error:
        raise BadRequest(str(error)) from error
    except KeyError as error:
        raise NotFound(str(error.args[0]) if error.args else None) from error
