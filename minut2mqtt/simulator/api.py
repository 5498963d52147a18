"""What every part of the simulated Minut API shares: its URL paths and the JSON-object type."""

from typing import Any, Final

JsonObject = dict[str, Any]
"""A JSON object as the API sends and the simulator stores it (homes, devices, events)."""

API_PREFIX: Final = "/v8"
TOKEN_PATH: Final = API_PREFIX + "/oauth/token"
AUTHORIZE_PATH: Final = API_PREFIX + "/oauth/authorize"
OAUTH_PATHS: Final = frozenset({TOKEN_PATH, AUTHORIZE_PATH})
"""The OAuth endpoints: no bearer token, no request budget, and spared by untargeted faults."""
