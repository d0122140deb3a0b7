"""Stream grants: signed, expiring permission to stream one rendition.

A grant is an HS256 JWT signed with the mesh secret that the stream service
issues and every edge verifies locally, without a call. Claims: sub (user),
pid (playback id), trk (track), obj (object key), kbps, ct (content type),
pop (true for popular tracks, which edges cache longer), iat and exp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from mesh.errors import Unauthenticated

ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "pid", "trk", "obj", "kbps", "ct", "pop"]


@dataclass(frozen=True)
class Grant:
    """Permission carried by a grant: who may stream which rendition until when."""

    user_id: str
    playback_id: str
    track_id: str
    object_key: str
    bitrate_kbps: int
    content_type: str
    popular: bool
    expires_at: float


class GrantSigner:
    """Signs and verifies grants with one shared secret."""

    def __init__(
        self, secret: str, ttl_s: float, leeway_s: float = 5.0, clock: Callable[[], float] = time.time
    ):
        self._secret = secret
        self._ttl_s = ttl_s
        self._leeway_s = leeway_s
        self._clock = clock

    def sign(
        self,
        *,
        user_id: str,
        playback_id: str,
        track_id: str,
        object_key: str,
        bitrate_kbps: int,
        content_type: str,
        popular: bool,
    ) -> tuple[str, float]:
        """Return a grant token and its expiry time in seconds since the epoch."""
        now = self._clock()
        expires_at = now + self._ttl_s
        claims = {
            "sub": user_id,
            "pid": playback_id,
            "trk": track_id,
            "obj": object_key,
            "kbps": bitrate_kbps,
            "ct": content_type,
            "pop": popular,
            "iat": int(now),
            "exp": int(expires_at),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHMS[0]), expires_at

    def verify(self, token: str) -> Grant:
        """Return the grant of a valid token, else raise Unauthenticated."""
        if not token:
            raise Unauthenticated("missing stream grant")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=ALGORITHMS,
                leeway=self._leeway_s,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("stream grant expired; call Play again") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid stream grant: {error}") from None
        return Grant(
            user_id=claims["sub"],
            playback_id=claims["pid"],
            track_id=claims["trk"],
            object_key=claims["obj"],
            bitrate_kbps=int(claims["kbps"]),
            content_type=claims["ct"],
            popular=bool(claims["pop"]),
            expires_at=float(claims["exp"]),
        )
