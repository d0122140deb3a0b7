"""Key-value stores with a TTL per key: in-process, or Redis when REDIS_URL is set.

Keys are namespaced "backbeat:<service>:<kind>:<id>" so several services can
share one Redis. Every Redis call has a socket timeout and the connection
pool is bounded; a Redis failure or an exhausted pool raises StoreUnavailable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from cachetools import TLRUCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mesh.errors import Unavailable

logger = logging.getLogger(__name__)


class StoreUnavailable(Unavailable):
    """Raised when the backing store cannot be reached in time."""


class KeyValueStore(Protocol):
    """Bytes values under string keys, each with its own time to live."""

    async def get(self, key: str) -> bytes | None:
        """Return the value of `key`, or None when it is missing or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store `value` under `key` for `ttl_s` seconds."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove `key`; return True when it existed."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryStore:
    """In-process store bounded to `max_entries`, least recently used evicted first."""

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: TLRUCache[str, tuple[bytes, float]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, value, now: now + value[1], timer=clock
        )

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (value, ttl_s)

    async def delete(self, key: str) -> bool:
        return self._entries.pop(key, None) is not None

    async def close(self) -> None:
        self._entries.clear()


class RedisStore:
    """Redis-backed store with a per-call timeout and a bounded, blocking connection pool."""

    def __init__(self, url: str, timeout_s: float, max_connections: int = 32) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._url = url

    def _unavailable(self, operation: str, key: str, error: Exception) -> StoreUnavailable:
        logger.warning("redis %s of %s failed: %s: %s", operation, key, type(error).__name__, error)
        return StoreUnavailable(
            f"session and cache store unavailable: redis {operation} failed ({type(error).__name__})"
        )

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(key)
        except (RedisError, RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise self._unavailable("GET", key, error) from error
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._redis.set(key, value, px=max(1, int(ttl_s * 1000)))
        except (RedisError, OSError) as error:
            raise self._unavailable("SET", key, error) from error

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(key))
        except (RedisError, OSError) as error:
            raise self._unavailable("DEL", key, error) from error

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)


def open_store(redis_url: str | None, timeout_s: float, max_entries: int = 100_000) -> KeyValueStore:
    """Return a RedisStore when `redis_url` is set, else a MemoryStore."""
    if redis_url:
        return RedisStore(redis_url, timeout_s)
    return MemoryStore(max_entries)
