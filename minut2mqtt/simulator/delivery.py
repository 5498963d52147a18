"""Webhook deliveries: POSTed in order by one background worker, never retried."""

import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

DELIVERY_TIMEOUT_SECONDS = 5.0

DeliveryOutcome = int | str
"""The HTTP status the receiver answered, or the name of the exception the POST raised."""


@dataclass(frozen=True)
class PendingDelivery:
    hook_id: str
    url: str
    body: bytes
    headers: Mapping[str, str]


class DeliveryWorker:
    """A FIFO of deliveries served by a single daemon thread, started on first use."""

    def __init__(
        self,
        on_delivered: Callable[[PendingDelivery, DeliveryOutcome], None],
        timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        self._on_delivered = on_delivered
        self._timeout_seconds = timeout_seconds
        self._queue: queue.Queue[PendingDelivery] = queue.Queue()
        self._unfinished = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, delivery: PendingDelivery) -> None:
        with self._idle:
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._deliver_forever, name="minut-sim-webhooks", daemon=True
                )
                self._thread.start()
        self._queue.put(delivery)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted delivery was attempted; False if `timeout` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    def _deliver_forever(self) -> None:
        while True:
            delivery = self._queue.get()
            outcome = self._post(delivery)
            try:
                self._on_delivered(delivery, outcome)
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._idle.notify_all()

    def _post(self, delivery: PendingDelivery) -> DeliveryOutcome:
        try:
            response = requests.post(
                delivery.url,
                data=delivery.body,
                headers=dict(delivery.headers),
                timeout=self._timeout_seconds,
            )
        except Exception as error:  # any failure is an outcome to record, not a crash
            return type(error).__name__
        response.close()
        return response.status_code
