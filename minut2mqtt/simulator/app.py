"""The Flask app serving a SimulatedAccount as the Minut v8 HTTP API: the request gate
(gate.py) in front of the OAuth endpoints (oauth_endpoints.py), the data endpoints
(data_endpoints.py) and the ones that change homes, devices and guests (write_endpoints.py)."""

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from .account import SimulatedAccount
from .data_endpoints import add_data_routes
from .gate import install_gate
from .oauth_endpoints import add_oauth_routes
from .write_endpoints import add_write_routes


def create_app(account: SimulatedAccount) -> Flask:
    app = Flask(__name__)
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    install_gate(app, account)
    add_oauth_routes(app, account)
    add_data_routes(app, account)
    add_write_routes(app, account)
    return app
