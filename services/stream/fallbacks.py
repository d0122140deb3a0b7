"""Fallbacks the stream service serves when a dependency fails.

- StaleTracks: the last Track each id resolved to. When metadata is slow or
  down, a play of a track seen before goes on with that copy.
- RegionalRecommendations: the last good list of next tracks per market and
  genre, kept for an hour, and the genre defaults (the most popular licensed
  tracks of each genre per market, loaded at start and refreshed). When
  recommendation fails, the play gets the regional list, else the genre
  default, marked as a fallback.
Both only ever hold tracks that licensing allowed in that market.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from cachetools import LRUCache, TTLCache

from backbeat.common.v1 import common_pb2

REGIONAL_TTL_S = 3600.0
DEFAULTS_REFRESH_S = 600.0
# The playlist genres of the catalog.
GENRES = ("edm", "latin", "pop", "r&b", "rap", "rock")


class StaleTracks:
    """The last good Track per id, bounded to `max_tracks` entries.

    Copies younger than `fresh_s` are also served without calling metadata at all, which
    saves one or two calls per play. Older copies are served only when metadata fails.
    """

    def __init__(
        self, max_tracks: int = 50_000, fresh_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tracks: LRUCache[str, tuple[common_pb2.Track, float]] = LRUCache(maxsize=max_tracks)
        self._fresh_s = fresh_s
        self._clock = clock

    def remember(self, track: common_pb2.Track) -> None:
        """Keep `track` for later calls and failures."""
        self._tracks[track.track_id] = (track, self._clock())

    def get(self, track_id: str) -> common_pb2.Track | None:
        """Return the last good copy of `track_id`, or None when it was never seen."""
        entry = self._tracks.get(track_id)
        return None if entry is None else entry[0]

    def fresh(self, track_id: str) -> common_pb2.Track | None:
        """Return the copy of `track_id` when it is younger than `fresh_s`, else None."""
        entry = self._tracks.get(track_id)
        if entry is None or self._clock() - entry[1] > self._fresh_s:
            return None
        return entry[0]


class RegionalRecommendations:
    """Recent and default next-track lists per (market, genre)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._recent: TTLCache[tuple[str, str], list[common_pb2.Track]] = TTLCache(
            maxsize=1024, ttl=REGIONAL_TTL_S, timer=clock
        )
        self._defaults: dict[tuple[str, str], list[common_pb2.Track]] = {}

    def remember(self, market: str, genre: str, tracks: Sequence[common_pb2.Track]) -> None:
        """Keep a good list for `market` and `genre`."""
        if tracks:
            self._recent[(market, genre)] = list(tracks)

    def set_default(self, market: str, genre: str, tracks: Sequence[common_pb2.Track]) -> None:
        """Set the genre default list for `market`."""
        if tracks:
            self._defaults[(market, genre)] = list(tracks)

    def fallback(self, market: str, genre: str, exclude: str) -> list[common_pb2.Track]:
        """Return the regional list, else the genre default, without the track `exclude`."""
        tracks = self._recent.get((market, genre)) or self._defaults.get((market, genre)) or []
        return [track for track in tracks if track.track_id != exclude]
