"""Markets Backbeat streams in, as ISO 3166-1 alpha-2 codes."""

from __future__ import annotations

from mesh.errors import InvalidArgument

MARKETS = ("US", "GB", "DE", "SE", "BR", "JP", "IN")


def require_market(value: str, field: str = "market") -> str:
    """Return `value` when it is a supported market, else raise InvalidArgument naming `field`."""
    if value not in MARKETS:
        raise InvalidArgument(field, value, f"one of {', '.join(MARKETS)}")
    return value
