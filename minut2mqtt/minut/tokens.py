"""Where the Minut client's access tokens come from.

`ClientCredentialsTokens`: the account that owns the OAuth client; a new token is asked for
before the old one expires (this grant has no refresh token).

`AuthorizationCodeTokens`: an account a Minut user connected in the browser (the bridge's page
sends them to Minut's authorize page; Minut sends them back with a code). The tokens are kept in
`state_dir`, refreshed at 9/10 of their life and whenever the API refuses the access token, and
every new refresh token is kept (Minut may rotate them). A refresh that Minut refuses means the
grant is gone: the tokens are forgotten and the page offers to reconnect.

Every token request waits for its turn in the client's request scheduler, first in line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error, WebApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from ..statefiles import read_json, write_json
from .errors import MinutApiError, MinutAuthError, no_answer_reason, retry_after_seconds
from .scheduler import Priority, RequestScheduler

log = logging.getLogger(__name__)

TOKEN_RENEW_MARGIN = 120.0
"""Seconds before a client-credentials token expires at which it is renewed (at most 1/10)."""
TOKENS_FILE = "minut_tokens.json"
AUTHORIZATION_TIMEOUT = 600.0
"""Seconds a Connect started on the page may take to come back with its code."""
MAX_PENDING_AUTHORIZATIONS = 16
"""Connects started but not finished that are remembered (the oldest is dropped first)."""
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


class _TokenRefused(Exception):
    """The token endpoint answered with an OAuth error (or a bare 400/401)."""

    def __init__(self, error: str, status: int | None):
        super().__init__(error)
        self.error = error
        self.status = status


class _CachedTokens:
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

        Raises _TokenRefused for an OAuth error answer, MinutApiError when Minut could not be
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
            raise _TokenRefused(str(error.error), status) from None
        except requests.RequestException as error:
            raise MinutApiError(f"{failed}: {no_answer_reason(error)}") from None
        except ValueError as error:  # an HTML error page or an empty body
            status = statuses[-1] if statuses else None
            if status in GRANT_GONE_STATUSES:
                raise _TokenRefused(f"HTTP {status}", status) from None
            raise MinutApiError(f"{failed}: {error}", status) from None
        access_token = answer.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise MinutApiError(f"{failed}: the answer has no access_token")
        return dict(answer)

    def _remember(self, access_token: str, expires_in: float, renew_margin: float) -> None:
        self._access_token = access_token
        self._renew_at = self._clock() + expires_in - renew_margin


class ClientCredentialsTokens(_CachedTokens):
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
        except _TokenRefused as refused:
            if refused.error in ("invalid_client", "unauthorized_client", "invalid_grant"):
                raise MinutAuthError(
                    f"Minut refused the client credentials ({refused.error}): check "
                    "minut.client_id and minut.client_secret"
                ) from None
            raise MinutApiError(
                f"token request to {self.token_url} failed: {refused.error}", refused.status
            ) from None
        expires_in = _expires_in(answer)
        self._remember(answer["access_token"], expires_in, min(TOKEN_RENEW_MARGIN, expires_in / 10))
        log.debug("Minut access token renewed, valid for %.0f s", expires_in)
        return self._access_token


class ConnectError(Exception):
    """Connecting an account in the browser failed; the message is for the person connecting."""


@dataclass(frozen=True)
class AccountStatus:
    """What the page says about the connected account (never a token)."""

    connected: bool
    user_id: str | None = None
    since: datetime | None = None
    problem: str | None = None
    """Why the account is not (or no longer) usable, or what went wrong keeping it."""


@dataclass(frozen=True)
class _PendingAuthorization:
    redirect_uri: str
    started_at: float


class AuthorizationCodeTokens(_CachedTokens):
    """Tokens of an account connected in the browser (`grant_type=authorization_code`)."""

    def __init__(
        self,
        api_url: str,
        client_id: str,
        client_secret: str,
        state_dir: Path,
        *,
        scheduler: RequestScheduler,
        timeout: float = 20.0,
        clock: Callable[[], float] = time.time,
        page_url: str = "the bridge's web page",
    ):
        super().__init__(api_url, scheduler=scheduler, timeout=timeout, clock=clock)
        self.authorize_url = f"{api_url.rstrip('/')}/oauth/authorize"
        self.path = state_dir / TOKENS_FILE
        self.page_url = page_url
        """Where a person connects the account; named in the errors that ask them to."""
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = ""
        self._user_id: str | None = None
        self._since: datetime | None = None
        self._lost: str | None = None
        """Why a connected account was lost (the grant refused): the page offers to reconnect."""
        self._save_problem: str | None = None
        self._pending: OrderedDict[str, _PendingAuthorization] = OrderedDict()
        self._load()

    # -- the browser's side -------------------------------------------------------------------

    def authorization_url(self, redirect_uri: str) -> str:
        """Minut's authorize page for a new connect; its `state` is remembered for the callback."""
        session = OAuth2Session(
            client=WebApplicationClient(self._client_id), redirect_uri=redirect_uri
        )
        url, state = session.authorization_url(self.authorize_url)
        with self._lock:
            self._forget_expired_authorizations()
            self._pending[state] = _PendingAuthorization(redirect_uri, self._clock())
            while len(self._pending) > MAX_PENDING_AUTHORIZATIONS:
                self._pending.popitem(last=False)
        return str(url)

    def complete(self, state: str | None, code: str | None, error: str | None = None) -> None:
        """Finish the connect Minut sent back: check `state`, exchange `code`, keep the tokens.

        Raises ConnectError (nothing stored) when `state` is not one this bridge handed out in
        the last minutes, when Minut reports `error`, or when the exchange fails.
        """
        with self._lock:
            self._forget_expired_authorizations()
            pending = self._pending.pop(state, None) if state else None
            if pending is None:
                raise ConnectError(
                    "this answer from Minut does not belong to a connect started on this page "
                    "in the last minutes (its state does not match): nothing was changed; "
                    "start again with the Connect button"
                )
            if error:
                raise ConnectError(f"Minut did not authorize the bridge ({error})")
            if not code:
                raise ConnectError("Minut sent no authorization code: start again")
            session = OAuth2Session(
                client=WebApplicationClient(self._client_id),
                redirect_uri=pending.redirect_uri,
                state=state,
            )
            try:
                answer = self._token_request(
                    session,
                    lambda: session.fetch_token(
                        token_url=self.token_url,
                        code=code,
                        include_client_id=True,
                        client_secret=self._client_secret,
                        timeout=self._timeout,
                    ),
                )
            except _TokenRefused as refused:
                if refused.error in ("invalid_client", "unauthorized_client"):
                    raise ConnectError(
                        f"Minut refused the bridge's OAuth client ({refused.error}): check "
                        "minut.client_id and minut.client_secret"
                    ) from None
                raise ConnectError(
                    f"Minut refused the authorization code ({refused.error}): start again"
                ) from None
            except MinutApiError as failure:
                raise ConnectError(f"{failure}: start again") from None
            self._since = datetime.now(UTC)
            self._keep(answer, refreshed=False)
            log.info("Minut account %s connected", self._user_id or "(no user id given)")

    def status(self) -> AccountStatus:
        with self._lock:
            return AccountStatus(
                connected=bool(self._access_token or self._refresh_token),
                user_id=self._user_id,
                since=self._since,
                problem=self._lost or self._save_problem,
            )

    # -- the client's side --------------------------------------------------------------------

    def _obtain(self) -> str:
        if self._adopt_tokens_refreshed_elsewhere() and self._clock() < self._renew_at:
            return self._access_token
        if not self._refresh_token:
            if self._access_token:  # Minut gave no refresh token: this one was all we had
                self._forget("the access token expired and Minut gave no refresh token to renew it")
            if self._lost is not None:
                raise MinutAuthError(f"{self._lost}: open {self.page_url} and reconnect")
            raise MinutAuthError(f"no Minut account connected yet: open {self.page_url} to connect")
        session = OAuth2Session(client=WebApplicationClient(self._client_id))
        refresh_token = self._refresh_token
        try:
            answer = self._token_request(
                session,
                lambda: session.refresh_token(
                    self.token_url,
                    refresh_token=refresh_token,
                    client_id=self._client_id,
                    client_secret=self._client_secret,
                    timeout=self._timeout,
                ),
            )
        except _TokenRefused as refused:
            if refused.status in GRANT_GONE_STATUSES or refused.error == "invalid_grant":
                self._forget(
                    f"Minut no longer accepts the account's authorization ({refused.error})"
                )
                raise MinutAuthError(f"{self._lost}: open {self.page_url} and reconnect") from None
            raise MinutApiError(
                f"token refresh at {self.token_url} failed: {refused.error}", refused.status
            ) from None
        self._keep(answer, refreshed=True)
        return self._access_token

    # -- keeping the tokens -------------------------------------------------------------------

    def _keep(self, answer: dict[str, Any], *, refreshed: bool) -> None:
        expires_in = _expires_in(answer)
        self._remember(answer["access_token"], expires_in, expires_in / 10)
        new_refresh_token = answer.get("refresh_token")
        if isinstance(new_refresh_token, str) and new_refresh_token:
            self._refresh_token = new_refresh_token
        elif not refreshed:
            self._refresh_token = ""
        user_id = answer.get("user_id")
        if user_id is not None:
            self._user_id = str(user_id)
        self._lost = None
        self._save(
            {
                "access_token": self._access_token,
                "refresh_token": self._refresh_token,
                "renew_at": self._renew_at,
                "user_id": self._user_id,
                "connected_at": self._since.isoformat() if self._since else None,
            }
        )
        how = "refreshed" if refreshed else "obtained"
        log.debug("Minut access token %s, valid for %.0f s", how, expires_in)

    def _forget(self, reason: str) -> None:
        """The grant is gone: drop the tokens, remember why (the page shows it after restarts)."""
        log.error("%s: the tokens are forgotten; open %s and reconnect", reason, self.page_url)
        self._access_token = self._refresh_token = ""
        self._renew_at = 0.0
        self._since = None
        self._lost = reason
        self._save({"grant_lost": reason, "user_id": self._user_id})

    def _save(self, content: dict[str, Any]) -> None:
        try:
            write_json(self.path, content)
        except OSError as error:
            log.error("cannot keep the Minut tokens in %s: %s", self.path, error.strerror or error)
            self._save_problem = (
                f"the tokens cannot be saved in {self.path} ({error.strerror or error}): "
                "the connection is lost when the bridge restarts"
            )
        else:
            self._save_problem = None

    def _load(self) -> None:
        content = self._read()
        lost = content.get("grant_lost")
        if isinstance(lost, str):
            self._lost = lost
            user_id = content.get("user_id")
            self._user_id = user_id if isinstance(user_id, str) else None
        else:
            self._apply(content)

    def _adopt_tokens_refreshed_elsewhere(self) -> bool:
        """Take the file's tokens when another process (`minut2mqtt check`) refreshed them.

        The refresh token may rotate: refreshing with ours after that would end the grant.
        """
        content = self._read()
        refresh_token = content.get("refresh_token")
        if not isinstance(refresh_token, str) or refresh_token in ("", self._refresh_token):
            return False
        log.info("Minut tokens were refreshed by another process: using those in %s", self.path)
        self._apply(content)
        return True

    def _apply(self, content: dict[str, Any]) -> None:
        access_token, refresh_token = content.get("access_token"), content.get("refresh_token")
        renew_at, connected_at = content.get("renew_at"), content.get("connected_at")
        user_id = content.get("user_id")
        self._access_token = access_token if isinstance(access_token, str) else ""
        self._refresh_token = refresh_token if isinstance(refresh_token, str) else ""
        self._renew_at = float(renew_at) if isinstance(renew_at, int | float) else 0.0
        self._user_id = user_id if isinstance(user_id, str) else None
        self._since = _parse_iso(connected_at) if self._access_token else None
        self._lost = None

    def _read(self) -> dict[str, Any]:
        try:
            return read_json(self.path) or {}
        except OSError as error:
            log.error("cannot read the Minut tokens in %s: %s", self.path, error.strerror or error)
            return {}

    def _forget_expired_authorizations(self) -> None:
        oldest_allowed = self._clock() - AUTHORIZATION_TIMEOUT
        for state in [s for s, p in self._pending.items() if p.started_at < oldest_allowed]:
            del self._pending[state]


def _expires_in(answer: dict[str, Any]) -> float:
    try:
        expires_in = float(answer.get("expires_in") or 3600)
    except (TypeError, ValueError):
        return 3600.0
    return expires_in if expires_in > 0 else 3600.0


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
