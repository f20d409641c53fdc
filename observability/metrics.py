"""The worker's Prometheus endpoint: the SDK's metrics and ours on one port.

WORKER_METRICS_PORT unset (or empty) means no endpoint. Set, it is a port
(``9464``: served on every interface, as a container needs) or ``HOST:PORT``
(``127.0.0.1:9464``). Our metrics go through the SDK's meter
(``workflow.metric_meter()``, ``activity.metric_meter()``), so one scrape
of ``/metrics`` returns both; their names are in observability/names.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from temporalio import activity
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from contracts.constants import ENV_METRICS_PORT
from gateway.client import MAX_DOWNLOAD_BYTES, GatewayClient
from gateway.models import FileObject
from observability.names import (
    BATCH_WAIT_BUCKETS,
    METRIC_BATCH_WAIT,
    METRIC_BYTES_DOWNLOADED,
    METRIC_BYTES_UPLOADED,
)

DEFAULT_METRICS_PORT = 9464


def metrics_bind_address(environ: Mapping[str, str]) -> str | None:
    """Where to serve /metrics, from WORKER_METRICS_PORT; None when it is unset or empty."""
    raw = environ.get(ENV_METRICS_PORT, "").strip()
    if not raw:
        return None
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        host = "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536 or (sep and not host):
        raise ValueError(
            f"{ENV_METRICS_PORT}={raw!r}: expected a port such as {DEFAULT_METRICS_PORT} "
            f"or HOST:PORT such as 127.0.0.1:{DEFAULT_METRICS_PORT}"
        )
    return f"{host}:{port}"


def worker_runtime(environ: Mapping[str, str]) -> Runtime:
    """The SDK runtime of the worker process.

    Its core logs are forwarded to Python logging (logger ``temporalio.core``), so
    they take the worker's log format; with WORKER_METRICS_PORT set it serves
    Prometheus metrics.
    """
    bind = metrics_bind_address(environ)
    metrics = (
        None
        if bind is None
        else PrometheusConfig(
            bind_address=bind,
            histogram_bucket_overrides={METRIC_BATCH_WAIT: list(BATCH_WAIT_BUCKETS)},
        )
    )
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            ),
            metrics=metrics,
        )
    )


def _count(name: str, description: str, value: int) -> None:
    if value > 0 and activity.in_activity():
        activity.metric_meter().create_counter(name, description, "bytes").add(value)


class MeteredGatewayClient(GatewayClient):
    """The gateway client, counting the bytes it moves on the calling activity's meter."""

    async def upload_file(self, path: Path, *, filename: str, purpose: str = "batch") -> FileObject:
        uploaded = await super().upload_file(path, filename=filename, purpose=purpose)
        size = uploaded.bytes or (await asyncio.to_thread(path.stat)).st_size
        _count(METRIC_BYTES_UPLOADED, "Input bytes uploaded to the gateway", size)
        return uploaded

    async def download_file(
        self, file_id: str, destination: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES
    ) -> int:
        size = await super().download_file(file_id, destination, max_bytes=max_bytes)
        _count(METRIC_BYTES_DOWNLOADED, "Result bytes downloaded from the gateway", size)
        return size
