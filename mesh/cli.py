"""The backbeat command: setup, up and play."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from pathlib import Path
from typing import Annotated

import grpc
import typer

from backbeat.common.v1 import common_pb2
from mesh.config import MeshSettings, SettingsError, load_settings
from mesh.launcher import TOPOLOGY, LaunchError, Mesh

app = typer.Typer(help="Backbeat: a gRPC service mesh for music streaming.", no_args_is_help=True)

TRACK_ID = re.compile(r"[0-9A-Za-z]{22}")
QUALITIES = {
    "auto": common_pb2.QUALITY_UNSPECIFIED,
    "low": common_pb2.QUALITY_LOW,
    "normal": common_pb2.QUALITY_NORMAL,
    "high": common_pb2.QUALITY_HIGH,
}


def _settings() -> MeshSettings:
    try:
        return load_settings(MeshSettings)
    except SettingsError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


@app.command()
def setup(
    force_audio: Annotated[bool, typer.Option(help="Encode every rendition again.")] = False,
) -> None:
    """Ingest the catalog, rights, recommendation model, audio renditions and demo accounts."""
    from services.setup import run_setup
    from services.stream.audio_ingest import AudioIngestError

    settings = _settings()
    typer.echo(f"data folder: {settings.data_dir}\nstate folder: {settings.state_dir}")
    try:
        report = run_setup(settings.data_dir, settings.state_dir, force_audio=force_audio, progress=True)
    except (AudioIngestError, FileNotFoundError) as error:
        typer.echo(f"setup failed: {error}", err=True)
        raise typer.Exit(1) from None

    typer.echo(
        f"{report.tracks} tracks, {report.recordings} recordings in {report.renditions} renditions, "
        f"{report.withheld_pairs} album-market pairs withheld"
    )
    typer.echo("demo accounts (email / password / tier / market):")
    for account in report.accounts:
        typer.echo(f"  {account.email:28} {account.password:22} {account.tier:8} {account.market}")


async def _up(base_port: int, run_dir: Path) -> int:
    mesh = Mesh(run_dir=run_dir, base_port=base_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    typer.echo(f"starting {len(TOPOLOGY)} services; logs in {run_dir}")
    try:
        await mesh.start()
    except LaunchError as error:
        typer.echo(f"mesh failed to start: {error}", err=True)
        return 1

    for name in TOPOLOGY:
        typer.echo(f"  {name:15} {mesh.address(name)}   SERVING")
    typer.echo(f"web player at http://127.0.0.1:{mesh.processes['webbridge'].port}/")
    typer.echo(f"gateway at {mesh.address('gateway')}; press Ctrl-C to stop")

    while not stop.is_set():
        if exited := mesh.exited():
            typer.echo(f"services exited unexpectedly: {exited}; stopping the mesh", err=True)
            mesh.stop()
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)

    typer.echo("stopping: each service drains in-flight calls")
    codes = await asyncio.to_thread(mesh.stop)
    typer.echo("stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    return 0


@app.command()
def up(
    base_port: Annotated[
        int, typer.Option(help="Gateway port; the other services take the next seven. 0 picks free ports.")
    ] = 50051,
    run_dir: Annotated[Path, typer.Option(help="Folder for port files and service logs.")] = Path("var/run"),
) -> None:
    """Start every service as its own process and wait until all report SERVING."""
    raise typer.Exit(asyncio.run(_up(base_port, run_dir)))


async def _play(
    query: str, gateway: str, email: str, password: str, out: Path, quality: str, slow: bool, timeout_s: float
) -> int:
    from opentelemetry.sdk.trace import TracerProvider

    from mesh.tracing import configure_tracing, shutdown_tracing
    from services.gateway.client import BackbeatClient

    provider: TracerProvider = configure_tracing("backbeat-cli")
    client = BackbeatClient(gateway)
    try:
        login = await client.login(email, password)
        typer.echo(f"logged in as {login.user.display_name} ({email})")
        track_id = query
        if not TRACK_ID.fullmatch(query):
            found, unavailable = await client.search_marked(query, limit=20)
            available = [track for track in found if track.track_id not in unavailable]
            if not available:
                reason = "is available in your market" if found else "matches"
                typer.echo(f"no track {reason}: {query!r}", err=True)
                return 1
            track_id = available[0].track_id

        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as sink:
            result = await client.play_and_stream(
                track_id,
                sink,
                quality=common_quality(quality),
                slow_connection=slow,
                play_timeout_s=timeout_s,
            )
    except grpc.aio.AioRpcError as error:
        typer.echo(f"play failed: {error.code().name}: {error.details()}", err=True)
        return 1
    finally:
        await client.close()
        shutdown_tracing(provider)

    track = result.play.track
    first_byte_ms = (result.time_to_first_byte_s or 0.0) * 1000
    typer.echo(f"track:       {track.name} - {track.artist} ({track.track_id})")
    typer.echo(f"audio:       {track.recording_credit}")
    typer.echo(f"rendition:   {result.play.rendition.bitrate_kbps} kbps {result.play.rendition.codec}")
    typer.echo(f"grant in:    {result.time_to_grant_s * 1000:.1f} ms")
    typer.echo(f"first byte:  {first_byte_ms:.1f} ms after tap")
    typer.echo(f"received:    {result.bytes_received} bytes in {result.chunks} chunks -> {out}")
    typer.echo(f"trace id:    {result.trace_id}")
    fallback = " (fallback)" if result.play.recommendations_fallback else ""
    typer.echo(f"next up{fallback}:")
    for number, next_track in enumerate(result.play.recommendations, start=1):
        typer.echo(f"  {number:2}. {next_track.name} - {next_track.artist} ({next_track.track_id})")
    return 0


def common_quality(name: str) -> common_pb2.Quality.ValueType:
    """Return the Quality enum value for a quality name."""
    try:
        return QUALITIES[name]
    except KeyError:
        typer.echo(f"invalid --quality {name!r}: expected one of {', '.join(QUALITIES)}", err=True)
        raise typer.Exit(2) from None


@app.command()
def play(
    query: Annotated[
        str, typer.Argument(help="A catalog track id, or text to search titles and artists for.")
    ],
    gateway: Annotated[str, typer.Option(help="Gateway address, host:port.")] = "127.0.0.1:50051",
    email: Annotated[str, typer.Option(help="Account email.")] = "premium-us@backbeat.test",
    password: Annotated[str, typer.Option(help="Account password.")] = "listen-premium-us",
    out: Annotated[Path, typer.Option(help="File the audio is written to.")] = Path("var/play.mp3"),
    quality: Annotated[str, typer.Option(help="auto, low, normal or high.")] = "auto",
    slow: Annotated[bool, typer.Option(help="Report a slow connection (one rendition lower).")] = False,
    timeout: Annotated[float, typer.Option(help="Deadline of the Play call, seconds.")] = 0.2,
) -> None:
    """Log in, play a track, write its audio to a file and print the rendition, timings and trace id."""
    common_quality(quality)
    raise typer.Exit(asyncio.run(_play(query, gateway, email, password, out, quality, slow, timeout)))


fault_app = typer.Typer(help="Inject latency and errors into a running service, switched at run time.")
app.add_typer(fault_app, name="fault")
RunDir = Annotated[Path, typer.Option(help="Folder with the port files of `backbeat up`.")]


def _admin(service: str, run_dir: Path, request: object) -> object:
    from mesh.faultctl import FaultSpecError, call_admin, service_address

    try:
        address = service_address(service, run_dir)
        return asyncio.run(call_admin(address, request))
    except FaultSpecError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    except grpc.aio.AioRpcError as error:
        typer.echo(f"{service}: {error.code().name}: {error.details()}", err=True)
        raise typer.Exit(1) from None


@fault_app.command("set")
def fault_set(
    service: Annotated[str, typer.Argument(help="Service name, for example recommendation.")],
    settings: Annotated[
        list[str], typer.Argument(help="latency=300ms jitter=50ms error-rate=0.5 code=UNAVAILABLE")
    ],
    method: Annotated[
        str, typer.Option(help="Method name such as GetTrack; every method when omitted.")
    ] = "*",
    run_dir: RunDir = Path("var/run"),
) -> None:
    """Add or replace a fault rule, for example: backbeat fault set recommendation latency=300ms."""
    from backbeat.admin.v1 import admin_service_pb2
    from mesh.faultctl import FaultSpecError, describe, parse_rule

    try:
        rule = parse_rule(service, method, settings)
    except (FaultSpecError, KeyError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    response = _admin(service, run_dir, admin_service_pb2.SetFaultRequest(rule=rule))
    for item in getattr(response, "rules", []):
        typer.echo(f"{service} {describe(item)}")


@fault_app.command("clear")
def fault_clear(
    service: Annotated[str, typer.Argument(help="Service name.")],
    method: Annotated[str, typer.Option(help="Method whose rule is removed; all rules when omitted.")] = "",
    run_dir: RunDir = Path("var/run"),
) -> None:
    """Remove fault rules from a service."""
    from backbeat.admin.v1 import admin_service_pb2
    from mesh.faultctl import FaultSpecError, full_method

    try:
        target = full_method(service, method) if method else ""
    except (FaultSpecError, KeyError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    response = _admin(service, run_dir, admin_service_pb2.ClearFaultsRequest(method=target))
    removed = getattr(response, "removed", 0)
    typer.echo(f"{service}: {removed} {'rule' if removed == 1 else 'rules'} removed")


@fault_app.command("list")
def fault_list(
    service: Annotated[str, typer.Argument(help="Service name.")],
    run_dir: RunDir = Path("var/run"),
) -> None:
    """List the fault rules of a service."""
    from backbeat.admin.v1 import admin_service_pb2
    from mesh.faultctl import describe

    response = _admin(service, run_dir, admin_service_pb2.ListFaultsRequest())
    rules = getattr(response, "rules", [])
    if not rules:
        typer.echo(f"{service}: no faults")
    for item in rules:
        typer.echo(f"{service} {describe(item)}")


@app.command()
def bench(
    duration: Annotated[float, typer.Option(help="Seconds of load per measured phase.")] = 20.0,
    rate: Annotated[float, typer.Option(help="Plays per second in the open-loop phase.")] = 100.0,
    concurrency: Annotated[int, typer.Option(help="Concurrent listeners in the closed-loop phases.")] = 16,
    listeners: Annotated[int, typer.Option(help="Generated listeners besides the demo accounts.")] = 32,
    out: Annotated[Path, typer.Option(help="Folder for results.json and latency.png.")] = Path(
        "bench-results"
    ),
    smoke: Annotated[bool, typer.Option(help="A run of a few seconds that only checks the output.")] = False,
) -> None:
    """Benchmark the mesh against a bare gRPC echo floor; print the table, write JSON and a plot."""
    from bench.report import format_table
    from bench.run import BenchConfig, run_bench, write_results
    from services.setup import StatePaths

    settings = _settings()
    config = BenchConfig(duration, rate, concurrency, listeners, 3.0, out)
    if smoke:
        config = BenchConfig(1.5, 20.0, 4, 2, 0.5, out)
    results = asyncio.run(run_bench(config, StatePaths(settings.state_dir)))
    json_path, png_path = write_results(results, out)
    typer.echo(format_table(results))
    typer.echo(f"results: {json_path}\nplot: {png_path}")


def main() -> None:
    """Entry point of `python -m mesh.cli`."""
    app(prog_name="backbeat")


if __name__ == "__main__":
    main()
