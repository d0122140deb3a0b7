"""Track lookups through a read-through cache with a 24-hour TTL.

Cached values are serialized Track messages under
"backbeat:metadata:track:<track_id>". When the cache store fails, lookups
go to the catalog directly, so a cache outage costs speed, not results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from backbeat.common.v1 import common_pb2
from mesh.errors import InvalidArgument, NotFound
from mesh.kv import KeyValueStore, StoreUnavailable
from mesh.metrics import CacheCounter
from services.metadata.catalog import Catalog, TrackRecord

logger = logging.getLogger(__name__)

CACHE_KEY = "backbeat:metadata:track:{}"
CACHE_NAME = "metadata_track"
CACHE_TTL_S = 24 * 3600.0
MAX_BATCH = 100


def track_to_proto(record: TrackRecord) -> common_pb2.Track:
    """Convert a catalog record to the Track message."""
    return common_pb2.Track(
        track_id=record.track_id,
        name=record.name,
        artist=record.artist,
        album_id=record.album_id,
        album_name=record.album_name,
        release_date=record.release_date,
        genres=record.genres,
        subgenres=record.subgenres,
        duration_ms=record.duration_ms,
        popularity=record.popularity,
        features=common_pb2.AudioFeatures(
            danceability=record.features["danceability"],
            energy=record.features["energy"],
            key=int(record.features["key"]),
            loudness=record.features["loudness"],
            mode=int(record.features["mode"]),
            speechiness=record.features["speechiness"],
            acousticness=record.features["acousticness"],
            instrumentalness=record.features["instrumentalness"],
            liveness=record.features["liveness"],
            valence=record.features["valence"],
            tempo=record.features["tempo"],
        ),
        renditions=[
            common_pb2.Rendition(
                bitrate_kbps=rendition.bitrate_kbps,
                codec=rendition.codec,
                content_type=rendition.content_type,
                object_key=rendition.object_key,
                size_bytes=rendition.size_bytes,
            )
            for rendition in record.renditions
        ],
        recording_credit=record.recording_credit,
    )


class TrackLookup:
    """Finds tracks by id, cache first, then the catalog."""

    def __init__(self, catalog: Catalog, cache: KeyValueStore, ttl_s: float = CACHE_TTL_S) -> None:
        self._catalog = catalog
        self._cache = cache
        self._ttl_s = ttl_s
        self.counters = CacheCounter(CACHE_NAME)

    async def _cached(self, track_id: str) -> common_pb2.Track | None:
        try:
            data = await self._cache.get(CACHE_KEY.format(track_id))
        except StoreUnavailable:
            return None
        if data is None:
            return None
        return common_pb2.Track.FromString(data)

    async def _remember(self, track: common_pb2.Track) -> None:
        try:
            await self._cache.set(CACHE_KEY.format(track.track_id), track.SerializeToString(), self._ttl_s)
        except StoreUnavailable:
            logger.info("track %s not cached: cache store unavailable", track.track_id)

    async def get(self, track_id: str) -> tuple[common_pb2.Track, bool]:
        """Return the track and whether it came from the cache; NotFound for an unknown id."""
        if not track_id:
            raise InvalidArgument("track_id", track_id, "a catalog track id")

        cached = await self._cached(track_id)
        self.counters.record(hit=cached is not None)
        if cached is not None:
            return cached, True

        record = self._catalog.get(track_id)
        if record is None:
            raise NotFound(f"track {track_id!r} not found in the catalog")
        track = track_to_proto(record)
        await self._remember(track)
        return track, False

    async def get_many(self, track_ids: Sequence[str]) -> tuple[list[common_pb2.Track], list[str]]:
        """Return the tracks found, in request order, and the ids not found."""
        if len(track_ids) > MAX_BATCH:
            raise InvalidArgument("track_ids", f"{len(track_ids)} ids", f"at most {MAX_BATCH} ids")

        found: dict[str, common_pb2.Track] = {}
        for track_id in track_ids:
            cached = await self._cached(track_id) if track_id else None
            self.counters.record(hit=cached is not None)
            if cached is not None:
                found[track_id] = cached
        missing_ids = [track_id for track_id in track_ids if track_id not in found]
        for track_id, record in self._catalog.get_many(missing_ids).items():
            found[track_id] = track_to_proto(record)
            await self._remember(found[track_id])
        return [found[i] for i in track_ids if i in found], [i for i in track_ids if i not in found]

    async def prewarm(self, limit: int, batch: int = 500) -> int:
        """Cache the `limit` most popular tracks, yielding to other work between batches; return the count."""
        records = self._catalog.most_popular(limit)
        for start in range(0, len(records), batch):
            for record in records[start : start + batch]:
                await self._remember(track_to_proto(record))
            await asyncio.sleep(0)
        logger.info("track cache prewarmed with the %d most popular tracks", len(records))
        return len(records)

    def search(self, query: str, limit: int) -> list[common_pb2.Track]:
        """Return tracks matching `query`, most popular first."""
        if not 1 <= len(query) <= 200:
            raise InvalidArgument("query", query, "1 to 200 characters")
        if not 0 <= limit <= 50:
            raise InvalidArgument("limit", limit, "0 (for 10) up to 50")
        return [track_to_proto(record) for record in self._catalog.search(query, limit or 10)]
