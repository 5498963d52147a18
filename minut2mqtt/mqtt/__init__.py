"""The MQTT side: topics, payloads, Home Assistant discovery and the publishers."""
