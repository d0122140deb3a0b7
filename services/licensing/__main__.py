"""Run the licensing service: python -m services.licensing."""

from __future__ import annotations

from backbeat.licensing.v1 import licensing_service_pb2, licensing_service_pb2_grpc
from mesh.config import MeshSettings, load_settings
from mesh.server import ServiceDefinition, run, serve_service, start_process
from services.licensing.ledger import Ledger
from services.licensing.rights import Rights
from services.licensing.servicer import LicensingServicer

SERVICE = "licensing"


async def main() -> None:
    settings = load_settings(MeshSettings)
    provider = start_process(SERVICE, settings)

    rights = Rights(settings.state_dir / "rights.db")
    ledger = Ledger(settings.state_dir / "ledger.db")

    async def close() -> None:
        rights.close()
        ledger.close()

    definition = ServiceDefinition.of(
        licensing_service_pb2.DESCRIPTOR,
        "LicensingService",
        licensing_service_pb2_grpc.add_LicensingServiceServicer_to_server,
        LicensingServicer(rights, ledger),
    )
    await serve_service(SERVICE, settings, [definition], cleanups=[close], tracer_provider=provider)


if __name__ == "__main__":
    run(main)
