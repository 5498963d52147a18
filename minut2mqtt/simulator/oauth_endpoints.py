"""The simulated API's OAuth endpoints: POST /oauth/token for every grant type, and the
authorize page where the user approves or denies an application (which sends them back)."""

import base64
import binascii
import html
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlencode, urlsplit

from flask import Flask, redirect, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from .account import SimulatedAccount
from .api import AUTHORIZE_PATH, TOKEN_PATH, JsonObject
from .gate import error_response
from .oauth import OAuthGrantError

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


def add_oauth_routes(app: Flask, account: SimulatedAccount) -> None:
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
