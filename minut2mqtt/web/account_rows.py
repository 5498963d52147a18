"""The page's list of accounts, when the bridge reads several: each one's connection, size and
last poll, and a Disconnect button for the users connected on the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..core.status import AccountState
from ..settings import CONNECTED_PREFIX
from .html_parts import escape as _e
from .html_parts import moment as _moment


@dataclass(frozen=True)
class AccountRow:
    """One of several accounts: its name, connection and last poll."""

    name: str
    minut: str
    last_poll: datetime | None
    error: str | None
    devices: int
    homes: int
    disconnectable: bool = False
    """Connected on the page (not configured): the page may disconnect it."""


def account_row(state: AccountState) -> AccountRow:
    return AccountRow(
        state.name,
        state.minut,
        state.last_poll,
        state.last_api_error,
        state.devices,
        state.homes,
        disconnectable=state.name.startswith(CONNECTED_PREFIX),
    )


def accounts_section(accounts: tuple[AccountRow, ...], now: datetime) -> str:
    """Each account's connection, when there are several (a user's account is named
    `user-<Minut user id>`)."""
    if not accounts:
        return ""
    items = []
    for account in accounts:
        css = "ok" if account.minut == "connected" else "bad"
        state = account.minut.replace("_", " ")
        poll = _moment(account.last_poll, now) if account.last_poll else "not yet"
        error = f'<br><span class="bad">{_e(account.error)}</span>' if account.error else ""
        items.append(
            f'<li id="account-{_e(account.name)}"><h4>{_e(account.name)} '
            f'<span class="{css}">{_e(state)}</span></h4><p class="meta">'
            f"{account.devices} Points in {account.homes} homes · last poll {poll}{error}</p>"
            f"{_disconnect_form(account.name) if account.disconnectable else ''}</li>"
        )
    return (
        '<section id="accounts"><h2>Accounts</h2><ul class="devices">'
        + "".join(items)
        + "</ul></section>"
    )


def _disconnect_form(name: str) -> str:
    return (
        '<form method="post" action="disconnect">'
        f'<input type="hidden" name="account" value="{_e(name)}">'
        f'<button type="submit">Disconnect {_e(name)}</button></form>'
    )
