"""The track catalog in SQLite: ingest from the public CSV, lookups and search.

Ingest reads catalog/spotify_songs.csv, where a track appears once per
playlist it was sampled from, and keeps one row per track id with the union
of its playlist genres and subgenres. The literal "NA" the file uses for
five unknown names becomes an empty string. Each track is served with the
audio of one real recording, chosen by the rule in
services.stream.audio_ingest.recording_for_track, and lists that recording's
renditions. Search uses an FTS5 index over title and artist.
"""

from __future__ import annotations

import csv
import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.stream.audio_ingest import Manifest, recording_for_track

logger = logging.getLogger(__name__)

CATALOG_CSV = Path("catalog") / "spotify_songs.csv"
FEATURES = (
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
)

SCHEMA = f"""
CREATE TABLE tracks (
    track_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    artist TEXT NOT NULL,
    album_id TEXT NOT NULL,
    album_name TEXT NOT NULL,
    release_date TEXT NOT NULL,
    genres TEXT NOT NULL,
    subgenres TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    popularity INTEGER NOT NULL,
    {", ".join(f"{name} REAL NOT NULL" for name in FEATURES)},
    recording TEXT NOT NULL
);
CREATE TABLE recordings (recording TEXT PRIMARY KEY, credit TEXT NOT NULL);
CREATE TABLE renditions (
    recording TEXT NOT NULL,
    bitrate_kbps INTEGER NOT NULL,
    codec TEXT NOT NULL,
    content_type TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    PRIMARY KEY (recording, bitrate_kbps)
);
CREATE VIRTUAL TABLE tracks_search USING fts5(name, artist, content='tracks', content_rowid='rowid');
"""


class CatalogError(Exception):
    """Raised when the catalog file or store is missing or malformed."""


@dataclass(frozen=True)
class RenditionRecord:
    """One encoded file of a recording."""

    bitrate_kbps: int
    codec: str
    content_type: str
    object_key: str
    size_bytes: int


@dataclass(frozen=True)
class TrackRecord:
    """A catalog track with its features and the renditions of its recording."""

    track_id: str
    name: str
    artist: str
    album_id: str
    album_name: str
    release_date: str
    genres: tuple[str, ...]
    subgenres: tuple[str, ...]
    duration_ms: int
    popularity: int
    features: dict[str, float]
    recording: str
    recording_credit: str
    renditions: tuple[RenditionRecord, ...]


def _clean(value: str) -> str:
    return "" if value == "NA" else value


def read_catalog_rows(csv_path: Path) -> list[dict[str, object]]:
    """Read the catalog CSV into one dict per distinct track id, genres merged."""
    if not csv_path.is_file():
        raise CatalogError(f"catalog file not found: {csv_path}; set BACKBEAT_DATA_DIR to the data folder")

    tracks: dict[str, dict[str, object]] = {}
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            track = tracks.get(row["track_id"])
            if track is None:
                track = {
                    "track_id": row["track_id"],
                    "name": _clean(row["track_name"]),
                    "artist": _clean(row["track_artist"]),
                    "album_id": row["track_album_id"],
                    "album_name": _clean(row["track_album_name"]),
                    "release_date": row["track_album_release_date"],
                    "genres": set(),
                    "subgenres": set(),
                    "duration_ms": int(row["duration_ms"]),
                    "popularity": int(row["track_popularity"]),
                    **{name: float(row[name]) for name in FEATURES},
                }
                tracks[row["track_id"]] = track
            track["genres"].add(row["playlist_genre"])  # type: ignore[attr-defined]
            track["subgenres"].add(row["playlist_subgenre"])  # type: ignore[attr-defined]
    return list(tracks.values())


