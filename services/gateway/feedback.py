"""Delivery of listener feedback (skip, like, completion) to the recommendation service.

Feedback is optional for a play but should not be lost: each event is tried
once within the request, and on failure it waits in an in-memory outbox that
a background task retries with backoff for up to MAX_AGE_S. The
recommendation service applies an event once per playback id and type, so a
retry never counts twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from backbeat.recommendation.v1 import recommendation_service_pb2 as recommendation_pb
from backbeat.recommendation.v1 import recommendation_service_pb2_grpc as recommendation_grpc
from mesh.client import Downstream
from mesh.errors import BackbeatError

logger = logging.getLogger(__name__)

MAX_PENDING = 100_000
MAX_AGE_S = 3600.0


@dataclass
class PendingFeedback:
    """One feedback event waiting for delivery."""

    request: recommendation_pb.RecordFeedbackRequest
    first_tried: float
    attempts: int = 1


class FeedbackOutbox:
    """Sends feedback now, or later when the recommendation service fails.

    NOTE: the outbox lives in the gateway's memory, so feedback still pending when a
    gateway process dies is lost; royalty reports do not go through it.
    """

    def __init__(
        self,
        recommendation: Downstream[recommendation_grpc.RecommendationServiceAsyncStub],
        retry_s: float = 1.0,
    ) -> None:
        self._recommendation = recommendation
        self._pending: deque[PendingFeedback] = deque()
        self._retry_s = retry_s
        self._wake = asyncio.Event()
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events waiting for delivery."""
        return len(self._pending)

    async def _send(self, request: recommendation_pb.RecordFeedbackRequest) -> bool:
        try:
            await self._recommendation.unary(self._recommendation.stub.RecordFeedback, request)
        except BackbeatError as error:
            logger.info("feedback for playback %s not delivered yet: %s", request.playback_id, error)
            return False
        return True

    async def deliver(self, request: recommendation_pb.RecordFeedbackRequest) -> bool:
        """Send `request`; queue it for retry on failure. Return True when it was delivered now."""
        if await self._send(request):
            return True
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            logger.error("feedback outbox full; dropping feedback for playback %s", request.playback_id)
            return False
        self._pending.append(PendingFeedback(request, time.monotonic()))
        self._wake.set()
        return False

    async def run(self) -> None:
        """Retry pending feedback until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await asyncio.sleep(self._retry_s)
                for _ in range(len(self._pending)):
                    item = self._pending.popleft()
                    if await self._send(item.request):
                        continue
                    item.attempts += 1
                    if time.monotonic() - item.first_tried > MAX_AGE_S:
                        self.dropped += 1
                        logger.error(
                            "dropping feedback for playback %s after %d attempts",
                            item.request.playback_id,
                            item.attempts,
                        )
                        continue
                    self._pending.append(item)
