"""An MQTT broker (amqtt) running inside this process, for the zero-install demo and tests.

amqtt is asyncio-native; the broker gets its own event loop in a daemon thread so that the
rest of minut2mqtt (threads + paho) can use it like any external broker. It speaks MQTT 3.1.1
only and replays retained messages loosely (a client may get one twice, or for a filter it never
subscribed to): clients must connect with MQTTv311 and ignore what they did not subscribe to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError", "first_free_port"]

log = logging.getLogger(__name__)

# amqtt logs every connection and packet at INFO/DEBUG. `transitions`, its state-machine
# library, logs every state change at INFO: noise even when debugging minut2mqtt.
_AMQTT_LOGGER = "amqtt"
_TRANSITIONS_LOGGER = "transitions"
_SHUTDOWN_TIMEOUT = 5.0
_MQTT_311 = 4  # the protocol level in a CONNECT packet; the only one amqtt speaks
_PROTOCOL_NAMES = {3: "MQTT 3.1", 5: "MQTT 5"}


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be started (port taken, bad address, amqtt failure)."""


def _bind_error(host: str, port: int) -> OSError | None:
    """Why a listening socket could not be bound to host:port right now (None: it could).

    SO_REUSEADDR matches what brokers do, so a port whose old connections linger in TIME_WAIT
    (e.g. right after a broker restart) counts as free while one with a listener does not.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        return error
    family, socktype, proto, _canonname, address = infos[0]
    with socket.socket(family, socktype, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            return error
    return None


def _explain_bind_error(host: str, port: int, error: OSError) -> str:
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host {host!r} ({error.strerror}); check the host name"
    if error.errno == errno.EADDRINUSE:
        return (
            f"{host}:{port} is already in use (another MQTT broker?); "
            "stop it or choose another port"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; use 127.0.0.1 or 0.0.0.0"
    if error.errno == errno.EACCES:
        return f"no permission to listen on port {port}; ports below 1024 need privileges"
    return f"cannot listen on {host}:{port}: {error.strerror or error}"


def first_free_port(host: str, preferred: int, attempts: int = 20) -> int:
    """Return `preferred` if nothing listens on it, else the next free port after it.

    Tries preferred, preferred+1, ... (`attempts` ports in all) and raises EmbeddedBrokerError
    when every one of them is taken.
    """
    if not 1 <= preferred <= 65535:
        raise EmbeddedBrokerError(f"port must be 1-65535, got {preferred}")
    last = min(preferred + max(attempts, 1) - 1, 65535)
    for port in range(preferred, last + 1):
        error = _bind_error(host, port)
        if error is None:
            return port
        if error.errno != errno.EADDRINUSE:
            raise EmbeddedBrokerError(_explain_bind_error(host, port, error))
    raise EmbeddedBrokerError(
        f"no free port on {host} between {preferred} and {last}; "
        "stop whatever listens there or choose another port"
    )


def _quiet_amqtt_logging() -> None:
    """Keep amqtt's chatter out of the logs unless the caller debugs minut2mqtt.

    Loggers the caller configured explicitly (level set) are left alone.
    """
    quiet = [_TRANSITIONS_LOGGER]
    if not logging.getLogger("minut2mqtt").isEnabledFor(logging.DEBUG):
        quiet.append(_AMQTT_LOGGER)
    for name in quiet:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt 0.12 configuration: one TCP listener, anonymous clients, nothing else.

    Naming the plugins explicitly matters: the default set includes the $SYS plugin (which
    warns about psutil) and the packet loggers, and the legacy "auth"/"topic-check" sections
    raise DeprecationWarnings. No topic plugin means every topic is allowed.
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


class _SniffingReader(StreamReaderAdapter):  # type: ignore[misc]  # amqtt is untyped
    """Keeps the first bytes a client sends: the CONNECT packet's protocol level is among them."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self.head = bytearray()

    async def read(self, n: int = -1) -> bytes:
        data: bytes = await super().read(n)
        if len(self.head) < 16:
            self.head += data[: 16 - len(self.head)]
        return data


class _QuietWriter(StreamWriterAdapter):  # type: ignore[misc]  # amqtt is untyped
    """Closing a connection the client already dropped is not an error (amqtt 0.12.1 raises
    OSError ENOTCONN from write_eof() when a refused client hangs up before the CONNACK)."""

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            await super().close()


def _protocol_level(head: bytes) -> int | None:
    """The protocol level of the CONNECT packet `head` starts (None: not one, or too short)."""
    if not head or head[0] >> 4 != 1:
        return None
    index = 1
    while index < len(head) and head[index] & 0x80:  # the remaining length, 1-4 bytes
        index += 1
    index += 1
    if index + 2 > len(head):
        return None
    level_at = index + 2 + int.from_bytes(head[index : index + 2], "big")
    return head[level_at] if level_at < len(head) else None


