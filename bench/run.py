"""The benchmark: a bare gRPC floor, the full mesh and the mesh without tracing, breakers and deadlines.

Every mesh figure is reported next to its floor from the same run, as a ratio,
so results stay comparable on a shared, noisy machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from backbeat.admin.v1 import admin_service_pb2, admin_service_pb2_grpc
from bench.load import EchoDriver, MeshDriver, PhaseResult, closed_loop, open_loop
from bench.stats import cpu_seconds, peak_rss_bytes
from bench.workload import TrackPicker, create_listeners
from mesh.launcher import HTTP_SERVICES, TOPOLOGY, Mesh
from services.setup import StatePaths, copy_stores

STREAM_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class BenchConfig:
    """How long and how hard to load the mesh."""

    duration_s: float = 20.0
    rate: float = 100.0
    concurrency: int = 16
    generated_listeners: int = 32
    warm_up_s: float = 3.0
    out_dir: Path = Path("bench-results")


def prepare_state(source: StatePaths, target: Path, listeners: int) -> tuple[StatePaths, list[Any]]:
    """Copy the stores into `target` (renditions linked, not copied) and add generated listeners."""
    state = copy_stores(source, target)
    return state, create_listeners(state.users, listeners)


def start_helper(module: str, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start `python -m module PORT_FILE` and return the process and its port."""
    port_file = folder / f"{module}.port"
    process = subprocess.Popen([sys.executable, "-m", module, str(port_file)], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{module} did not start")
        time.sleep(0.05)
    return process, int(port_file.read_text())


async def scrape(mesh: Mesh) -> dict[str, dict[str, float]]:
    """Return RPC counts (admin calls excluded) and cache lookups per service from the admin service."""
    found: dict[str, dict[str, float]] = {}
    for name in mesh.processes:
        async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
            response = await admin_service_pb2_grpc.AdminServiceStub(channel).GetMetrics(
                admin_service_pb2.GetMetricsRequest(), timeout=5
            )
        values: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if (
                    sample.name == "backbeat_rpc_server_handled_total"
                    and "admin" not in sample.labels["method"]
                ):
                    values["rpcs"] += sample.value
                elif sample.name == "backbeat_cache_lookups_total":
                    values[f"cache_{sample.labels['cache']}_{sample.labels['result']}"] += sample.value
        found[name] = dict(values)
    return found


def hit_ratio(metrics: dict[str, dict[str, float]], cache: str) -> float | None:
    hits = sum(values.get(f"cache_{cache}_hit", 0.0) for values in metrics.values())
    misses = sum(values.get(f"cache_{cache}_miss", 0.0) for values in metrics.values())
    return hits / (hits + misses) if hits + misses else None


def total_rpcs(metrics: dict[str, dict[str, float]]) -> float:
    return sum(values.get("rpcs", 0.0) for values in metrics.values())


async def run_floor(config: BenchConfig, folder: Path) -> dict[str, Any]:
    """Measure the bare echo server: unary calls per second, latency and streaming MB/s."""
    process, port = start_helper("bench.echo", folder)
    driver = EchoDriver(f"127.0.0.1:{port}")
    try:
        await closed_loop(
            driver.unary_operation(PhaseResult()), config.concurrency, config.warm_up_s, "echo warm-up"
        )
        unary = PhaseResult()
        unary.elapsed_s = await closed_loop(
            driver.unary_operation(unary), config.concurrency, config.duration_s, "echo unary"
        )
        streaming = PhaseResult()
        streaming.elapsed_s = await closed_loop(
            driver.stream_operation(streaming, 4 * 1024 * 1024, STREAM_CHUNK_BYTES),
            4,
            config.duration_s / 2,
            "echo stream",
        )
    finally:
        await driver.close()
        process.terminate()
        process.wait(timeout=10)
    return {
        "unary_calls_per_s": unary.per_second,
        "unary_latency": unary.sample("echo").summary(),
        "stream_mb_per_s": streaming.bytes_received / streaming.elapsed_s / 1e6,
    }


async def run_mesh(
    config: BenchConfig, state: StatePaths, listeners: list[Any], folder: Path, *, features: bool
) -> dict[str, Any]:
    """Start the mesh (with or without tracing, breakers and deadlines), load it and measure."""
    label = "mesh" if features else "mesh-bare"
    environment = {"BACKBEAT_STATE_DIR": str(state.root), "BACKBEAT_LOG_LEVEL": "WARNING"}
    sink = None
    if features:
        sink, sink_port = start_helper("bench.sink", folder)
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
    else:
        environment.update(
            {"BACKBEAT_TRACING": "false", "BACKBEAT_BREAKERS": "false", "BACKBEAT_DEADLINES": "false"}
        )

    mesh = Mesh(run_dir=folder / label, base_port=0, environment=environment)
    await mesh.start(only=tuple(name for name in TOPOLOGY if name not in HTTP_SERVICES))
    picker = TrackPicker(state.catalog, state.rights)
    driver = MeshDriver(mesh.address("gateway"), listeners, picker)
    results: dict[str, Any] = {}
    try:
        logins = PhaseResult()
        await driver.login_all(logins)
        results["login"] = logins.sample("login").summary()
        await closed_loop(
            driver.play_operation(PhaseResult()), config.concurrency, config.warm_up_s, f"{label} warm-up"
        )

        before = await scrape(mesh)
        closed = PhaseResult()
        closed.elapsed_s = await closed_loop(
            driver.play_operation(closed), config.concurrency, config.duration_s, f"{label} closed loop"
        )
        after = await scrape(mesh)
        results["closed_loop"] = {
            "concurrency": config.concurrency,
            "plays_per_s": closed.per_second,
            "rpcs_per_play": (total_rpcs(after) - total_rpcs(before)) / max(1, closed.operations),
            "play": closed.sample("play").summary(),
            "first_byte": closed.sample("first_byte").summary(),
        }

        cpu_before = mesh_cpu_seconds(mesh)
        opened = PhaseResult()
        opened.elapsed_s = await open_loop(
            driver.play_operation(opened), config.rate, config.duration_s, f"{label} open loop", 2000
        )
        results["open_loop"] = {
            "rate_per_s": config.rate,
            "plays_per_s": opened.per_second,
            "cpu_ms_per_play": (mesh_cpu_seconds(mesh) - cpu_before) * 1000 / max(1, opened.operations),
            "play": opened.sample("play").summary(),
            "first_byte": opened.sample("first_byte").summary(),
        }
        if features:
            grant, edge = await driver.stream_grant()
            streaming = PhaseResult()
            streaming.elapsed_s = await closed_loop(
                driver.stream_operation(streaming, grant, edge), 4, config.duration_s / 2, "edge stream"
            )
            results["edge_stream_mb_per_s"] = streaming.bytes_received / streaming.elapsed_s / 1e6
            final = await scrape(mesh)
            results["edge_hit_ratio"] = hit_ratio(final, "edge_chunk")
            results["metadata_hit_ratio"] = hit_ratio(final, "metadata_track")
            results["latency_samples_ms"] = {
                "login": [value * 1000 for value in logins.sample("login").latencies_s],
                "play": [value * 1000 for value in opened.sample("play").latencies_s],
                "first_byte": [value * 1000 for value in opened.sample("first_byte").latencies_s],
            }

        results["processes"] = {
            name: {
                "cpu_s": cpu_seconds(service.process.pid),
                "peak_rss_mb": peak_rss_bytes(service.process.pid) / 2**20,
            }
            for name, service in mesh.processes.items()
        }
    finally:
        await driver.close()
        await asyncio.to_thread(mesh.stop)
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)
    return results


