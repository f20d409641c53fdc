"""Benchmark: what durability costs per job, against a plain SDK script in the same run.

N small jobs (5 requests each, 1 s polls) run through the project (a dev
server and one worker.py process) and through a plain asyncio script on the
official openai SDK that does upload, create, poll and download with no
durability. Each side gets its own fresh emulator with the same settings. The
script prints both wall times, their ratio, and per job: history events,
worker CPU, server CPU and gateway calls.

    python -m bench.throughput [--jobs 200] [--variants baseline,cache-off]
    python -m bench.throughput --variants baseline@main,baseline   # a change against main

A variant is the project run with other worker options, worker environment or
dev-server flags (see VARIANTS): each runs on its own fresh dev server,
emulator and worker, so every lever is measured on its own against the
baseline of the same run. ``NAME@REV`` runs variant NAME with the worker's
code from git revision REV (exported with ``git archive``; the starter's and
the benchmark's code stay this tree's): a code change against the code
before it, in the same run.

One file over 400 lines on purpose: both sides of the comparison, the variants
and the report read as one script a reviewer follows top to bottom.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from contracts.job import BatchJobInput, BatchJobResult
from contracts.names import WORKFLOW_NAME
from devstack.emulator import EmulatorProcess
from devstack.ports import free_port
from devstack.process import REPO_ROOT
from devstack.temporal import dev_server_path
from gateway.settings import GatewaySettings
from temporal_client import register_search_attributes

# Batches pass through validating (1 s), in_progress (5 lines, 8 at a time,
# 50 ms each) and finalizing (1 s): every call is answered at once.
EMULATOR_KNOBS: dict[str, Any] = {
    "validating_seconds": 1.0,
    "finalizing_seconds": 1.0,
    "line_latency_seconds": 0.05,
    "batch_concurrency": 8,
}
ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}
ENV_WORKER_OPTIONS = "BENCH_WORKER_OPTIONS"


@dataclass(frozen=True)
class Variant:
    """One way to run the project side: Worker(...) options, worker env, dev-server flags."""

    worker_options: dict[str, Any] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    server_args: tuple[str, ...] = ()
    # The worker in the benchmark's own process, on the client that starts the jobs:
    # the only place eager workflow start can hand a job's first task to a worker.
    in_process: bool = False
    eager_start: bool = False
    # The worker's code from this git revision instead of this tree's.
    revision: str | None = None
    # The worker's sources compiled to bytecode first, as the image does (compileall):
    # without it, and with PYTHONDONTWRITEBYTECODE set (this machine, the image before),
    # the sandbox compiles the workflow's modules from source for every new job.
    bytecode: bool = False
    # The module whose --serve-worker entry runs the worker (bench.throughput_floor's bare one).
    worker_module: str = "bench.throughput"


VARIANTS: dict[str, Variant] = {
    "baseline": Variant(),
    "log-warning": Variant(worker_env={"LOG_LEVEL": "WARNING"}),
    "wf-polls-10": Variant(worker_options={"max_concurrent_workflow_task_polls": 10}),
    "act-polls-10": Variant(worker_options={"max_concurrent_activity_task_polls": 10}),
    "polls-autoscale": Variant(worker_options={"autoscale_pollers": True}),
    "sticky-ratio-1": Variant(worker_options={"nonsticky_to_sticky_poll_ratio": 1.0}),
    "cache-off": Variant(worker_options={"max_cached_workflows": 0}),
    "no-eager-activities": Variant(worker_options={"disable_eager_activity_execution": True}),
    "eager-activities-on": Variant(
        server_args=("--dynamic-config-value", "system.enableActivityEagerExecution=true")
    ),
    "unsandboxed": Variant(worker_options={"sandbox": "off"}),
    "sandbox-passthrough-all": Variant(worker_options={"sandbox": "passthrough-all"}),
    "in-process": Variant(in_process=True),
    "in-process-eager-start": Variant(in_process=True, eager_start=True),
    "bytecode": Variant(bytecode=True),
}


@dataclass(frozen=True)
class Load:
    jobs: int
    requests: int
    poll_seconds: float
    # Batches already at the gateway before the jobs start (other work on the same account).
    gateway_history: int = 0
    # How long before the jobs those batches were created.
    history_age_hours: float = 0.0


@dataclass
class SideReport:
    name: str
    jobs: int
    wall: float
    ok: int
    calls: Counter[str]
    emulator_cpu: float
    client_cpu: float = 0.0
    worker_cpu: float = 0.0
    server_cpu: float = 0.0
    events: list[int] = field(default_factory=list)
    eagerly_started: int = 0

    def per_job(self, value: float) -> float:
        return value / max(1, self.jobs)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def write_inputs(folder: Path, jobs: int, requests: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(jobs):
        path = folder / f"job-{j:05d}.jsonl"
        with path.open("w") as out:
            for i in range(requests):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
                line = {"custom_id": f"j{j}-r{i}", "method": "POST", "url": ENDPOINT, "body": body}
                out.write(json.dumps(line) + "\n")
        paths.append(path)
    return paths


def start_emulator(root: Path, history: int = 0, age_hours: float = 0.0) -> EmulatorProcess:
    """A fresh emulator, holding ``history`` ended batches made ``age_hours`` ago when asked."""
    emulator = EmulatorProcess(root, knobs=EMULATOR_KNOBS).start()
    if history:
        emulator.set_knobs(force_outcome="failed")
        line = {"custom_id": "old", "method": "POST", "url": ENDPOINT, "body": {"model": "m"}}
        with httpx.Client(base_url=emulator.base_url, timeout=30.0) as http:
            uploaded = http.post(
                "/files",
                files={"file": ("old.jsonl", json.dumps(line).encode() + b"\n")},
                data={"purpose": "batch"},
            )
            body = {"input_file_id": uploaded.json()["id"], "endpoint": ENDPOINT}
            for _ in range(history):
                http.post("/batches", json={**body, "completion_window": "24h"}).raise_for_status()
        emulator.set_knobs(force_outcome="none")
        # Validation (1 s) fails them all; then they are history, not work.
        time.sleep(EMULATOR_KNOBS["validating_seconds"] + 1.0)
        if age_hours:
            backdate_batches(emulator.data_dir / "emulator.sqlite3", age_hours)
    return emulator


def backdate_batches(database: Path, hours: float) -> None:
    """Move every batch's created_at back: the emulator has no clock to make old ones."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        db.execute(
            "UPDATE batches SET data = json_set(data, '$.created_at', "
            "json_extract(data, '$.created_at') - ?)",
            (int(hours * 3600),),
        )


