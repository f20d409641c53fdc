"""Chaos soak: many concurrent jobs through real processes while things break.

A Temporal dev server, the gateway emulator and two worker processes (one task
queue) run N jobs at once. The emulator answers a fraction of API calls with
5xx or 429 + ``Retry-After``, drops connections, and fails some lines inside
the batches; mid-run the driver SIGKILLs worker 1 (and starts a replacement),
kills and restarts the emulator, and SIGKILLs worker 2 (and starts a
replacement). Then it checks what must hold whatever happened:

- every job ended (a ``JobStatus``; a failed workflow or a job still running
  at the time bound counts against it);
- for every job, each input ``custom_id`` is exactly once in its results or
  errors file (lost: missing; duplicates: more than once), and the requests
  that failed are exactly the ones the emulator's seed says fail;
- the emulator holds exactly one batch and one input upload per job.

A clean run of the same jobs (no faults, no kills) is measured first, in the
same process, on a fresh emulator and workers, and the figures compare the two.

    python -m bench.soak [--jobs 200] [--requests-per-job 20] [--error-rate 0.1]
        [--drop-rate 0.02] [--line-failure-rate 0.05] [--seed 1] [--timeout-seconds 900]
        [--baseline-jobs N | --no-baseline] [--json FILE]

Everything listens on 127.0.0.1; every process started here is stopped here.
``run_soak`` is importable: tests/e2e/test_soak.py runs it in a reduced size.

One file over 400 lines on purpose: the fault schedule, the exactly-once checks
and the report read as one script a reviewer follows top to bottom.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from contracts.job import BatchJobInput, BatchJobResult
from contracts.names import JOB_KEY_METADATA, WORKFLOW_NAME
from devstack.emulator import EmulatorProcess
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess
from emulator.backends import injected_failure

ENDPOINT = "/v1/chat/completions"
TERMINAL_BATCH = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class SoakConfig:
    jobs: int = 200
    requests_per_job: int = 20
    error_rate: float = 0.1
    error_statuses: tuple[int, ...] = (500, 502, 503, 429)
    retry_after_seconds: float = 1.0
    drop_rate: float = 0.02
    line_failure_rate: float = 0.05
    seed: int = 1
    timeout_seconds: float = 900.0
    chaos: bool = True  # faults, kills and the restart; False: the clean baseline
    poll_seconds: float = 2.0
    heartbeat_seconds: float = 5.0
    worker_max_activities: int = 64
    # Emulated batch pace: a line takes line_latency, batch_concurrency at a time.
    validating_seconds: float = 1.0
    finalizing_seconds: float = 1.0
    line_latency_seconds: float = 0.2
    batch_concurrency: int = 4
    emulator_downtime_seconds: float = 2.0
    # When the chaos happens (first reached of the milestone or the time since start):
    kill_worker_1_at_batches: float = 0.25  # fraction of jobs whose batch exists
    restart_emulator_at_lines: float = 0.5  # fraction of all requests executed
    kill_worker_2_at_ended: float = 0.25  # fraction of jobs ended
    event_fallback_seconds: tuple[float, float, float] = (60.0, 120.0, 180.0)

    @property
    def requests(self) -> int:
        return self.jobs * self.requests_per_job

    def emulator_knobs(self) -> dict[str, Any]:
        knobs: dict[str, Any] = {
            "seed": self.seed,
            "validating_seconds": self.validating_seconds,
            "finalizing_seconds": self.finalizing_seconds,
            "line_latency_seconds": self.line_latency_seconds,
            "batch_concurrency": self.batch_concurrency,
        }
        if self.chaos:
            knobs |= {
                "error_rate": self.error_rate,
                "error_statuses": list(self.error_statuses),
                "retry_after_seconds": self.retry_after_seconds,
                "drop_rate": self.drop_rate,
                "line_failure_rate": self.line_failure_rate,
            }
        return knobs


@dataclass
class ChaosEvent:
    name: str
    at_seconds: float
    trigger: str
    jobs_running: int
    batches_existing: int
    lines_executed: int


@dataclass
class JobCheck:
    workflow_id: str
    status: str  # a JobStatus value, "workflow_failed" or "not_ended"
    requests: int
    succeeded: int = 0
    failed: int = 0
    not_run: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected_outcomes: int = 0
    batches: int = 0
    uploads: int = 0
    seconds: float | None = None  # the workflow's own start to finish
    reason: str | None = None


@dataclass
class SoakReport:
    config: SoakConfig
    wall_seconds: float
    jobs: list[JobCheck]
    events: list[ChaosEvent] = field(default_factory=list)
    injected_errors: int = 0
    dropped_connections: int = 0
    lines_executed: int = 0
    stray_batches: int = 0  # carrying this run's key prefix but no job's key
    unfinished_batches: int = 0  # a job's batch not terminal after every job ended
    leftover_part_files: int = 0
    adoptions: dict[str, int] = field(default_factory=dict)
    failed_attempts: dict[str, int] = field(default_factory=dict)
    highest_failed_attempt: int = 0
    logs: str = ""

    @property
    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(j.status for j in self.jobs).items()))

    @property
    def ended(self) -> int:
        return sum(j.status not in ("workflow_failed", "not_ended") for j in self.jobs)

    @property
    def lost(self) -> int:
        return sum(j.lost for j in self.jobs)

    @property
    def duplicates(self) -> int:
        return sum(j.duplicates for j in self.jobs)

    @property
    def unexpected_outcomes(self) -> int:
        return sum(j.unexpected_outcomes for j in self.jobs)

    @property
    def extra_batches(self) -> int:
        return sum(max(0, j.batches - 1) for j in self.jobs) + self.stray_batches

    @property
    def missing_batches(self) -> int:
        return sum(j.batches == 0 for j in self.jobs)

    @property
    def extra_uploads(self) -> int:
        return sum(max(0, j.uploads - 1) for j in self.jobs)

    @property
    def missing_uploads(self) -> int:
        return sum(j.uploads == 0 for j in self.jobs)

    @property
    def succeeded(self) -> int:
        return sum(j.succeeded for j in self.jobs)

    @property
    def failed(self) -> int:
        return sum(j.failed for j in self.jobs)

    @property
    def not_run(self) -> int:
        return sum(j.not_run for j in self.jobs)

    def job_seconds(self, q: float) -> float:
        """A percentile of job durations (0.5: median, 1.0: the slowest)."""
        done = sorted(j.seconds for j in self.jobs if j.seconds is not None)
        return done[min(len(done) - 1, round(q * (len(done) - 1)))] if done else float("nan")

    def problems(self) -> list[str]:
        """Everything that breaks a guarantee; empty when the run is clean."""
        found: list[str] = []
        for job in self.jobs:
            issues = []
            if job.status in ("workflow_failed", "not_ended"):
                issues.append(job.status)
            if job.lost:
                issues.append(f"{job.lost} lost")
            if job.duplicates:
                issues.append(f"{job.duplicates} duplicated")
            if job.unexpected_outcomes:
                issues.append(f"{job.unexpected_outcomes} unexpected outcomes")
            if job.batches != 1:
                issues.append(f"{job.batches} batches")
            if job.uploads != 1:
                issues.append(f"{job.uploads} uploads")
            if issues:
                found.append(f"{job.workflow_id}: {', '.join(issues)} ({job.reason or ''})")
        if self.stray_batches:
            found.append(f"{self.stray_batches} batches with an unknown job key")
        if self.unfinished_batches:
            found.append(f"{self.unfinished_batches} batches not terminal at the end")
        if self.leftover_part_files:
            found.append(f"{self.leftover_part_files} .part files left in the data dir")
        return found


# -- inputs ------------------------------------------------------------------------


def workflow_ids(tag: str, jobs: int) -> list[str]:
    return [f"soak-{tag}-{i:04d}" for i in range(jobs)]


def custom_ids(workflow_id: str, count: int) -> list[str]:
    return [f"{workflow_id}-r{i:04d}" for i in range(count)]


def write_input(path: Path, workflow_id: str, count: int) -> None:
    """The job's JSONL: one chat completion per line, custom_ids unique across jobs."""
    lines = []
    for i, cid in enumerate(custom_ids(workflow_id, count)):
        lines.append(
            json.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": ENDPOINT,
                    "body": {
                        "model": "gpt-4o-mini",
                        "max_tokens": 24,
                        "messages": [
                            {"role": "user", "content": f"Describe product {i} of {workflow_id}"}
                        ],
                    },
                }
            )
        )
    data = ("\n".join(lines) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def job_input(config: SoakConfig, workflow_id: str) -> BatchJobInput:
    return BatchJobInput(
        input_path=f"jobs/{workflow_id}.jsonl",
        endpoint=ENDPOINT,
        metadata={"soak": workflow_id},
        poll_interval=timedelta(seconds=config.poll_seconds),
        heartbeat_timeout=timedelta(seconds=config.heartbeat_seconds),
        # Each job's uploads are counted at the gateway once the run is over.
        keep_gateway_files=True,
    )


# -- the run -----------------------------------------------------------------------


@dataclass
class _Stack:
    config: SoakConfig
    root: Path
    client: Client
    address: str
    task_queue: str
    emulator: EmulatorProcess
    workers: list[WorkerProcess] = field(default_factory=list)
    spawned: int = 0
    # Fault counters of emulator processes already killed (they live in memory).
    injected_before: int = 0
    dropped_before: int = 0
    lines_before: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def new_worker(self) -> WorkerProcess:
        self.spawned += 1
        env = {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE": self.task_queue,
            "GATEWAY_URL": self.emulator.base_url,
            "GATEWAY_TIMEOUT_SECONDS": "30",
            "BATCH_DATA_DIR": str(self.data_dir),
            "WORKER_MAX_CONCURRENT_ACTIVITIES": str(self.config.worker_max_activities),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        return WorkerProcess(self.root / "logs" / f"worker-{self.spawned}.log", env).start()


async def _stats(http: httpx.AsyncClient) -> dict[str, Any] | None:
    try:
        resp = await http.get("/_emulator/stats", timeout=5)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result
    except httpx.HTTPError:
        return None  # restarting


class _Chaos:
    """Fires the three events at their milestones, one after the other."""

    def __init__(self, stack: _Stack, pending: set[str], started: float) -> None:
        self.stack = stack
        self.pending = pending
        self.started = started
        self.events: list[ChaosEvent] = []
        self.batches = 0
        self.lines = 0

    def _milestones(self) -> list[tuple[str, Any]]:
        c = self.stack.config
        return [
            ("SIGKILL worker 1", lambda: self.batches >= c.kill_worker_1_at_batches * c.jobs),
            (
                "emulator kill + restart",
                lambda: self.lines >= c.restart_emulator_at_lines * c.requests,
            ),
            (
                "SIGKILL worker 2",
                lambda: c.jobs - len(self.pending) >= c.kill_worker_2_at_ended * c.jobs,
            ),
        ]

    async def run(self) -> None:
        config = self.stack.config
        async with httpx.AsyncClient(base_url=self.stack.emulator.base_url) as http:
            for index, (name, reached) in enumerate(self._milestones()):
                fallback = config.event_fallback_seconds[index]
                while self.pending:
                    stats = await _stats(http)
                    if stats is not None:
                        self.batches = sum(stats["batches_by_status"].values())
                        self.lines = self.stack.lines_before + stats["lines_executed"]
                    elapsed = time.monotonic() - self.started
                    if reached():
                        trigger = "milestone"
                        break
                    if elapsed >= fallback:
                        trigger = f"time ({fallback:g} s)"
                        break
                    await asyncio.sleep(0.25)
                else:
                    return  # every job ended before this event: recorded as not fired
                self.events.append(
                    ChaosEvent(
                        name=name,
                        at_seconds=round(time.monotonic() - self.started, 1),
                        trigger=trigger,
                        jobs_running=len(self.pending),
                        batches_existing=self.batches,
                        lines_executed=self.lines,
                    )
                )
                if index == 1:
                    await self._restart_emulator(http)
                else:
                    await self._replace_worker(index // 2)

    async def _replace_worker(self, slot: int) -> None:
        stack = self.stack
        await asyncio.to_thread(stack.workers[slot].kill)
        stack.workers[slot] = await asyncio.to_thread(stack.new_worker)

    async def _restart_emulator(self, http: httpx.AsyncClient) -> None:
        stack = self.stack
        # Fault counters live in the process: stop injecting, read them, then kill.
        # The restart applies the start-up knobs (faults on) again.
        await http.patch("/_emulator/knobs", json={"error_rate": 0.0, "drop_rate": 0.0})
        stats = await _stats(http)
        await asyncio.to_thread(stack.emulator.kill)
        if stats is not None:
            stack.injected_before += stats["injected_errors"]
            stack.dropped_before += stats["dropped_connections"]
            stack.lines_before += stats["lines_executed"]
        await asyncio.sleep(stack.config.emulator_downtime_seconds)
        await asyncio.to_thread(stack.emulator.restart)


async def _start_jobs(
    stack: _Stack, ids: list[str]
) -> dict[str, WorkflowHandle[Any, BatchJobResult]]:
    handles: dict[str, WorkflowHandle[Any, BatchJobResult]] = {}
    gate = asyncio.Semaphore(16)

    async def one(wid: str) -> None:
        async with gate:
            handles[wid] = await stack.client.start_workflow(
                WORKFLOW_NAME,
                job_input(stack.config, wid),
                id=wid,
                task_queue=stack.task_queue,
                result_type=BatchJobResult,
            )

    await asyncio.gather(*(one(wid) for wid in ids))
    return handles


async def _wait_all(
    handles: dict[str, WorkflowHandle[Any, BatchJobResult]],
    pending: set[str],
    deadline: float,
) -> dict[str, BatchJobResult | str]:
    outcomes: dict[str, BatchJobResult | str] = {}

    async def one(wid: str) -> None:
        try:
            outcomes[wid] = await handles[wid].result()
        except WorkflowFailureError as exc:
            outcomes[wid] = f"workflow failed: {exc.cause or exc}"
        except Exception as exc:  # an RPC error, say: recorded, the others still counted
            outcomes[wid] = f"no result: {type(exc).__name__}: {exc}"
        finally:
            pending.discard(wid)

    tasks = [asyncio.create_task(one(wid)) for wid in handles]
    _done, late = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return outcomes


def _ids_in(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines() if line]


def _check_job(
    config: SoakConfig,
    data_dir: Path,
    wid: str,
    outcome: BatchJobResult | str | None,
) -> JobCheck:
    job = job_input(config, wid)
    expected = custom_ids(wid, config.requests_per_job)
    check = JobCheck(workflow_id=wid, status="not_ended", requests=len(expected))
    if isinstance(outcome, str):
        check.status, check.reason = "workflow_failed", outcome[:300]
    elif outcome is not None:
        check.status, check.reason = outcome.status.value, outcome.reason
        check.succeeded = outcome.requests.succeeded
        check.failed = outcome.requests.failed
        check.not_run = outcome.requests.not_run
        check.seconds = (outcome.finished_at - outcome.started_at).total_seconds()
    output = _ids_in(data_dir / job.resolved_output_path)
    errors = _ids_in(data_dir / job.resolved_errors_path)
    seen = Counter(output + errors)
    check.lost = sum(1 for cid in expected if seen[cid] == 0)
    check.duplicates = sum(n - 1 for n in seen.values() if n > 1)
    check.duplicates += sum(n for cid, n in seen.items() if cid not in set(expected))
    if isinstance(outcome, BatchJobResult):
        # The seed decides which lines fail inside the batch; nothing else may.
        rate = config.line_failure_rate if config.chaos else 0.0
        should_fail = {cid for cid in expected if injected_failure(cid, config.seed, rate)}
        check.unexpected_outcomes = len(set(errors) ^ should_fail)
    return check


async def _list_all(http: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(10_000):  # bounded: at most 1M objects
        query = {**params, **({"after": after} if after else {})}
        resp = await http.get(path, params=query)
        resp.raise_for_status()
        page = resp.json()
        items += page["data"]
        if not page.get("has_more") or not page["data"]:
            break
        after = page["data"][-1]["id"]
    return items


async def _check_gateway(stack: _Stack, tag: str, checks: dict[str, JobCheck]) -> tuple[int, int]:
    """Count each job's batches and input uploads at the emulator.

    A batch is the job's when its job key (``<workflow id>/<run id>``) starts
    with the workflow id; an upload when its name (``<workflow id>_<run
    id>.<sha256>.jsonl``) does. Returns (stray, unfinished): objects of this
    run that name no job, and the jobs' batches that are not terminal.
    """
    stray = unfinished = 0
    async with httpx.AsyncClient(base_url=stack.emulator.base_url, timeout=60) as http:
        for batch in await _list_all(http, "/batches", limit=100):
            key = (batch.get("metadata") or {}).get(JOB_KEY_METADATA, "")
            wid = key.split("/", 1)[0]
            if wid in checks:
                checks[wid].batches += 1
                unfinished += batch["status"] not in TERMINAL_BATCH
            elif key.startswith(f"soak-{tag}-"):
                stray += 1
        for item in await _list_all(http, "/files", purpose="batch", limit=1000):
            name = item.get("filename") or ""
            wid = name.split("_", 1)[0]
            if wid in checks:
                checks[wid].uploads += 1
            elif name.startswith(f"soak-{tag}-"):
                stray += 1
    return stray, unfinished


_FAILED_ATTEMPT = re.compile(
    r"Completing activity as failed.*?'activity_type': '(\w+)', 'attempt': (\d+)"
)


def _from_worker_logs(logs: Path) -> tuple[dict[str, int], dict[str, int], int]:
    """(adoptions, failed attempts by activity, highest attempt that failed), from the logs.

    A failed attempt is one Temporal retried; polls that find the batch unchanged
    are benign and not logged, and attempts cut short by a SIGKILL log nothing.
    """
    adopted = Counter[str]()
    failed = Counter[str]()
    highest = 0
    for log in sorted(logs.glob("worker-*.log")):
        text = log.read_text(errors="replace")
        adopted["uploads"] += text.count("adopting earlier upload")
        adopted["batches"] += text.count("adopting batch")
        for activity_type, attempt in _FAILED_ATTEMPT.findall(text):
            failed[activity_type] += 1
            highest = max(highest, int(attempt))
    return dict(adopted), dict(sorted(failed.items())), highest


async def soak_once(config: SoakConfig, client: Client, address: str, root: Path) -> SoakReport:
    """One run on a fresh emulator and two fresh workers, against a running Temporal."""
    tag = uuid.uuid4().hex[:6]
    ids = workflow_ids(tag, config.jobs)
    emulator = EmulatorProcess(root / "emulator", knobs=config.emulator_knobs())
    stack = _Stack(
        config=config,
        root=root,
        client=client,
        address=address,
        task_queue=f"soak-{tag}",
        emulator=emulator,
    )
    for wid in ids:
        path = stack.data_dir / job_input(config, wid).input_path
        write_input(path, wid, config.requests_per_job)
    pending = set(ids)
    handles: dict[str, WorkflowHandle[Any, BatchJobResult]] = {}
    await asyncio.to_thread(emulator.start)
    try:
        try:
            stack.workers = [stack.new_worker(), stack.new_worker()]
            started = time.monotonic()
            handles = await _start_jobs(stack, ids)
            chaos = _Chaos(stack, pending, started)
            chaos_task = asyncio.create_task(chaos.run()) if config.chaos else None
            try:
                outcomes = await _wait_all(handles, pending, started + config.timeout_seconds)
            finally:
                if chaos_task is not None:
                    chaos_task.cancel()
                    (failed,) = await asyncio.gather(chaos_task, return_exceptions=True)
                    if isinstance(failed, Exception):  # e.g. the emulator did not come back
                        raise failed
            wall = time.monotonic() - started
            for wid in sorted(pending):  # past the time bound: say where each one is
                desc = await handles[wid].describe()
                print(f"not ended in time: {wid} {desc.status}", file=sys.stderr)
                await handles[wid].terminate("past the soak's time bound")
        finally:
            for worker in stack.workers:
                await asyncio.to_thread(worker.stop, 20.0)
        # The checks read the emulator, faults off (the counters stay as they are).
        await asyncio.to_thread(emulator.set_knobs, error_rate=0.0, drop_rate=0.0)
        stats = await asyncio.to_thread(emulator.stats)
        checks = {wid: _check_job(config, stack.data_dir, wid, outcomes.get(wid)) for wid in ids}
        stray, unfinished = await _check_gateway(stack, tag, checks)
    finally:
        await asyncio.to_thread(emulator.stop)
    adopted, failed_attempts, highest = _from_worker_logs(root / "logs")
    return SoakReport(
        config=config,
        wall_seconds=wall,
        jobs=[checks[wid] for wid in ids],
        events=chaos.events,
        injected_errors=stack.injected_before + stats["injected_errors"],
        dropped_connections=stack.dropped_before + stats["dropped_connections"],
        lines_executed=stack.lines_before + stats["lines_executed"],
        stray_batches=stray,
        unfinished_batches=unfinished,
        leftover_part_files=len(list(stack.data_dir.rglob("*.part"))),
        adoptions=adopted,
        failed_attempts=failed_attempts,
        highest_failed_attempt=highest,
        logs=str(root / "logs"),
    )


async def run_soak(
    config: SoakConfig,
    root: Path,
    *,
    baseline: SoakConfig | None = None,
    client: Client | None = None,
) -> tuple[SoakReport, SoakReport | None]:
    """The baseline (if any), then the chaos run, under root (data, logs).

    Starts (and stops) its own dev server unless given a client.
    """
    env = None if client is not None else await start_dev_server()
    if env is not None:
        client = env.client
    assert client is not None
    address = client.service_client.config.target_host
    try:
        clean = (
            await soak_once(baseline, client, address, root / "baseline")
            if baseline is not None
            else None
        )
        chaos = await soak_once(config, client, address, root / "chaos")
        return chaos, clean
    finally:
        if env is not None:
            await env.shutdown()


# -- figures -----------------------------------------------------------------------


def figures(report: SoakReport, clean: SoakReport | None) -> str:
    c = report.config
    rows: list[tuple[str, str]] = [
        ("jobs (concurrent)", f"{c.jobs}"),
        ("requests", f"{c.requests} ({c.requests_per_job} per job)"),
        (
            "API errors injected (5xx, 429 + Retry-After)",
            f"{report.injected_errors} (error_rate {c.error_rate:g}, "
            f"statuses {','.join(map(str, c.error_statuses))})",
        ),
        ("connections dropped", f"{report.dropped_connections} (drop_rate {c.drop_rate:g})"),
        (
            "lines failed inside batches",
            f"{report.failed} (line_failure_rate {c.line_failure_rate:g})",
        ),
        (
            "worker SIGKILLs / emulator restarts",
            f"{sum('worker' in e.name for e in report.events)} / "
            f"{sum('emulator' in e.name for e in report.events)}",
        ),
    ]
    for event in report.events:
        rows.append(
            (
                f"  {event.name}",
                f"at {event.at_seconds:g} s ({event.trigger}), {event.jobs_running} jobs "
                f"running, {event.batches_existing} batches, {event.lines_executed} lines run",
            )
        )
    rows += [
        ("jobs ended", f"{report.ended}/{c.jobs}"),
        ("statuses", ", ".join(f"{k} {v}" for k, v in report.statuses.items())),
        (
            "requests succeeded / failed / not run",
            f"{report.succeeded} / {report.failed} / {report.not_run}",
        ),
        ("lost", f"{report.lost}"),
        ("duplicates", f"{report.duplicates}"),
        ("outcomes other than the seed's", f"{report.unexpected_outcomes}"),
        (
            "batches per job: extra / missing",
            f"{report.extra_batches} / {report.missing_batches}",
        ),
        (
            "uploads per job: extra / missing",
            f"{report.extra_uploads} / {report.missing_uploads}",
        ),
        ("lines executed by the emulator", f"{report.lines_executed}"),
        (
            "earlier attempts' work adopted",
            ", ".join(f"{k} {v}" for k, v in report.adoptions.items()) or "none",
        ),
        (
            "activity attempts failed, retried",
            f"{sum(report.failed_attempts.values())} ("
            + ", ".join(f"{k} {v}" for k, v in report.failed_attempts.items())
            + f"); highest failed attempt {report.highest_failed_attempt}",
        ),
        ("wall time", f"{report.wall_seconds:.1f} s"),
        ("job duration p50 / p90 / max", _durations(report)),
    ]
    if clean is not None:
        cc = clean.config
        rows += [
            (
                "baseline (same run, no faults, no kills)",
                f"{cc.jobs} jobs x {cc.requests_per_job} requests in "
                f"{clean.wall_seconds:.1f} s, lost {clean.lost}, duplicates {clean.duplicates}",
            ),
            ("  baseline job duration p50 / p90 / max", _durations(clean)),
            (
                "jobs/s chaos / baseline",
                f"{c.jobs / report.wall_seconds:.2f} / {cc.jobs / clean.wall_seconds:.2f} = "
                f"{(c.jobs / report.wall_seconds) / (cc.jobs / clean.wall_seconds):.2f}x",
            ),
        ]
        if cc.jobs == c.jobs and cc.requests_per_job == c.requests_per_job:
            rows.append(
                (
                    "wall time chaos / baseline",
                    f"{report.wall_seconds / clean.wall_seconds:.2f}x",
                )
            )
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    problems = report.problems() + (clean.problems() if clean else [])
    lines.append("")
    lines.append("guarantees held" if not problems else f"PROBLEMS ({len(problems)}):")
    lines += [f"  {p}" for p in problems[:50]]
    return "\n".join(lines)


def _durations(report: SoakReport) -> str:
    return " / ".join(f"{report.job_seconds(q):.1f}" for q in (0.5, 0.9, 1.0)) + " s"


def _to_json(report: SoakReport) -> dict[str, Any]:
    data = asdict(report)
    data["config"] = asdict(report.config)
    data.pop("jobs")
    data |= {
        "ended": report.ended,
        "statuses": report.statuses,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "not_run": report.not_run,
        "lost": report.lost,
        "duplicates": report.duplicates,
        "unexpected_outcomes": report.unexpected_outcomes,
        "extra_batches": report.extra_batches,
        "missing_batches": report.missing_batches,
        "extra_uploads": report.extra_uploads,
        "missing_uploads": report.missing_uploads,
        "job_seconds_p50": report.job_seconds(0.5),
        "job_seconds_p90": report.job_seconds(0.9),
        "job_seconds_max": report.job_seconds(1.0),
        "problems": report.problems(),
    }
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--requests-per-job", type=int, default=defaults.requests_per_job)
    parser.add_argument("--error-rate", type=float, default=defaults.error_rate)
    parser.add_argument("--drop-rate", type=float, default=defaults.drop_rate)
    parser.add_argument("--line-failure-rate", type=float, default=defaults.line_failure_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timeout-seconds", type=float, default=defaults.timeout_seconds)
    parser.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds)
    parser.add_argument("--heartbeat-seconds", type=float, default=defaults.heartbeat_seconds)
    parser.add_argument("--worker-max-activities", type=int, default=defaults.worker_max_activities)
    parser.add_argument(
        "--baseline-jobs", type=int, default=None, help="jobs of the clean run (default: --jobs)"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--keep", type=Path, default=None, help="data and logs here, kept (default: a temp dir)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    config = replace(
        defaults,
        jobs=args.jobs,
        requests_per_job=args.requests_per_job,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        line_failure_rate=args.line_failure_rate,
        seed=args.seed,
        timeout_seconds=args.timeout_seconds,
        poll_seconds=args.poll_seconds,
        heartbeat_seconds=args.heartbeat_seconds,
        worker_max_activities=args.worker_max_activities,
    )
    baseline = (
        None
        if args.no_baseline
        else replace(config, chaos=False, jobs=args.baseline_jobs or config.jobs)
    )
    root = args.keep or Path(tempfile.mkdtemp(prefix="soak-"))
    report, clean = asyncio.run(run_soak(config, root, baseline=baseline))
    print(figures(report, clean))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"chaos": _to_json(report), "baseline": clean and _to_json(clean)},
                indent=2,
                default=str,
            )
        )
    problems = report.problems() + (clean.problems() if clean else [])
    if problems:
        print(f"data and logs kept in {root}")
    elif args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
