"""Bearer-token authentication of gateway calls through the user service."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from backbeat.common.v1 import common_pb2
from backbeat.user.v1 import user_service_pb2 as user_pb
from backbeat.user.v1 import user_service_pb2_grpc as user_grpc
from mesh.client import Downstream
from mesh.errors import DeadlineExceeded, DownstreamError, Unauthenticated, Unavailable
from mesh.ratelimit import UserRateLimiter
from mesh.tracing import annotate


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """Return the token of the "authorization: Bearer <token>" metadata entry."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("malformed authorization metadata: expected 'Bearer <access token>'")
            return token.strip()
    raise Unauthenticated("missing authorization metadata: expected 'Bearer <access token>'")


class Authenticator:
    """Validates sessions and applies the per-user rate limit."""

    def __init__(self, users: Downstream[user_grpc.UserServiceAsyncStub], limiter: UserRateLimiter) -> None:
        self._users = users
        self._limiter = limiter

    async def user(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> common_pb2.UserContext:
        """Return the caller's user context.

        Raises Unauthenticated for a bad token, ResourceExhausted over the rate limit, and
        Unavailable when the user service does not respond in time: a play is never let
        through unchecked.
        """
        token = bearer_token(metadata)
        try:
            response = await self._users.unary(
                self._users.stub.ValidateSession, user_pb.ValidateSessionRequest(access_token=token)
            )
        except DownstreamError as error:
            if error.code == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated(error.message) from None
            raise Unavailable(f"sign-in check unavailable, try again shortly: {error}") from None
        except DeadlineExceeded as error:
            raise Unavailable(f"sign-in check unavailable, try again shortly: {error}") from None
        user = response.user
        annotate(user_id=user.user_id, user_tier=common_pb2.Tier.Name(user.tier), market=user.market)
        await self._limiter.check(user.user_id)
        return user
