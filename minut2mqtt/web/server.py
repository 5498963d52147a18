"""A WSGI app served by waitress on a background thread, with a clean, race-free stop."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

LOOP_WAKE_SECONDS = 0.5
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
"""Hosts that mean "every interface": reach such a listener at 127.0.0.1 from this machine."""


def cannot_listen(host: str, port: int, error: OSError) -> str:
    """Why the webhook listener could not start, in the settings' words."""
    return f"webhook.host/webhook.port {host}:{port}: cannot listen there ({error.strerror})"


def loopback_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1, for a server made later (waitress starts its
    worker threads as soon as it makes one)."""
    bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    bound.bind(("127.0.0.1", 0))
    return bound


class BackgroundServer:
    """Serves `app` on `host:port` (port 0 picks a free one) until stop()."""

    def __init__(
        self,
        app: Any,
        host: str = "",
        port: int = 0,
        *,
        threads: int = 4,
        ident: str,
        bound: socket.socket | None = None,
    ) -> None:
        """`bound`: a socket bound already (by `loopback_socket`), instead of `host` and `port`."""
        self._socket_map: dict[int, socket.socket] = {}
        where = {"sockets": [bound]} if bound is not None else {"host": host, "port": port}
        # Proxy headers reach the app: the page refuses a request that came through a proxy
        # (waitress would remove them, and a proxy on this machine would look like a browser).
        server = create_server(
            app,
            map=self._socket_map,
            threads=threads,
            ident=ident,
            clear_untrusted_proxy_headers=False,
            **where,
        )
        if not isinstance(server, BaseWSGIServer):
            raise RuntimeError(f"expected one listening socket for {host!r}")
        self._server = server
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=ident, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._server.close()  # never started: give the port back
            return
        self._stopping.set()
        with contextlib.suppress(OSError):  # the loop may have closed the trigger already
            self._server.pull_trigger()
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        # Looping here, not in waitress's run(), lets stop() end the loop before sockets close.
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=LOOP_WAKE_SECONDS, map=self._socket_map, count=1)
        finally:
            self._server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(self._socket_map)
