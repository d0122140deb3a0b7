"""The setup step: ingest the public data into every service's store.

Order matters: audio renditions first (tracks point at recordings), then the
catalog, the rights derived from it, the recommendation model built from it,
and the demo accounts. Re-running is safe; audio already encoded from the
same source is kept.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from services.licensing.rights import build_rights
from services.metadata.catalog import Catalog, build_catalog
from services.recommendation.model import build_model
from services.stream.audio_ingest import ingest_audio
from services.user.accounts import DemoAccount, create_demo_accounts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatePaths:
    """Paths of the stores under the state folder."""

    root: Path

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.db"

    @property
    def rights(self) -> Path:
        return self.root / "rights.db"

    @property
    def model(self) -> Path:
        return self.root / "recommendation" / "model.npz"

    @property
    def users(self) -> Path:
        return self.root / "users.db"


def copy_stores(source: StatePaths, target: Path) -> StatePaths:
    """Copy the stores of `source` into the new folder `target`, with a fresh ledger.

    Renditions are linked, not copied. Tests and benchmarks run on such a copy, so
    their writes stay their own.
    """
    target.mkdir(parents=True)
    for store in (source.catalog, source.rights, source.users):
        shutil.copy2(store, target / store.name)
    copy = StatePaths(target)
    copy.model.parent.mkdir()
    shutil.copy2(source.model, copy.model)
    copy.objects.symlink_to(source.objects.resolve(), target_is_directory=True)
    return copy


@dataclass(frozen=True)
class SetupReport:
    """Counts of what the setup step built, and the demo accounts."""

    recordings: int
    renditions: int
    tracks: int
    withheld_pairs: int
    accounts: tuple[DemoAccount, ...]


def run_setup(
    data_dir: Path, state_dir: Path, *, force_audio: bool = False, progress: bool = True
) -> SetupReport:
    """Build every store under `state_dir` from the data in `data_dir`."""
    paths = StatePaths(state_dir)
    manifest = ingest_audio(data_dir, paths.objects, force=force_audio, progress=progress)
    tracks = build_catalog(data_dir, paths.catalog, manifest)

    catalog = Catalog(paths.catalog)
    try:
        withheld = build_rights(
            ((track.track_id, track.album_id) for track in catalog.iter_all()), paths.rights
        )
        build_model(catalog, paths.model)
    finally:
        catalog.close()

    accounts = create_demo_accounts(paths.users)
    return SetupReport(len(manifest.recordings), len(manifest.renditions), tracks, withheld, accounts)
