"""Territorial rights per market, derived from the catalog by a fixed rule.

The public catalog carries no rights data, so rights are derived: an album
is withheld in a market when the first 8 bytes of
sha256("<album_id>|<market>"), read as a big-endian integer, modulo 100 are
below WITHHELD_PERCENT. Every track of a withheld album is unavailable in
that market; everything else is licensed. The rule is deterministic, so the
same catalog always yields the same rights, and ingest stores the result.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh.errors import InvalidArgument, NotFound
from services.markets import MARKETS, require_market

logger = logging.getLogger(__name__)

WITHHELD_PERCENT = 8
MAX_BATCH = 500

SCHEMA = """
CREATE TABLE track_albums (track_id TEXT PRIMARY KEY, album_id TEXT NOT NULL);
CREATE TABLE withheld (album_id TEXT NOT NULL, market TEXT NOT NULL, PRIMARY KEY (album_id, market));
"""


def album_withheld(album_id: str, market: str) -> bool:
    """Apply the rights rule: True when `album_id` is withheld in `market`."""
    digest = hashlib.sha256(f"{album_id}|{market}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < WITHHELD_PERCENT


def build_rights(track_albums: Iterable[tuple[str, str]], database: Path) -> int:
    """Store the track-to-album map and the withheld albums per market; return the withheld count."""
    database.parent.mkdir(parents=True, exist_ok=True)
    scratch = database.with_suffix(".building")
    scratch.unlink(missing_ok=True)
    pairs = list(track_albums)
    albums = sorted({album_id for _, album_id in pairs})
    withheld = [(album, market) for album in albums for market in MARKETS if album_withheld(album, market)]

    db = sqlite3.connect(scratch)
    try:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO track_albums VALUES (?, ?)", pairs)
        db.executemany("INSERT INTO withheld VALUES (?, ?)", withheld)
        db.commit()
    finally:
        db.close()
    scratch.replace(database)
    logger.info("rights built: %d tracks, %d withheld album-market pairs", len(pairs), len(withheld))
    return len(withheld)


@dataclass(frozen=True)
class Decision:
    """Whether a track may be streamed in a market, and why."""

    track_id: str
    allowed: bool
    reason: str
    detail: str


class Rights:
    """Answers licensing questions from the stored rights, loaded into memory at start."""

    def __init__(self, database: Path) -> None:
        if not database.is_file():
            raise FileNotFoundError(f"rights database not found: {database}; run `backbeat setup` first")
        self._db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, check_same_thread=False)
        self._albums: dict[str, str] = dict(self._db.execute("SELECT track_id, album_id FROM track_albums"))
        self._withheld: set[tuple[str, str]] = set(self._db.execute("SELECT album_id, market FROM withheld"))

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def check(self, track_id: str, market: str) -> Decision:
        """Decide one track; NotFound when it has no rights records."""
        if not track_id:
            raise InvalidArgument("track_id", track_id, "a catalog track id")
        decision = self.check_many([track_id], market)[0]
        if decision.reason == "unknown_track":
            raise NotFound(f"track {track_id!r} has no rights records")
        return decision

    def check_many(self, track_ids: Sequence[str], market: str) -> list[Decision]:
        """Decide each track in `track_ids`; unknown tracks are not allowed."""
        require_market(market)
        if len(track_ids) > MAX_BATCH:
            raise InvalidArgument("track_ids", f"{len(track_ids)} ids", f"at most {MAX_BATCH} ids")
        return [self._decide(track_id, market) for track_id in track_ids]

    def check_many_unbounded(self, track_ids: Sequence[str], market: str) -> list[bool]:
        """Return whether each track is licensed in `market`, with no batch limit; for offline tools."""
        require_market(market)
        return [self._decide(track_id, market).allowed for track_id in track_ids]

    def _decide(self, track_id: str, market: str) -> Decision:
        album_id = self._albums.get(track_id)
        if album_id is None:
            return Decision(track_id, False, "unknown_track", f"track {track_id} has no rights records")
        if (album_id, market) in self._withheld:
            return Decision(track_id, False, "album_withheld", f"album {album_id} is withheld in {market}")
        return Decision(track_id, True, "licensed", f"licensed in {market}")

    def withheld_tracks(self, market: str, limit: int = 10) -> list[str]:
        """Return ids of tracks withheld in `market`, ordered by id."""
        rows = self._db.execute(
            "SELECT t.track_id FROM track_albums t JOIN withheld w ON w.album_id = t.album_id "
            "WHERE w.market = ? ORDER BY t.track_id LIMIT ?",
            (require_market(market), limit),
        )
        return [row[0] for row in rows]
