"""The bridge's logic without I/O: the entity table, what the bridge believes, and the documents
and discovery configs it publishes. Nothing here imports paho, Flask, requests or waitress."""
