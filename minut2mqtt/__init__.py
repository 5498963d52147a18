"""minut2mqtt: Minut Point sensors, homes and events on MQTT, discovered by Home Assistant."""

__version__ = "0.1.0"
