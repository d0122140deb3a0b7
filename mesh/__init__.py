"""Backbeat mesh runtime: what every service shares.

One concern per module: configuration, logging, tracing, errors, deadlines,
circuit breakers, client channels, key-value stores, rate limits and the
server bootstrap.
"""
