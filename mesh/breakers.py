"""Circuit breakers per caller and target, built on pybreaker.

Only signs of downstream ill health count as failures: UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL and UNKNOWN. Client errors
such as INVALID_ARGUMENT or NOT_FOUND never open a breaker. An open breaker
rejects calls at once until its reset timeout passes; then at most
half_open_trials calls at a time try the target (mesh.client enforces the
bound) until one succeeds and closes the breaker. With shared_redis_url set,
the state is kept in Redis, so every replica of a caller sees one breaker.
"""

from __future__ import annotations

import logging

import grpc
import pybreaker
import redis

from mesh.metrics import BREAKER_OPEN

logger = logging.getLogger(__name__)

COUNTED_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


def counts_as_failure(error: BaseException) -> bool:
    """Return True when `error` signals downstream ill health: a counted status or a timeout."""
    if isinstance(error, TimeoutError):
        return True
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in COUNTED_CODES


def _not_counted(error: BaseException) -> bool:
    return not counts_as_failure(error)


class _StateLogger(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        breaker: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        previous = old_state.name if old_state else "none"
        BREAKER_OPEN.labels(str(breaker.name)).set(0 if new_state.name == pybreaker.STATE_CLOSED else 1)
        logger.warning("circuit breaker %s changed from %s to %s", breaker.name, previous, new_state.name)


class BreakerRegistry:
    """One pybreaker.CircuitBreaker per (caller, target), created on first use."""

    def __init__(
        self,
        fail_max: int,
        reset_timeout_s: float,
        half_open_trials: int = 1,
        shared_redis_url: str | None = None,
        redis_timeout_s: float = 0.05,
    ) -> None:
        self._fail_max = fail_max
        self._reset_timeout_s = reset_timeout_s
        self.half_open_trials = half_open_trials
        self._breakers: dict[tuple[str, str], pybreaker.CircuitBreaker] = {}
        self._redis = (
            redis.Redis.from_url(
                shared_redis_url, socket_timeout=redis_timeout_s, socket_connect_timeout=redis_timeout_s
            )
            if shared_redis_url
            else None
        )

    def _storage(self, name: str) -> pybreaker.CircuitBreakerStorage:
        if self._redis is None:
            return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        # Replicas of a caller share one breaker per target: state, failure count and
        # opening time live under this key prefix in Redis.
        return pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, self._redis, namespace=f"backbeat:breaker:{name}"
        )

    def get(self, caller: str, target: str) -> pybreaker.CircuitBreaker:
        """Return the breaker guarding calls from `caller` to `target`."""
        key = (caller, target)
        breaker = self._breakers.get(key)
        if breaker is None:
            name = f"{caller}->{target}"
            breaker = pybreaker.CircuitBreaker(
                state_storage=self._storage(name),
                fail_max=self._fail_max,
                reset_timeout=self._reset_timeout_s,
                exclude=[_not_counted],
                listeners=[_StateLogger()],
                name=name,
                throw_new_error_on_trip=False,
            )
            self._breakers[key] = breaker
        return breaker
