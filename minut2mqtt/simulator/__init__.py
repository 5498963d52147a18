"""A Minut API simulator for tests and `minut2mqtt demo`; the bridge itself never imports it.

account = demo_account()
with SimulatorServer(account) as server:
    ...  # point a client at server.base_url, script the account meanwhile
"""

from .account import SimulatedAccount
from .app import create_app
from .scenario import demo_account
from .server import SimulatorServer
from .webhooks import SIGNATURE_HEADER, TOKEN_HEADER

__all__ = [
    "SIGNATURE_HEADER",
    "TOKEN_HEADER",
    "SimulatedAccount",
    "SimulatorServer",
    "create_app",
    "demo_account",
]