def mesh_cpu_seconds(mesh: Mesh) -> float:
    """Return the CPU seconds every service process of `mesh` has used so far."""
    return sum(cpu_seconds(service.process.pid) for service in mesh.processes.values())


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


async def run_bench(config: BenchConfig, source: StatePaths) -> dict[str, Any]:
    """Run every phase and return the results, ratios included; service logs stay in out_dir/work."""
    folder = config.out_dir / "work"
    shutil.rmtree(folder, ignore_errors=True)
    state, listeners = prepare_state(source, folder / "state", config.generated_listeners)
    floor = await run_floor(config, folder)
    full = await run_mesh(config, state, listeners, folder, features=True)
    bare = await run_mesh(config, state, listeners, folder, features=False)

    closed = full["closed_loop"]
    ratios = {
        "mesh_rpcs_per_s_vs_echo": closed["plays_per_s"]
        * closed["rpcs_per_play"]
        / floor["unary_calls_per_s"],
        "features_throughput_cost": 1 - closed["plays_per_s"] / bare["closed_loop"]["plays_per_s"],
        "features_cpu_per_play_cost": full["open_loop"]["cpu_ms_per_play"]
        / bare["open_loop"]["cpu_ms_per_play"]
        - 1,
        "edge_stream_vs_echo_stream": full["edge_stream_mb_per_s"] / floor["stream_mb_per_s"],
    }
    return {
        "config": {k: str(v) for k, v in vars(config).items()},
        "machine": machine(),
        "floor": floor,
        "mesh": full,
        "mesh_without_features": bare,
        "ratios": ratios,
    }


def write_results(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write results.json and latency.png into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = results["mesh"].pop("latency_samples_ms", {})
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(results, indent=2, default=float))
    png_path = out_dir / "latency.png"
    plot_latencies(samples, results["floor"], png_path)
    return json_path, png_path


def plot_latencies(samples: dict[str, list[float]], floor: dict[str, Any], path: Path) -> None:
    """Plot the cumulative latency distributions on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(8, 5))
    for name, values in samples.items():
        if values:
            ordered = np.sort(values)
            axis.plot(
                ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=f"{name} (n={len(ordered)})"
            )
    axis.axvline(floor["unary_latency"]["p50_ms"], color="grey", linestyle="--", label="echo unary p50")
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms, log scale)")
    axis.set_ylabel("share of operations at or below")
    axis.set_title("Backbeat latency distributions (open loop)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
