"""Commands from MQTT, carried out at Minut: one thread, one command at a time.

paho's thread hands each message on a command topic to `CommandRunner.submit`, which only notes
it: a burst on one control (a slider dragged) collapses to its last value before it is sent.
The runner finds the home or Point in the mirror (through the writer), checks the payload
against the control's row (`core/controls.py`), sends the API writes, reads the home or Point
back and hands it to the writer: entities show what Minut answered, never what was asked. Every
command gets an answer on `<base>/bridge/response`; a refusal is logged and counted too.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.controls import (
    DISARM,
    MAX_COMMAND_BYTES,
    SETTLING_ALARM_STATES,
    AlarmCommand,
    ApiWrite,
    CommandRefused,
    ControlSpec,
    control_value,
    controls_of_device,
    controls_of_home,
    shown_once_written,
)
from ..core.publishing import Lane, Publisher
from ..core.topics import Topics, topic_safe
from ..minut.errors import MinutApiError
from ..minut.models import Device, Home, MinutDataError, parse_device, parse_home
from ..minut.scheduler import Priority
from .writer import Writer

log = logging.getLogger(__name__)

FALLBACK_STATUSES = frozenset({404, 405})
"""An endpoint answering these does not exist here: the next alternative is tried."""
RETRIES = 2
"""A command that found Minut unreachable or failing (5xx) is tried this many more times."""
RETRY_SECONDS = 2.0
SETTLE_READS_SECONDS = (2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
"""After a command leaves a home arming or pending, it is read again after each of these delays
(2, 5, 10, 20, 50 and 110 s after the command) until it settles."""
BUDGET_PATIENCE_SECONDS = 15.0
"""A command that would wait longer than this for the request budget is refused, not queued:
whoever sent it learns at once, rather than seeing it happen minutes later."""
REFUSAL_LOG_SECONDS = 300.0
"""The same kind of refusal is logged as a warning at most this often."""
MAX_WAITING = 1000
"""Commands kept waiting at most (one per control): beyond, new ones are dropped and counted."""


class Budget(Protocol):
    def wait_needed(self) -> float: ...


class ApiClient(Protocol):
    @property
    def scheduler(self) -> Budget: ...

    def request(
        self, method: str, path: str, *, priority: Priority = ..., **kwargs: Any
    ) -> Any: ...


@dataclass(frozen=True)
class Command:
    topic: str
    kind: str
    """"home" or "device"."""
    subject: str
    """The home's or Point's id as it is in the topic."""
    key: str
    payload: bytes
    """Its first MAX_COMMAND_BYTES + 1 bytes: a longer one is refused anyway."""
    size: int


class CommandRunner:
    def __init__(
        self,
        writer: Writer,
        publisher: Publisher,
        topics: Topics,
        client_for: Callable[[str, str], ApiClient | None],
        *,
        alarm_code: str | None = None,
        on_result: Callable[[str, str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`client_for(kind, id)`: the API client of the account that holds the home or Point."""
        self._writer = writer
        self._publisher = publisher
        self._topics = topics
        self._client_for = client_for
        self._alarm_code = alarm_code
        self._on_result = on_result
        self._sleep = sleep
        self._monotonic = monotonic
        self._pending: OrderedDict[tuple[str, str, str], Command] = OrderedDict()
        self._settling: dict[str, float] = {}
        """Home id → when to read it again (it was arming or pending)."""
        self._settle_step: dict[str, int] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._endpoint_choice: dict[tuple[int, str], int] = {}
        """Which alternative of a control's write worked, by account (its client) and control."""
        self._refusals_logged: dict[str, float] = {}
        """By result (refused, failed): until when a new one is logged only as debug."""
        self.results: Counter[str] = Counter(ok=0, refused=0, failed=0)
        """Commands by outcome: ok, refused, failed (for /metrics)."""
        self._thread: threading.Thread | None = None

    # -- from other threads ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, topic: str, payload: bytes) -> None:
        """A message on a command topic (paho's thread: only noted here)."""
        target = self._topics.command_target(topic)
        if target is None:
            return
        command = Command(topic, *target, payload[: MAX_COMMAND_BYTES + 1], len(payload))
        key = (command.kind, command.subject, command.key)
        with self._wake:
            full = key not in self._pending and len(self._pending) >= MAX_WAITING
            if not full:
                self._pending[key] = command
                self._wake.notify()
        if full:  # a flood of commands to ever new topics: not kept, not answered
            self._count(command, "refused", f"more than {MAX_WAITING} commands waiting")

    def run_pending(self) -> None:
        """Carry out the waiting commands on the calling thread (tests)."""
        while (command := self._take(wait=False)) is not None:
            self._carry_out(command)

    # -- on the runner's thread --------------------------------------------------------------

    def _take(self, *, wait: bool) -> Command | None:
        with self._wake:
            while not self._stopping:
                if self._pending:
                    return self._pending.popitem(last=False)[1]
                due = min(self._settling.values(), default=None)
                if due is not None and due <= self._monotonic():
                    return None
                if not wait:
                    return None
                self._wake.wait(None if due is None else max(0.0, due - self._monotonic()))
            return None

    def _run(self) -> None:
        while not self._stopping:
            command = self._take(wait=True)
            if command is not None:
                self._carry_out(command)
            self._read_settling_homes()

    def _carry_out(self, command: Command) -> None:
        try:
            answer = self._execute(command)
        except CommandRefused as refusal:
            self._answer(command, "refused", str(refusal))
        except MinutApiError as error:
            self._answer(command, "failed", f"Minut answered: {error}")
        except MinutDataError as error:
            self._answer(command, "failed", f"Minut's answer is not usable: {error}")
        except Exception as error:  # a bug must not end the thread: say so and go on
            log.exception("command on %s failed", command.topic)
            self._answer(command, "failed", f"internal error: {error!r}")
        else:
            self._answer(command, "ok", None, answer)

    def _execute(self, command: Command) -> object:
        text = _payload_text(command)
        if command.kind == "home":
            home: Home = self._find(lambda mirror: mirror.homes, command.subject).home
            spec_h = _control(controls_of_home(home), command.key, "home")
            value = spec_h.parse(text)
            self._check_code(value)
            return self._write(spec_h, home, value, self._client_for("home", home.home_id))
        device: Device = self._find(lambda mirror: mirror.devices, command.subject).device
        spec_d = _control(controls_of_device(device), command.key, "Point")
        value = spec_d.parse(text)
        return self._write(spec_d, device, value, self._client_for("device", device.device_id))

    def _find(self, table: Callable[[Any], dict[str, Any]], subject: str) -> Any:
        def look_up(mirror: Any) -> Any:
            tracked = table(mirror)
            found = tracked.get(subject)
            if found is None:  # ids with characters a topic cannot carry
                found = next((t for key, t in tracked.items() if topic_safe(key) == subject), None)
            return found

        found = self._writer.ask(lambda: look_up(self._writer.mirror), urgent=True)
        if found is None:
            raise CommandRefused(f"no home or Point {subject!r} in the account")
        return found

    def _check_code(self, value: object) -> None:
        if not isinstance(value, AlarmCommand) or self._alarm_code is None:
            return
        if value.action != DISARM:
            return
        given = (value.code or "").encode()
        if not hmac.compare_digest(given, self._alarm_code.encode()):
            raise CommandRefused("wrong or missing code: disarming needs controls.alarm_code")

    def _write(
        self,
        spec: ControlSpec[Any],
        subject: Home | Device,
        value: object,
        client: ApiClient | None,
    ) -> object:
        if spec.read(subject) == shown_once_written(value):
            return control_value(spec, subject)  # already so: nothing is sent
        if client is None:
            raise CommandRefused("no Minut account holds it any more")
        self._send(spec.writes(subject, value), client, spec.key)
        if isinstance(subject, Home):
            home = self._read_home(client, subject.home_id)
            return control_value(spec, home)
        device = parse_device(_object(self._call(client, "GET", f"/devices/{subject.device_id}")))
        self._writer.apply_update(devices=[device])
        return control_value(spec, device)

    def _send(self, alternatives: tuple[ApiWrite, ...], client: ApiClient, key: str) -> None:
        """The first alternative the API has (the one that worked before, first)."""
        shape = (id(client), key)
        start = self._endpoint_choice.get(shape, 0)
        for index in range(start, len(alternatives)):
            write = alternatives[index]
            try:
                self._call(client, write.method, write.path, json=dict(write.body))
            except MinutApiError as error:
                if error.status in FALLBACK_STATUSES and index + 1 < len(alternatives):
                    what = f"{write.method} {write.path}"
                    log.info("%s answered %s: trying the next way", what, error.status)
                    continue
                raise
            if self._endpoint_choice.get(shape) != index:
                self._endpoint_choice[shape] = index
                if index:
                    log.info("Minut takes %s %s here: used from now on", write.method, write.path)
            return

    def _call(self, client: ApiClient, method: str, path: str, **kwargs: Any) -> Any:
        if (wait := client.scheduler.wait_needed()) > BUDGET_PATIENCE_SECONDS:
            raise CommandRefused(
                f"Minut's request budget is used up for {wait:.0f} s more (rate limited): "
                "nothing was sent, send it again then"
            )
        for attempt in range(RETRIES + 1):
            try:
                return client.request(method, path, priority=Priority.COMMAND, **kwargs)
            except MinutApiError as error:
                transient = error.status is None or error.status >= 500
                if not transient or attempt == RETRIES:
                    raise
                self._sleep(RETRY_SECONDS * (attempt + 1))
        raise AssertionError("unreachable")

    def _read_home(self, client: ApiClient, home_id: str) -> Home:
        home = parse_home(_object(self._call(client, "GET", f"/homes/{home_id}")))
        self._writer.apply_update(homes=[home])
        with self._wake:
            if home.alarm_status in SETTLING_ALARM_STATES:
                step = self._settle_step.get(home_id, -1) + 1
                if step < len(SETTLE_READS_SECONDS):
                    self._settle_step[home_id] = step
                    self._settling[home_id] = self._monotonic() + SETTLE_READS_SECONDS[step]
                    return home
            self._settle_step.pop(home_id, None)
            self._settling.pop(home_id, None)
        return home

    def _read_settling_homes(self) -> None:
        now = self._monotonic()
        with self._wake:
            due = [home_id for home_id, at in self._settling.items() if at <= now]
            for home_id in due:
                del self._settling[home_id]
        for home_id in due:
            client = self._client_for("home", home_id)
            try:
                if client is not None:
                    self._read_home(client, home_id)
            except (MinutApiError, MinutDataError) as error:
                log.info("reading home %s again after a command failed: %s", home_id, error)

    def _answer(
        self, command: Command, result: str, reason: str | None, value: object = None
    ) -> None:
        self._count(command, result, reason)
        document = {
            "topic": command.topic,
            f"{command.kind}_id": command.subject,
            "control": command.key,
            "command": _payload_text(command, strict=False)[:MAX_COMMAND_BYTES],
            "result": result,
            **({"reason": reason} if reason else {"state": value}),
        }
        if self._on_result is not None:
            outcome = f"{value}" if result == "ok" else f"{result}: {reason}"
            self._on_result(f"command {command.key}", f"{command.subject} → {outcome}")
        self._publisher.publish(
            self._topics.command_response,
            json.dumps(document, ensure_ascii=False, default=str),
            retain=False,
            lane=Lane.EVENTS,
        )

    def _count(self, command: Command, result: str, reason: str | None) -> None:
        """Count the outcome; a refusal or failure is logged, the first of its kind in
        REFUSAL_LOG_SECONDS as a warning (a flood of bad commands does not flood the log)."""
        with self._wake:
            self.results[result] += 1
            now = self._monotonic()
            first = now >= self._refusals_logged.get(result, float("-inf"))
            if first and result != "ok":
                self._refusals_logged[result] = now + REFUSAL_LOG_SECONDS
        if result == "ok":
            return
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "command on %s %s: %s%s",
            command.topic,
            result,
            reason,
            f" (more {result} commands in the next {REFUSAL_LOG_SECONDS / 60:.0f} minutes are "
            f"logged at debug level; every one is answered on the response topic)"
            if first
            else "",
        )


def _payload_text(command: Command, *, strict: bool = True) -> str:
    payload = command.payload
    if command.size > MAX_COMMAND_BYTES:
        if strict:
            raise CommandRefused(f"{command.size} bytes long: at most {MAX_COMMAND_BYTES}")
        payload = payload[:MAX_COMMAND_BYTES]
    try:
        return payload.decode()
    except UnicodeDecodeError:
        if strict:
            raise CommandRefused("the command is not UTF-8 text") from None
        return payload.decode(errors="replace")


def _control(specs: list[ControlSpec[Any]], key: str, what: str) -> ControlSpec[Any]:
    for spec in specs:
        if topic_safe(spec.key) == key:
            return spec
    known = ", ".join(spec.key for spec in specs) or "none"
    raise CommandRefused(f"this {what} has no control {key[:40]!r} (it has: {known})")


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise CommandRefused("Minut's answer was not an object")
    # Some APIs wrap the object: {"home": {...}} or {"device": {...}}
    for key in ("home", "device"):
        if isinstance(answer.get(key), dict) and len(answer) == 1:
            return dict(answer[key])
    return answer
