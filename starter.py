"""The command line: start batch jobs, follow them, and read their results.

    python starter.py run examples/batch.jsonl        start, follow with a progress bar, summarise
    python starter.py start examples/batch.jsonl      start and return the workflow id
    python starter.py status|result|cancel ID
    python starter.py list
    python starter.py schema [input|result]           JSON Schemas for callers in other languages
    python starter.py schedule create NAME FILE (--cron EXPR | --every 24h) [--overlap skip]
    python starter.py schedule list|pause|unpause|delete|trigger [NAME]

Paths are relative to BATCH_DATA_DIR (default: the current directory), the
folder the starter and every worker share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleListActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError, RPCStatusCode

from contracts.constants import DEFAULT_WEB_UI, ENV_DATA_DIR, ENV_TASK_QUEUE, ENV_WEB_UI
from contracts.job import (
    WORKFLOW_ID_PLACEHOLDER,
    BatchJobInput,
    BatchJobResult,
    JobProgress,
    JobStatus,
    PhaseDeadlines,
)
from contracts.names import (
    ACTIVITY_AWAIT_STATUS_CHANGE,
    ACTIVITY_WATCH_BATCH,
    QUERY_PROGRESS,
    SEARCH_ATTRIBUTE_BATCH_ID,
    SEARCH_ATTRIBUTE_BATCH_STATUS,
    TASK_QUEUE,
    WORKFLOW_NAME,
)
from contracts.steps import BatchSnapshot, BatchWatch
from storage import LocalStorage, LocationError
from temporal_client import TemporalUnreachableError, connect

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_ALL_SUCCEEDED = 3


class UsageError(Exception):
    """Bad arguments or settings; printed as one line."""


def _storage() -> LocalStorage:
    return LocalStorage(Path(os.environ.get(ENV_DATA_DIR, ".")))


def _location(storage: LocalStorage, raw: str) -> str:
    try:
        return storage.location_of(Path(raw))
    except LocationError as exc:
        raise UsageError(str(exc)) from exc


def _task_queue() -> str:
    return os.environ.get(ENV_TASK_QUEUE, TASK_QUEUE)


def web_ui_link(client: Client, workflow_id: str) -> str:
    base = os.environ.get(ENV_WEB_UI, DEFAULT_WEB_UI).rstrip("/")
    return f"{base}/namespaces/{client.namespace}/workflows/{workflow_id}"


def build_input(
    args: argparse.Namespace, *, output: str | None = None, errors: str | None = None
) -> BatchJobInput:
    """The workflow input from the job options; output/errors override --output/--errors."""
    storage = _storage()
    source = Path(args.file)
    if not source.is_file():
        raise UsageError(f"{args.file}: no such file")
    metadata: dict[str, str] = {}
    for pair in args.metadata or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--metadata {pair!r}: expected KEY=VALUE")
        metadata[key] = value
    deadlines = PhaseDeadlines()
    for phase in ("validating", "in_progress", "finalizing"):
        hours = getattr(args, f"max_{phase}_hours")
        if hours is not None:
            deadlines = deadlines.model_copy(update={phase: timedelta(hours=hours)})
    try:
        return BatchJobInput(
            input_path=_location(storage, args.file),
            endpoint=args.endpoint,
            output_path=output or (_location(storage, args.output) if args.output else None),
            errors_path=errors or (_location(storage, args.errors) if args.errors else None),
            metadata=metadata,
            poll_interval=timedelta(seconds=args.poll_seconds),
            deadlines=deadlines,
        )
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[-1] if "\n" in str(exc) else str(exc)) from exc


async def _warn_if_no_worker(client: Client, out: TextIO) -> None:
    try:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=_task_queue()),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except RPCError:
        return
    if not described.pollers:
        print(
            f"warning: no worker is polling task queue {_task_queue()!r}; the job waits until one "
            "starts (python worker.py)",
            file=out,
        )


async def start_job(
    client: Client, job: BatchJobInput, workflow_id: str | None
) -> WorkflowHandle[Any, BatchJobResult]:
    await _warn_if_no_worker(client, sys.stderr)
    return await client.start_workflow(
        WORKFLOW_NAME,
        job,
        id=workflow_id or f"batch-{Path(job.input_path).stem}-{uuid.uuid4().hex[:8]}",
        task_queue=_task_queue(),
        result_type=BatchJobResult,
    )


async def live_progress(handle: WorkflowHandle[Any, Any]) -> tuple[JobProgress, str | None]:
    """The workflow's own view, refreshed with the last poll's counts and any failing step.

    Counts between status changes live in the polling activity's heartbeat, not
    in history, so they are read from describe() rather than the query.
    """
    progress: JobProgress = await handle.query(QUERY_PROGRESS, result_type=JobProgress)
    trouble: str | None = None
    description = await handle.describe()
    converter = handle._client.data_converter
    for pending in description.raw_description.pending_activities:
        name = pending.activity_type.name
        if name == ACTIVITY_WATCH_BATCH and pending.heartbeat_details.payloads:
            [watched] = await converter.decode(pending.heartbeat_details.payloads, [BatchWatch])
            if isinstance(watched, BatchWatch) and watched.batch.status == progress.batch_status:
                progress = progress.model_copy(update={"counts": watched.batch.counts})
            if isinstance(watched, BatchWatch) and watched.gateway_error:
                trouble = f"gateway error, retrying: {watched.gateway_error}"
        elif name == ACTIVITY_AWAIT_STATUS_CHANGE and pending.heartbeat_details.payloads:
            [snapshot] = await converter.decode(pending.heartbeat_details.payloads, [BatchSnapshot])
            if isinstance(snapshot, BatchSnapshot) and snapshot.status == progress.batch_status:
                progress = progress.model_copy(update={"counts": snapshot.counts})
        elif pending.attempt > 1 and pending.last_failure.message:
            trouble = f"{name} attempt {pending.attempt}: {pending.last_failure.message}"
    return progress, trouble


def render_progress(progress: JobProgress, trouble: str | None, width: int = 30) -> str:
    counts = progress.counts
    total = (counts.total if counts and counts.total else None) or progress.requests
    status = progress.batch_status or progress.phase.value
    if counts is not None and total:
        done = counts.completed + counts.failed
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"[{bar}] {done}/{total} finished, {counts.failed} failed · {status}"
    elif progress.batch_status:
        text = f"[{'-' * width}] {progress.phase.value} · {status}"
    else:
        text = f"[{'-' * width}] {progress.phase.value}"
    if trouble:
        text += f" · retrying {trouble}"
    return text


async def follow(handle: WorkflowHandle[Any, BatchJobResult], out: TextIO, every: float) -> None:
    """Print progress until the workflow closes: one updating line on a terminal."""
    last = ""
    tty = out.isatty()
    while True:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            break
        try:
            progress, trouble = await live_progress(handle)
        except TemporalError:
            await asyncio.sleep(every)
            continue
        line = render_progress(progress, trouble)
        if line != last:
            if tty:
                print(f"\r\033[K{line}", end="", file=out, flush=True)
            else:
                print(line, file=out, flush=True)
            last = line
        await asyncio.sleep(every)
    if tty and last:
        print(file=out)


def summarise(result: BatchJobResult, link: str) -> str:
    r = result.requests
    lines = [
        f"status:   {result.status.value}" + (f" ({result.reason})" if result.reason else ""),
        f"batch:    {result.batch_id} ({result.batch_status})",
        f"requests: {r.total} total, {r.succeeded} succeeded, {r.failed} failed, "
        f"{r.not_run} not run",
    ]
    if r.failures_by_code:
        lines.append(
            "failures: " + ", ".join(f"{code} x{n}" for code, n in r.failures_by_code.items())
        )
    lines += [
        f"tokens:   {result.usage.prompt_tokens} prompt, "
        f"{result.usage.completion_tokens} completion",
        f"results:  {result.output_path}",
        f"errors:   {result.errors_path}",
        f"took:     {result.finished_at - result.started_at}",
        f"web ui:   {link}",
    ]
    return "\n".join(lines)


def _exit_code(result: BatchJobResult) -> int:
    return EXIT_OK if result.status is JobStatus.SUCCEEDED else EXIT_NOT_ALL_SUCCEEDED


def _failure_text(exc: WorkflowFailureError) -> str:
    cause: BaseException | None = exc.cause
    messages = []
    while cause is not None:
        message = getattr(cause, "message", None) or str(cause)
        messages.append(message)
        cause = cause.__cause__
    return messages[-1] if messages else str(exc)


async def cmd_run(args: argparse.Namespace, client: Client) -> int:
    job = build_input(args)
    handle = await start_job(client, job, args.id)
    link = web_ui_link(client, handle.id)
    print(f"started {handle.id}\nweb ui:  {link}", file=sys.stderr)
    follower = asyncio.create_task(follow(handle, sys.stderr, args.refresh_seconds))
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        print(f"job {handle.id} failed: {_failure_text(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        follower.cancel()
        try:
            await follower
        except (asyncio.CancelledError, TemporalError):
            pass
    print(summarise(result, link))
    return _exit_code(result)


async def cmd_start(args: argparse.Namespace, client: Client) -> int:
    handle = await start_job(client, build_input(args), args.id)
    print(handle.id)
    print(f"web ui: {web_ui_link(client, handle.id)}", file=sys.stderr)
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, client: Client) -> int:
    handle = client.get_workflow_handle(args.workflow_id, result_type=BatchJobResult)
    description = await handle.describe()
    status = description.status.name if description.status else "UNKNOWN"
    print(f"workflow: {handle.id} ({status})")
    try:
        progress, trouble = await live_progress(handle)
    except TemporalError as exc:
        # Not a batch job (another workflow type), or one whose task is failing.
        print(f"progress: not available ({exc})")
        return EXIT_OK
    print(f"progress: {render_progress(progress, trouble)}")
    if progress.reason:
        print(f"reason:   {progress.reason}")
    print(f"web ui:   {web_ui_link(client, handle.id)}")
    return EXIT_OK


async def cmd_result(args: argparse.Namespace, client: Client) -> int:
    handle = client.get_workflow_handle(args.workflow_id, result_type=BatchJobResult)
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        print(f"job {handle.id} failed: {_failure_text(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:
        raise UsageError(f"{handle.id} did not return a batch job result ({exc})") from None
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(summarise(result, web_ui_link(client, handle.id)))
    return _exit_code(result)


async def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    handle = client.get_workflow_handle(args.workflow_id)
    await handle.cancel()
    print(
        f"cancel requested for {handle.id}: the batch is cancelled at the gateway and finished "
        f"results are still collected (python starter.py result {handle.id})"
    )
    return EXIT_OK


async def cmd_list(args: argparse.Namespace, client: Client) -> int:
    query = f"WorkflowType = '{WORKFLOW_NAME}'"
    rows = 0
    async for execution in client.list_workflows(query, limit=args.limit):
        attrs = execution.search_attributes
        batch_status = (attrs.get(SEARCH_ATTRIBUTE_BATCH_STATUS) or ["-"])[0]
        batch_id = (attrs.get(SEARCH_ATTRIBUTE_BATCH_ID) or ["-"])[0]
        started = (
            execution.start_time.strftime("%Y-%m-%d %H:%M:%S") if execution.start_time else "-"
        )
        state = execution.status.name if execution.status else "-"
        print(f"{execution.id:45} {state:11} {batch_status!s:12} {batch_id!s:40} {started}")
        rows += 1
    if rows == 0:
        print("no batch jobs yet")
    return EXIT_OK


OVERLAP_POLICIES = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer-one": ScheduleOverlapPolicy.BUFFER_ONE,
    "cancel-other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "allow-all": ScheduleOverlapPolicy.ALLOW_ALL,
}
OVERLAP_NAMES = {policy: name for name, policy in OVERLAP_POLICIES.items()}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_every(text: str) -> timedelta:
    """'24h', '30m', '1h30m', '90s', '7d' as a timedelta."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise UsageError(f"--every {text!r}: expected a duration such as 24h, 30m, 1h30m or 90s")
    every = timedelta()
    for number, unit in parts:
        every += timedelta(**{_DURATION_UNITS[unit]: float(number)})
    if every < timedelta(seconds=1):
        raise UsageError(f"--every {text!r}: at least 1s")
    return every


