"""Run the gateway: python -m services.gateway."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from backbeat.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from backbeat.licensing.v1 import licensing_service_pb2, licensing_service_pb2_grpc
from backbeat.metadata.v1 import metadata_service_pb2, metadata_service_pb2_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2, recommendation_service_pb2_grpc
from backbeat.stream.v1 import stream_service_pb2, stream_service_pb2_grpc
from backbeat.user.v1 import user_service_pb2, user_service_pb2_grpc
from mesh.client import Connector
from mesh.config import MeshSettings, load_settings
from mesh.ratelimit import UserRateLimiter
from mesh.server import ServiceDefinition, run, serve_service, start_process
from services.gateway.admission import PriorityAdmission
from services.gateway.auth import Authenticator
from services.gateway.feedback import FeedbackOutbox
from services.gateway.servicer import Backends, GatewayServicer

SERVICE = "gateway"
logger = logging.getLogger(__name__)


class GatewaySettings(MeshSettings):
    """Settings of the gateway."""

    user_address: str = Field("127.0.0.1:50052", description="host:port of the user service.")
    metadata_address: str = Field("127.0.0.1:50053", description="host:port of the metadata service.")
    licensing_address: str = Field("127.0.0.1:50054", description="host:port of the licensing service.")
    recommendation_address: str = Field(
        "127.0.0.1:50055", description="host:port of the recommendation service."
    )
    stream_address: str = Field("127.0.0.1:50056", description="host:port of the stream service.")
    edge_address: str = Field(
        "127.0.0.1:50057", description="host:port of the edge that clients stream from."
    )
    session_budget_s: float = Field(0.025, gt=0, description="Budget of session validation, seconds.")
    authorization_budget_s: float = Field(0.030, gt=0, description="Budget of play authorization, seconds.")
    metadata_budget_s: float = Field(0.015, gt=0, description="Budget of metadata lookups, seconds.")
    search_budget_s: float = Field(0.100, gt=0, description="Budget of catalog search, seconds.")
    recommendation_budget_s: float = Field(
        0.050, gt=0, description="Budget of recommendation calls, seconds."
    )
    playback_budget_s: float = Field(0.100, gt=0, description="Budget of playback event recording, seconds.")
    play_budget_s: float = Field(0.200, gt=0, description="Budget of a whole Play call, seconds.")
    login_budget_s: float = Field(
        2.0, gt=0, description="Budget of a login, which includes password hashing."
    )
    max_in_flight: int = Field(
        256, gt=0, description="Calls the gateway serves at once before shedding load."
    )
    free_share: float = Field(0.75, gt=0, le=1, description="Share of max_in_flight free-tier calls may use.")
    rate_limit_per_minute: int = Field(10_000, gt=0, description="Requests per user per minute.")


def connect_backends(connector: Connector, settings: GatewaySettings) -> Backends:
    """Create the Downstream of every service the gateway calls."""
    return Backends(
        users=connector.connect(
            "user",
            settings.user_address,
            user_service_pb2_grpc.UserServiceStub,
            user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
            settings.session_budget_s,
            idempotent_methods=("ValidateSession",),
        ),
        stream=connector.connect(
            "stream",
            settings.stream_address,
            stream_service_pb2_grpc.StreamServiceStub,
            stream_service_pb2.DESCRIPTOR.services_by_name["StreamService"],
            settings.authorization_budget_s,
        ),
        metadata=connector.connect(
            "metadata",
            settings.metadata_address,
            metadata_service_pb2_grpc.MetadataServiceStub,
            metadata_service_pb2.DESCRIPTOR.services_by_name["MetadataService"],
            settings.metadata_budget_s,
            idempotent_methods=("GetTrack", "BatchGetTracks", "SearchTracks"),
        ),
        recommendation=connector.connect(
            "recommendation",
            settings.recommendation_address,
            recommendation_service_pb2_grpc.RecommendationServiceStub,
            recommendation_service_pb2.DESCRIPTOR.services_by_name["RecommendationService"],
            settings.recommendation_budget_s,
        ),
        licensing=connector.connect(
            "licensing",
            settings.licensing_address,
            licensing_service_pb2_grpc.LicensingServiceStub,
            licensing_service_pb2.DESCRIPTOR.services_by_name["LicensingService"],
            settings.playback_budget_s,
        ),
    )


async def main() -> None:
    settings = load_settings(GatewaySettings)
    provider = start_process(SERVICE, settings)

    connector = Connector.from_settings(SERVICE, settings)
    backends = connect_backends(connector, settings)
    outbox = FeedbackOutbox(backends.recommendation)
    outbox_task = asyncio.create_task(outbox.run())

    async def stop_outbox() -> None:
        outbox_task.cancel()
        if outbox.pending:
            logger.warning("stopping with %d feedback events undelivered", outbox.pending)

    limiter = UserRateLimiter(settings.rate_limit_per_minute, settings.redis_url, settings.redis_timeout_s)
    authenticator = Authenticator(backends.users, limiter)
    servicer = GatewayServicer(
        backends,
        authenticator,
        play_budget_s=settings.play_budget_s,
        login_budget_s=settings.login_budget_s,
        search_budget_s=settings.search_budget_s,
        admission=PriorityAdmission(settings.max_in_flight, settings.free_share),
        feedback=outbox,
        edge_address=settings.edge_address,
    )
    definition = ServiceDefinition.of(
        gateway_service_pb2.DESCRIPTOR,
        "GatewayService",
        gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server,
        servicer,
    )
    await connector.warm_up()
    await serve_service(
        SERVICE,
        settings,
        [definition],
        cleanups=[stop_outbox, connector.close, limiter.close],
        tracer_provider=provider,
    )


if __name__ == "__main__":
    run(main)
