"""The bridge's status page: a snapshot of what the bridge knows, rendered as plain HTML.

`home_rows` reads the mirror (on the writer's thread), `page_snapshot` adds the bridge's
status; `render` is pure (snapshot in, HTML out), escapes every value, and needs nothing from
elsewhere: inline CSS, no script, readable on a phone. Nothing on the page is a secret: no
token, no client secret, no webhook secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ..core.entities import DEVICE_STATES, HOME_STATES, READINGS, reading_spec
from ..core.status import Status
from ..core.tracked import TrackedDevice, TrackedHome
from ..minut.models import Reading
from .account_rows import AccountRow, account_row, accounts_section
from .html_parts import STYLE
from .html_parts import definition_list as _dl
from .html_parts import escape as _e
from .html_parts import moment as _moment

READING_ORDER = {spec.key: index for index, spec in enumerate(READINGS)}
REFRESH_SECONDS_WHILE_CONNECTING = 3
"""The page reloads itself this often between connecting an account and its first poll."""


@dataclass(frozen=True)
class ReadingRow:
    name: str
    text: str
    stale: bool


@dataclass(frozen=True)
class DeviceRow:
    name: str
    model: str
    offline: bool
    readings: tuple[ReadingRow, ...]
    active_states: tuple[str, ...]
    last_heard: datetime | None


@dataclass(frozen=True)
class HomeRow:
    name: str
    alarm_status: str | None
    active_states: tuple[str, ...]
    devices: tuple[DeviceRow, ...]


@dataclass(frozen=True)
class AccountView:
    auth: Literal["client_credentials", "authorization_code"]
    connected: bool
    """authorization_code: tokens are held; client_credentials: always (the client's account)."""
    user_id: str | None = None
    since: datetime | None = None
    problem: str | None = None


@dataclass(frozen=True)
class PageSnapshot:
    account: AccountView
    homes: tuple[HomeRow, ...]
    last_poll: datetime | None
    last_poll_error: str | None
    last_webhook: datetime | None
    mqtt_connected: bool
    mqtt_broker: str
    requests_last_minute: int
    requests_per_minute: int
    stale_after: float
    now: datetime
    webhook_refusals: Mapping[str, int] = field(default_factory=dict)
    """Deliveries refused for not proving our hook sent them, by reason."""
    accounts: tuple[AccountRow, ...] = ()
    """Every account the bridge reads, when it reads more than one."""

    @property
    def awaiting_first_poll(self) -> bool:
        """An account was connected and not read since: the page reloads until it is."""
        account = self.account
        if not account.connected or account.auth != "authorization_code":
            return False
        return self.last_poll is None or (
            account.since is not None and self.last_poll < account.since
        )


# -- reading the bridge ---------------------------------------------------------------------------


def home_rows(
    devices: Mapping[str, TrackedDevice],
    homes: Mapping[str, TrackedHome],
    now: datetime,
    stale_after: float,
) -> tuple[HomeRow, ...]:
    """Every home with its Points, then the Points of no known home."""
    rows: list[HomeRow] = []
    placed: set[str] = set()
    for home_id, home in homes.items():
        members = [tracked for tracked in devices.values() if tracked.device.home_id == home_id]
        placed.update(tracked.device.device_id for tracked in members)
        rows.append(
            HomeRow(
                name=home.home.name,
                alarm_status=home.home.alarm_status,
                active_states=tuple(
                    spec.name for spec in HOME_STATES if spec.alert and home.flags.get(spec.key)
                ),
                devices=tuple(_device_row(tracked, now, stale_after) for tracked in members),
            )
        )
    homeless = [tracked for device_id, tracked in devices.items() if device_id not in placed]
    if homeless:
        rows.append(
            HomeRow(
                name="Points of no known home",
                alarm_status=None,
                active_states=(),
                devices=tuple(_device_row(tracked, now, stale_after) for tracked in homeless),
            )
        )
    return tuple(rows)


def page_snapshot(
    status: Status,
    homes: tuple[HomeRow, ...],
    account: AccountView,
    *,
    mqtt_broker: str,
    requests_per_minute: int,
    stale_after: float,
    now: datetime,
) -> PageSnapshot:
    return PageSnapshot(
        account=account,
        homes=homes,
        last_poll=status.last_poll,
        last_poll_error=status.last_poll_error,
        last_webhook=status.last_webhook,
        mqtt_connected=status.mqtt_connected,
        mqtt_broker=mqtt_broker,
        requests_last_minute=status.requests_last_minute,
        requests_per_minute=requests_per_minute,
        stale_after=stale_after,
        now=now,
        webhook_refusals=status.webhook_refusals,
        accounts=tuple(account_row(state) for state in status.accounts)
        if len(status.accounts) > 1
        else (),
    )


def _device_row(tracked: TrackedDevice, now: datetime, stale_after: float) -> DeviceRow:
    device = tracked.device
    readings = tracked.readings
    shown = sorted(
        (key for key in readings if reading_spec(key).enabled_by_default),
        key=lambda key: READING_ORDER.get(key, len(READING_ORDER)),
    )
    return DeviceRow(
        name=device.name,
        model=device.model,
        offline=device.offline,
        readings=tuple(_reading_row(key, readings[key], now, stale_after) for key in shown),
        active_states=tuple(
            spec.name for spec in DEVICE_STATES if spec.alert and tracked.flags.get(spec.key)
        ),
        last_heard=device.last_heard_from_at,
    )


def _reading_row(key: str, reading: Reading, now: datetime, stale_after: float) -> ReadingRow:
    spec = reading_spec(key)
    precision = spec.precision if spec.precision is not None else 2
    text = f"{reading.value:.{precision}f}"
    if spec.unit:
        text += f"\N{NO-BREAK SPACE}{spec.unit}" if spec.unit != "%" else spec.unit
    stale = reading.time is None or now - reading.time > timedelta(seconds=stale_after)
    return ReadingRow(spec.name, text, stale)


# -- rendering ------------------------------------------------------------------------------------


def render(snapshot: PageSnapshot) -> str:
    """The whole status page."""
    refresh = (
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS_WHILE_CONNECTING}">'
        if snapshot.awaiting_first_poll
        else ""
    )
    body = "".join(
        (
            "<h1>minut2mqtt</h1>",
            _account_section(snapshot),
            accounts_section(snapshot.accounts, snapshot.now),
            _bridge_section(snapshot),
            _homes_section(snapshot),
        )
    )
    return _document("minut2mqtt status", body, head=refresh)


