"""Cost of each mesh feature: CPU per play at one open-loop rate, one feature set at a time.

Usage: python -m bench.features [--rate 50] [--duration 15] [--out bench-results/features]

Each variant starts the mesh with its own settings, logs the listeners in,
warms up, then runs the open loop and reports CPU milliseconds per play
(summed over every service process), p50/p99 time to first byte and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from bench.load import MeshDriver, PhaseResult, closed_loop, open_loop
from bench.run import mesh_cpu_seconds, prepare_state, start_helper
from bench.workload import TrackPicker
from mesh.config import MeshSettings, load_settings
from mesh.launcher import HTTP_SERVICES, TOPOLOGY, Mesh
from services.setup import StatePaths

OFF = {"BACKBEAT_TRACING": "false", "BACKBEAT_BREAKERS": "false", "BACKBEAT_DEADLINES": "false"}
VARIANTS: dict[str, dict[str, str]] = {
    "everything on, spans exported": {},
    "spans recorded, not exported": {"OTEL_TRACES_EXPORTER": "none"},
    "10% of traces sampled, exported": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "tracing off": {"BACKBEAT_TRACING": "false"},
    "everything off": OFF,
}


async def measure(
    name: str,
    extra: dict[str, str],
    state: StatePaths,
    listeners: list[Any],
    folder: Path,
    rate: float,
    duration_s: float,
) -> dict[str, Any]:
    environment = {"BACKBEAT_STATE_DIR": str(state.root), "BACKBEAT_LOG_LEVEL": "WARNING", **extra}
    sink = None
    if "BACKBEAT_TRACING" not in extra and extra.get("OTEL_TRACES_EXPORTER") != "none":
        sink, port = start_helper("bench.sink", folder)
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    mesh = Mesh(run_dir=folder / name.replace(" ", "-").replace("%", ""), environment=environment)
    await mesh.start(only=tuple(service for service in TOPOLOGY if service not in HTTP_SERVICES))
    driver = MeshDriver(mesh.address("gateway"), listeners, TrackPicker(state.catalog, state.rights))
    try:
        await driver.login_all(PhaseResult())
        await closed_loop(driver.play_operation(PhaseResult()), 4, 3.0, f"{name}: warm-up")
        before = mesh_cpu_seconds(mesh)
        result = PhaseResult()
        result.elapsed_s = await open_loop(driver.play_operation(result), rate, duration_s, name, 2000)
        cpu_ms = (mesh_cpu_seconds(mesh) - before) * 1000 / max(1, result.operations)
    finally:
        await driver.close()
        await asyncio.to_thread(mesh.stop)
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)
    first_byte = result.sample("first_byte").summary()
    return {
        "cpu_ms_per_play": cpu_ms,
        "plays": result.operations,
        "first_byte": first_byte,
        "errors": result.sample("play").errors,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="plays per second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of open loop per variant")
    parser.add_argument("--out", type=Path, default=Path("bench-results/features"))
    options = parser.parse_args()

    settings = load_settings(MeshSettings)
    folder = options.out / "work"
    shutil.rmtree(folder, ignore_errors=True)
    state, listeners = prepare_state(StatePaths(settings.state_dir), folder / "state", 8)
    results = {}
    for name, extra in VARIANTS.items():
        results[name] = await measure(name, extra, state, listeners, folder, options.rate, options.duration)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    base = results["everything off"]["cpu_ms_per_play"]
    print(f"open loop at {options.rate:g} plays/s for {options.duration:g} s per variant")
    print(f"{'variant':34} {'CPU ms/play':>11} {'vs off':>7} {'p50 fb ms':>9} {'p99 fb ms':>9}  errors")
    for name, found in results.items():
        print(
            f"{name:34} {found['cpu_ms_per_play']:11.2f} {found['cpu_ms_per_play'] / base - 1:7.1%} "
            f"{found['first_byte']['p50_ms']:9.1f} {found['first_byte']['p99_ms']:9.1f}  "
            f"{dict(found['errors'])}"
        )


if __name__ == "__main__":
    asyncio.run(main())
