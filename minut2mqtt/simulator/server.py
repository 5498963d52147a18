"""Serve a SimulatedAccount over HTTP with waitress, on a background thread."""

import socket
import threading
from types import TracebackType
from typing import Self

from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

from .account import API_PREFIX, SimulatedAccount
from .app import create_app

LOOP_WAKE_SECONDS = 0.5
SERVER_THREADS = 8
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


class SimulatorServer:
    """The Minut API simulator on `host:port` (port 0 picks a free one); a context manager."""

    def __init__(self, account: SimulatedAccount, host: str = "127.0.0.1", port: int = 0) -> None:
        self.account = account
        self.host = host
        self._requested_port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return int(self._server.getsockname()[1])

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
        socket_map: dict[int, socket.socket] = {}
        server = create_server(
            create_app(self.account),
            map=socket_map,
            host=self.host,
            port=self._requested_port,
            threads=SERVER_THREADS,
            ident="minut-simulator",
        )
        if not isinstance(server, BaseWSGIServer):
            raise RuntimeError(f"expected one listening socket for {self.host!r}")
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(server, socket_map), name="minut-simulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.pull_trigger()
        thread.join(timeout=10)
        self._server = None
        self._thread = None

    def _serve(self, server: BaseWSGIServer, socket_map: dict[int, socket.socket]) -> None:
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=LOOP_WAKE_SECONDS, map=socket_map, count=1)
        finally:
            server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(socket_map)

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