def render_message(title: str, message: str, *, back: str = "./") -> str:
    """A small page saying what happened, with a way back to the status page."""
    body = (
        f"<h1>{_e(title)}</h1><p class=notice>{_e(message)}</p>"
        f'<p><a href="{_e(back)}">Back to the status page</a></p>'
    )
    return _document(title, body)


def _document(title: str, body: str, *, head: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head}<title>{_e(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _account_section(snapshot: PageSnapshot) -> str:
    account = snapshot.account
    rows: list[tuple[str, str]] = []
    button = ""
    if account.auth == "client_credentials":
        state = "the account that owns the OAuth client (client credentials)"
        rows.append(("Account", _e(state)))
    elif account.connected:
        rows.append(("Account", '<span class="ok" id="account-state">connected</span>'))
        if account.user_id:
            rows.append(("Minut user", _e(account.user_id)))
        if account.since:
            rows.append(("Since", _moment(account.since, snapshot.now)))
        button = _connect_form("Connect another Minut account", primary=False)
    elif account.problem:
        rows.append(("Account", '<span class="bad" id="account-state">connection lost</span>'))
        button = _connect_form("Reconnect Minut account", primary=True)
    else:
        rows.append(("Account", '<span class="bad" id="account-state">not connected</span>'))
        button = _connect_form("Connect Minut account", primary=True)
    notice = f'<p class="notice">{_e(account.problem)}</p>' if account.problem else ""
    if snapshot.awaiting_first_poll:
        notice += '<p class="meta">Connected: reading the homes and Points…</p>'
    return f'<section id="account"><h2>Minut account</h2>{notice}{_dl(rows)}{button}</section>'


def _connect_form(label: str, *, primary: bool) -> str:
    css = ' class="primary"' if primary else ""
    return (
        '<form method="post" action="connect">'
        f'<button type="submit" id="connect"{css}>{_e(label)}</button></form>'
    )


def _bridge_section(snapshot: PageSnapshot) -> str:
    poll = _moment(snapshot.last_poll, snapshot.now) if snapshot.last_poll else "not yet"
    if snapshot.last_poll_error:
        poll += f'<br><span class="bad">last attempt failed: {_e(snapshot.last_poll_error)}</span>'
    webhook = (
        _moment(snapshot.last_webhook, snapshot.now) if snapshot.last_webhook else "none received"
    )
    mqtt_state = (
        '<span class="ok">connected</span>'
        if snapshot.mqtt_connected
        else '<span class="bad">not connected</span>'
    )
    rows = [
        ("Last poll", poll),
        ("Last webhook", webhook),
        *_refusals_row(snapshot.webhook_refusals),
        ("MQTT broker", f"{mqtt_state} ({_e(snapshot.mqtt_broker)})"),
        (
            "API budget",
            f"{snapshot.requests_last_minute} of {snapshot.requests_per_minute} requests "
            "in the last minute (minut.requests_per_minute; Minut allows 120)",
        ),
    ]
    return f'<section id="bridge"><h2>Bridge</h2>{_dl(rows)}</section>'


def _refusals_row(refusals: Mapping[str, int]) -> list[tuple[str, str]]:
    if not refusals:
        return []
    counts = ", ".join(
        f"{_e(reason.replace('_', ' '))}: {count}" for reason, count in sorted(refusals.items())
    )
    return [
        (
            "Refused deliveries",
            f'<span class="bad">{counts}</span> (their events are pulled from Minut; see '
            "Troubleshooting in the README)",
        )
    ]


def _homes_section(snapshot: PageSnapshot) -> str:
    if not snapshot.homes:
        return '<h2>Homes</h2><p class="meta">No homes read yet.</p>'
    return (
        '<h2>Homes</h2><div id="homes">'
        + "".join(_home(home, snapshot.now) for home in snapshot.homes)
        + "</div>"
    )


def _home(home: HomeRow, now: datetime) -> str:
    parts = [f"<article><h3>{_e(home.name)}</h3>"]
    if home.alarm_status is not None:
        parts.append(f'<p class="meta">Alarm: {_e(home.alarm_status.replace("_", " "))}</p>')
    parts.append(_badges(home.active_states))
    if home.devices:
        parts.append('<ul class="devices">')
        parts.extend(_device(device, now) for device in home.devices)
        parts.append("</ul>")
    else:
        parts.append('<p class="meta">No Points.</p>')
    parts.append("</article>")
    return "".join(parts)


def _device(device: DeviceRow, now: datetime) -> str:
    rows = [
        (
            _e(reading.name),
            _e(reading.text) + (' <span class="stale">(stale)</span>' if reading.stale else ""),
        )
        for reading in device.readings
    ]
    readings = _dl(rows) if rows else '<p class="meta">No readings.</p>'
    offline = ' <span class="bad">offline</span>' if device.offline else ""
    heard = f"heard {_moment(device.last_heard, now)}" if device.last_heard else "never heard"
    return (
        f"<li><h4>{_e(device.name)}{offline}</h4>{readings}{_badges(device.active_states)}"
        f'<p class="meta">{_e(device.model)} · {heard}</p></li>'
    )


def _badges(names: tuple[str, ...]) -> str:
    return "".join(f'<span class="badge">{_e(name)}</span>' for name in names)