def _format_every(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    text = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text or "0s"


def _scheduled_location(storage: LocalStorage, raw: str | None, default: str, flag: str) -> str:
    """A results location for scheduled runs: it must name each run apart."""
    if raw is None:
        return default
    location = _location(storage, raw)
    if WORKFLOW_ID_PLACEHOLDER not in location:
        raise UsageError(
            f"{flag} {raw!r}: every scheduled run would overwrite the last one's file; "
            f"put {WORKFLOW_ID_PLACEHOLDER} in it (replaced by each run's workflow id), "
            f"e.g. results/{WORKFLOW_ID_PLACEHOLDER}.jsonl"
        )
    return location


def build_schedule(args: argparse.Namespace) -> Schedule:
    """The schedule: one BatchJobWorkflow per action, results under the run's workflow id."""
    storage = _storage()
    stem = _location(storage, args.file)
    stem = stem[: -len(".jsonl")] if stem.endswith(".jsonl") else stem
    job = build_input(
        args,
        output=_scheduled_location(
            storage, args.output, f"{stem}.{WORKFLOW_ID_PLACEHOLDER}.output.jsonl", "--output"
        ),
        errors=_scheduled_location(
            storage, args.errors, f"{stem}.{WORKFLOW_ID_PLACEHOLDER}.errors.jsonl", "--errors"
        ),
    )
    if args.cron is not None:
        spec = ScheduleSpec(cron_expressions=[args.cron], time_zone_name=args.time_zone)
    else:
        spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=parse_every(args.every))],
            time_zone_name=args.time_zone,
        )
    return Schedule(
        # The schedule appends each run's time to this id: batch runs are told apart by it.
        action=ScheduleActionStartWorkflow(
            WORKFLOW_NAME, job, id=args.name, task_queue=_task_queue()
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=OVERLAP_POLICIES[args.overlap]),
        state=ScheduleState(note=args.note or f"created by starter.py for {args.file}"),
    )


