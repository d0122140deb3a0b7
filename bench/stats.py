"""Latency samples, percentiles and process resource use."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass
class Samples:
    """Latencies in seconds and error counts by status code for one operation."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        """Return count, p50/p90/p99/p99.9 and max in milliseconds, and errors by code."""
        values = np.array(self.latencies_s) * 1000
        result: dict[str, float | int | dict[str, int]] = {"count": len(values), "errors": dict(self.errors)}
        for percentile in PERCENTILES:
            result[f"p{percentile:g}_ms"] = (
                float(np.percentile(values, percentile)) if len(values) else float("nan")
            )
        result["max_ms"] = float(values.max()) if len(values) else float("nan")
        return result


def peak_rss_bytes(pid: int) -> int:
    """Return the peak resident set size of a Linux process (VmHWM), or its current RSS elsewhere."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(psutil.Process(pid).memory_info().rss)


def cpu_seconds(pid: int) -> float:
    """Return user plus system CPU seconds a process has used."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)
