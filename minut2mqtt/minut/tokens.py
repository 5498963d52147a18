"""Where the Minut client's access tokens come from.

`ClientCredentialsTokens`: the account that owns the OAuth client; a new token is asked for
before the old one expires (this grant has no refresh token). The tokens of an account connected
in the browser are in `user_tokens.py`; both share `CachedTokens`.

Every token request waits for its turn in the client's request scheduler, first in line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from .errors import MinutApiError, MinutAuthError, no_answer_reason, retry_after_seconds
from .scheduler import Priority, RequestScheduler

log = logging.getLogger(__name__)

TOKEN_RENEW_MARGIN = 120.0
"""Seconds before a client-credentials token expires at which it is renewed (at most 1/10)."""
GRANT_GONE_STATUSES = frozenset({400, 401})
"""A refresh answered with one of these: Minut no longer honours the grant."""


class TokenSource(Protocol):
    """Gives the client a valid access token (blocking while one is obtained)."""

    def access_token(self) -> str:
        """The current access token, obtained or refreshed first when it is due."""
        ...

    def renew(self, refused: str) -> str:
        """A new access token after the API refused `refused` (unless another thread did it)."""
        ...


def token_url(api_url: str) -> str:
    return f"{api_url.rstrip('/')}/oauth/token"


def allow_plain_http_for(api_url: str) -> None:
    """oauthlib refuses plain-HTTP token endpoints; only the local simulator is served so."""
    if urlsplit(api_url).scheme == "http" and not os.environ.get("OAUTHLIB_INSECURE_TRANSPORT"):
        log.info("Minut API at %s is plain HTTP: use that only for the simulator", api_url)
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


class TokenRefused(Exception):
    """The token endpoint answered with an OAuth error (or a bare 400/401)."""

    def __init__(self, error: str, status: int | None):
        super().__init__(error)
        self.error = error
        self.status = status


class CachedTokens:
    """An access token and the moment to renew it, behind one lock; subclasses obtain them."""

    def __init__(
        self,
        api_url: str,
        *,
        scheduler: RequestScheduler,
        timeout: float,
        clock: Callable[[], float],
    ):
        allow_plain_http_for(api_url)
        self.token_url = token_url(api_url)
        self._scheduler = scheduler
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._access_token = ""
        self._renew_at = 0.0

    def access_token(self) -> str:
        with self._lock:
            if self._access_token and self._clock() < self._renew_at:
                return self._access_token
            return self._obtain()

    def renew(self, refused: str) -> str:
        with self._lock:
            if self._access_token and self._access_token != refused:
                return self._access_token  # another thread renewed it meanwhile
            return self._obtain()

    def _obtain(self) -> str:
        """A new access token (the caller holds the lock)."""
        raise NotImplementedError

    def _token_request(
        self, session: OAuth2Session, send: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The token answer of one request `send` makes through `session`.

        Raises TokenRefused for an OAuth error answer, MinutApiError when Minut could not be
        asked (network, a 5xx page, a 429, which also pauses every other request).
        """
        statuses: list[int] = []

        def note_status(response: requests.Response) -> requests.Response:
            statuses.append(response.status_code)
            if response.status_code == 429:
                self._scheduler.pause(retry_after_seconds(response.headers.get("Retry-After")))
            return response

        session.register_compliance_hook("access_token_response", note_status)
        session.register_compliance_hook("refresh_token_response", note_status)
        self._scheduler.acquire(Priority.TOKEN)
        failed = f"token request to {self.token_url} failed"
        try:
            answer = send()
        except OAuth2Error as error:
            status = statuses[-1] if statuses else getattr(error, "status_code", None)
            if status == 429 or (status is not None and status >= 500):
                raise MinutApiError(f"{failed}: HTTP {status} {error.error}", status) from None
            raise TokenRefused(str(error.error), status) from None
        except requests.RequestException as error:
            raise MinutApiError(f"{failed}: {no_answer_reason(error)}") from None
        except ValueError as error:  # an HTML error page or an empty body
            status = statuses[-1] if statuses else None
            if status in GRANT_GONE_STATUSES:
                raise TokenRefused(f"HTTP {status}", status) from None
            raise MinutApiError(f"{failed}: {error}", status) from None
        access_token = answer.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise MinutApiError(f"{failed}: the answer has no access_token")
        return dict(answer)

    def _remember(self, access_token: str, expires_in: float, renew_margin: float) -> None:
        self._access_token = access_token
        self._renew_at = self._clock() + expires_in - renew_margin


class ClientCredentialsTokens(CachedTokens):
    """Tokens of the account that owns the OAuth client (`grant_type=client_credentials`)."""

    def __init__(
        self,
        api_url: str,
        client_id: str,
        client_secret: str,
        *,
        scheduler: RequestScheduler,
        timeout: float = 20.0,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(api_url, scheduler=scheduler, timeout=timeout, clock=clock)
        self._client_id = client_id
        self._client_secret = client_secret

    def _obtain(self) -> str:
        session = OAuth2Session(client=BackendApplicationClient(client_id=self._client_id))
        try:
            answer = self._token_request(
                session,
                lambda: session.fetch_token(
                    token_url=self.token_url,
                    auth=HTTPBasicAuth(self._client_id, self._client_secret),
                    timeout=self._timeout,
                ),
            )
        except TokenRefused as refused:
            if refused.error in ("invalid_client", "unauthorized_client", "invalid_grant"):
                raise MinutAuthError(
                    f"Minut refused the client credentials ({refused.error}): check "
                    "minut.client_id and minut.client_secret"
                ) from None
            raise MinutApiError(
                f"token request to {self.token_url} failed: {refused.error}", refused.status
            ) from None
        expires_in = expires_in_seconds(answer)
        self._remember(answer["access_token"], expires_in, min(TOKEN_RENEW_MARGIN, expires_in / 10))
        log.debug("Minut access token renewed, valid for %.0f s", expires_in)
        return self._access_token


def expires_in_seconds(answer: dict[str, Any]) -> float:
    try:
        expires_in = float(answer.get("expires_in") or 3600)
    except (TypeError, ValueError):
        return 3600.0
    return expires_in if expires_in > 0 else 3600.0
