"""Load shedding with a premium lane and an adaptive bound on calls in flight.

The gateway admits calls up to a limit that adapts to how the mesh copes
(additive increase, multiplicative decrease): each call that ends in a
timeout or UNAVAILABLE lowers the limit by a tenth, each other call raises it
by 1/limit, between MIN_LIMIT and max_in_flight. Free-tier calls may use only
free_share of the limit, so under overload they are shed first, with
RESOURCE_EXHAUSTED and a RetryInfo delay, while premium calls keep the rest.
Keeping fewer calls in flight keeps queueing inside the per-hop deadline
budgets, instead of letting every call time out and open the breakers.

The tier is read from the access token's claims before the session is
validated; the claims are not trusted for anything else, because validation
follows and rejects a forged token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import jwt
from cachetools import LRUCache, cached

from mesh.errors import DeadlineExceeded, DownstreamError, ResourceExhausted, Unavailable

logger = logging.getLogger(__name__)

MIN_LIMIT = 4.0
DECREASE = 0.9
OVERLOAD_CODES = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE})


@cached(cache=LRUCache(maxsize=10_000))
def token_tier(token: str) -> str:
    """Return the "tier" claim of an access token without verifying it; "free" when absent."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return "free"
    return "premium" if claims.get("tier") == "premium" else "free"


def signals_overload(error: BaseException) -> bool:
    """Return True for errors that mean the mesh behind the gateway is saturated or failing."""
    if isinstance(error, DownstreamError):
        return error.code in OVERLOAD_CODES
    return isinstance(error, DeadlineExceeded | Unavailable)


@dataclass
class PriorityAdmission:
    """Admits calls up to an adaptive limit; free-tier calls only up to `free_share` of it."""

    max_in_flight: int
    free_share: float
    retry_after_s: float = 0.1
    in_flight: int = 0
    limit: float = field(init=False)
    shed: dict[str, int] = field(default_factory=lambda: {"free": 0, "premium": 0})

    def __post_init__(self) -> None:
        self.limit = float(self.max_in_flight)

    def _record(self, overloaded: bool) -> None:
        if overloaded:
            self.limit = max(MIN_LIMIT, self.limit * DECREASE)
        else:
            self.limit = min(float(self.max_in_flight), self.limit + 1.0 / self.limit)

    @contextmanager
    def admit(self, tier: str) -> Iterator[None]:
        """Hold one slot for the block, or raise ResourceExhausted when the tier's lane is full."""
        lane = self.limit if tier == "premium" else max(1.0, self.limit * self.free_share)
        if self.in_flight >= lane:
            self.shed[tier] += 1
            if self.shed[tier] % 100 == 1:
                logger.warning(
                    "gateway overloaded: %d calls in flight, limit %.1f; shedding %s-tier calls",
                    self.in_flight,
                    self.limit,
                    tier,
                )
            raise ResourceExhausted(
                f"gateway overloaded: {tier}-tier calls are shed first; retry in {self.retry_after_s:g} s",
                self.retry_after_s,
            )
        self.in_flight += 1
        try:
            yield
        except BaseException as error:
            self._record(signals_overload(error))
            raise
        else:
            self._record(False)
        finally:
            self.in_flight -= 1
