"""Simulated listeners and the tracks they pick, replayed from the real catalog.

Listeners are the demo accounts plus generated ones, both tiers, across every
market. Each pick is a track licensed in the listener's market, drawn with
probability proportional to its catalog popularity.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.licensing.rights import Rights
from services.markets import MARKETS
from services.user.accounts import DEMO_ACCOUNTS, Account, AccountStore


@dataclass(frozen=True)
class Listener:
    """A simulated listener's credentials and market."""

    email: str
    password: str
    tier: str
    market: str


def create_listeners(users_db: Path, count: int) -> list[Listener]:
    """Return the demo listeners plus `count` generated ones, stored in `users_db`."""
    listeners = [Listener(demo.email, demo.password, demo.tier, demo.market) for demo in DEMO_ACCOUNTS]
    store = AccountStore(users_db)
    try:
        for number in range(count):
            tier = "premium" if number % 2 else "free"
            market = MARKETS[number % len(MARKETS)]
            email = f"bench-{number:04d}@backbeat.test"
            password = f"bench-password-{number:04d}"
            store.upsert(
                Account(f"u-bench-{number:04d}", email, tier, market, f"Bench listener {number}"), password
            )
            listeners.append(Listener(email, password, tier, market))
    finally:
        store.close()
    return listeners


class TrackPicker:
    """Draws licensed tracks per market, weighted by popularity."""

    def __init__(self, catalog_db: Path, rights_db: Path, seed: int = 7) -> None:
        db = sqlite3.connect(f"file:{catalog_db}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT track_id, popularity FROM tracks WHERE popularity > 0").fetchall()
        finally:
            db.close()
        rights = Rights(rights_db)
        try:
            self._choices: dict[str, tuple[list[str], np.ndarray]] = {}
            # Cumulative weights: a uniform draw times the total, searched in this array, picks by popularity.
            for market in MARKETS:
                decisions = rights.check_many_unbounded([track_id for track_id, _ in rows], market)
                allowed = [(row[0], row[1]) for row, ok in zip(rows, decisions, strict=True) if ok]
                weights = np.array([popularity for _, popularity in allowed], dtype=np.float64)
                self._choices[market] = ([track_id for track_id, _ in allowed], np.cumsum(weights))
        finally:
            rights.close()
        self._rng = np.random.default_rng(seed)

    def pick(self, market: str) -> str:
        """Return one track id licensed in `market`."""
        track_ids, cumulative = self._choices[market]
        position = int(np.searchsorted(cumulative, self._rng.random() * cumulative[-1], side="right"))
        return track_ids[min(position, len(track_ids) - 1)]
