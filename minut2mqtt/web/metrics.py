"""`/metrics` in Prometheus' text format, read from the bridge's status at each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.status import Status

PREFIX = "minut2mqtt"


class _StatusCollector(Collector):
    def __init__(self, snapshot: Callable[[], Status]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        now = self._snapshot()
        yield _labelled_counter("polls", "Polls of the Minut API", "outcome", now.polls)
        yield _labelled_counter(
            "api_requests",
            "Minut API requests by answer status (token requests not included)",
            "status",
            now.api_responses,
        )
        yield _counter("api_rate_limited", "429 answers from the Minut API", now.rate_limited)
        yield _gauge(
            "api_requests_last_minute",
            "Minut API requests sent in the last minute (the API allows 120)",
            now.requests_last_minute,
        )
        yield _gauge("minut_up", "1 while the Minut API answers", now.minut_connected)
        yield _labelled_counter(
            "webhooks", "Webhook deliveries by outcome", "outcome", now.webhook_deliveries
        )
        yield _labelled_counter(
            "webhooks_refused",
            "Deliveries with the right path secret that did not prove our hook sent them",
            "reason",
            now.webhook_refusals,
        )
        yield _counter("events_published", "Minut events published on MQTT", now.events_published)
        yield _counter(
            "events_pulled", "Events published from a pull (no webhook had them)", now.events_pulled
        )
        yield _gauge("mqtt_up", "1 while connected to the MQTT broker", now.mqtt_connected)
        yield _counter("mqtt_reconnects", "Connections to the broker lost", now.mqtt_reconnects)
        yield _gauge(
            "publish_queue", "Messages waiting for the broker's acknowledgement", now.publish_queue
        )
        yield _gauge("devices", "Points in the Minut account", now.devices)
        yield _gauge("homes", "Homes in the Minut account", now.homes)
        if now.last_poll is not None:
            yield _gauge(
                "last_poll_timestamp_seconds",
                "Unix time of the last successful poll",
                now.last_poll.timestamp(),
            )


def metrics_view(snapshot: Callable[[], Status]) -> Callable[[], Response]:
    """A Flask view serving the metrics of `snapshot` (its own registry: no process metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(snapshot))

    def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return metrics


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _labelled_counter(
    name: str, documentation: str, label: str, values: Mapping[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=[label])
    for label_value, count in sorted(values.items()):
        family.add_metric([label_value], count)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=float(value))
