"""Tests for the user service: accounts, sessions, the Redis session store and the UserService API.

Domain tests use a fresh SQLite file and a MemoryStore driven by a fake clock. The gRPC tests run
UserServicer in an in-process server on a free loopback port, with the demo accounts that setup
creates and sessions stored in the private redis-server of the `redis_url` fixture.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import jwt
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backbeat.common.v1 import common_pb2
from backbeat.user.v1 import user_service_pb2 as pb
from backbeat.user.v1 import user_service_pb2_grpc as pb_grpc
from mesh.errors import InvalidArgument, Unauthenticated
from mesh.kv import KeyValueStore, MemoryStore, RedisStore, StoreUnavailable
from mesh.server import ServiceDefinition, build_server
from services.setup import StatePaths
from services.user.accounts import DEMO_ACCOUNTS, Account, AccountStore
from services.user.servicer import UserServicer
from services.user.sessions import SESSION_KEY, SessionManager

# 64 bytes, so PyJWT does not warn about a short HMAC key for HS256 or HS512.
SECRET = "backbeat-user-tests-secret-0123456789abcdef0123456789abcdef012345"
OTHER_SECRET = "another-secret-that-the-user-service-never-uses-0123456789abcdef"
TTL_S = 600.0
LEEWAY_S = 5.0
REDIS_TIMEOUT_S = 2.0

ACCOUNT = Account("u-test", "Listener@Example.test", "premium", "SE", "Test listener")
PASSWORD = "correct horse battery staple"
DEMO = DEMO_ACCOUNTS[1]


class FakeClock:
    """A clock that moves only when a test advances it, in seconds."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """Return the field names of the google.rpc.BadRequest details of a failed call."""
    status = rpc_status.from_call(error)
    fields: list[str] = []
    if status is None:
        return fields
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(violation.field for violation in bad_request.field_violations)
    return fields


async def close_redis_store(store: RedisStore) -> None:
    """Close `store`, which disconnects its pool."""
    await store.close()


# Accounts


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountStore]:
    """An account store in a fresh SQLite file with ACCOUNT in it, hashed with cheap Argon2id parameters."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    store = AccountStore(tmp_path_factory.mktemp("accounts") / "users.db", hasher)
    store.upsert(ACCOUNT, PASSWORD)
    yield store
    store.close()


def test_verify_right_password(accounts: AccountStore) -> None:
    account = accounts.verify(ACCOUNT.email, PASSWORD)

    assert account == Account("u-test", "listener@example.test", "premium", "SE", "Test listener")


def test_verify_email_ignores_case(accounts: AccountStore) -> None:
    assert accounts.verify("LISTENER@example.TEST", PASSWORD) is not None


def test_verify_wrong_password(accounts: AccountStore) -> None:
    assert accounts.verify(ACCOUNT.email, PASSWORD + "!") is None


def test_verify_empty_password(accounts: AccountStore) -> None:
    assert accounts.verify(ACCOUNT.email, "") is None


def test_verify_unknown_email(accounts: AccountStore) -> None:
    assert accounts.verify("nobody@example.test", PASSWORD) is None


