"""Deadline budgets: how long each downstream call may take.

The deadline of the incoming call is kept in a context variable, so any code
serving that call can ask how much time is left. An outgoing call gets
min(its hop budget, time left minus a margin); once the time left is spent,
no downstream call starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from mesh.errors import DeadlineExceeded

Clock = Callable[[], float]

_deadline: ContextVar[float | None] = ContextVar("backbeat_deadline", default=None)


def set_deadline_from_remaining(remaining_s: float | None, clock: Clock = time.monotonic) -> None:
    """Record the incoming call's deadline, given its time remaining in seconds."""
    _deadline.set(None if remaining_s is None else clock() + remaining_s)


def time_left(clock: Clock = time.monotonic) -> float | None:
    """Return seconds left before the current deadline, or None when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - clock()


@contextmanager
def budget(seconds: float, clock: Clock = time.monotonic) -> Iterator[None]:
    """Tighten the current deadline to at most `seconds` from now inside the block."""
    current = _deadline.get()
    candidate = clock() + seconds
    token = _deadline.set(candidate if current is None else min(current, candidate))
    try:
        yield
    finally:
        _deadline.reset(token)


def outgoing_timeout(hop_budget_s: float, margin_s: float, what: str, clock: Clock = time.monotonic) -> float:
    """Return the timeout for a downstream call, raising DeadlineExceeded when no time is left."""
    left = time_left(clock)
    if left is None:
        return hop_budget_s

    timeout = min(hop_budget_s, left - margin_s)
    if timeout <= 0:
        raise DeadlineExceeded(
            f"no time left for {what}: deadline passed {-left * 1000:.1f} ms ago or is too close"
        )
    return timeout
