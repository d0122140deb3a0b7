"""Audio delivery: grant check, then chunks from the cache or the origin.

Chunks are aligned to chunk_bytes, so a chunk fetched once serves every
later request that touches it. On a miss the rest of the rendition is
streamed from the origin and each chunk is cached as it arrives; only the
first origin chunk has a deadline (the storage budget), so a long stream is
never cut by it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from backbeat.stream.v1 import stream_service_pb2 as stream_pb
from backbeat.stream.v1 import stream_service_pb2_grpc as stream_grpc
from mesh.client import Downstream
from mesh.errors import InvalidArgument, OutOfRange
from mesh.tracing import annotate
from services.edge.cache import ChunkCache
from services.stream.grants import GrantSigner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioChunk:
    """Bytes of a rendition from `offset`, and whether the edge cache had them."""

    offset: int
    data: bytes
    total_size: int
    content_type: str
    cache_hit: bool


class AudioDelivery:
    """Serves audio for verified grants."""

    def __init__(
        self,
        *,
        signer: GrantSigner,
        cache: ChunkCache,
        origin: Downstream[stream_grpc.StreamServiceAsyncStub],
        chunk_bytes: int,
        storage_budget_s: float,
    ) -> None:
        self._signer = signer
        self._cache = cache
        self._origin = origin
        self._chunk_bytes = chunk_bytes
        self._storage_budget_s = storage_budget_s

    async def stream(self, grant_token: str, offset: int) -> AsyncIterator[AudioChunk]:
        """Yield the audio of a grant from `offset` to the end."""
        grant = self._signer.verify(grant_token)
        if offset < 0:
            raise InvalidArgument("offset", offset, "a byte offset of 0 or more")
        annotate(
            track_id=grant.track_id,
            rendition_kbps=grant.bitrate_kbps,
            playback_id=grant.playback_id,
            user_id=grant.user_id,
        )

        index = offset // self._chunk_bytes
        hits = 0
        misses = 0
        while True:
            cached = self._cache.get(grant.object_key, index)
            if cached is None:
                break
            if offset > cached.total_size:
                raise OutOfRange(f"offset {offset} is past the end of the audio ({cached.total_size} bytes)")
            start = max(0, offset - index * self._chunk_bytes)
            hits += 1
            yield AudioChunk(
                index * self._chunk_bytes + start,
                cached.data[start:],
                cached.total_size,
                grant.content_type,
                True,
            )
            index += 1
            if index * self._chunk_bytes >= cached.total_size:
                annotate(cache_hit=True, chunks_from_cache=hits, chunks_from_origin=0)
                return

        annotate(cache_hit=False, chunks_from_cache=hits)
        request = stream_pb.ReadRenditionRequest(
            object_key=grant.object_key, offset=index * self._chunk_bytes, chunk_size=self._chunk_bytes
        )
        async for chunk in self._origin.stream(
            self._origin.stub.ReadRendition, request, first_message_timeout_s=self._storage_budget_s
        ):
            if offset > chunk.total_size:
                raise OutOfRange(f"offset {offset} is past the end of the audio ({chunk.total_size} bytes)")
            chunk_index = chunk.offset // self._chunk_bytes
            self._cache.put(grant.object_key, chunk_index, chunk.data, chunk.total_size, grant.popular)
            misses += 1
            start = max(0, offset - chunk.offset)
            if start < len(chunk.data):
                yield AudioChunk(
                    chunk.offset + start, chunk.data[start:], chunk.total_size, grant.content_type, False
                )
        annotate(cache_hit=False, chunks_from_origin=misses)
