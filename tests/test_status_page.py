"""The status page's HTML: what it says in each situation, escaped, self-contained."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from minut2mqtt.web.status_page import (
    AccountView,
    DeviceRow,
    HomeRow,
    PageSnapshot,
    ReadingRow,
    render,
    render_message,
)

NOW = datetime(2026, 11, 23, 16, 20, tzinfo=UTC)
HALLWAY = DeviceRow(
    name="Hallway",
    model="Point v2",
    offline=False,
    readings=(
        ReadingRow("Temperature", "21.4\N{NO-BREAK SPACE}°C", stale=False),
        ReadingRow("Humidity", "45%", stale=True),
    ),
    active_states=("Motion",),
    last_heard=NOW - timedelta(minutes=3),
)


def snapshot(**changes: object) -> PageSnapshot:
    base = PageSnapshot(
        account=AccountView("authorization_code", True, "user-1", NOW - timedelta(hours=2)),
        homes=(HomeRow("Beach house", "off", (), (HALLWAY,)),),
        last_poll=NOW - timedelta(seconds=40),
        last_poll_error=None,
        last_webhook=None,
        mqtt_connected=True,
        mqtt_broker="broker.lan:1883",
        requests_last_minute=3,
        requests_per_minute=100,
        stale_after=7200,
        now=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_connected_account_with_its_homes_points_and_bridge_state():
    html = render(snapshot())
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert ">connected<" in html and "user-1" in html
    assert "Beach house" in html and "Alarm: off" in html
    assert "Hallway" in html and "21.4\N{NO-BREAK SPACE}°C" in html
    assert '45% <span class="stale">(stale)</span>' in html
    assert '<span class="badge">Motion</span>' in html
    assert ">2026-11-23 16:19:20 UTC</time> (40 s ago)" in html
    assert "none received" in html  # no webhook yet
    assert "3 of 100 requests" in html
    assert "broker.lan:1883" in html
    assert "Connect another Minut account" in html
    assert 'http-equiv="refresh"' not in html


def test_not_connected_offers_the_connect_button():
    html = render(snapshot(account=AccountView("authorization_code", False), homes=()))
    assert "not connected" in html
    assert '<form method="post" action="connect">' in html
    assert "Connect Minut account" in html
    assert "No homes read yet." in html


def test_a_lost_grant_says_why_and_offers_to_reconnect():
    lost = AccountView("authorization_code", False, "user-1", None, "Minut no longer accepts it")
    html = render(snapshot(account=lost))
    assert "connection lost" in html and "Minut no longer accepts it" in html
    assert "Reconnect Minut account" in html


def test_client_credentials_has_nothing_to_connect():
    html = render(snapshot(account=AccountView("client_credentials", True)))
    assert "client credentials" in html and "<form" not in html


def test_the_page_reloads_itself_until_the_connected_account_is_read():
    just_connected = AccountView("authorization_code", True, "user-1", NOW)
    waiting = render(snapshot(account=just_connected, last_poll=NOW - timedelta(minutes=5)))
    assert '<meta http-equiv="refresh" content="3">' in waiting
    assert "reading the homes and Points" in waiting
    read = render(snapshot(account=just_connected, last_poll=NOW + timedelta(seconds=1)))
    assert 'http-equiv="refresh"' not in read


def test_failures_show_in_words():
    html = render(snapshot(mqtt_connected=False, last_poll_error="GET /devices: HTTP 503"))
    assert "not connected" in html and "last attempt failed: GET /devices: HTTP 503" in html


def test_every_value_from_minut_is_escaped():
    evil = "<script>alert(1)</script>"
    device = replace(HALLWAY, name=evil, model='"><img src=x>', active_states=(evil,))
    home = HomeRow(evil, evil, (evil,), (device,))
    account = AccountView("authorization_code", True, evil, NOW, evil)
    html = render(snapshot(homes=(home,), account=account, last_poll_error=evil))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_nothing_is_loaded_from_elsewhere():
    html = render(snapshot())
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r"""(src|href|action)=["']?(https?:)?//""", html)


def test_a_message_page_escapes_and_leads_back():
    html = render_message("Minut account not connected", "bad <state>", back="../")
    assert "bad &lt;state&gt;" in html and 'href="../"' in html