def _describe_spec(spec: ScheduleSpec) -> str:
    parts = [f"every {_format_every(i.every)}" for i in spec.intervals]
    parts += [f"cron {c!r}" for c in spec.cron_expressions]
    if spec.calendars and not parts:
        parts.append("calendar")
    if spec.time_zone_name:
        parts.append(spec.time_zone_name)
    return ", ".join(parts) or "-"


async def cmd_schedule_create(args: argparse.Namespace, client: Client) -> int:
    schedule = build_schedule(args)
    try:
        await client.create_schedule(args.name, schedule)
    except ScheduleAlreadyRunningError as exc:
        raise UsageError(
            f"schedule {args.name!r} already exists (python starter.py schedule delete "
            f"{args.name} first)"
        ) from exc
    assert isinstance(schedule.action, ScheduleActionStartWorkflow)
    [job] = schedule.action.args
    assert isinstance(job, BatchJobInput)
    print(f"schedule {args.name} created: {_describe_spec(schedule.spec)}, overlap {args.overlap}")
    print(f"runs:    workflow ids {args.name}-<time>, on task queue {_task_queue()}")
    print(f"results: {job.resolved_output_path}")
    print(f"errors:  {job.resolved_errors_path}")
    return EXIT_OK


async def cmd_schedule_list(args: argparse.Namespace, client: Client) -> int:
    rows = 0
    async for entry in await client.list_schedules():
        listed = entry.schedule
        if listed is None or not (
            isinstance(listed.action, ScheduleListActionStartWorkflow)
            and listed.action.workflow == WORKFLOW_NAME
        ):
            continue
        try:
            described = await client.get_schedule_handle(entry.id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue  # deleted since it was listed
            raise
        info = described.info
        state = described.schedule.state
        overlap = OVERLAP_NAMES.get(described.schedule.policy.overlap, "?")
        last = info.recent_actions[-1] if info.recent_actions else None
        last_run = getattr(last.action, "workflow_id", "-") if last else "-"
        upcoming = (
            info.next_action_times[0].strftime("%Y-%m-%d %H:%M:%S")
            if (info.next_action_times and not state.paused)
            else "-"
        )
        print(
            f"{entry.id:30} {'paused' if state.paused else 'active':7} "
            f"{_describe_spec(described.schedule.spec):24} overlap {overlap:12} "
            f"runs {info.num_actions:<4} skipped {info.num_actions_skipped_overlap:<4} "
            f"next {upcoming:19} last {last_run}"
        )
        if state.paused and state.note:
            print(f"{'':30} note: {state.note}")
        rows += 1
    if rows == 0:
        print("no batch schedules")
    return EXIT_OK


async def _schedule_handle_exists(client: Client, name: str) -> ScheduleHandle:
    handle = client.get_schedule_handle(name)
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(f"no schedule {name!r} (python starter.py schedule list)") from exc
        raise
    return handle


async def cmd_schedule_pause(args: argparse.Namespace, client: Client) -> int:
    handle = await _schedule_handle_exists(client, args.name)
    await handle.pause(note=args.note or "paused by starter.py")
    print(f"schedule {args.name} paused; runs already started keep running")
    return EXIT_OK


async def cmd_schedule_unpause(args: argparse.Namespace, client: Client) -> int:
    handle = await _schedule_handle_exists(client, args.name)
    await handle.unpause(note=args.note or "unpaused by starter.py")
    print(f"schedule {args.name} unpaused")
    return EXIT_OK


async def cmd_schedule_delete(args: argparse.Namespace, client: Client) -> int:
    handle = await _schedule_handle_exists(client, args.name)
    await handle.delete()
    print(f"schedule {args.name} deleted; runs already started keep running")
    return EXIT_OK


async def cmd_schedule_trigger(args: argparse.Namespace, client: Client) -> int:
    handle = await _schedule_handle_exists(client, args.name)
    await handle.trigger()
    print(
        f"schedule {args.name} triggered: a run starts now unless its overlap policy skips it "
        f"(python starter.py schedule list)"
    )
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    schemas = {
        "input": BatchJobInput.model_json_schema(),
        "result": BatchJobResult.model_json_schema(),
    }
    chosen: Any = schemas if args.which == "all" else schemas[args.which]
    print(json.dumps(chosen, indent=2, sort_keys=True))
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="starter.py", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    def job_options(sub: argparse.ArgumentParser, with_id: bool = True) -> None:
        sub.add_argument("file", help="JSONL input, one request per line")
        sub.add_argument("--endpoint", default="/v1/chat/completions")
        sub.add_argument("--output", help="results file (default FILE.output.jsonl)")
        sub.add_argument("--errors", help="errors file (default FILE.errors.jsonl)")
        sub.add_argument("--metadata", action="append", metavar="KEY=VALUE")
        sub.add_argument("--poll-seconds", type=float, default=60.0)
        if with_id:
            sub.add_argument("--id", help="workflow id (default: batch-<file>-<random>)")
        for phase in ("validating", "in_progress", "finalizing"):
            sub.add_argument(
                f"--max-{phase.replace('_', '-')}-hours",
                type=float,
                dest=f"max_{phase}_hours",
                help=f"cancel the batch after this long in {phase}",
            )

    run = commands.add_parser("run", help="start a job and follow it to the end")
    job_options(run)
    run.add_argument("--refresh-seconds", type=float, default=1.0)
    job_options(commands.add_parser("start", help="start a job and return its workflow id"))
    for name, text in (("status", "live progress"), ("cancel", "cancel the job and its batch")):
        commands.add_parser(name, help=text).add_argument("workflow_id")
    result = commands.add_parser("result", help="wait for and print a job's result")
    result.add_argument("workflow_id")
    result.add_argument("--json", action="store_true")
    listing = commands.add_parser("list", help="recent batch jobs")
    listing.add_argument("--limit", type=int, default=20)
    schema = commands.add_parser("schema", help="JSON Schemas of the workflow's input and result")
    schema.add_argument("which", nargs="?", choices=("input", "result", "all"), default="all")

    schedule = commands.add_parser("schedule", help="run a job on a schedule (Temporal Schedules)")
    schedules = schedule.add_subparsers(dest="schedule_command", required=True)
    create = schedules.add_parser(
        "create",
        help="run FILE as a batch job on a cron expression or a fixed interval",
        description=(
            "Each run writes its own results: --output and --errors must contain "
            f"{WORKFLOW_ID_PLACEHOLDER} (default FILE.{WORKFLOW_ID_PLACEHOLDER}.output.jsonl "
            f"and FILE.{WORKFLOW_ID_PLACEHOLDER}.errors.jsonl)."
        ),
    )
    create.add_argument("name", help="schedule id; runs are NAME-<scheduled time>")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="cron expression, e.g. '0 3 * * *'")
    when.add_argument("--every", help="fixed interval, e.g. 24h, 30m, 1h30m")
    create.add_argument("--time-zone", help="IANA zone of --cron (default UTC)")
    create.add_argument(
        "--overlap",
        choices=tuple(OVERLAP_POLICIES),
        default="skip",
        help="when a run is due while the last still runs (default skip)",
    )
    create.add_argument("--note", help="note shown with the schedule")
    job_options(create, with_id=False)
    schedules.add_parser("list", help="batch schedules, their state, last and next run")
    pause = schedules.add_parser("pause", help="stop starting runs")
    pause.add_argument("name")
    pause.add_argument("--note")
    unpause = schedules.add_parser("unpause", help="start runs again")
    unpause.add_argument("name")
    unpause.add_argument("--note")
    for name, text in (("delete", "delete the schedule"), ("trigger", "start a run now")):
        schedules.add_parser(name, help=text).add_argument("name")
    return top


