"""The worker: runs BatchJobWorkflow and its activities on task queue llm-batches.

    python worker.py

Gateway settings (GATEWAY_URL, GATEWAY_DIALECT, GATEWAY_API_KEY, ...) are read
here, from this process's environment, and never enter a workflow's history.

Operations (docs/operations.md): WORKER_METRICS_PORT serves Prometheus metrics
(the SDK's and ours) on /metrics; LOG_FORMAT=json writes one JSON object a log
line, with workflow, activity and batch ids; LOG_LEVEL sets the level.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from temporalio.worker import Worker

from activities.batch_activities import BatchActivities
from activities.sharding import ShardingActivities
from activities.watch import hand_over_watches
from contracts.constants import (
    ENV_ALLOWED_LOCATIONS,
    ENV_ATTACH_ANY_BATCH,
    ENV_DATA_DIR,
    ENV_MAX_CONCURRENT_ACTIVITIES,
    ENV_TASK_QUEUE,
    ENV_WEBHOOK_FALLBACK_POLL,
)
from contracts.names import TASK_QUEUE
from gateway.client import GatewayClient
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    GatewayUnreachableError,
    RouteNotSupportedError,
)
from gateway.settings import GatewaySettings
from observability.logging import LogContextInterceptor, configure_logging
from observability.metrics import MeteredGatewayClient, metrics_bind_address, worker_runtime
from storage import AllowedLocations, LocalStorage, LocationError, Stores
from temporal_client import TemporalUnreachableError, connect, exit_process
from workflows.batch_job import BatchJobWorkflow
from workflows.fan_out import BatchFanOutWorkflow
from workflows.sharded_job import ShardedBatchJobWorkflow

log = logging.getLogger("worker")


class GatewayConfigurationError(Exception):
    """The gateway refuses this worker's key: no job could succeed, so the worker does not start."""


async def check_gateway(gateway: GatewayClient) -> None:
    """One cheap call at start, so a wrong key or URL shows up now, not in the first job."""
    url = gateway.settings.base_url
    try:
        await gateway.list_batches(limit=1)
    except AuthenticationError as exc:
        raise GatewayConfigurationError(exc.message) from exc
    except RouteNotSupportedError:
        log.warning(
            "the gateway at %s does not list batches: a retried create cannot look for an "
            "earlier batch (see README, 'Never a batch twice')",
            url,
        )
    except GatewayUnreachableError as exc:
        log.warning("%s; jobs wait and retry until it answers", exc.message)
    except GatewayError as exc:
        log.warning("the gateway at %s answered the start-up check with: %s", url, exc.message)
    else:
        log.info("gateway at %s answers", url)


def worker_storage(environ: Mapping[str, str]) -> Stores:
    """The data directory and the allow-list of locations, from the worker's environment.

    Unset, BATCH_DATA_DIR is the current directory, said out loud at start; a
    data directory that is the file system's root or a home folder is refused:
    every file the worker can read would be a job's to read.
    """
    raw = environ.get(ENV_DATA_DIR, "").strip()
    local = LocalStorage(Path(raw or "."))
    if local.root in (Path("/"), Path.home().resolve()):
        raise LocationError(
            f"{ENV_DATA_DIR} is {local.root}{'' if raw else ' (unset: the current directory)'}: "
            "jobs could read and write every file there; set it to the folder jobs share"
        )
    if not raw:
        log.warning(
            "%s is not set: jobs read and write under the current directory %s",
            ENV_DATA_DIR,
            local.root,
        )
    allowed = AllowedLocations.from_setting(
        environ.get(ENV_ALLOWED_LOCATIONS), local, ENV_ALLOWED_LOCATIONS
    )
    log.info("jobs may use: %s", "every location" if allowed.everything else allowed.listed)
    return Stores(local, allowed=allowed)


def fallback_poll_seconds(environ: Mapping[str, str]) -> float | None:
    """WEBHOOK_FALLBACK_POLL_SECONDS: where batch events arrive, how rarely a watch reads."""
    raw = environ.get(ENV_WEBHOOK_FALLBACK_POLL, "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(f"{ENV_WEBHOOK_FALLBACK_POLL} must be seconds above 0, not {raw!r}")
    return seconds


async def run_worker(stop: asyncio.Event, settings: GatewaySettings) -> None:
    storage = worker_storage(os.environ)
    task_queue = os.environ.get(ENV_TASK_QUEUE, TASK_QUEUE)
    metrics_at = metrics_bind_address(os.environ)
    client = await connect(runtime=worker_runtime(os.environ))
    async with MeteredGatewayClient(settings) as gateway:
        await check_gateway(gateway)
        attach_any = os.environ.get(ENV_ATTACH_ANY_BATCH, "").strip().lower() == "true"
        fallback = fallback_poll_seconds(os.environ)
        activities = BatchActivities(
            gateway, storage, attach_any_batch=attach_any, fallback_poll_seconds=fallback
        )
        if fallback is not None:
            log.info("batch events expected: a waiting job reads its batch every %.0f s", fallback)
        sharding = ShardingActivities(storage, settings.dialect.value)
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[BatchJobWorkflow, BatchFanOutWorkflow, ShardedBatchJobWorkflow],
            activities=[*activities.all(), *sharding.all()],
            max_concurrent_activities=int(os.environ.get(ENV_MAX_CONCURRENT_ACTIVITIES, "100")),
            graceful_shutdown_timeout=timedelta(seconds=20),
            interceptors=[LogContextInterceptor()],
        )
        log.info(
            "worker on task queue %s, gateway %s (%s dialect), data dir %s",
            task_queue,
            settings.base_url,
            settings.dialect.value,
            storage.local.root,
        )
        if metrics_at is not None:
            log.info("metrics on http://%s/metrics", metrics_at)
        async with worker:
            await stop.wait()
            log.info("shutting down: finishing running activities")
        # Watches run detached from the worker's slots: each hands its batch over
        # (returns what it last read) before the clients close.
        await hand_over_watches(within_seconds=10.0)


def main() -> int:
    try:
        settings = GatewaySettings.from_env()
        configure_logging(os.environ, settings.secret_values())
    except ValueError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(stop, settings)

    try:
        asyncio.run(runner())
    except (
        TemporalUnreachableError,
        GatewayConfigurationError,
        ValueError,  # LocationError among them
    ) as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_process(main())
