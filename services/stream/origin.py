"""The audio origin: reads renditions from the object store in chunks.

Object keys look like "renditions/<recording>/<kbps>.mp3"; anything else,
including a path that leaves the store, is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from mesh.errors import InvalidArgument, NotFound, OutOfRange

DEFAULT_CHUNK_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 1024 * 1024
OBJECT_KEY = re.compile(r"renditions/[a-z0-9][a-z0-9_-]*/[0-9]+\.mp3")


class ObjectStore:
    """A directory laid out like an object store bucket."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, object_key: str) -> Path:
        """Return the file of `object_key`, rejecting keys outside the renditions layout."""
        if not OBJECT_KEY.fullmatch(object_key):
            raise InvalidArgument("object_key", object_key, "a key like renditions/<recording>/<kbps>.mp3")
        path = self.root / object_key
        if not path.is_file():
            raise NotFound(f"object {object_key!r} not found in the object store")
        return path

    def read_chunks(self, object_key: str, offset: int, chunk_bytes: int) -> Iterator[tuple[int, bytes, int]]:
        """Yield (offset, data, total size) chunks of `object_key` from `offset` to the end."""
        if offset < 0:
            raise InvalidArgument("offset", offset, "a byte offset of 0 or more")
        if not 0 <= chunk_bytes <= MAX_CHUNK_BYTES:
            raise InvalidArgument(
                "chunk_size", chunk_bytes, f"0 (for {DEFAULT_CHUNK_BYTES}) up to {MAX_CHUNK_BYTES}"
            )
        chunk_bytes = chunk_bytes or DEFAULT_CHUNK_BYTES
        path = self.path_of(object_key)
        total = path.stat().st_size
        if offset > total:
            raise OutOfRange(f"offset {offset} is past the end of {object_key} ({total} bytes)")

        with path.open("rb") as handle:
            handle.seek(offset)
            position = offset
            while data := handle.read(chunk_bytes):
                yield position, data, total
                position += len(data)
