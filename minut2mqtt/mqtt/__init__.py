"""The broker edge: the paho-mqtt publisher, its outbox on disk, TLS and pacing."""
