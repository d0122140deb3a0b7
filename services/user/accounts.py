"""Accounts with Argon2id password hashes in a SQLite file."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.markets import require_market

TIERS = ("free", "premium")


@dataclass(frozen=True)
class Account:
    """A listener's account, without its password hash."""

    user_id: str
    email: str
    tier: str
    market: str
    display_name: str


@dataclass(frozen=True)
class DemoAccount:
    """A demo account the setup step creates, with its clear-text password."""

    user_id: str
    email: str
    password: str
    tier: str
    market: str
    display_name: str


DEMO_ACCOUNTS = tuple(
    DemoAccount(
        user_id=f"u-{tier}-{market.lower()}",
        email=f"{tier}-{market.lower()}@backbeat.test",
        password=f"listen-{tier}-{market.lower()}",
        tier=tier,
        market=market,
        display_name=f"{tier.title()} listener ({market})",
    )
    for tier, market in [
        ("free", "US"),
        ("premium", "US"),
        ("free", "GB"),
        ("premium", "DE"),
        ("free", "BR"),
        ("premium", "JP"),
        ("free", "IN"),
        ("premium", "SE"),
    ]
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('free', 'premium')),
    market TEXT NOT NULL,
    display_name TEXT NOT NULL
)
"""


class AccountStore:
    """Reads and writes accounts; passwords are stored only as Argon2id hashes."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(SCHEMA)
        self._hasher = hasher or PasswordHasher()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def upsert(self, account: Account, password: str) -> None:
        """Create the account or update the one with the same user id, with a fresh hash of `password`.

        Raises ValueError when the email belongs to another user id.
        """
        if account.tier not in TIERS:
            raise ValueError(f"invalid tier {account.tier!r}: expected one of {', '.join(TIERS)}")
        require_market(account.market)
        try:
            with self._db:
                self._db.execute(
                    "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                    "email = excluded.email, password_hash = excluded.password_hash, tier = excluded.tier, "
                    "market = excluded.market, display_name = excluded.display_name",
                    (
                        account.user_id,
                        account.email.lower(),
                        self._hasher.hash(password),
                        account.tier,
                        account.market,
                        account.display_name,
                    ),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"email {account.email!r} already belongs to another account") from None

    def verify(self, email: str, password: str) -> Account | None:
        """Return the account when `password` matches, else None.

        An unknown email is checked against a dummy hash, so it takes as long as a wrong password.
        """
        row = self._db.execute(
            "SELECT user_id, email, password_hash, tier, market, display_name FROM accounts WHERE email = ?",
            (email.lower(),),
        ).fetchone()
        stored_hash = row[2] if row else _DUMMY_HASH
        try:
            self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        return Account(user_id=row[0], email=row[1], tier=row[3], market=row[4], display_name=row[5])


# Hash of a random password, verified against when the email is unknown so that
# unknown emails take as long as wrong passwords.
_DUMMY_HASH = PasswordHasher().hash("backbeat-unknown-account")


def create_demo_accounts(path: Path) -> tuple[DemoAccount, ...]:
    """Create or refresh the demo accounts and return them."""
    store = AccountStore(path)
    try:
        for demo in DEMO_ACCOUNTS:
            account = Account(demo.user_id, demo.email, demo.tier, demo.market, demo.display_name)
            store.upsert(account, demo.password)
    finally:
        store.close()
    return DEMO_ACCOUNTS
