"""Run the recommendation service: python -m services.recommendation."""

from __future__ import annotations

from pydantic import Field

from backbeat.licensing.v1 import licensing_service_pb2, licensing_service_pb2_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2, recommendation_service_pb2_grpc
from mesh.client import Connector
from mesh.config import MeshSettings, load_settings
from mesh.server import ServiceDefinition, run, serve_service, start_process
from services.recommendation.engine import Recommender
from services.recommendation.model import load_model
from services.recommendation.servicer import RecommendationServicer

SERVICE = "recommendation"


class RecommendationSettings(MeshSettings):
    """Settings of the recommendation service."""

    licensing_address: str = Field("127.0.0.1:50054", description="host:port of the licensing service.")
    licensing_budget_s: float = Field(0.010, gt=0, description="Budget of each licensing call, seconds.")


async def main() -> None:
    settings = load_settings(RecommendationSettings)
    provider = start_process(SERVICE, settings)

    recommender = Recommender(load_model(settings.state_dir / "recommendation" / "model.npz"))
    recommender.warm_up()
    connector = Connector.from_settings(SERVICE, settings)
    licensing = connector.connect(
        "licensing",
        settings.licensing_address,
        licensing_service_pb2_grpc.LicensingServiceStub,
        licensing_service_pb2.DESCRIPTOR.services_by_name["LicensingService"],
        settings.licensing_budget_s,
        idempotent_methods=("CheckLicenses",),
    )
    definition = ServiceDefinition.of(
        recommendation_service_pb2.DESCRIPTOR,
        "RecommendationService",
        recommendation_service_pb2_grpc.add_RecommendationServiceServicer_to_server,
        RecommendationServicer(recommender, licensing),
    )
    await connector.warm_up()
    await serve_service(SERVICE, settings, [definition], cleanups=[connector.close], tracer_provider=provider)


if __name__ == "__main__":
    run(main)
