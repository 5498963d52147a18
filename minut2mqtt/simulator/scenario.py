"""A realistic demo account: two homes, five Points, their thresholds, guests, and a little
history."""

from datetime import UTC, datetime, time, timedelta

from .account import SimulatedAccount
from .thresholds import default_quiet_hours, default_reactions, reaction
from .timefmt import utc_now

LEGACY_READINGS_LAST_SEEN = datetime(2021, 3, 2, 7, 41, 12, 512_000, tzinfo=UTC)
DEMO_ALARM_GRACE_SECONDS = 5.0
"""Long enough to see a home "arming" in the demo, short enough to wait for."""


def demo_account(
    *,
    client_id: str = "sim-client",
    client_secret: str = "sim-secret",
    heartbeat_interval: int = 3600,
    alarm_grace_seconds: float = DEMO_ALARM_GRACE_SECONDS,
) -> SimulatedAccount:
    """ "Beach house" (Hallway, Living room, Bedroom) and "City flat" (Kitchen, Office).

    The Bedroom is an old Point v1 still carrying `pressure` and `part_als` from 2021, the
    Kitchen is offline, and the Office was just installed and has no `latest_sensor_values`.
    Every Point has the default noise thresholds; see `_add_thresholds` and `_add_guests` for
    the rest of the settings and the stays.
    """
    account = SimulatedAccount(
        client_id=client_id,
        client_secret=client_secret,
        heartbeat_interval=heartbeat_interval,
        alarm_grace_seconds=alarm_grace_seconds,
    )
    account.add_home("beach-house", "Beach house", timezone="Europe/Stockholm")
    account.add_home("city-flat", "City flat", timezone="Europe/Stockholm", alarm_status="on")

    account.add_device(
        "point-hallway",
        "beach-house",
        "Hallway",
        firmware="2.13.1",
        battery_percent=87,
        readings={
            "temperature": 21.437519073486328,
            "humidity": 44.82361602783203,
            "sound": 38.51002502441406,
            "accelerometer_z": -1.0029296875,
        },
    )
    account.add_device(
        "point-living-room",
        "beach-house",
        "Living room",
        firmware="2.13.1",
        battery_percent=64,
        readings={
            "temperature": 22.081298828125,
            "humidity": 41.20914840698242,
            "sound": 42.93721389770508,
        },
    )
    account.add_device(
        "point-bedroom",
        "beach-house",
        "Bedroom",
        hardware_version=1,
        firmware="1.29.4",
        battery_percent=31,
        readings={
            "temperature": 19.76409912109375,
            "humidity": 51.6475715637207,
            "sound": 33.02471160888672,
        },
    )
    account.set_reading("point-bedroom", "pressure", 1013.2435, time=LEGACY_READINGS_LAST_SEEN)
    account.set_reading("point-bedroom", "part_als", 118.0, time=LEGACY_READINGS_LAST_SEEN)

    account.add_device(
        "point-kitchen",
        "city-flat",
        "Kitchen",
        firmware="2.12.0",
        battery_percent=9,
        readings={
            "temperature": 23.9130859375,
            "humidity": 58.39111328125,
            "sound": 47.20013427734375,
        },
        offline=True,
    )
    account.add_device(
        "point-office", "city-flat", "Office", firmware="2.13.1", battery_percent=100
    )

    _add_thresholds(account)
    _add_guests(account)
    _add_recent_history(account)
    return account


def _add_thresholds(account: SimulatedAccount) -> None:
    """The Beach house is a rental with quiet hours; the Living room also watches heat and damp,
    and the Office carries a reaction type no bridge knows yet."""
    for device in account.list_devices():
        account.set_reactions(device["device_id"], default_reactions())
    for device_id in ("point-hallway", "point-living-room", "point-bedroom"):
        account.update_device(device_id, {"quiet_hours": default_quiet_hours(enabled=True)})
    account.update_device(
        "point-living-room",
        {
            "reactions": [
                reaction("sound_level_high", 80, 900),
                reaction("temperature_high", 28),
                reaction("humidity_high", 70),
            ]
        },
    )
    account.set_reactions(
        "point-office", [*default_reactions(), reaction("future_reaction_type", 3)]
    )
    account.update_device("point-office", {"quiet_hours": default_quiet_hours()})


def _add_guests(account: SimulatedAccount) -> None:
    """The Beach house: a stay now and the next one; the City flat: one past, one to come."""
    today = utc_now().date()

    def at(days: int, hour: int) -> datetime:
        return datetime.combine(today + timedelta(days=days), time(hour), tzinfo=UTC)

    account.add_guest(
        "beach-house", "Alex Lindqvist", at(-2, 14), at(2, 10), phone_number="+46701234567"
    )
    account.add_guest("beach-house", "Sam Okafor", at(4, 14), at(9, 10), phone_number=None)
    account.add_guest("city-flat", "Robin Berg", at(-9, 13), at(-6, 9), phone_number="+46709876543")
    account.add_guest("city-flat", "Kim Tanaka", at(1, 15), at(3, 11), phone_number="+4670555012")


def _add_recent_history(account: SimulatedAccount) -> None:
    now = utc_now()
    account.inject_event(
        "pir_motion",
        home_id="beach-house",
        device_id="point-hallway",
        created_at=now - timedelta(hours=5, minutes=12),
    )
    account.inject_event(
        "disturbance_first_notice",
        home_id="beach-house",
        created_at=now - timedelta(hours=3, minutes=40),
        sensor_value=78.4,
    )
    account.inject_event(
        "disturbance_ended",
        home_id="beach-house",
        created_at=now - timedelta(hours=3, minutes=18),
    )
    account.inject_event(
        "battery_low",
        home_id="city-flat",
        device_id="point-kitchen",
        created_at=now - timedelta(hours=7),
    )
    account.inject_event(
        "device_offline",
        home_id="city-flat",
        device_id="point-kitchen",
        created_at=now - timedelta(hours=5),
    )
