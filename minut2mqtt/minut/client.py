"""The Minut API client: OAuth2 client-credentials session, typed errors; requests scheduled."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from ..settings import MinutSettings
from .scheduler import Priority, RequestScheduler

log = logging.getLogger(__name__)

TOKEN_RENEW_MARGIN = 120.0
"""Seconds before `expires_in` runs out at which the token is renewed (at most a tenth of it)."""


class MinutApiError(Exception):
    """A request to the Minut API failed; `retry_after` is the API's own hint, if it gave one."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class MinutAuthError(MinutApiError):
    """The token endpoint refused our credentials: nothing works until the user fixes them."""


class MinutClient:
    """One authenticated session to the Minut API; every call waits for its turn to be sent."""

    def __init__(
        self,
        api_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 20.0,
        scheduler: RequestScheduler | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.api_url = api_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self.scheduler = scheduler or RequestScheduler(per_minute=100)
        self._clock = clock
        self._token_lock = threading.Lock()
        self._oauth = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
        self._http = requests.Session()
        self._access_token = ""
        self._token_renew_at = 0.0
        if urlsplit(self.api_url).scheme == "http":
            # oauthlib refuses tokens over plain HTTP; only the local simulator is served that way.
            log.info("Minut API at %s is plain HTTP: use that only for the simulator", api_url)
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

    @classmethod
    def from_settings(cls, minut: MinutSettings, timeout: float | None = None) -> MinutClient:
        return cls(
            minut.api_url,
            minut.client_id,
            minut.client_secret.get_secret_value(),
            timeout=minut.request_timeout if timeout is None else timeout,
            scheduler=RequestScheduler(per_minute=minut.requests_per_minute),
        )

    @property
    def token_url(self) -> str:
        return f"{self.api_url}/oauth/token"

    def get_devices(self) -> list[dict[str, Any]]:
        return _list_of_objects(self.request("GET", "/devices"), "devices")

    def get_homes(self) -> list[dict[str, Any]]:
        return _list_of_objects(self.request("GET", "/homes"), "homes")

    def request(
        self, method: str, path: str, *, priority: Priority = Priority.POLL, **kwargs: Any
    ) -> Any:
        """JSON answer of one API call; renews the token when it is due or refused once."""
        token = self._current_token()
        response = self._send(method, path, token, priority, **kwargs)
        if response.status_code == 401:
            log.info("Minut API refused the access token; requesting a new one")
            token = self._renewed_token(refused=token)
            response = self._send(method, path, token, priority, **kwargs)
        if response.status_code >= 400:
            error = _error_from(response, f"{method} {path}")
            if response.status_code == 429:
                self.scheduler.pause(error.retry_after)
            raise error
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise MinutApiError(
                f"{method} {path}: answer is not JSON", response.status_code
            ) from None

    def _send(
        self, method: str, path: str, token: str, priority: Priority, **kwargs: Any
    ) -> requests.Response:
        self.scheduler.acquire(priority)
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
        try:
            return self._http.request(
                method, f"{self.api_url}{path}", headers=headers, timeout=self._timeout, **kwargs
            )
        except requests.RequestException as error:
            raise MinutApiError(f"{method} {path}: {type(error).__name__}: {error}") from None

    def _current_token(self) -> str:
        with self._token_lock:
            if self._access_token and self._clock() < self._token_renew_at:
                return self._access_token
            return self._fetch_token()

    def _renewed_token(self, refused: str) -> str:
        with self._token_lock:
            if self._access_token != refused:  # another thread renewed it meanwhile
                return self._access_token
            return self._fetch_token()

    def _fetch_token(self) -> str:
        """A new access token from the token endpoint (the caller holds the token lock)."""
        self.scheduler.acquire(Priority.TOKEN)
        try:
            token = self._oauth.fetch_token(
                token_url=self.token_url,
                auth=HTTPBasicAuth(self._client_id, self._client_secret),
                timeout=self._timeout,
            )
        except OAuth2Error as error:
            status = getattr(error, "status_code", None)
            if error.error in ("invalid_client", "unauthorized_client", "invalid_grant"):
                raise MinutAuthError(
                    f"Minut refused the client credentials ({error.error}): check "
                    "minut.client_id and minut.client_secret",
                    status,
                ) from None
            raise MinutApiError(
                f"token request to {self.token_url} failed: {error.error}", status
            ) from None
        except requests.RequestException as error:
            raise MinutApiError(
                f"token request to {self.token_url} failed: {type(error).__name__}"
            ) from None
        except ValueError as error:  # an HTML error page or an empty body
            raise MinutApiError(f"token request to {self.token_url} failed: {error}") from None
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise MinutApiError("token request failed: the answer has no access_token")
        expires_in = float(token.get("expires_in") or 3600)
        self._access_token = access_token
        self._token_renew_at = self._clock() + expires_in - min(TOKEN_RENEW_MARGIN, expires_in / 10)
        log.debug("Minut access token renewed, valid for %.0f s", expires_in)
        return access_token


def _error_from(response: requests.Response, what: str) -> MinutApiError:
    retry_after = _retry_after(response.headers.get("Retry-After"))
    reason = response.reason or ""
    try:
        body = response.json()
        if isinstance(body, dict):
            reason = str(body.get("error_description") or body.get("error") or reason)
    except ValueError:
        pass
    return MinutApiError(
        f"{what}: HTTP {response.status_code} {reason}".strip(), response.status_code, retry_after
    )


def _retry_after(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None


def _list_of_objects(answer: Any, key: str) -> list[dict[str, Any]]:
    items = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise MinutApiError(f"GET /{key}: answer has no '{key}' list")
    return [item for item in items if isinstance(item, dict)]
