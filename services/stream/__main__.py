"""Run the stream service: python -m services.stream."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from backbeat.licensing.v1 import licensing_service_pb2, licensing_service_pb2_grpc
from backbeat.metadata.v1 import metadata_service_pb2, metadata_service_pb2_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2, recommendation_service_pb2_grpc
from backbeat.stream.v1 import stream_service_pb2, stream_service_pb2_grpc
from mesh.client import Connector
from mesh.config import MeshSettings, load_settings
from mesh.server import ServiceDefinition, run, serve_service, start_process
from services.markets import MARKETS
from services.stream.authorize import PlayAuthorizer
from services.stream.fallbacks import DEFAULTS_REFRESH_S, GENRES, StaleTracks
from services.stream.grants import GrantSigner
from services.stream.origin import ObjectStore
from services.stream.servicer import StreamServicer

SERVICE = "stream"
logger = logging.getLogger(__name__)


class StreamSettings(MeshSettings):
    """Settings of the stream service."""

    licensing_address: str = Field("127.0.0.1:50054", description="host:port of the licensing service.")
    metadata_address: str = Field("127.0.0.1:50053", description="host:port of the metadata service.")
    recommendation_address: str = Field(
        "127.0.0.1:50055", description="host:port of the recommendation service."
    )
    edge_address: str = Field(
        "", description="host:port of the edge named in responses; the gateway may set its own."
    )
    licensing_budget_s: float = Field(0.030, gt=0, description="Budget of the license check, seconds.")
    metadata_budget_s: float = Field(0.015, gt=0, description="Budget of each metadata call, seconds.")
    recommendation_budget_s: float = Field(0.020, gt=0, description="Budget of the optional recommendations.")
    grant_ttl_s: float = Field(7200.0, gt=0, description="Lifetime of stream grants, seconds.")
    track_cache_s: float = Field(
        300.0, ge=0, description="Seconds a track copy is used without asking metadata; 0 asks every time."
    )
    popular_threshold: int = Field(
        70, ge=0, le=100, description="Catalog popularity at which a track is popular."
    )


async def refresh_genre_defaults(authorizer: PlayAuthorizer) -> None:
    """Load the genre default lists now and every DEFAULTS_REFRESH_S; retry soon while none load."""
    while True:
        loaded = await authorizer.load_genre_defaults(MARKETS, GENRES)
        logger.info("genre default lists loaded: %d", loaded)
        await asyncio.sleep(DEFAULTS_REFRESH_S if loaded else 5.0)


async def main() -> None:
    settings = load_settings(StreamSettings)
    provider = start_process(SERVICE, settings)

    connector = Connector.from_settings(SERVICE, settings)
    licensing = connector.connect(
        "licensing",
        settings.licensing_address,
        licensing_service_pb2_grpc.LicensingServiceStub,
        licensing_service_pb2.DESCRIPTOR.services_by_name["LicensingService"],
        settings.licensing_budget_s,
        idempotent_methods=("CheckLicense",),
    )
    metadata = connector.connect(
        "metadata",
        settings.metadata_address,
        metadata_service_pb2_grpc.MetadataServiceStub,
        metadata_service_pb2.DESCRIPTOR.services_by_name["MetadataService"],
        settings.metadata_budget_s,
        idempotent_methods=("GetTrack", "BatchGetTracks"),
    )
    recommendation = connector.connect(
        "recommendation",
        settings.recommendation_address,
        recommendation_service_pb2_grpc.RecommendationServiceStub,
        recommendation_service_pb2.DESCRIPTOR.services_by_name["RecommendationService"],
        settings.recommendation_budget_s,
    )
    authorizer = PlayAuthorizer(
        licensing=licensing,
        metadata=metadata,
        recommendation=recommendation,
        signer=GrantSigner(settings.secret, settings.grant_ttl_s),
        popular_threshold=settings.popular_threshold,
        recommendation_budget_s=settings.recommendation_budget_s,
        stale=StaleTracks(fresh_s=settings.track_cache_s),
    )
    refresh = asyncio.create_task(refresh_genre_defaults(authorizer))

    async def close() -> None:
        refresh.cancel()
        await connector.close()

    servicer = StreamServicer(authorizer, ObjectStore(settings.state_dir / "objects"), settings.edge_address)
    definition = ServiceDefinition.of(
        stream_service_pb2.DESCRIPTOR,
        "StreamService",
        stream_service_pb2_grpc.add_StreamServiceServicer_to_server,
        servicer,
    )
    await connector.warm_up()
    await serve_service(SERVICE, settings, [definition], cleanups=[close], tracer_provider=provider)


if __name__ == "__main__":
    run(main)
