"""UserService: thin gRPC layer over accounts and sessions."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from backbeat.common.v1 import common_pb2
from backbeat.user.v1 import user_service_pb2 as pb
from backbeat.user.v1 import user_service_pb2_grpc as pb_grpc
from mesh.errors import InvalidArgument, Unauthenticated
from mesh.tracing import annotate
from services.user.accounts import AccountStore
from services.user.sessions import Identity, SessionManager

TIER_TO_PROTO = {"free": common_pb2.TIER_FREE, "premium": common_pb2.TIER_PREMIUM}
PROTO_TO_TIER = {value: key for key, value in TIER_TO_PROTO.items()}


def identity_to_proto(identity: Identity) -> common_pb2.UserContext:
    """Convert an Identity to the UserContext message."""
    return common_pb2.UserContext(
        user_id=identity.user_id,
        tier=TIER_TO_PROTO[identity.tier],
        market=identity.market,
        display_name=identity.display_name,
        session_id=identity.session_id,
    )


class UserServicer(pb_grpc.UserServiceServicer):
    """Logs listeners in and validates their sessions."""

    def __init__(self, accounts: AccountStore, sessions: SessionManager) -> None:
        self._accounts = accounts
        self._sessions = sessions

    async def Login(
        self, request: pb.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LoginResponse:
        if not request.email:
            raise InvalidArgument("email", request.email, "a non-empty account email")
        if not request.password:
            raise InvalidArgument("password", "", "a non-empty password")

        # Argon2 verification is CPU-bound for tens of milliseconds, so it runs off the event loop.
        account = await asyncio.to_thread(self._accounts.verify, request.email, request.password)
        if account is None:
            raise Unauthenticated("wrong email or password")

        issued = await self._sessions.open(account)
        annotate(user_id=account.user_id, user_tier=account.tier, market=account.market)
        expires_at = timestamp_pb2.Timestamp()
        expires_at.FromNanoseconds(int(issued.expires_at * 1e9))
        return pb.LoginResponse(
            access_token=issued.access_token, expires_at=expires_at, user=identity_to_proto(issued.identity)
        )

    async def ValidateSession(
        self, request: pb.ValidateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ValidateSessionResponse:
        identity = await self._sessions.validate(request.access_token)
        annotate(user_id=identity.user_id, user_tier=identity.tier, market=identity.market)
        return pb.ValidateSessionResponse(user=identity_to_proto(identity))

    async def Logout(
        self, request: pb.LogoutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LogoutResponse:
        return pb.LogoutResponse(revoked=await self._sessions.revoke(request.access_token))
