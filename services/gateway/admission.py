"""Load shedding with a premium lane: a bound on calls in flight, of which free listeners get a share.

Under overload the gateway rejects free-tier calls first with
RESOURCE_EXHAUSTED and a RetryInfo delay, while premium calls keep the
remaining slots. The tier is read from the access token's claims before the
session is validated; the claims are not trusted for anything else, because
validation follows and rejects a forged token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import jwt

from mesh.errors import ResourceExhausted

logger = logging.getLogger(__name__)


def token_tier(token: str) -> str:
    """Return the "tier" claim of an access token without verifying it; "free" when absent."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return "free"
    return "premium" if claims.get("tier") == "premium" else "free"


@dataclass
class PriorityAdmission:
    """Admits at most `max_in_flight` calls; free-tier calls only up to `free_share` of them."""

    max_in_flight: int
    free_share: float
    retry_after_s: float = 0.5
    in_flight: int = 0
    shed: dict[str, int] = field(default_factory=lambda: {"free": 0, "premium": 0})

    @contextmanager
    def admit(self, tier: str) -> Iterator[None]:
        """Hold one slot for the block, or raise ResourceExhausted when the tier's lane is full."""
        limit = self.max_in_flight if tier == "premium" else int(self.max_in_flight * self.free_share)
        if self.in_flight >= limit:
            self.shed[tier] += 1
            if self.shed[tier] % 100 == 1:
                logger.warning(
                    "gateway overloaded: %d calls in flight; shedding %s-tier calls", self.in_flight, tier
                )
            raise ResourceExhausted(
                f"gateway overloaded: {tier}-tier calls are shed first; retry in {self.retry_after_s:g} s",
                self.retry_after_s,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