COMMANDS = {
    "run": cmd_run,
    "start": cmd_start,
    "status": cmd_status,
    "result": cmd_result,
    "cancel": cmd_cancel,
    "list": cmd_list,
}
SCHEDULE_COMMANDS = {
    "create": cmd_schedule_create,
    "list": cmd_schedule_list,
    "pause": cmd_schedule_pause,
    "unpause": cmd_schedule_unpause,
    "delete": cmd_schedule_delete,
    "trigger": cmd_schedule_trigger,
}


async def main_async(args: argparse.Namespace) -> int:
    if args.command == "schema":
        return cmd_schema(args)
    if args.command == "schedule" and args.schedule_command == "create":
        build_schedule(args)  # bad arguments are reported before connecting
    client = await connect()
    if args.command == "schedule":
        return await SCHEDULE_COMMANDS[args.schedule_command](args, client)
    return await COMMANDS[args.command](args, client)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.monotonic()
    try:
        return asyncio.run(main_async(args))
    except (UsageError, TemporalUnreachableError) as exc:
        print(f"starter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RPCError as exc:
        print(f"starter: Temporal refused the request: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except TemporalError as exc:
        print(f"starter: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            f"\nstopped following after {time.monotonic() - started:.0f}s; the job keeps running "
            "(python starter.py status ID)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's runtime threads can abort a finalizing interpreter (sdk-python #300):
    # exit with the true code every time.
    os._exit(code)
