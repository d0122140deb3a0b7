"""Run the edge service: python -m services.edge."""

from __future__ import annotations

from pydantic import Field

from backbeat.edge.v1 import edge_service_pb2, edge_service_pb2_grpc
from backbeat.stream.v1 import stream_service_pb2, stream_service_pb2_grpc
from mesh.client import Connector
from mesh.config import MeshSettings, load_settings
from mesh.server import ServiceDefinition, run, serve_service, start_process
from services.edge.cache import ChunkCache
from services.edge.delivery import AudioDelivery
from services.edge.servicer import EdgeServicer
from services.stream.grants import GrantSigner

SERVICE = "edge"


class EdgeSettings(MeshSettings):
    """Settings of the edge service."""

    stream_address: str = Field(
        "127.0.0.1:50056", description="host:port of the stream service (the origin)."
    )
    cache_bytes: int = Field(256 * 1024 * 1024, gt=0, description="Byte budget of the audio cache.")
    chunk_bytes: int = Field(64 * 1024, ge=4096, le=1024 * 1024, description="Bytes per audio chunk.")
    storage_budget_s: float = Field(0.045, gt=0, description="Time to the first origin byte, seconds.")


async def main() -> None:
    settings = load_settings(EdgeSettings)
    provider = start_process(SERVICE, settings)

    connector = Connector.from_settings(SERVICE, settings)
    origin = connector.connect(
        "stream",
        settings.stream_address,
        stream_service_pb2_grpc.StreamServiceStub,
        stream_service_pb2.DESCRIPTOR.services_by_name["StreamService"],
        settings.storage_budget_s,
    )
    delivery = AudioDelivery(
        signer=GrantSigner(settings.secret, ttl_s=0.0),
        cache=ChunkCache(settings.cache_bytes),
        origin=origin,
        chunk_bytes=settings.chunk_bytes,
        storage_budget_s=settings.storage_budget_s,
    )
    definition = ServiceDefinition.of(
        edge_service_pb2.DESCRIPTOR,
        "EdgeService",
        edge_service_pb2_grpc.add_EdgeServiceServicer_to_server,
        EdgeServicer(delivery),
    )
    await connector.warm_up()
    await serve_service(SERVICE, settings, [definition], cleanups=[connector.close], tracer_provider=provider)


if __name__ == "__main__":
    run(main)