def gateway_calls(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(emulator.stats()["api_calls"])


# -- the plain script --------------------------------------------------------------


async def plain_job(client: openai.AsyncOpenAI, path: Path, poll: float) -> str:
    """Upload, create, poll, download: what a script without durability does."""
    with path.open("rb") as stream:
        uploaded = await client.files.create(file=stream, purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
    )
    while batch.status not in TERMINAL:
        await asyncio.sleep(poll)
        batch = await client.batches.retrieve(batch.id)
    for file_id, suffix in ((batch.output_file_id, "output"), (batch.error_file_id, "errors")):
        if file_id:
            content = await client.files.content(file_id)
            path.with_suffix(f".{suffix}.jsonl").write_bytes(content.content)
    return batch.status


async def run_plain(root: Path, load: Load) -> SideReport:
    paths = write_inputs(root / "data", load.jobs, load.requests)
    emulator = start_emulator(root / "emulator", load.gateway_history, load.history_age_hours)
    try:
        assert emulator.pid is not None
        emu_proc = psutil.Process(emulator.pid)
        calls_before, emu_before = gateway_calls(emulator), cpu_seconds(emu_proc)
        cpu_before = time.process_time()
        started = time.monotonic()
        async with openai.AsyncOpenAI(base_url=emulator.base_url + "/v1", api_key="x") as client:
            statuses = await asyncio.gather(
                *(plain_job(client, p, load.poll_seconds) for p in paths)
            )
        wall = time.monotonic() - started
        return SideReport(
            name="plain openai SDK script",
            jobs=load.jobs,
            wall=wall,
            ok=statuses.count("completed"),
            calls=gateway_calls(emulator) - calls_before,
            emulator_cpu=cpu_seconds(emu_proc) - emu_before,
            client_cpu=time.process_time() - cpu_before,
        )
    finally:
        emulator.stop()


# -- the project -------------------------------------------------------------------


def dev_server_process(port: int) -> psutil.Process:
    for child in psutil.Process().children(recursive=True):
        if str(port) in child.cmdline() and "start-dev" in child.cmdline():
            return child
    raise RuntimeError(f"no dev server on port {port} among this process's children")


def export_revision(revision: str, into: Path) -> Path:
    """The repository's tree at ``revision``, without touching the work tree or git's state."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", revision],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start_worker(
    variant: Variant, env: dict[str, str], log: Path, source: Path
) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env, **variant.worker_env}
    full_env[ENV_WORKER_OPTIONS] = json.dumps(variant.worker_options)
    if variant.bytecode:
        # Beside the run's data, so the work tree gets no __pycache__ folders.
        full_env["PYTHONPYCACHEPREFIX"] = str(log.parent / "pycache")
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-x", r"/(\.venv|node_modules)/", "."],
            cwd=source,
            env=full_env,
            check=True,
        )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", variant.worker_module, "--serve-worker"],
            cwd=source,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_for_pollers(
    client: Client, queue: str, proc: subprocess.Popen[bytes] | None, log: Path
) -> None:
    """Until the worker polls both the workflow and the activity task queue (at most 30 s)."""
    deadline = time.monotonic() + 30.0
    kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited at start-up: see {log}")
        polled = [
            await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=kind,
                )
            )
            for kind in kinds
        ]
        if all(resp.pollers for resp in polled):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no worker polls {queue} after 30 s")


@contextlib.asynccontextmanager
async def in_process_worker(client: Client, env: dict[str, str]) -> AsyncIterator[None]:
    """worker.py's run_worker in this process, on ``client`` (eager start needs that)."""
    import worker as worker_module

    async def same_client(**_: Any) -> Client:
        return client

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    namespace = vars(worker_module)
    original_connect = namespace["connect"]
    namespace["connect"] = same_client
    stop = asyncio.Event()
    task = asyncio.create_task(worker_module.run_worker(stop, GatewaySettings.from_env()))
    try:
        yield
    finally:
        stop.set()
        await task
        namespace["connect"] = original_connect
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def run_jobs(
    client: Client, queue: str, paths: list[Path], poll: float, eager: bool
) -> tuple[list[str], int]:
    """The jobs' final statuses, and how many of them the server started eagerly."""
    ids = [f"tp-{p.stem}" for p in paths]
    handles = []
    for chunk in range(0, len(paths), 50):
        handles += await asyncio.gather(
            *(
                client.start_workflow(
                    WORKFLOW_NAME,
                    # Only the fields set: a revision from before a later field still reads it.
                    BatchJobInput(
                        input_path=f"data/{p.name}",
                        output_path=f"data/{p.stem}.output.jsonl",
                        errors_path=f"data/{p.stem}.errors.jsonl",
                        poll_interval=timedelta(seconds=poll),
                    ).model_dump(mode="json", exclude_unset=True),
                    id=wid,
                    task_queue=queue,
                    result_type=BatchJobResult,
                    request_eager_start=eager,
                )
                for wid, p in zip(ids[chunk : chunk + 50], paths[chunk : chunk + 50], strict=True)
            )
        )
    eagerly = sum(1 for h in handles if getattr(h, "__temporal_eagerly_started", False))
    results = await asyncio.gather(*(h.result() for h in handles))
    return [r.status.value for r in results], eagerly


# Starts the jobs (ids tp-<input stem>) and returns run_jobs' answer: statuses in the
# project's words ("succeeded") and how many started eagerly.
JobRunner = Callable[[Client, str, list[Path], float, bool], Awaitable[tuple[list[str], int]]]


# Where the worker's CPU goes: a sampled stack counts for every category one of its frames is in.
PROFILE_CATEGORIES = {
    "workflow code (workflows/)": ("workflows/",),
    "workflow sandbox": ("workflow_sandbox",),
    "activity code (activities/)": ("activities/",),
    "gateway HTTP (httpx, httpcore)": ("httpx/", "httpcore/"),
    "payload conversion (temporalio.converter, pydantic)": (
        "temporalio/converter",
        "temporalio/contrib/pydantic",
        "pydantic/",
        "pydantic_core",
    ),
    "  of which: batch look-ups (_job_batches, iter_batches)": ("_job_batches", "iter_batches"),
    "logging": ("logging/__init__", "observability/logging"),
    "SDK bridge and protobuf": ("temporalio/bridge", "google/protobuf"),
}
# Frames every activity passes through without working there: not a category's cost.
PASS_THROUGH_FRAMES = ("_ActivityLogContext.execute_activity", "intercept_activity")


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling every thread of the worker, collapsed stacks to ``out``."""
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy), "record", "-p", str(pid), "-o", str(out), "--format", "raw"]
    return subprocess.Popen(
        [*command, "--rate", "200", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def profile_summary(collapsed: Path) -> list[tuple[str, float]]:
    """Share of the worker's samples per category, from py-spy's collapsed stacks."""
    total = 0
    hits: Counter[str] = Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = [f for f in stack.split(";") if not any(p in f for p in PASS_THROUGH_FRAMES)]
        stack = ";".join(frames)
        for category, needles in PROFILE_CATEGORIES.items():
            if any(n in stack for n in needles):
                hits[category] += int(count)
    return [(c, hits[c] / max(1, total)) for c in PROFILE_CATEGORIES]


async def run_project(
    name: str,
    variant: Variant,
    root: Path,
    load: Load,
    profile: bool = False,
    start_jobs: JobRunner = run_jobs,
) -> SideReport:
    paths = write_inputs(root / "data", load.jobs, load.requests)
    source = REPO_ROOT
    if variant.revision is not None:
        source = export_revision(variant.revision, root / "source")
    port = free_port()
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=dev_server_path(),
        ip="127.0.0.1",
        port=port,
        ui=False,
        dev_server_extra_args=list(variant.server_args),
    )
    emulator = start_emulator(root / "emulator", load.gateway_history, load.history_age_hours)
    worker: subprocess.Popen[bytes] | None = None
    try:
        await register_search_attributes(env.client)
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        log = root / "worker.log"
        worker_env = {
            "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "TEMPORAL_TASK_QUEUE": queue,
            "GATEWAY_URL": emulator.base_url,
            "BATCH_DATA_DIR": str(root),
        }
        async with contextlib.AsyncExitStack() as stack:
            if variant.in_process:
                await stack.enter_async_context(in_process_worker(env.client, worker_env))
            else:
                worker = start_worker(variant, worker_env, log, source)
            await wait_for_pollers(env.client, queue, worker, log)
            await asyncio.sleep(1.0)
            assert emulator.pid is not None
            procs = {
                "worker": psutil.Process(worker.pid if worker else os.getpid()),
                "server": dev_server_process(port),
                "emulator": psutil.Process(emulator.pid),
            }
            before = {k: cpu_seconds(p) for k, p in procs.items()}
            calls_before = gateway_calls(emulator)
            client_before = time.process_time()
            started = time.monotonic()
            profiler = None
            if profile and worker is not None:
                profiler = start_profiler(worker.pid, root / "worker-profile.txt")
            statuses, eagerly = await start_jobs(
                env.client, queue, paths, load.poll_seconds, variant.eager_start
            )
            wall = time.monotonic() - started
            if profiler is not None:
                stop_profiler(profiler)
            used = {k: cpu_seconds(p) - before[k] for k, p in procs.items()}
            client_cpu = time.process_time() - client_before
        report = SideReport(
            name=name,
            jobs=load.jobs,
            wall=wall,
            ok=statuses.count("succeeded"),
            calls=gateway_calls(emulator) - calls_before,
            emulator_cpu=used["emulator"],
            # In process, the worker's CPU is this process's: the client's is inside it.
            client_cpu=0.0 if variant.in_process else client_cpu,
            worker_cpu=used["worker"],
            server_cpu=used["server"],
            eagerly_started=eagerly,
        )
        for p in paths:
            history = await env.client.get_workflow_handle(f"tp-{p.stem}").fetch_history()
            report.events.append(len(history.events))
        return report
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        emulator.stop()
        await env.shutdown()


def serve_worker() -> None:
    """worker.py's main with extra Worker(...) options from BENCH_WORKER_OPTIONS."""
    from temporalio.worker import PollerBehaviorAutoscaling, UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    import worker as worker_module

    options: dict[str, Any] = json.loads(os.environ.get(ENV_WORKER_OPTIONS) or "{}")
    sandbox = options.pop("sandbox", None)
    if sandbox == "off":
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    elif sandbox == "passthrough-all":
        options["workflow_runner"] = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
        )
    if options.pop("autoscale_pollers", False):
        options["workflow_task_poller_behavior"] = PollerBehaviorAutoscaling()
        options["activity_task_poller_behavior"] = PollerBehaviorAutoscaling()
    # worker.py looks Worker up in its own namespace when it builds one.
    vars(worker_module)["Worker"] = functools.partial(vars(worker_module)["Worker"], **options)
    code = worker_module.main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# -- figures -----------------------------------------------------------------------


