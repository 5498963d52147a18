"""`/metrics` in Prometheus' text format, read from the bridge's status at each scrape.

What concerns one Minut account (polls, API answers, 429s, its budget, whether it answers) has
an `account` label (`default` for the account of `minut.client_id`)."""

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
        accounts = now.accounts
        polls = CounterMetricFamily(
            f"{PREFIX}_polls", "Polls of the Minut API", labels=["account", "outcome"]
        )
        responses = CounterMetricFamily(
            f"{PREFIX}_api_requests",
            "Minut API requests by answer status (token requests not included)",
            labels=["account", "status"],
        )
        for account in accounts:
            for outcome, count in sorted(account.polls.items()):
                polls.add_metric([account.name, outcome], count)
            for status, count in sorted(account.api_responses.items()):
                responses.add_metric([account.name, status], count)
        yield polls
        yield responses
        yield _by_account(
            CounterMetricFamily,
            "api_rate_limited",
            "429 answers from the Minut API",
            {a.name: a.rate_limited for a in accounts},
        )
        yield _by_account(
            GaugeMetricFamily,
            "api_requests_last_minute",
            "Minut API requests sent in the last minute (the API allows 120 per client)",
            {a.name: a.requests_last_minute for a in accounts},
        )
        yield _by_account(
            GaugeMetricFamily,
            "minut_up",
            "1 while the account's Minut API answers",
            {a.name: a.minut_connected for a in accounts},
        )
        yield _by_account(
            GaugeMetricFamily,
            "account_devices",
            "Points in the account at its last poll",
            {a.name: a.devices for a in accounts},
        )
        yield _by_account(
            GaugeMetricFamily,
            "last_poll_timestamp_seconds",
            "Unix time of the account's last successful poll",
            {a.name: a.last_poll.timestamp() for a in accounts if a.last_poll is not None},
        )
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
        yield _labelled_counter(
            "commands", "Commands from MQTT by result: ok, refused, failed", "result", now.commands
        )
        yield _gauge("devices", "Points the bridge shows, every account together", now.devices)
        yield _gauge("homes", "Homes the bridge shows, every account together", now.homes)


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


def _by_account(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    values: Mapping[str, float],
) -> Metric:
    family = kind(f"{PREFIX}_{name}", documentation, labels=["account"])
    for account, value in values.items():
        family.add_metric([account], float(value))
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=float(value))
