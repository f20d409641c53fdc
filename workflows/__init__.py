"""Deterministic workflow code: no I/O here, only orchestration of activities."""
