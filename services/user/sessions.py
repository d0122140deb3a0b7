"""Sessions: a JWT access token backed by a server-side session record with a TTL.

The token is HS256-signed, carries exp, iat, sub and sid, and is accepted only
with the server's algorithm list and a small leeway for clock skew. The
session record lives in the key-value store under
"backbeat:user:session:<sid>" for the token's lifetime; deleting it revokes
the token on the next call.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import jwt

from mesh.errors import Unauthenticated
from mesh.kv import KeyValueStore
from services.user.accounts import Account

logger = logging.getLogger(__name__)

ALGORITHMS = ["HS256"]
SESSION_KEY = "backbeat:user:session:{}"


@dataclass(frozen=True)
class Identity:
    """The user context a valid session resolves to."""

    user_id: str
    tier: str
    market: str
    display_name: str
    session_id: str


@dataclass(frozen=True)
class IssuedToken:
    """An access token and when it expires, in seconds since the epoch."""

    access_token: str
    expires_at: float
    identity: Identity


class SessionManager:
    """Issues, validates and revokes access tokens and their sessions."""

    def __init__(
        self,
        store: KeyValueStore,
        secret: str,
        ttl_s: float,
        leeway_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._secret = secret
        self._ttl_s = ttl_s
        self._leeway_s = leeway_s
        self._clock = clock

    async def open(self, account: Account) -> IssuedToken:
        """Open a session for `account` and return its signed access token."""
        now = self._clock()
        session_id = secrets.token_urlsafe(16)
        identity = Identity(account.user_id, account.tier, account.market, account.display_name, session_id)
        claims = {
            "sub": account.user_id,
            "sid": session_id,
            "tier": account.tier,
            "iat": int(now),
            "exp": int(now + self._ttl_s),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHMS[0])
        await self._store.set(
            SESSION_KEY.format(session_id), json.dumps(asdict(identity)).encode(), self._ttl_s
        )
        logger.info("session %s opened for user %s", session_id, account.user_id)
        return IssuedToken(token, now + self._ttl_s, identity)

    def _claims(self, token: str) -> dict[str, object]:
        if not token:
            raise Unauthenticated("missing access token")
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                self._secret,
                algorithms=ALGORITHMS,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "sub", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired; log in again") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid access token: {error}") from None
        return claims

    async def validate(self, token: str) -> Identity:
        """Return the identity of a valid, unrevoked token, else raise Unauthenticated."""
        claims = self._claims(token)
        record = await self._store.get(SESSION_KEY.format(claims["sid"]))
        if record is None:
            raise Unauthenticated("session expired or revoked; log in again")
        identity = Identity(**json.loads(record))
        if identity.user_id != claims["sub"]:
            raise Unauthenticated("access token does not match its session")
        return identity

    async def revoke(self, token: str) -> bool:
        """End the session of `token`; return True when it was still live."""
        claims = self._claims(token)
        revoked = await self._store.delete(SESSION_KEY.format(claims["sid"]))
        logger.info("session %s of user %s revoked", claims["sid"], claims["sub"])
        return revoked
