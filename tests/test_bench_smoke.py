"""A short run of `backbeat bench --smoke`: it completes and writes well-formed results.

Nothing here checks speed; the benchmark itself reports that.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.setup import StatePaths

TARGET_RATIOS = (
    "mesh_rpcs_per_s_vs_echo",
    "features_throughput_cost",
    "features_cpu_per_play_cost",
    "edge_stream_vs_echo_stream",
)
PERCENTILE_KEYS = ("count", "p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms", "errors")


@pytest.fixture(scope="module")
def smoke_run(
    state: StatePaths, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    environment = {**os.environ, "BACKBEAT_STATE_DIR": str(state.root), "OTEL_TRACES_EXPORTER": "none"}
    completed = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "bench", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )
    return completed, out


def test_bench_smoke_exits_zero(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    completed, _ = smoke_run

    assert completed.returncode == 0, completed.stderr[-3000:]


def test_bench_smoke_prints_table(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    completed, _ = smoke_run

    assert "latency (ms)" in completed.stdout
    assert "targets" in completed.stdout
    assert "edge cache hit ratio" in completed.stdout


def test_bench_smoke_results_well_formed(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = smoke_run
    results = json.loads((out / "results.json").read_text())

    assert set(results) >= {"config", "machine", "floor", "mesh", "mesh_without_features", "ratios"}
    assert all(math.isfinite(results["ratios"][name]) for name in TARGET_RATIOS)
    assert results["floor"]["unary_calls_per_s"] > 0
    assert results["mesh"]["closed_loop"]["plays_per_s"] > 0
    assert all(key in results["mesh"]["open_loop"]["first_byte"] for key in PERCENTILE_KEYS)
    assert set(results["mesh"]["processes"]) == {
        "user",
        "metadata",
        "licensing",
        "recommendation",
        "stream",
        "edge",
        "gateway",
    }


def test_bench_smoke_writes_png(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = smoke_run

    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
