"""The royalty ledger: one row per playback that reached 30 seconds.

The playback id is the primary key, so recording the same playback again
never counts it twice. Rows are committed with synchronous=FULL before the
call returns.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mesh.errors import InvalidArgument
from services.markets import require_market

logger = logging.getLogger(__name__)

STREAM_THRESHOLD_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS counted_streams (
    playback_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    track_id TEXT NOT NULL,
    market TEXT NOT NULL,
    played_ms INTEGER NOT NULL,
    counted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS counted_streams_track ON counted_streams (track_id);
"""


@dataclass(frozen=True)
class PlaybackReport:
    """How long one playback ran."""

    playback_id: str
    user_id: str
    track_id: str
    market: str
    played_ms: int


@dataclass(frozen=True)
class RecordResult:
    """Whether a playback counts as a stream, and whether an earlier report already counted it."""

    counted: bool
    already_counted: bool


def validate_report(report: PlaybackReport) -> None:
    """Raise InvalidArgument for the first malformed field of `report`."""
    for field in ("playback_id", "user_id", "track_id"):
        if not getattr(report, field):
            raise InvalidArgument(field, getattr(report, field), f"a non-empty {field.replace('_', ' ')}")
    require_market(report.market)
    if report.played_ms < 0:
        raise InvalidArgument("played_ms", report.played_ms, "milliseconds played, 0 or more")


class Ledger:
    """Counts streams for royalties, idempotent per playback id."""

    def __init__(self, database: Path, clock: Callable[[], float] = time.time) -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(database, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._clock = clock

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def record(self, report: PlaybackReport) -> RecordResult:
        """Count the playback once it reaches 30 seconds; repeated reports change nothing."""
        validate_report(report)
        existing = self._db.execute(
            "SELECT track_id FROM counted_streams WHERE playback_id = ?", (report.playback_id,)
        ).fetchone()
        if existing is not None:
            if existing[0] != report.track_id:
                raise InvalidArgument(
                    "track_id",
                    report.track_id,
                    f"track {existing[0]}, the track of playback {report.playback_id}",
                )
            return RecordResult(counted=True, already_counted=True)
        if report.played_ms < STREAM_THRESHOLD_MS:
            return RecordResult(counted=False, already_counted=False)

        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO counted_streams VALUES (?, ?, ?, ?, ?, ?)",
                (
                    report.playback_id,
                    report.user_id,
                    report.track_id,
                    report.market,
                    report.played_ms,
                    self._clock(),
                ),
            )
        logger.info(
            "stream counted: playback %s of track %s by %s",
            report.playback_id,
            report.track_id,
            report.user_id,
        )
        return RecordResult(counted=True, already_counted=False)

    def stream_count(self, track_id: str) -> int:
        """Return the number of counted streams of `track_id`."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM counted_streams WHERE track_id = ?", (track_id,)
        ).fetchone()
        return int(row[0])
