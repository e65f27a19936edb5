"""Prometheus metrics at ``GET /metrics``, read from the gateway's stages when scraped.

Stages keep plain counters (``Limits.failures``, ``Limits.refusals``…) and know nothing of
Prometheus; this collector turns them into metric families at scrape time, so the request
path pays for no metric objects. Each gateway has its own registry (several gateways can
share one process, as the tests do).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class LimitsCollector(Collector):
    """The limits stage: refusals by reason, limiter outages, budget alerts, queued calls."""

    def __init__(self, limits: Any) -> None:
        self._limits = limits

    def collect(self) -> Iterator[Metric]:
        limits = self._limits
        unavailable = CounterMetricFamily(
            "sluice_limiter_unavailable", "Limiter (Redis) round trips that failed or timed out, by the policy applied",
            labels=["policy"])
        unavailable.add_metric([limits.settings.redis_failure], limits.failures)
        yield unavailable
        refusals = CounterMetricFamily("sluice_limit_refusals", "Calls refused by a limit or budget, by reason",
                                       labels=["reason"])
        for reason, count in sorted(limits.refusals.items()):
            refusals.add_metric([reason], count)
        yield refusals
        yield CounterMetricFamily("sluice_budget_alerts", "Calls that crossed a budget's alert threshold",
                                  value=limits.alerts)
        waiting = GaugeMetricFamily("sluice_limit_queue_waiting", "Calls waiting for a model's capacity",
                                    labels=["model"])
        for alias, count in limits.queue.waiting_by_alias().items():
            waiting.add_metric([alias], count)
        yield waiting


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)

    def watch_limits(self, limits: Any) -> None:
        self.registry.register(LimitsCollector(limits))

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "GatewayMetrics", "LimitsCollector"]
