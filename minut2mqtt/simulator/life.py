"""Life in the demo account: heartbeats that let readings wander and batteries drain, and
plausible random events, where paired states alternate (a disturbance is followed by its end),
thresholds follow the device's reactions, and a home with noise monitoring off hears none.

Both work on a HomeStore under SimulatedAccount's lock. `next_random_event` only decides what
happens; the account injects the event it returns, so webhooks hear of it like any other.
"""

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from .api import JsonObject
from .homes import STATE_ON_TO_OFF_EVENT, HomeStore, battery_voltage
from .timefmt import format_time, utc_now

DRIFT_STEP_BY_READING: Final[Mapping[str, float]] = {
    "temperature": 0.3,
    "humidity": 1.0,
    "sound": 3.0,
}
READING_BOUNDS: Final[Mapping[str, tuple[float, float]]] = {
    "humidity": (0.0, 100.0),
    "sound": (25.0, 120.0),
}
BATTERY_DRAIN_CHANCE_PER_DRIFT: Final = 0.02

RANDOM_EVENT_WEIGHTS: Final[Mapping[str, float]] = {
    "motion": 5,
    "button": 2,
    "temperature": 2,
    "sound": 2,
    "disturbance": 2,
    "alarm": 1,
    "tamper": 1,
    "glassbreak": 1,
    "battery": 0.3,
    "unknown": 0.3,
}
UNKNOWN_EVENT_TYPE: Final = "future_event_type"
HIGH_THRESHOLD_BY_EVENT: Final[Mapping[str, tuple[str, float, float]]] = {
    "avg_sound_high": ("sound_level_high", 75.0, 13.0),
    "temperature_high": ("temperature_high", 27.5, 3.5),
}
"""The reaction an event's threshold comes from, its value without one, and how far above it
a crossing reading may be."""


@dataclass(frozen=True)
class NextEvent:
    """An event for SimulatedAccount.inject_event; without `device_id` it is the home's."""

    event_type: str
    home_id: str
    device_id: str | None = None
    sensor_value: float | None = None

    def extra(self) -> JsonObject:
        return {} if self.sensor_value is None else {"sensor_value": self.sensor_value}


def drift(store: HomeStore, rng: random.Random, heartbeat_interval: timedelta) -> None:
    """A heartbeat for every online device (see SimulatedAccount.drift)."""
    now = utc_now()
    moment = format_time(now)
    for device in store.online_devices():
        latest = device.get("latest_sensor_values", {})
        for key, step in DRIFT_STEP_BY_READING.items():
            if key in latest:
                low, high = READING_BOUNDS.get(key, (-math.inf, math.inf))
                value = latest[key]["value"] + rng.uniform(-step, step)
                latest[key] = {"time": moment, "value": min(high, max(low, value))}
        percent = device["battery"]["percent"]
        if percent > 0 and rng.random() < BATTERY_DRAIN_CHANCE_PER_DRIFT:
            device["battery"] = {"percent": percent - 1, "voltage": battery_voltage(percent - 1)}
        device["last_heard_from_at"] = moment
        device["last_heartbeat_at"] = moment
        device["next_heartbeat_at"] = format_time(now + heartbeat_interval)


def next_random_event(store: HomeStore, rng: random.Random) -> NextEvent:
    """Pick a random online device and an event for it (or its home), updating the reading or
    battery the event reports (see SimulatedAccount.random_event)."""
    online = store.online_devices()
    if not online:
        raise LookupError("random_event needs at least one online device")
    device = rng.choice(online)
    device_id: str = device["device_id"]
    home_id: str = device["home"]
    ongoing: list[str] = device["ongoing_events"]
    kind = rng.choices(list(RANDOM_EVENT_WEIGHTS), weights=list(RANDOM_EVENT_WEIGHTS.values()))[0]
    match kind:
        case "temperature":
            return _threshold_event(
                store, rng, device, "temperature_high", "temperature", (20.0, 23.0)
            )
        case "sound":
            return _threshold_event(store, rng, device, "avg_sound_high", "sound", (35.0, 45.0))
        case "disturbance" if "disturbance_first_notice" in ongoing or _monitors_noise(
            store, home_id
        ):
            if "disturbance_first_notice" in ongoing:
                return NextEvent("disturbance_ended", home_id)
            return NextEvent(
                "disturbance_first_notice", home_id, sensor_value=rng.uniform(72.0, 85.0)
            )
        case "alarm":
            if "alarm_heard" in ongoing:
                return NextEvent("alarm_silenced", home_id)
            return NextEvent("alarm_heard", home_id, device_id)
        case "tamper":
            event_type = "tamper_mounted" if "tamper_removed" in ongoing else "tamper_removed"
        case "battery":
            store.set_battery(device_id, min(device["battery"]["percent"], rng.randint(5, 12)))
            event_type = "battery_low"
        case "button":
            event_type = "short_button_press"
        case "glassbreak":
            event_type = "glassbreak"
        case "unknown":
            event_type = UNKNOWN_EVENT_TYPE
        case _:
            event_type = "pir_motion"
    return NextEvent(event_type, home_id, device_id)


def _threshold_event(
    store: HomeStore,
    rng: random.Random,
    device: JsonObject,
    on_event: str,
    reading_key: str,
    normal_range: tuple[float, float],
) -> NextEvent:
    """Cross the threshold, or back to normal if `on_event` is ongoing, moving the reading."""
    reaction_type, threshold, spread = HIGH_THRESHOLD_BY_EVENT[on_event]
    for reaction in device.get("reactions", []):
        if reaction["type"] == reaction_type:
            threshold = reaction["value"]
    high_range = (threshold, threshold + spread)
    crossing_back = on_event in device["ongoing_events"]
    event_type = STATE_ON_TO_OFF_EVENT[on_event] if crossing_back else on_event
    value = rng.uniform(*(normal_range if crossing_back else high_range))
    if reading_key in device.get("latest_sensor_values", {}):
        store.set_reading(device["device_id"], reading_key, value, None)
    return NextEvent(event_type, device["home"], device["device_id"], sensor_value=value)


def _monitors_noise(store: HomeStore, home_id: str) -> bool:
    home = store.get_home(home_id)
    return home is not None and bool(home["disturbance_monitoring_active"])
