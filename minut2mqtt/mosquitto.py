"""Mosquitto as a child process with a generated config: the demo's broker where it is installed.

Mosquitto speaks MQTT 5 (which Home Assistant will require of its broker from 2027.1) and 3.1.1;
the embedded amqtt broker (embedded_broker.py) is the fallback on a machine without it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from .embedded_broker import EmbeddedBrokerError, first_free_port

STARTUP_TIMEOUT = 10.0


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None when it is not installed (Debian puts it in sbin)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access("/usr/sbin/mosquitto", os.X_OK):
        return "/usr/sbin/mosquitto"
    return None


class MosquittoProcess:
    """`mosquitto -c <work_dir>/mosquitto.conf` listening on host:port until stop().

    `extra_config` lines follow the listener (a TLS listener, persistence…); the broker's log
    is `log_path`. Raises EmbeddedBrokerError when it cannot start.
    """

    def __init__(
        self,
        work_dir: Path,
        host: str,
        port: int,
        *,
        binary: str | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise EmbeddedBrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = found
        self.host = host
        self.port = port
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = work_dir / "mosquitto.conf"
        self.log_path = work_dir / "mosquitto.log"
        self.output_path = work_dir / "mosquitto.out"
        self.extra_config = list(extra_config)
        self._process: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        lines = [
            "persistence false",
            "allow_anonymous true",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            "set_tcp_nodelay true",  # see config/mosquitto.conf
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", who cannot write the log here.
            lines.append(f"user {getpass.getuser()}")
        lines.append(f"listener {self.port} {self.host}")
        lines.extend(self.extra_config)
        return "\n".join(lines) + "\n"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        # Fails clearly if something else listens there (the readiness probe could not tell).
        first_free_port(self.host, self.port, attempts=1)
        self.config_path.write_text(self.config_text())
        with self.output_path.open("ab") as output:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        process = self._process
        if not wait_until_listening(
            self.host, self.port, STARTUP_TIMEOUT, lambda: process.poll() is None
        ):
            self.stop()
            raise EmbeddedBrokerError(
                f"mosquitto did not start on {self.host}:{self.port}:\n{self.diagnostics()}"
            )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def diagnostics(self) -> str:
        """The tail of mosquitto's output and log, for error messages."""
        parts = []
        for path in (self.output_path, self.log_path):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-20:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts) or "(no output)"

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


def wait_until_listening(
    host: str, port: int, timeout: float, still_starting: Callable[[], bool] = lambda: True
) -> bool:
    """Poll until host:port accepts TCP connections; False on timeout or if startup gave up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and still_starting():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
