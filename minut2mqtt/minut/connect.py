"""What the status page needs of a Minut account connected in the browser (no I/O here).

The page sends a person to Minut's authorize page and takes Minut's answer back; an
`AccountConnector` (the authorization-code tokens) does the OAuth part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


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


class AccountConnector(Protocol):
    def authorization_url(self, redirect_uri: str) -> str:
        """Minut's authorize page for a new connect, coming back to `redirect_uri`."""
        ...

    def complete(self, state: str | None, code: str | None, error: str | None = None) -> None:
        """Finish a connect Minut sent back; raises ConnectError (nothing stored) if it fails."""
        ...

    def status(self) -> AccountStatus: ...