def test_upsert_stores_argon2id_hash(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "users.db", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    store.upsert(ACCOUNT, PASSWORD)
    store.close()

    db = sqlite3.connect(tmp_path / "users.db")
    (stored_hash,) = db.execute("SELECT password_hash FROM accounts").fetchone()
    db.close()

    assert stored_hash.startswith("$argon2id$")
    assert PASSWORD not in stored_hash


def test_upsert_replaces_password(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "users.db", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    store.upsert(ACCOUNT, PASSWORD)
    store.upsert(ACCOUNT, "a new password")

    old = store.verify(ACCOUNT.email, PASSWORD)
    new = store.verify(ACCOUNT.email, "a new password")
    store.close()

    assert old is None
    assert new is not None


def test_upsert_rejects_unknown_tier(accounts: AccountStore) -> None:
    with pytest.raises(ValueError, match="invalid tier 'gold'"):
        accounts.upsert(Account("u-gold", "gold@example.test", "gold", "US", "Gold"), PASSWORD)


def test_upsert_rejects_unknown_market(accounts: AccountStore) -> None:
    with pytest.raises(InvalidArgument) as raised:
        accounts.upsert(Account("u-fr", "fr@example.test", "free", "FR", "France"), PASSWORD)

    assert raised.value.field == "market"


# Sessions with a MemoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000.0)


@pytest.fixture
def memory(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def sessions(memory: MemoryStore) -> SessionManager:
    return SessionManager(memory, SECRET, TTL_S, LEEWAY_S)


def signed_token(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    """Build a token with PyJWT directly, bypassing SessionManager.open."""
    return jwt.encode(claims, key, algorithm=algorithm)


def session_claims(session_id: str, user_id: str = ACCOUNT.user_id) -> dict[str, object]:
    now = int(time.time())
    return {"sub": user_id, "sid": session_id, "iat": now, "exp": now + int(TTL_S)}


async def test_open_then_validate(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)

    identity = await sessions.validate(issued.access_token)

    assert identity == issued.identity
    assert identity.user_id == ACCOUNT.user_id
    assert identity.tier == "premium"
    assert identity.market == "SE"


async def test_open_token_claims(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)

    header = jwt.get_unverified_header(issued.access_token)
    claims = jwt.decode(issued.access_token, SECRET, algorithms=["HS256"])

    assert header["alg"] == "HS256"
    assert claims["sub"] == ACCOUNT.user_id
    assert claims["sid"] == issued.identity.session_id
    assert claims["exp"] - claims["iat"] == int(TTL_S)


async def test_open_distinct_session_ids(sessions: SessionManager) -> None:
    first = await sessions.open(ACCOUNT)
    second = await sessions.open(ACCOUNT)

    assert first.identity.session_id != second.identity.session_id


async def test_revoke_rejects_next_validate(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)

    revoked = await sessions.revoke(issued.access_token)

    assert revoked is True
    with pytest.raises(Unauthenticated, match="expired or revoked"):
        await sessions.validate(issued.access_token)


async def test_revoke_twice_returns_false(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)
    await sessions.revoke(issued.access_token)

    assert await sessions.revoke(issued.access_token) is False


async def test_revoke_keeps_other_sessions(sessions: SessionManager) -> None:
    kept = await sessions.open(ACCOUNT)
    ended = await sessions.open(ACCOUNT)

    await sessions.revoke(ended.access_token)

    assert await sessions.validate(kept.access_token) == kept.identity


async def test_session_live_before_ttl(sessions: SessionManager, clock: FakeClock) -> None:
    issued = await sessions.open(ACCOUNT)
    clock.advance(TTL_S - 1)

    assert await sessions.validate(issued.access_token) == issued.identity


async def test_session_expires_after_ttl(sessions: SessionManager, clock: FakeClock) -> None:
    issued = await sessions.open(ACCOUNT)
    clock.advance(TTL_S + 1)

    with pytest.raises(Unauthenticated, match="expired or revoked"):
        await sessions.validate(issued.access_token)


async def test_validate_missing_token(sessions: SessionManager) -> None:
    with pytest.raises(Unauthenticated, match="missing access token"):
        await sessions.validate("")


async def test_validate_malformed_token(sessions: SessionManager) -> None:
    with pytest.raises(Unauthenticated, match="invalid access token"):
        await sessions.validate("not.a.token")


async def test_token_other_secret_rejected(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)
    forged = signed_token(session_claims(issued.identity.session_id), key=OTHER_SECRET)

    with pytest.raises(Unauthenticated, match="invalid access token: Signature verification failed"):
        await sessions.validate(forged)


async def test_token_alg_none_rejected(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)
    unsigned = jwt.encode(session_claims(issued.identity.session_id), None, algorithm="none")

    with pytest.raises(Unauthenticated, match="invalid access token"):
        await sessions.validate(unsigned)


async def test_token_hs512_rejected(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)
    hs512 = signed_token(session_claims(issued.identity.session_id), algorithm="HS512")

    with pytest.raises(Unauthenticated, match="invalid access token: The specified alg value is not allowed"):
        await sessions.validate(hs512)


async def test_token_without_exp_rejected(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)
    claims = session_claims(issued.identity.session_id)
    del claims["exp"]

    with pytest.raises(Unauthenticated, match='missing the "exp" claim'):
        await sessions.validate(signed_token(claims))


async def test_token_without_sid_rejected(sessions: SessionManager) -> None:
    claims = session_claims("unused")
    del claims["sid"]

    with pytest.raises(Unauthenticated, match='missing the "sid" claim'):
        await sessions.validate(signed_token(claims))


async def test_token_iat_in_future_rejected(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)
    claims = session_claims(issued.identity.session_id)
    claims["iat"] = int(time.time() + 10 * LEEWAY_S)

    with pytest.raises(Unauthenticated, match="invalid access token"):
        await sessions.validate(signed_token(claims))


async def test_token_unknown_session_rejected(sessions: SessionManager) -> None:
    token = signed_token(session_claims(secrets.token_urlsafe(16)))

    with pytest.raises(Unauthenticated, match="expired or revoked"):
        await sessions.validate(token)


async def test_token_other_user_rejected(sessions: SessionManager) -> None:
    issued = await sessions.open(ACCOUNT)
    token = signed_token(session_claims(issued.identity.session_id, user_id="u-someone-else"))

    with pytest.raises(Unauthenticated, match="does not match its session"):
        await sessions.validate(token)


async def test_token_expired_beyond_leeway(memory: MemoryStore, sessions: SessionManager) -> None:
    # The issuing clock runs TTL + 30 s behind, so exp is 30 s in the past, beyond the 5 s leeway,
    # while the session record in the store is still live.
    past = SessionManager(memory, SECRET, TTL_S, LEEWAY_S, clock=lambda: time.time() - TTL_S - 30)
    issued = await past.open(ACCOUNT)

    with pytest.raises(Unauthenticated, match="access token expired"):
        await sessions.validate(issued.access_token)


async def test_token_expired_within_leeway(memory: MemoryStore, sessions: SessionManager) -> None:
    # exp is at most 3 s in the past, inside the 5 s leeway.
    past = SessionManager(memory, SECRET, TTL_S, LEEWAY_S, clock=lambda: time.time() - TTL_S - 2)
    issued = await past.open(ACCOUNT)

    assert await sessions.validate(issued.access_token) == issued.identity


async def test_revoke_invalid_token(sessions: SessionManager) -> None:
    with pytest.raises(Unauthenticated, match="invalid access token"):
        await sessions.revoke("not.a.token")


# Sessions and the Redis store


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, REDIS_TIMEOUT_S)
    yield store
    await close_redis_store(store)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client, to inspect what the services stored."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_redis_set_get_delete(redis_store: RedisStore) -> None:
    await redis_store.set("backbeat:test:key", b"value", 60)

    assert await redis_store.get("backbeat:test:key") == b"value"
    assert await redis_store.delete("backbeat:test:key") is True
    assert await redis_store.get("backbeat:test:key") is None
    assert await redis_store.delete("backbeat:test:key") is False


async def test_redis_session_ttl(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    sessions = SessionManager(redis_store, SECRET, TTL_S, LEEWAY_S)

    issued = await sessions.open(ACCOUNT)
    ttl_ms = await redis_client.pttl(SESSION_KEY.format(issued.identity.session_id))

    assert 0 < ttl_ms <= TTL_S * 1000


async def test_redis_revoke_deletes_record(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    sessions = SessionManager(redis_store, SECRET, TTL_S, LEEWAY_S)
    issued = await sessions.open(ACCOUNT)

    await sessions.revoke(issued.access_token)

    assert await redis_client.exists(SESSION_KEY.format(issued.identity.session_id)) == 0


async def test_redis_unreachable_raises(tmp_path: Path) -> None:
    store = RedisStore(f"unix://{tmp_path / 'no-redis.sock'}", REDIS_TIMEOUT_S)

    with pytest.raises(StoreUnavailable, match="redis GET failed"):
        await store.get("backbeat:test:key")

    await close_redis_store(store)


async def test_redis_close_disconnects(redis_url: str, redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_url, REDIS_TIMEOUT_S)
    await store.set("backbeat:test:key", b"value", 60)

    await store.close()
    clients = await redis_client.client_list()

    # Only redis_client itself should remain connected.
    assert len(clients) == 1


# UserService over gRPC


@asynccontextmanager
async def serve_user(accounts: AccountStore, store: KeyValueStore) -> AsyncIterator[pb_grpc.UserServiceStub]:
    """Run UserServicer in an in-process server on a free loopback port and return a stub for it."""
    servicer = UserServicer(accounts, SessionManager(store, SECRET, TTL_S, LEEWAY_S))
    definition = ServiceDefinition.of(
        pb.DESCRIPTOR, "UserService", pb_grpc.add_UserServiceServicer_to_server, servicer
    )
    built = build_server("user", [definition], "127.0.0.1", 0)
    await built.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            yield pb_grpc.UserServiceStub(channel)
    finally:
        await built.stop(0)


@pytest.fixture
def demo_accounts(state: StatePaths) -> Iterator[AccountStore]:
    """The demo accounts that setup created."""
    store = AccountStore(state.users)
    yield store
    store.close()


@pytest.fixture
async def user_api(
    demo_accounts: AccountStore, redis_store: RedisStore
) -> AsyncIterator[pb_grpc.UserServiceStub]:
    async with serve_user(demo_accounts, redis_store) as stub:
        yield stub


async def login(stub: pb_grpc.UserServiceStub) -> pb.LoginResponse:
    return await stub.Login(pb.LoginRequest(email=DEMO.email, password=DEMO.password))


async def test_login_returns_user(user_api: pb_grpc.UserServiceStub) -> None:
    response = await login(user_api)

    assert response.access_token
    assert response.user.user_id == DEMO.user_id
    assert response.user.tier == common_pb2.TIER_PREMIUM
    assert response.user.market == DEMO.market
    assert response.user.display_name == DEMO.display_name
    assert response.user.session_id


async def test_login_expires_at(user_api: pb_grpc.UserServiceStub) -> None:
    before = time.time()
    response = await login(user_api)
    after = time.time()

    expires_at = response.expires_at.ToNanoseconds() / 1e9

    assert before + TTL_S <= expires_at <= after + TTL_S


async def test_login_email_ignores_case(user_api: pb_grpc.UserServiceStub) -> None:
    response = await user_api.Login(pb.LoginRequest(email=DEMO.email.upper(), password=DEMO.password))

    assert response.user.user_id == DEMO.user_id


async def test_validate_session_returns_user(user_api: pb_grpc.UserServiceStub) -> None:
    login_response = await login(user_api)

    request = pb.ValidateSessionRequest(access_token=login_response.access_token)

    response = await user_api.ValidateSession(request)

    assert response.user == login_response.user


async def test_session_stored_in_redis(
    user_api: pb_grpc.UserServiceStub, redis_client: aioredis.Redis
) -> None:
    response = await login(user_api)

    ttl_ms = await redis_client.pttl(SESSION_KEY.format(response.user.session_id))

    assert 0 < ttl_ms <= TTL_S * 1000


async def test_logout_revokes_session(user_api: pb_grpc.UserServiceStub) -> None:
    token = (await login(user_api)).access_token

    response = await user_api.Logout(pb.LogoutRequest(access_token=token))

    assert response.revoked is True
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await user_api.ValidateSession(pb.ValidateSessionRequest(access_token=token))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_twice_not_revoked(user_api: pb_grpc.UserServiceStub) -> None:
    token = (await login(user_api)).access_token
    await user_api.Logout(pb.LogoutRequest(access_token=token))

    response = await user_api.Logout(pb.LogoutRequest(access_token=token))

    assert response.revoked is False


async def test_logout_invalid_token(user_api: pb_grpc.UserServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await user_api.Logout(pb.LogoutRequest(access_token="not.a.token"))

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_login_wrong_password(user_api: pb_grpc.UserServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await user_api.Login(pb.LoginRequest(email=DEMO.email, password="wrong password"))

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "wrong email or password"


async def test_login_unknown_email(user_api: pb_grpc.UserServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await user_api.Login(pb.LoginRequest(email="nobody@backbeat.test", password=DEMO.password))

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "wrong email or password"


async def test_login_empty_email(user_api: pb_grpc.UserServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await user_api.Login(pb.LoginRequest(email="", password=DEMO.password))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["email"]


async def test_login_empty_password(user_api: pb_grpc.UserServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await user_api.Login(pb.LoginRequest(email=DEMO.email, password=""))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["password"]


async def test_validate_empty_token(user_api: pb_grpc.UserServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await user_api.ValidateSession(pb.ValidateSessionRequest(access_token=""))

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "missing access token"


async def test_login_store_down(demo_accounts: AccountStore, tmp_path: Path) -> None:
    store = RedisStore(f"unix://{tmp_path / 'no-redis.sock'}", REDIS_TIMEOUT_S)

    async with serve_user(demo_accounts, store) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await login(stub)

    await close_redis_store(store)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
