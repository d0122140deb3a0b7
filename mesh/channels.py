"""Client channels: one grpc.aio channel per target, reused by every caller."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc

logger = logging.getLogger(__name__)

# Clients ping at most every 30 s and servers accept pings down to 20 s apart
# (SERVER_OPTIONS in mesh.server), so keepalive never trips the server's
# too-many-pings guard.
CLIENT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    # A restarted service is back within seconds, so reconnect attempts back off from 100 ms
    # to 2 s instead of gRPC's default of 1 s to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def retry_service_config(service: str, idempotent_methods: list[str]) -> str:
    """Return a gRPC service config that retries idempotent reads on UNAVAILABLE, with throttling."""
    config = {
        "methodConfig": [
            {
                "name": [{"service": service, "method": method} for method in idempotent_methods],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.005s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
        "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    }
    return json.dumps(config)


class ChannelPool:
    """Keeps one channel per target address; close() closes them all."""

    def __init__(self) -> None:
        self._channels: dict[tuple[str, str | None], grpc.aio.Channel] = {}

    def get(self, address: str, service_config: str | None = None) -> grpc.aio.Channel:
        """Return the channel for `address`, creating it on first use."""
        key = (address, service_config)
        channel = self._channels.get(key)
        if channel is None:
            options = list(CLIENT_OPTIONS)
            if service_config is not None:
                options += [("grpc.service_config", service_config), ("grpc.enable_retries", 1)]
            channel = grpc.aio.insecure_channel(address, options=options)
            self._channels[key] = channel
        return channel

    async def connect_all(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every channel to connect; unreachable targets are logged, not fatal."""

        async def connect(address: str, channel: grpc.aio.Channel) -> None:
            try:
                await asyncio.wait_for(channel.channel_ready(), timeout_s)
            except TimeoutError:
                logger.warning(
                    "%s unreachable at start after %.1f s; calls connect on demand", address, timeout_s
                )

        await asyncio.gather(*(connect(address, channel) for (address, _), channel in self._channels.items()))

    async def close(self) -> None:
        """Close every channel, cancelling calls still running on them."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
