"""Benchmarks of the Backbeat mesh against a bare gRPC floor measured in the same run."""
