"""The edge's audio cache: chunks of renditions in memory, bounded in bytes.

Entries are evicted least recently used first once the byte budget is
spent, and expire after 7 days for popular tracks and 24 hours for the
rest. The clock is injected so tests can move time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from mesh.metrics import CacheCounter

POPULAR_TTL_S = 7 * 24 * 3600.0
DEFAULT_TTL_S = 24 * 3600.0


@dataclass(frozen=True)
class CachedChunk:
    """One chunk of a rendition and the total size of that rendition."""

    data: bytes
    total_size: int
    ttl_s: float


class ChunkCache:
    """Chunks keyed by (object key, chunk index)."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._chunks: TLRUCache[tuple[str, int], CachedChunk] = TLRUCache(
            maxsize=max_bytes,
            ttu=lambda _key, chunk, now: now + chunk.ttl_s,
            timer=clock,
            getsizeof=lambda chunk: len(chunk.data) or 1,
        )
        self.stats = CacheCounter("edge_chunk")

    def get(self, object_key: str, index: int) -> CachedChunk | None:
        """Return a cached chunk and count a hit or a miss."""
        chunk = self._chunks.get((object_key, index))
        self.stats.record(hit=chunk is not None)
        return chunk

    def put(self, object_key: str, index: int, data: bytes, total_size: int, popular: bool) -> None:
        """Store a chunk; chunks bigger than the whole cache are not stored."""
        ttl_s = POPULAR_TTL_S if popular else DEFAULT_TTL_S
        try:
            self._chunks[(object_key, index)] = CachedChunk(data, total_size, ttl_s)
        except ValueError:
            return

    @property
    def size_bytes(self) -> int:
        """Bytes held now."""
        return int(self._chunks.currsize)
