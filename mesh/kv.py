"""Key-value stores with a TTL per key: in-process, or Redis when REDIS_URL is set.

Keys are namespaced "backbeat:<service>:<kind>:<id>" so several services can
share one Redis. Every Redis call has a socket timeout and the connection
pool is bounded; a Redis failure or an exhausted pool raises StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from cachetools import TLRUCache
from redis.exceptions import RedisError

from mesh import deadlines
from mesh.errors import Unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
    """Redis-backed store with a per-call timeout and a bounded, blocking connection pool.

    Each call waits at most min(timeout_s, time left of the current request);
    a pool with every connection busy waits the same time and then fails.
    Either way the caller gets StoreUnavailable (UNAVAILABLE), never a hang.
    redis-py reconnects on the next call, so the store recovers by itself
    when Redis comes back.
    """

    def __init__(self, url: str, timeout_s: float, max_connections: int = 32) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._timeout_s = timeout_s

    async def _run(self, operation: str, key: str, call: Awaitable[T]) -> T:
        left = deadlines.time_left()
        timeout_s = self._timeout_s if left is None else min(self._timeout_s, left)
        try:
            if timeout_s <= 0:
                raise TimeoutError("no time left in the request")
            return await asyncio.wait_for(call, timeout_s)
        except (RedisError, OSError, TimeoutError) as error:
            logger.warning("redis %s of %s failed: %s: %s", operation, key, type(error).__name__, error)
            raise StoreUnavailable(
                f"session and cache store unavailable: redis {operation} failed ({type(error).__name__})"
            ) from error
        finally:
            if inspect.iscoroutine(call):
                call.close()

    async def get(self, key: str) -> bytes | None:
        value = await self._run("GET", key, self._redis.get(key))
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._run("SET", key, self._redis.set(key, value, px=max(1, int(ttl_s * 1000))))

    async def delete(self, key: str) -> bool:
        return bool(await self._run("DEL", key, self._redis.delete(key)))

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)


def open_store(redis_url: str | None, timeout_s: float, max_entries: int = 100_000) -> KeyValueStore:
    """Return a RedisStore when `redis_url` is set, else a MemoryStore."""
    if redis_url:
        return RedisStore(redis_url, timeout_s)
    return MemoryStore(max_entries)
