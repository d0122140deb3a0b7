"""Process metrics in the Prometheus format: RPCs, durations, cache lookups and breaker states.

Every service process has one registry. The admin service returns it as
text (AdminService.GetMetrics), and BACKBEAT_METRICS_PORT, when set, also
serves it over HTTP for a Prometheus scraper.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RPC_HANDLED = Counter(
    "backbeat_rpc_server_handled",
    "RPCs finished by this process, by method and status code.",
    ["service", "method", "code"],
    registry=REGISTRY,
)
RPC_DURATION = Histogram(
    "backbeat_rpc_server_duration_seconds",
    "Time from the start of an RPC to its last message, by method.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0),
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "backbeat_cache_lookups",
    "Cache lookups by cache name and result (hit or miss).",
    ["cache", "result"],
    registry=REGISTRY,
)
BREAKER_OPEN = Gauge(
    "backbeat_breaker_open",
    "1 while the circuit breaker from caller to target is open or half-open, else 0.",
    ["breaker"],
    registry=REGISTRY,
)


@dataclass
class CacheCounter:
    """Hits and misses of one named cache since start, also counted in the process metrics."""

    name: str
    hits: int = 0
    misses: int = 0

    def record(self, hit: bool) -> None:
        """Count one lookup."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        CACHE_LOOKUPS.labels(self.name, "hit" if hit else "miss").inc()

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def exposition() -> str:
    """Return every metric of the process in the Prometheus text format."""
    return generate_latest(REGISTRY).decode()
