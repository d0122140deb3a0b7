"""Run the user service: python -m services.user."""

from __future__ import annotations

from pydantic import Field

from backbeat.user.v1 import user_service_pb2, user_service_pb2_grpc
from mesh.config import MeshSettings, load_settings
from mesh.kv import open_store
from mesh.server import ServiceDefinition, run, serve_service, start_process
from services.user.accounts import AccountStore
from services.user.servicer import UserServicer
from services.user.sessions import SessionManager

SERVICE = "user"


class UserSettings(MeshSettings):
    """Settings of the user service."""

    token_ttl_s: float = Field(3600.0, gt=0, description="Lifetime of access tokens and sessions, seconds.")
    token_leeway_s: float = Field(
        5.0, ge=0, le=60, description="Accepted clock skew for token times, seconds."
    )


async def main() -> None:
    settings = load_settings(UserSettings)
    provider = start_process(SERVICE, settings)

    accounts = AccountStore(settings.state_dir / "users.db")
    store = open_store(settings.redis_url, settings.redis_timeout_s)
    sessions = SessionManager(store, settings.secret, settings.token_ttl_s, settings.token_leeway_s)
    servicer = UserServicer(accounts, sessions)

    async def close() -> None:
        await store.close()
        accounts.close()

    definition = ServiceDefinition.of(
        user_service_pb2.DESCRIPTOR,
        "UserService",
        user_service_pb2_grpc.add_UserServiceServicer_to_server,
        servicer,
    )
    await serve_service(SERVICE, settings, [definition], cleanups=[close], tracer_provider=provider)


if __name__ == "__main__":
    run(main)
