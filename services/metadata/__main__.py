"""Run the metadata service: python -m services.metadata."""

from __future__ import annotations

import asyncio

from pydantic import Field

from backbeat.metadata.v1 import metadata_service_pb2, metadata_service_pb2_grpc
from mesh.config import MeshSettings, load_settings
from mesh.kv import open_store
from mesh.server import ServiceDefinition, run, serve_service, start_process
from services.metadata.catalog import Catalog
from services.metadata.servicer import MetadataServicer
from services.metadata.tracks import TrackLookup

SERVICE = "metadata"


class MetadataSettings(MeshSettings):
    """Settings of the metadata service."""

    cache_prewarm: int = Field(
        30_000, ge=0, description="Most popular tracks loaded into the cache at start, in the background."
    )


async def main() -> None:
    settings = load_settings(MetadataSettings)
    provider = start_process(SERVICE, settings)

    catalog = Catalog(settings.state_dir / "catalog.db")
    cache = open_store(settings.redis_url, settings.redis_timeout_s)
    lookup = TrackLookup(catalog, cache)
    servicer = MetadataServicer(lookup)
    prewarm = asyncio.create_task(lookup.prewarm(settings.cache_prewarm))

    async def close() -> None:
        prewarm.cancel()
        await cache.close()
        catalog.close()

    definition = ServiceDefinition.of(
        metadata_service_pb2.DESCRIPTOR,
        "MetadataService",
        metadata_service_pb2_grpc.add_MetadataServiceServicer_to_server,
        servicer,
    )
    await serve_service(SERVICE, settings, [definition], cleanups=[close], tracer_provider=provider)


if __name__ == "__main__":
    run(main)