class _Broker(Broker):  # type: ignore[misc]  # amqtt is untyped
    """amqtt's Broker with repairs to how it ends TCP connections (amqtt 0.12.1).

    - A client that goes away before sending CONNECT (a port probe, a health check) leaves
      its socket open: a descriptor leak and a ResourceWarning. stream_connected() returns
      only when the client's session is over, so closing the writer afterwards is safe.
    - shutdown() cancels each client's reader task and waits for it; on Python 3.11 that
      cancellation is lost when a packet arrives at the same moment (asyncio.wait_for), and
      shutdown() then hangs until the keep-alive expires. drop_clients() closes the sockets
      first, so every reader ends on EOF whatever happened to the cancellation.
    - A client refused for its protocol version (MQTT 5) that hangs up at once made amqtt
      raise OSError out of the connection handler: asyncio printed a traceback. Errors end
      the connection quietly now, and the refusal gets one line in minut2mqtt's log (amqtt's
      own log is off unless debugging).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client_writers: set[asyncio.StreamWriter] = set()
        self._client_tasks: set[asyncio.Task[Any]] = set()
        self._refused_hosts: set[str] = set()

    def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> Coroutine[Any, Any, None]:
        # A plain function: asyncio calls it from connection_made and runs the coroutine as a
        # task, so the connection is known to drop_clients() even before that task starts.
        self._client_writers.add(writer)
        return self._serve_client(reader, writer, listener_name)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._client_tasks.add(task)
        sniffer = _SniffingReader(reader)
        try:
            await self._client_connected(listener_name, sniffer, _QuietWriter(writer))
        except OSError as error:  # the client went away: nothing to report
            log.debug("embedded MQTT broker lost a client: %s", error)
        except Exception as error:  # one line in the log, not a traceback
            # an MQTT 5 CONNECT can trip amqtt's 3.1.1 decoder: _report_refusal covers that
            if _protocol_level(bytes(sniffer.head)) in (None, _MQTT_311):
                log.warning("embedded MQTT broker dropped a client after an error: %r", error)
        finally:
            self._report_refusal(_protocol_level(bytes(sniffer.head)), writer)
            writer.close()
            self._client_writers.discard(writer)
            if task is not None:
                self._client_tasks.discard(task)

    def _report_refusal(self, level: int | None, writer: asyncio.StreamWriter) -> None:
        """One line for a client amqtt refused for its protocol version (amqtt's own log is
        off). The first refusal from each host is a warning, later ones are debug messages."""
        if level is None or level == _MQTT_311:
            return
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        first = host not in self._refused_hosts
        self._refused_hosts.add(host)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "refused an %s client from %s: the embedded broker speaks MQTT 3.1.1 only",
            _PROTOCOL_NAMES.get(level, f"MQTT protocol level {level}"),
            host,
        )

    def bound_port(self) -> int:
        """The port the TCP listener bound (amqtt has no public accessor)."""
        port: int = self._servers["default"].instance.sockets[0].getsockname()[1]
        return port

    async def drop_clients(self, timeout: float) -> None:
        """Stop accepting, drop every client connection and let amqtt notice."""
        loop = asyncio.get_running_loop()
        servers = [server.instance for server in self._servers.values()]
        # Stop accepting but keep the servers open for a moment: on Python 3.11 a connection
        # accepted just before Server.close() fails to become a transport and its socket
        # leaks. Accepted connections reach connection_made within a few loop iterations.
        for server in servers:
            for sock in server.sockets:
                loop.remove_reader(sock.fileno())
        await asyncio.sleep(0.01)
        for server in servers:
            server.close()  # shutdown() closing it again is harmless
        for writer in list(self._client_writers):
            writer.transport.abort()
        if self._client_tasks:
            await asyncio.wait(set(self._client_tasks), timeout=timeout)


class EmbeddedBroker:
    """An amqtt broker on its own event loop in a daemon thread.

    Usage: `with EmbeddedBroker(port=0) as broker: connect(broker.host, broker.port)`;
    port 0 binds a free port, which `port` reports once started.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        if not 0 <= port <= 65535:
            raise EmbeddedBrokerError(f"port must be 0-65535 (0 picks a free one), got {port}")
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._stop_flag = threading.Event()  # covers stop() before the loop exists
        self._startup_error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker; return once it accepts TCP connections.

        Calling start() on a running broker does nothing. After stop() it can be started again
        on the same port (the one actually bound the first time). Retained messages do not
        survive a stop: there is no persistence.
        """
        if self.running:
            return
        bind_error = _bind_error(self.host, self.port)
        if bind_error is not None:
            reason = _explain_bind_error(self.host, self.port, bind_error)
            raise EmbeddedBrokerError(f"cannot start the embedded MQTT broker: {reason}")
        _quiet_amqtt_logging()
        self._started.clear()
        self._stop_flag.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._thread_main, name=f"amqtt-broker-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout):
            self.stop()
            raise EmbeddedBrokerError(
                f"the embedded MQTT broker did not start on {self.host}:{self.port} "
                f"within {timeout:g} s"
            )
        if self._startup_error is not None:
            error = self._startup_error
            self._thread.join(timeout)
            self._thread = None
            raise EmbeddedBrokerError(
                f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {error}"
            ) from error
        log.debug("embedded MQTT broker listening on %s:%d", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and join its thread. Safe to call more than once."""
        thread = self._thread
        if thread is None:
            return
        self._stop_flag.set()
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            # The loop may already be closing (startup failure); then there is nothing to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("embedded MQTT broker thread did not stop within %g s", timeout)
        self._thread = None
        log.debug("embedded MQTT broker on %s:%d stopped", self.host, self.port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        # asyncio.run also cancels whatever client-handler tasks amqtt leaves behind.
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(), which re-raises it
            if not self._started.is_set():
                self._startup_error = error
                self._started.set()
            else:
                log.exception("embedded MQTT broker crashed")
        finally:
            self._loop = None
            self._stop_requested = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        if self._stop_flag.is_set():
            self._stop_requested.set()
        # Built inside the running loop: amqtt creates futures and queues in __init__.
        broker = _Broker(_broker_config(self.host, self.port), loop=self._loop)
        await broker.start()
        try:
            if self.port == 0:
                self.port = broker.bound_port()
            self._started.set()
            await self._stop_requested.wait()
        finally:
            await broker.drop_clients(timeout=_SHUTDOWN_TIMEOUT)
            try:
                await asyncio.wait_for(broker.shutdown(), timeout=_SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "embedded MQTT broker did not shut down cleanly within %g s", _SHUTDOWN_TIMEOUT
                )