def print_reports(plain: SideReport | None, reports: list[SideReport]) -> None:
    base = plain.wall if plain is not None else None
    print(
        f"{'':28} {'wall s':>7} {'ratio':>6} {'ok':>5} {'events':>7} {'worker':>7} "
        f"{'server':>7} {'client':>7} {'gateway':>7} {'calls':>6}"
    )
    print(
        f"{'':28} {'':>7} {'':>6} {'':>5} {'/job':>7} {'ms/job':>7} {'ms/job':>7} "
        f"{'ms/job':>7} {'ms/job':>7} {'/job':>6}"
    )
    for r in ([plain] if plain is not None else []) + reports:
        ratio = f"{r.wall / base:.2f}x" if base else "-"
        events = f"{sum(r.events) / len(r.events):.1f}" if r.events else "-"
        worker = f"{r.per_job(r.worker_cpu) * 1000:.1f}" if r.events else "-"
        server = f"{r.per_job(r.server_cpu) * 1000:.1f}" if r.events else "-"
        print(
            f"{r.name:28} {r.wall:7.2f} {ratio:>6} {r.ok:5d} {events:>7} {worker:>7} "
            f"{server:>7} {r.per_job(r.client_cpu) * 1000:7.1f} "
            f"{r.per_job(r.emulator_cpu) * 1000:7.1f} {r.per_job(sum(r.calls.values())):6.2f}"
        )
    for r in ([plain] if plain is not None else []) + reports:
        routes = ", ".join(f"{k} {r.per_job(v):.2f}" for k, v in sorted(r.calls.items()))
        spread = f"; events min {min(r.events)} max {max(r.events)}" if r.events else ""
        if r.eagerly_started:
            spread += f"; {r.eagerly_started} started eagerly"
        print(f"  {r.name}: gateway calls per job: {routes}{spread}")


