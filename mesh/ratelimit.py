"""Per-user request rate limits, built on the limits package.

A sliding window counter per user: in-process by default, in Redis when
REDIS_URL is set so that every gateway replica shares the same counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

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
        self._pool: aioredis.BlockingConnectionPool | None = None
        if redis_url:
            self._pool = aioredis.BlockingConnectionPool.from_url(
                redis_url,
                max_connections=32,
                timeout=redis_timeout_s,
                socket_timeout=redis_timeout_s,
                socket_connect_timeout=redis_timeout_s,
            )
            storage = RedisStorage(
                limits_redis_uri(redis_url),
                implementation="redispy",
                key_prefix="backbeat:gateway:ratelimit",
                wrap_exceptions=True,
                # The options are typed as scalars, but redis-py's bridge takes a pool here.
                connection_pool=cast(str, self._pool),
            )
        else:
            storage = MemoryStorage()
        self._storage = storage
        self._timeout_s = redis_timeout_s * 2
        self.store_failures = 0
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._item = RateLimitItemPerMinute(per_minute)

    async def close(self) -> None:
        """Release the connections of the counter store."""
        if self._pool is not None:
            await self._pool.disconnect()

    async def check(self, user_id: str) -> None:
        """Count one request of `user_id`, raising ResourceExhausted over the limit.

        When the counter store fails, the request is allowed (fail open) and a warning is
        logged: a rate limit protects capacity, and refusing every listener while Redis is
        down would turn a cache outage into a full outage.
        """
        try:
            allowed = await asyncio.wait_for(self._limiter.hit(self._item, user_id), self._timeout_s)
        except (StorageError, RedisError, OSError, TimeoutError) as error:
            self.store_failures += 1
            logger.warning(
                "rate limit store failed (%s); allowing request of %s", type(error).__name__, user_id
            )
            return
        if allowed:
            return
        stats = await self._limiter.get_window_stats(self._item, user_id)
        # limits can report a reset time of now for a key it has just written, so the
        # delay is never less than the time one request's share of the window takes.
        retry_after = max(60.0 / self._item.amount, stats.reset_time - time.time())
        logger.info("user %s is over %s; retry in %.1f s", user_id, self._item, retry_after)
        raise ResourceExhausted(
            f"rate limit of {self._item.amount} requests per minute exceeded for user {user_id}", retry_after
        )
