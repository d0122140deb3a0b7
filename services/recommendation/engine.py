"""Ranking next tracks and learning from implicit feedback.

Candidates are the tracks most similar to the seed, shifted toward the
listener's taste: likes and completions pull the taste vector toward a
track, skips push it away and hide the track from that listener. Ranking
adds a small popularity boost, keeps at most MAX_PER_ARTIST tracks per
artist and lists a song once, even when the catalog has it under several ids.
Taste is kept in process, per replica.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from mesh.errors import InvalidArgument, NotFound
from services.recommendation.model import Model

MAX_PER_ARTIST = 2
TASTE_WEIGHT = 0.5
POPULARITY_BOOST = 0.002
LIKE_RATE = 0.3
COMPLETE_RATE = 0.1
SKIP_RATE = 0.15
MAX_SKIPPED = 500
MAX_LIMIT = 50


@dataclass
class Taste:
    """The taste vector and skipped tracks learned from one listener's feedback."""

    vector: npt.NDArray[np.float32]
    skipped: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_SKIPPED))


def check_limit(limit: int) -> int:
    """Return the number of tracks to return for a requested `limit` (0 means 10)."""
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidArgument("limit", limit, f"0 (for 10) up to {MAX_LIMIT}")
    return limit or 10


class Recommender:
    """Ranks candidate tracks for a listener and a seed track."""

    def __init__(self, model: Model, max_listeners: int = 100_000) -> None:
        self.model = model
        self._tastes: LRUCache[str, Taste] = LRUCache(maxsize=max_listeners)
        self._applied: LRUCache[tuple[str, str, str], bool] = LRUCache(maxsize=max_listeners * 4)

    def _row(self, track_id: str, field_name: str) -> int:
        if not track_id:
            raise InvalidArgument(field_name, track_id, "a catalog track id")
        row = self.model.index_of(track_id)
        if row is None:
            raise NotFound(f"track {track_id!r} not found in the recommendation model")
        return row

    def candidates(self, user_id: str, seed_track_id: str, count: int) -> list[str]:
        """Return up to `count` candidate track ids after the seed, best first."""
        seed = self._row(seed_track_id, "seed_track_id")
        query = self.model.vectors[seed].copy()
        taste = self._tastes.get(user_id)
        if taste is not None:
            query += TASTE_WEIGHT * taste.vector

        scores = self.model.vectors @ query + POPULARITY_BOOST * self.model.popularity
        scores[seed] = -np.inf
        if taste is not None and taste.skipped:
            scores[list(taste.skipped)] = -np.inf

        pool = min(len(scores) - 1, count * 8)
        top = np.argpartition(-scores, pool)[:pool]
        ranked = top[np.argsort(-scores[top], kind="stable")]

        per_artist: dict[str, int] = {}
        songs = {str(self.model.song_keys[seed])}
        chosen: list[str] = []
        for row in ranked:
            if not np.isfinite(scores[row]):
                break
            artist = str(self.model.artists[row])
            song = str(self.model.song_keys[row])
            if per_artist.get(artist, 0) >= MAX_PER_ARTIST or song in songs:
                continue
            per_artist[artist] = per_artist.get(artist, 0) + 1
            songs.add(song)
            chosen.append(str(self.model.track_ids[row]))
            if len(chosen) == count:
                break
        return chosen

    def warm_up(self) -> None:
        """Rank once, so the first request does not pay for loading the numeric kernels."""
        if len(self.model.track_ids):
            self.candidates("", str(self.model.track_ids[0]), 10)

    def fallback(self, genre: str | None) -> list[str]:
        """Return the most popular tracks of `genre`, or of all genres for None."""
        if genre is not None and genre not in self.model.genres:
            raise InvalidArgument("genre", genre, f"one of {', '.join(self.model.genres)} or empty")
        return [str(self.model.track_ids[row]) for row in self.model.most_popular(genre)]

    def fallback_for(self, user_id: str, seed_track_id: str, chosen: list[str]) -> list[str]:
        """Return popular tracks of the seed's genre to follow `chosen`, with the ranking's rules.

        The seed and tracks the listener skipped are left out, and the per-artist cap
        counts the tracks already in `chosen`.
        """
        seed = self.model.index_of(seed_track_id)
        genre = None if seed is None else str(self.model.primary_genres[seed])
        taste = self._tastes.get(user_id)
        skipped = set(taste.skipped) if taste is not None else set()
        taken = set(chosen)
        per_artist: dict[str, int] = {}
        songs = set() if seed is None else {str(self.model.song_keys[seed])}
        for track_id in chosen:
            row = self.model.index_of(track_id)
            if row is not None:
                artist = str(self.model.artists[row])
                per_artist[artist] = per_artist.get(artist, 0) + 1
                songs.add(str(self.model.song_keys[row]))

        extra: list[str] = []
        for row in self.model.most_popular(genre):
            track_id = str(self.model.track_ids[row])
            artist = str(self.model.artists[row])
            song = str(self.model.song_keys[row])
            if (
                row == seed
                or row in skipped
                or track_id in taken
                or song in songs
                or per_artist.get(artist, 0) >= MAX_PER_ARTIST
            ):
                continue
            per_artist[artist] = per_artist.get(artist, 0) + 1
            songs.add(song)
            extra.append(track_id)
        return extra

    def primary_genre(self, track_id: str) -> str | None:
        """Return the first genre of `track_id`, or None when it is not in the model."""
        row = self.model.index_of(track_id)
        return None if row is None else str(self.model.primary_genres[row])

    def _taste(self, user_id: str) -> Taste:
        taste = self._tastes.get(user_id)
        if taste is None:
            taste = Taste(np.zeros(self.model.vectors.shape[1], dtype=np.float32))
            self._tastes[user_id] = taste
        return taste

    def learn(self, user_id: str, track_id: str, signal: str, playback_id: str = "") -> bool:
        """Update the listener's taste from a "like", "complete" or "skip" of `track_id`.

        Returns False, changing nothing, when the same signal for the same playback was
        already applied.
        """
        if not user_id:
            raise InvalidArgument("user_id", user_id, "a non-empty user id")
        row = self._row(track_id, "track_id")
        if signal not in ("like", "complete", "skip"):
            raise InvalidArgument("event_type", signal, "skip, like or complete")
        if playback_id:
            key = (user_id, playback_id, signal)
            if key in self._applied:
                return False
            self._applied[key] = True
        taste = self._taste(user_id)
        vector = self.model.vectors[row]
        if signal == "like":
            taste.vector += LIKE_RATE * (vector - taste.vector)
        elif signal == "complete":
            taste.vector += COMPLETE_RATE * (vector - taste.vector)
        elif signal == "skip":
            taste.vector -= SKIP_RATE * vector
            taste.skipped.append(row)
        else:
            raise InvalidArgument("event_type", signal, "skip, like or complete")
        return True
