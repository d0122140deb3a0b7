"""Per-user request rate limits, built on the limits package.

A sliding window counter per user: in-process by default, in Redis when
REDIS_URL is set so that every gateway replica shares the same counts.
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from mesh.errors import ResourceExhausted

logger = logging.getLogger(__name__)


def limits_redis_uri(redis_url: str) -> str:
    """Spell a redis-py URL the way the limits package expects ("redis+unix://" for sockets)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


class UserRateLimiter:
    """Allows `per_minute` requests per user in any one-minute window."""

    def __init__(self, per_minute: int, redis_url: str | None = None, redis_timeout_s: float = 0.05) -> None:
        storage: Storage
        if redis_url:
            storage = RedisStorage(
                limits_redis_uri(redis_url),
                implementation="redispy",
                key_prefix="backbeat:gateway:ratelimit",
                socket_timeout=redis_timeout_s,
                socket_connect_timeout=redis_timeout_s,
            )
        else:
            storage = MemoryStorage()
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._item = RateLimitItemPerMinute(per_minute)

    async def check(self, user_id: str) -> None:
        """Count one request of `user_id`, raising ResourceExhausted over the limit."""
        if await self._limiter.hit(self._item, user_id):
            return
        stats = await self._limiter.get_window_stats(self._item, user_id)
        retry_after = max(0.0, stats.reset_time - time.time())
        logger.info("user %s is over %s; retry in %.1f s", user_id, self._item, retry_after)
        raise ResourceExhausted(
            f"rate limit of {self._item.amount} requests per minute exceeded for user {user_id}", retry_after
        )
