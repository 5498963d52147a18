"""Several Minut accounts behind one simulated API, as api.minut.com serves every account.

Each `SimulatedAccount` keeps its own app (its OAuth client or users, data, request budget,
webhooks, scripted faults); `SimulatedEstate` sends each request to the account it belongs to:
an API call by its bearer token, a token request by its code or refresh token, else by its
client id, and Minut's authorize page to the account whose user is signed in at Minut
(`signed_in`). Several accounts may share one OAuth client id: the users of a partner client.
"""

import base64
import binascii
import io
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

from flask import Flask

from ..web.server import BackgroundServer
from .account import SimulatedAccount
from .api import API_PREFIX, AUTHORIZE_PATH, TOKEN_PATH
from .app import create_app

SERVER_THREADS = 8
StartResponse = Callable[..., Any]


class SimulatedEstate:
    """Accounts by user id; a WSGI app that serves them all at one address."""

    def __init__(self, accounts: Iterable[SimulatedAccount] = ()) -> None:
        self._lock = threading.Lock()
        self._accounts: list[tuple[SimulatedAccount, Flask]] = []
        self.signed_in: str | None = None
        """The user id of the account whose user approves on the authorize page (None: the
        first account's)."""
        for account in accounts:
            self.add(account)

    def add(self, account: SimulatedAccount) -> SimulatedAccount:
        with self._lock:
            self._accounts.append((account, create_app(account)))
        return account

    @property
    def accounts(self) -> list[SimulatedAccount]:
        with self._lock:
            return [account for account, _ in self._accounts]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        return self._app_for(environ)(environ, start_response)

    def _app_for(self, environ: dict[str, Any]) -> Flask:
        with self._lock:
            apps = list(self._accounts)
        path = environ.get("PATH_INFO", "")
        if path == TOKEN_PATH:
            chosen = self._token_account(environ, apps)
        elif path == AUTHORIZE_PATH:
            chosen = next((app for a, app in apps if a.user_id == self.signed_in), None)
        else:
            token = _bearer(environ)
            chosen = next((app for a, app in apps if a.client_for_token(token)), None)
        return chosen or apps[0][1]

    def _token_account(
        self, environ: dict[str, Any], apps: list[tuple[SimulatedAccount, Flask]]
    ) -> Flask | None:
        """The account a token request is for (its body is read and put back)."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        form = {key: values[0] for key, values in parse_qs(body.decode("latin-1")).items()}
        code, refresh_token = form.get("code", ""), form.get("refresh_token", "")
        for account, app in apps:
            if (code and account.holds_code(code)) or (
                refresh_token and refresh_token in account.refresh_tokens()
            ):
                return app
        client_id = _basic_client_id(environ) or form.get("client_id")
        return next((app for account, app in apps if account.client_id == client_id), None)


def _bearer(environ: dict[str, Any]) -> str:
    scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _basic_client_id(environ: dict[str, Any]) -> str | None:
    scheme, _, encoded = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None


class EstateServer:
    """The estate's API on `host:port` (port 0 picks a free one); a context manager."""

    def __init__(self, estate: SimulatedEstate, host: str = "127.0.0.1", port: int = 0) -> None:
        self.estate = estate
        self._server = BackgroundServer(
            estate, host, port, threads=SERVER_THREADS, ident="minut-simulator"
        )

    @property
    def base_url(self) -> str:
        """The API base URL with the version prefix: http://127.0.0.1:PORT/v8."""
        return f"http://127.0.0.1:{self._server.port}{API_PREFIX}"

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.stop()