def variant(name: str) -> Variant:
    """VARIANTS[name], or for ``NAME@REV`` variant NAME on the worker code of revision REV."""
    base, _, revision = name.partition("@")
    return dataclasses.replace(VARIANTS[base], revision=revision or None)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument(
        "--gateway-history",
        type=int,
        default=0,
        help="ended batches put at each emulator first, as on a gateway used for a while",
    )
    parser.add_argument(
        "--gateway-history-age",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="how long before the jobs the --gateway-history batches were made",
    )
    parser.add_argument("--variants", default="baseline", help=",".join(VARIANTS))
    parser.add_argument("--no-plain", action="store_true", help="skip the plain SDK script")
    parser.add_argument("--timeout-seconds", type=float, default=600.0, help="per side")
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="sample the worker with py-spy and print where its CPU goes (adds its own cost)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n.partition("@")[0] not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if any("@" in n and VARIANTS[n.partition("@")[0]].in_process for n in names):
        parser.error("an in-process variant runs this tree's code: it takes no @REV")

    root = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    print(
        f"{args.jobs} jobs x {args.requests} requests, poll {args.poll_seconds:g} s, "
        f"emulator {EMULATOR_KNOBS}, gateway history {args.gateway_history} batches "
        f"{args.gateway_history_age:g} h old, "
        f"load average {os.getloadavg()[0]:.2f}, data {root}",
        flush=True,
    )
    load = Load(
        args.jobs,
        args.requests,
        args.poll_seconds,
        args.gateway_history,
        args.gateway_history_age,
    )
    plain = None
    if not args.no_plain:
        async with asyncio.timeout(args.timeout_seconds):
            plain = await run_plain(root / "plain", load)
        print(f"plain: {plain.wall:.2f} s", flush=True)
    reports = []
    for i, name in enumerate(names):
        # A fresh folder each, so a variant named twice starts from an empty emulator too.
        folder = root / f"{i:02d}-{name.replace('/', '_')}"
        async with asyncio.timeout(args.timeout_seconds):
            report = await run_project(name, variant(name), folder, load, args.profile_worker)
        print(f"{name}: {report.wall:.2f} s", flush=True)
        reports.append(report)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print_reports(plain, reports)
    for i, name in enumerate(names if args.profile_worker else []):
        collapsed = root / f"{i:02d}-{name.replace('/', '_')}" / "worker-profile.txt"
        if collapsed.exists():
            shares = ", ".join(f"{c} {share:.0%}" for c, share in profile_summary(collapsed))
            print(f"  {name}: worker samples in {shares}")
    everything = ([plain] if plain is not None else []) + reports
    failed = [r.name for r in everything if r.ok != r.jobs]
    print("PASS  every job of every side succeeded" if not failed else f"FAIL  {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    if "--serve-worker" in sys.argv:
        serve_worker()
    sys.exit(asyncio.run(main()))
