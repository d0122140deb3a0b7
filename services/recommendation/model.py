"""The recommendation model: catalog tracks as unit vectors of audio features and genres.

Ingest builds the model from the catalog and saves it as one .npz file.
Numeric features are z-scored (key and mode are left out because on their
own they tell little about similarity), the six playlist genres are one-hot and
weighted by GENRE_WEIGHT, and each row is scaled to unit length so that a dot
product is the cosine similarity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.metadata.catalog import Catalog

logger = logging.getLogger(__name__)

NUMERIC_FEATURES = (
    "danceability",
    "energy",
    "loudness",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
)
GENRE_WEIGHT = 1.5
FALLBACK_SIZE = 200


@dataclass(frozen=True)
class Model:
    """Track vectors with the ids, artists, genres and popularity they belong to."""

    track_ids: npt.NDArray[np.str_]
    artists: npt.NDArray[np.str_]
    # "artist|title" in lower case: the catalog lists some songs under several track ids.
    song_keys: npt.NDArray[np.str_]
    primary_genres: npt.NDArray[np.str_]
    popularity: npt.NDArray[np.int16]
    vectors: npt.NDArray[np.float32]
    genres: tuple[str, ...]

    def index_of(self, track_id: str) -> int | None:
        """Return the row of `track_id`, or None when it is not in the model."""
        position = int(np.searchsorted(self.track_ids, track_id))
        if position < len(self.track_ids) and self.track_ids[position] == track_id:
            return position
        return None

    def most_popular(self, genre: str | None) -> npt.NDArray[np.intp]:
        """Return rows of the most popular tracks of `genre` (all genres for None), best first."""
        rows = (
            np.arange(len(self.track_ids)) if genre is None else np.flatnonzero(self.primary_genres == genre)
        )
        order = np.argsort(-self.popularity[rows], kind="stable")
        return rows[order][:FALLBACK_SIZE]


def build_model(catalog: Catalog, path: Path) -> int:
    """Compute the model from every catalog track and save it to `path`; return the track count."""
    records = list(catalog.iter_all())
    genres = tuple(sorted({genre for record in records for genre in record.genres}))
    numeric = np.array(
        [[record.features[name] for name in NUMERIC_FEATURES] for record in records], dtype=np.float64
    )
    numeric = (numeric - numeric.mean(axis=0)) / numeric.std(axis=0)
    one_hot = np.array([[genre in record.genres for genre in genres] for record in records], dtype=np.float64)
    vectors = np.hstack([numeric, GENRE_WEIGHT * one_hot])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".building.npz")
    np.savez_compressed(
        scratch,
        track_ids=np.array([record.track_id for record in records]),
        artists=np.array([record.artist for record in records]),
        song_keys=np.array([f"{record.artist}|{record.name}".lower() for record in records]),
        primary_genres=np.array([record.genres[0] for record in records]),
        popularity=np.array([record.popularity for record in records], dtype=np.int16),
        vectors=vectors.astype(np.float32),
        genres=np.array(genres),
    )
    scratch.replace(path)
    logger.info("recommendation model built: %d tracks, %d dimensions", len(records), vectors.shape[1])
    return len(records)


def load_model(path: Path) -> Model:
    """Load a model saved by build_model."""
    if not path.is_file():
        raise FileNotFoundError(f"recommendation model not found: {path}; run `backbeat setup` first")
    with np.load(path) as data:
        return Model(
            track_ids=data["track_ids"],
            artists=data["artists"],
            # Models built before song keys existed fall back to one key per track id.
            song_keys=data["song_keys"] if "song_keys" in data.files else data["track_ids"],
            primary_genres=data["primary_genres"],
            popularity=data["popularity"],
            vectors=data["vectors"],
            genres=tuple(str(genre) for genre in data["genres"]),
        )
