"""Choosing the rendition of a play from the tier, the requested quality and the connection."""

from __future__ import annotations

from collections.abc import Sequence

from backbeat.common.v1 import common_pb2
from mesh.errors import NotFound

TIER_CAP_KBPS = {common_pb2.TIER_FREE: 128, common_pb2.TIER_PREMIUM: 320}
QUALITY_KBPS = {
    common_pb2.QUALITY_UNSPECIFIED: 320,
    common_pb2.QUALITY_LOW: 64,
    common_pb2.QUALITY_NORMAL: 128,
    common_pb2.QUALITY_HIGH: 320,
}


def choose_rendition(
    renditions: Sequence[common_pb2.Rendition],
    tier: common_pb2.Tier.ValueType,
    quality: common_pb2.Quality.ValueType,
    slow_connection: bool,
) -> common_pb2.Rendition:
    """Pick the highest rendition within the tier cap and requested quality.

    On a slow connection the pick is one rung lower, unless it is already the lowest.
    """
    ladder = sorted(renditions, key=lambda rendition: rendition.bitrate_kbps)
    if not ladder:
        raise NotFound("track has no renditions; run `backbeat setup` to encode audio")

    ceiling = min(TIER_CAP_KBPS[tier], QUALITY_KBPS[quality])
    allowed = [rendition for rendition in ladder if rendition.bitrate_kbps <= ceiling] or ladder[:1]
    if slow_connection and len(allowed) > 1:
        allowed = allowed[:-1]
    return allowed[-1]
