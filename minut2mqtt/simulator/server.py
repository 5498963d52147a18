"""Serve a SimulatedAccount over HTTP with waitress, on a background thread."""

from types import TracebackType
from typing import Self

from ..web.server import WILDCARD_HOSTS, BackgroundServer
from .account import SimulatedAccount
from .api import API_PREFIX
from .app import create_app

SERVER_THREADS = 8


class SimulatorServer:
    """The Minut API simulator on `host:port` (port 0 picks a free one); a context manager."""

    def __init__(self, account: SimulatedAccount, host: str = "127.0.0.1", port: int = 0) -> None:
        self.account = account
        self.host = host
        self._requested_port = port
        self._server: BackgroundServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._server.port

    @property
    def root_url(self) -> str:
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, including the version prefix: http://127.0.0.1:PORT/v8."""
        return self.root_url + API_PREFIX

    def start(self) -> None:
        """Bind, listen and serve on a daemon thread; returns once connections are accepted."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = BackgroundServer(
            create_app(self.account),
            self.host,
            self._requested_port,
            threads=SERVER_THREADS,
            ident="minut-simulator",
        )
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
