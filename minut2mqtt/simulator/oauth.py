"""The account's OAuth grants: client-credentials tokens, single-use authorization codes, user
tokens with rotating refresh tokens, and their revocation.

`OAuthGrants` is not thread-safe: SimulatedAccount holds its lock around every call and passes in
the account's settings (token and code lifetimes, the user) as they are at that moment.
"""

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Final

from .api import JsonObject

AUTHORIZATION_CODE_LIFETIME: Final = 60
"""Seconds an authorization code can be exchanged (once) after the user approved."""
UNLOGGED_PARAMETERS: Final = frozenset({"client_secret", "code"})


@dataclass(frozen=True)
class AccessGrant:
    client_id: str
    expires_at_monotonic: float
    user_grant: bool = False
    """Issued through the authorization-code grant (revoke_user_grant ends it)."""


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    expires_at_monotonic: float


class OAuthGrantError(ValueError):
    """A token request the OAuth rules refuse: `error` is the OAuth error code (400)."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error


def same_credential(given: str, expected: str) -> bool:
    """Compare a client id or secret in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


class OAuthGrants:
    """Live access tokens, outstanding codes and refresh tokens, and what clients asked for."""

    def __init__(self) -> None:
        self._grants: dict[str, AccessGrant] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._refresh_tokens: dict[str, str] = {}
        """Refresh token → the client it was issued to (the one user's grant)."""
        self.client_revoked = False
        self.log: list[tuple[str, dict[str, str]]] = []
        """("authorize" | "token", its parameters without secrets): what clients sent."""
        self.tokens_issued: list[str] = []
        """Every access and refresh token handed out, oldest first (tests look for leaks)."""

    def issue_client_token(self, client_id: str, lifetime: int) -> JsonObject:
        access_token = secrets.token_urlsafe(32)
        self._grants[access_token] = AccessGrant(client_id, monotonic() + lifetime)
        self.tokens_issued.append(access_token)
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime}

    def issue_code(self, client_id: str, redirect_uri: str, lifetime: int) -> str:
        code = secrets.token_urlsafe(24)
        self._codes[code] = AuthorizationCode(client_id, redirect_uri, monotonic() + lifetime)
        return code

    def exchange_code(
        self, client_id: str, code: str, redirect_uri: str | None, *, lifetime: int, user_id: str
    ) -> JsonObject:
        issued = self._codes.pop(code, None)
        if issued is None or monotonic() >= issued.expires_at_monotonic:
            raise OAuthGrantError("invalid_grant", "unknown, used or expired code")
        if issued.client_id != client_id:
            raise OAuthGrantError("invalid_grant", "the code was issued to another client")
        if redirect_uri != issued.redirect_uri:
            raise OAuthGrantError(
                "invalid_grant", "redirect_uri differs from the authorization request's"
            )
        return self._issue_user_tokens(client_id, lifetime, user_id)

    def refresh(
        self, client_id: str, refresh_token: str, *, lifetime: int, user_id: str
    ) -> JsonObject:
        owner = self._refresh_tokens.get(refresh_token)
        if owner is None or owner != client_id:
            raise OAuthGrantError("invalid_grant", "unknown, used or revoked refresh token")
        del self._refresh_tokens[refresh_token]
        return self._issue_user_tokens(client_id, lifetime, user_id)

    def revoke_user_grant(self) -> None:
        self._refresh_tokens.clear()
        self._codes.clear()
        for access_token in [t for t, g in self._grants.items() if g.user_grant]:
            del self._grants[access_token]

    def refresh_tokens(self) -> list[str]:
        return list(self._refresh_tokens)

    def holds_code(self, code: str) -> bool:
        """Whether `code` is an authorization code issued here and not exchanged yet."""
        return code in self._codes

    def note_request(self, leg: str, parameters: Mapping[str, str]) -> None:
        shown = {k: v for k, v in parameters.items() if k not in UNLOGGED_PARAMETERS}
        self.log.append((leg, shown))

    def client_for_token(self, access_token: str) -> str | None:
        grant = self._grants.get(access_token)
        if grant is None:
            return None
        if monotonic() >= grant.expires_at_monotonic:
            del self._grants[access_token]
            return None
        return grant.client_id

    def expire_tokens(self) -> None:
        self._grants.clear()

    def _issue_user_tokens(self, client_id: str, lifetime: int, user_id: str) -> JsonObject:
        access_token = secrets.token_urlsafe(32)
        refresh_token = secrets.token_urlsafe(32)
        self._grants[access_token] = AccessGrant(client_id, monotonic() + lifetime, user_grant=True)
        self._refresh_tokens[refresh_token] = client_id
        self.tokens_issued += [access_token, refresh_token]
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": refresh_token,
            "user_id": user_id,
        }
