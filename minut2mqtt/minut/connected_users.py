"""Several Minut users connected on the page through one partner OAuth client.

Every connect goes through one staging `AuthorizationCodeTokens` (its `state` check and code
exchange); the tokens it obtains then belong to the account of the Minut user they are for:
the account that user had (a reconnect), else the default account while it never had one,
else a new account `user-<user id>` whose files are under `<state_dir>/accounts/`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from ..settings import CONNECTED_PREFIX, DEFAULT_ACCOUNT
from ..storage import read_json, write_json
from .connect import AccountStatus, ConnectError
from .user_tokens import TOKENS_FILE, AuthorizationCodeTokens

log = logging.getLogger(__name__)

ACCOUNTS_DIR = "accounts"
"""Under state_dir: one directory per account but the default one (whose files stay on top)."""
NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def account_dir(state_dir: Path, name: str) -> Path:
    """Where the files of account `name` are kept."""
    return state_dir if name == DEFAULT_ACCOUNT else state_dir / ACCOUNTS_DIR / name


def stored_user_accounts(state_dir: Path) -> list[str]:
    """The accounts connected on the page in earlier runs (their tokens are in state_dir)."""
    root = state_dir / ACCOUNTS_DIR
    if not root.is_dir():
        return []
    return sorted(
        path.name
        for path in root.iterdir()
        if path.name.startswith(CONNECTED_PREFIX) and (path / TOKENS_FILE).is_file()
    )


class ConnectedUsers:
    """The page's account connector when several users connect through one partner client.

    `accounts` are the tokens of the accounts known so far, by name (the registry adds each one
    it starts); `on_connected(name)` hears which account a connect gave tokens to.
    """

    def __init__(
        self,
        staging: AuthorizationCodeTokens,
        state_dir: Path,
        on_connected: Callable[[str], None],
    ) -> None:
        self._staging = staging
        self._state_dir = state_dir
        self._on_connected = on_connected
        self._lock = threading.Lock()
        self._connecting = threading.Lock()
        """One connect at a time goes through the staging tokens and their file."""
        self._accounts: dict[str, AuthorizationCodeTokens] = {}

    def track(self, name: str, tokens: AuthorizationCodeTokens) -> None:
        with self._lock:
            self._accounts[name] = tokens

    def forget(self, name: str) -> None:
        with self._lock:
            self._accounts.pop(name, None)

    def authorization_url(self, redirect_uri: str) -> str:
        return self._staging.authorization_url(redirect_uri)

    def complete(self, state: str | None, code: str | None, error: str | None = None) -> None:
        with self._connecting:
            self._staging.complete(state, code, error)
            content = read_json(self._staging.path) or {}
            if not content.get("access_token"):
                raise ConnectError(
                    f"the tokens could not be kept in {self._staging.path}: "
                    "check that state_dir can be written, then connect again"
                )
            user_id = content.get("user_id")
            name = self._account_for(user_id if isinstance(user_id, str) else None)
            target = account_dir(self._state_dir, name) / TOKENS_FILE
            try:
                write_json(target, content)
                self._staging.path.unlink(missing_ok=True)
            except OSError as failure:
                raise ConnectError(
                    f"the tokens cannot be kept in {target} ({failure.strerror or failure})"
                ) from None
        with self._lock:
            known = self._accounts.get(name)
        if known is not None:
            known.reload()
        log.info("Minut user %s connected as account %s", user_id or "(no user id)", name)
        self._on_connected(name)

    def status(self) -> AccountStatus:
        """The default account's (the page shows every account's own state besides)."""
        with self._lock:
            default = self._accounts.get(DEFAULT_ACCOUNT)
            others = [tokens for name, tokens in self._accounts.items() if name != DEFAULT_ACCOUNT]
        if default is not None:
            return default.status()
        connected = [tokens.status() for tokens in others]
        return next((status for status in connected if status.connected), AccountStatus(False))

    def _account_for(self, user_id: str | None) -> str:
        with self._lock:
            accounts = dict(self._accounts)
        statuses = {name: tokens.status() for name, tokens in accounts.items()}
        for name, status in statuses.items():
            if user_id is not None and status.user_id == user_id:
                return name  # that user's account: a reconnect
        default = statuses.get(DEFAULT_ACCOUNT)
        if default is not None and not default.connected and default.user_id is None:
            return DEFAULT_ACCOUNT  # the default account never had a user yet
        base = CONNECTED_PREFIX + (NOT_A_NAME.sub("-", user_id or "").strip("-")[:48] or "account")
        name, number = base, 1
        while name in accounts:
            number += 1
            name = f"{base}-{number}"
        return name
