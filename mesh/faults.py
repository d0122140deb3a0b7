"""Fault rules: added latency and errors per method, changed at run time.

Rules are off until an operator sets one through the admin service or the
`backbeat fault` command. A rule names one full method or "*" for every
method of the process; a rule for the method wins over "*".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

from mesh.errors import InvalidArgument

ANY_METHOD = "*"


@dataclass(frozen=True)
class FaultRule:
    """Delay and error settings for calls of one method."""

    method: str
    latency_s: float = 0.0
    jitter_s: float = 0.0
    error_rate: float = 0.0
    error_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True)
class FaultDecision:
    """The delay and the error, if any, for one call."""

    delay_s: float
    error: grpc.StatusCode | None


def validate_rule(rule: FaultRule) -> None:
    """Raise InvalidArgument naming the first invalid field of `rule`."""
    if rule.method != ANY_METHOD and not (rule.method.startswith("/") and rule.method.count("/") == 2):
        raise InvalidArgument("rule.method", rule.method, '"*" or a full method such as /pkg.Service/Method')
    if rule.latency_s < 0:
        raise InvalidArgument("rule.latency", rule.latency_s, "a duration of 0 or more")
    if rule.jitter_s < 0:
        raise InvalidArgument("rule.jitter", rule.jitter_s, "a duration of 0 or more")
    if not 0.0 <= rule.error_rate <= 1.0:
        raise InvalidArgument("rule.error_rate", rule.error_rate, "a share from 0.0 to 1.0")
    if rule.error_code == grpc.StatusCode.OK:
        raise InvalidArgument("rule.error_code", rule.error_code.value[0], "a non-OK gRPC status code")


class FaultRegistry:
    """The fault rules of one process."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rules: dict[str, FaultRule] = {}
        self._rng = rng or random.Random()

    def set(self, rule: FaultRule) -> list[FaultRule]:
        """Add or replace the rule for `rule.method` and return every rule."""
        validate_rule(rule)
        self._rules[rule.method] = rule
        return self.rules()

    def clear(self, method: str = "") -> int:
        """Remove the rule of `method`, or every rule for an empty method; return how many."""
        if not method:
            removed = len(self._rules)
            self._rules.clear()
            return removed
        return 1 if self._rules.pop(method, None) else 0

    def rules(self) -> list[FaultRule]:
        """Return the rules ordered by method."""
        return [self._rules[method] for method in sorted(self._rules)]

    def decide(self, method: str) -> FaultDecision | None:
        """Return what to do to one call of `method`, or None when no rule applies."""
        if not self._rules:
            return None
        rule = self._rules.get(method) or self._rules.get(ANY_METHOD)
        if rule is None:
            return None
        delay_s = rule.latency_s + (self._rng.uniform(0.0, rule.jitter_s) if rule.jitter_s else 0.0)
        failed = rule.error_rate > 0 and self._rng.random() < rule.error_rate
        return FaultDecision(delay_s, rule.error_code if failed else None)