def build_catalog(data_dir: Path, database: Path, manifest: Manifest) -> int:
    """Build the catalog database from the CSV and the audio manifest; return the track count."""
    rows = read_catalog_rows(data_dir / CATALOG_CSV)
    recordings = list(manifest.recordings)
    database.parent.mkdir(parents=True, exist_ok=True)
    scratch = database.with_suffix(".building")
    scratch.unlink(missing_ok=True)

    db = sqlite3.connect(scratch)
    try:
        db.executescript(SCHEMA)
        db.executemany(
            "INSERT INTO recordings VALUES (?, ?)",
            [(recording.slug, recording.credit) for recording in recordings],
        )
        db.executemany(
            "INSERT INTO renditions VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    rendition.slug,
                    rendition.bitrate_kbps,
                    rendition.codec,
                    rendition.content_type,
                    rendition.object_key,
                    rendition.size_bytes,
                )
                for rendition in manifest.renditions
            ],
        )
        columns = [
            "track_id",
            "name",
            "artist",
            "album_id",
            "album_name",
            "release_date",
            "genres",
            "subgenres",
            "duration_ms",
            "popularity",
            *FEATURES,
            "recording",
        ]
        values = []
        for row in rows:
            recording = recording_for_track(str(row["track_id"]), recordings)
            genres = ",".join(sorted(row["genres"]))  # type: ignore[call-overload]
            subgenres = ",".join(sorted(row["subgenres"]))  # type: ignore[call-overload]
            values.append(
                [
                    *(row[name] for name in columns[:6]),
                    genres,
                    subgenres,
                    *(row[name] for name in columns[8:-1]),
                    recording.slug,
                ]
            )
        db.executemany(
            f"INSERT INTO tracks ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values
        )
        db.execute("INSERT INTO tracks_search (tracks_search) VALUES ('rebuild')")
        db.commit()
    finally:
        db.close()
    scratch.replace(database)
    logger.info("catalog built: %d tracks in %s", len(rows), database)
    return len(rows)


def fts_query(text: str) -> str:
    """Turn free text into an FTS5 query that matches every word as a prefix."""
    words = re.findall(r"\w+", text.lower())
    return " ".join(f'"{word}"*' for word in words)


class Catalog:
    """Read access to the catalog database."""

    def __init__(self, database: Path) -> None:
        if not database.is_file():
            raise CatalogError(f"catalog database not found: {database}; run `backbeat setup` first")
        self._db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._renditions = self._load_renditions()
        self._credits = dict(self._db.execute("SELECT recording, credit FROM recordings").fetchall())

    def _load_renditions(self) -> dict[str, tuple[RenditionRecord, ...]]:
        found: dict[str, list[RenditionRecord]] = {}
        for row in self._db.execute("SELECT * FROM renditions ORDER BY recording, bitrate_kbps"):
            found.setdefault(row["recording"], []).append(
                RenditionRecord(
                    row["bitrate_kbps"],
                    row["codec"],
                    row["content_type"],
                    row["object_key"],
                    row["size_bytes"],
                )
            )
        return {recording: tuple(items) for recording, items in found.items()}

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _record(self, row: sqlite3.Row) -> TrackRecord:
        return TrackRecord(
            track_id=row["track_id"],
            name=row["name"],
            artist=row["artist"],
            album_id=row["album_id"],
            album_name=row["album_name"],
            release_date=row["release_date"],
            genres=tuple(row["genres"].split(",")),
            subgenres=tuple(row["subgenres"].split(",")),
            duration_ms=row["duration_ms"],
            popularity=row["popularity"],
            features={name: row[name] for name in FEATURES},
            recording=row["recording"],
            recording_credit=self._credits.get(row["recording"], ""),
            renditions=self._renditions.get(row["recording"], ()),
        )

    def get(self, track_id: str) -> TrackRecord | None:
        """Return one track, or None when the id is not in the catalog."""
        row = self._db.execute("SELECT * FROM tracks WHERE track_id = ?", (track_id,)).fetchone()
        return None if row is None else self._record(row)

    def get_many(self, track_ids: Sequence[str]) -> dict[str, TrackRecord]:
        """Return the tracks found among `track_ids`, keyed by id."""
        if not track_ids:
            return {}
        placeholders = ", ".join("?" * len(track_ids))
        rows = self._db.execute(f"SELECT * FROM tracks WHERE track_id IN ({placeholders})", list(track_ids))
        return {row["track_id"]: self._record(row) for row in rows}

    def search(self, text: str, limit: int) -> list[TrackRecord]:
        """Return tracks whose title or artist matches every word of `text`, most popular first."""
        query = fts_query(text)
        if not query:
            return []
        rows = self._db.execute(
            "SELECT tracks.* FROM tracks_search JOIN tracks ON tracks.rowid = tracks_search.rowid "
            "WHERE tracks_search MATCH ? ORDER BY tracks.popularity DESC, tracks.track_id LIMIT ?",
            (query, limit),
        )
        return [self._record(row) for row in rows]

    def most_popular(self, limit: int) -> list[TrackRecord]:
        """Return up to `limit` tracks, most popular first."""
        rows = self._db.execute("SELECT * FROM tracks ORDER BY popularity DESC, track_id LIMIT ?", (limit,))
        return [self._record(row) for row in rows]

    def iter_all(self) -> Iterable[TrackRecord]:
        """Yield every track, ordered by id."""
        for row in self._db.execute("SELECT * FROM tracks ORDER BY track_id"):
            yield self._record(row)
