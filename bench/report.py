"""The benchmark table printed at the end of a run."""

from __future__ import annotations

from typing import Any


def _latency_row(name: str, summary: dict[str, Any]) -> str:
    keys = ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms")
    percentiles = " ".join(f"{summary[key]:8.2f}" for key in keys)
    return f"  {name:26} {percentiles} {summary['count']:7d}  {summary['errors'] or ''}"


def _target_row(name: str, measured: str, target: str) -> str:
    return f"  {name:48} {measured:>9}   {target}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def format_table(results: dict[str, Any]) -> str:
    """Return the results as a plain-text table."""
    floor, mesh, bare, ratios = (
        results["floor"],
        results["mesh"],
        results["mesh_without_features"],
        results["ratios"],
    )
    closed, opened = mesh["closed_loop"], mesh["open_loop"]
    lines = [
        "latency (ms)                      p50      p90      p99    p99.9      max   count  errors",
        _latency_row("echo unary (closed)", floor["unary_latency"]),
        _latency_row("login", mesh["login"]),
        _latency_row(f"play, open {opened['rate_per_s']:g}/s", opened["play"]),
        _latency_row(f"first byte, open {opened['rate_per_s']:g}/s", opened["first_byte"]),
        _latency_row(f"play, closed x{closed['concurrency']}", closed["play"]),
        _latency_row(f"first byte, closed x{closed['concurrency']}", closed["first_byte"]),
        "",
        "throughput",
        f"  echo unary calls/s            {floor['unary_calls_per_s']:10.0f}",
        f"  mesh plays/s (closed loop)    {closed['plays_per_s']:10.1f}",
        f"  RPCs per play                 {closed['rpcs_per_play']:10.1f}",
        f"  mesh plays/s without tracing, breakers, deadlines {bare['closed_loop']['plays_per_s']:10.1f}",
        f"  echo stream MB/s              {floor['stream_mb_per_s']:10.1f}",
        f"  edge stream MB/s (cache hits) {mesh['edge_stream_mb_per_s']:10.1f}",
        f"  mesh CPU ms per play, open loop {opened['cpu_ms_per_play']:8.2f}",
        f"  the same without tracing, breakers, deadlines {bare['open_loop']['cpu_ms_per_play']:8.2f}",
        "",
        "targets                                               measured   target",
        _target_row(
            "plays/s x RPCs per play / echo calls/s", f"{ratios['mesh_rpcs_per_s_vs_echo']:.1%}", ">= 70%"
        ),
        _target_row(
            "throughput cost of tracing, breakers, deadlines",
            f"{ratios['features_throughput_cost']:.1%}",
            "<= 15%",
        ),
        _target_row(
            f"CPU per play they add at {opened['rate_per_s']:g} plays/s",
            f"{ratios['features_cpu_per_play_cost']:.1%}",
            "(same load, for reference)",
        ),
        _target_row(
            "edge stream MB/s / echo stream MB/s", f"{ratios['edge_stream_vs_echo_stream']:.1%}", ">= 80%"
        ),
        _target_row(
            f"p99 first byte at {opened['rate_per_s']:g} plays/s (ms)",
            f"{opened['first_byte']['p99_ms']:.1f}",
            "<= 50",
        ),
        _target_row("edge cache hit ratio", _ratio(mesh["edge_hit_ratio"]), ">= 95%"),
        _target_row("metadata cache hit ratio", _ratio(mesh["metadata_hit_ratio"]), ">= 99%"),
        "",
        "processes (full mesh)        CPU s   peak RSS MB",
    ]
    for name, usage in mesh["processes"].items():
        lines.append(f"  {name:24} {usage['cpu_s']:8.1f} {usage['peak_rss_mb']:12.1f}")
    return "\n".join(lines)
