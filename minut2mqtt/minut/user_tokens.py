"""The tokens of a Minut account a person connected in the browser (authorization code).

The bridge's page sends them to Minut's authorize page; Minut sends them back with a code. The
tokens are kept in `state_dir`, refreshed at 9/10 of their life and whenever the API refuses the
access token, and every new refresh token is kept (Minut may rotate them). A refresh that Minut
refuses means the grant is gone: the tokens are forgotten and the page offers to reconnect.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oauthlib.oauth2 import WebApplicationClient
from requests_oauthlib import OAuth2Session

from ..storage import read_json, write_json
from .connect import AccountStatus, ConnectError
from .errors import MinutApiError, MinutAuthError
from .scheduler import RequestScheduler
from .tokens import GRANT_GONE_STATUSES, CachedTokens, TokenRefused, expires_in_seconds

log = logging.getLogger(__name__)

TOKENS_FILE = "minut_tokens.json"
AUTHORIZATION_TIMEOUT = 600.0
"""Seconds a Connect started on the page may take to come back with its code."""
MAX_PENDING_AUTHORIZATIONS = 16
"""Connects started but not finished that are remembered (the oldest is dropped first)."""


@dataclass(frozen=True)
class _PendingAuthorization:
    redirect_uri: str
    started_at: float


class AuthorizationCodeTokens(CachedTokens):
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
            except TokenRefused as refused:
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

    def reload(self) -> None:
        """Take the tokens in the file anew (a connect elsewhere wrote them there)."""
        with self._lock:
            self._load()

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
        except TokenRefused as refused:
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
        expires_in = expires_in_seconds(answer)
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


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
