"""The schedule commands: recurring batch jobs as Temporal Schedules."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

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
)
from temporalio.service import RPCError, RPCStatusCode

from cli import hints
from cli.durations import check_cron, format_every, parse_every
from cli.environment import location, storage, task_queue
from cli.exits import EXIT_OK, UsageError
from cli.input_check import input_problems
from cli.job_input import build_input
from cli.locations import (
    JobFiles,
    Transfer,
    batch_store,
    checked_uri,
    existing_local,
    is_uri,
    plan_job_files,
)
from cli.transfers import remove_job_copies, upload_input
from contracts.constants import ENV_BATCH_STORE
from contracts.job import WORKFLOW_ID_PLACEHOLDER, BatchJobInput, BatchJobResult
from contracts.names import WORKFLOW_NAME

OVERLAP_POLICIES = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer-one": ScheduleOverlapPolicy.BUFFER_ONE,
    "cancel-other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "allow-all": ScheduleOverlapPolicy.ALLOW_ALL,
}
OVERLAP_NAMES = {policy: name for name, policy in OVERLAP_POLICIES.items()}


def _scheduled_location(raw: str | None, default: str, flag: str, store: str | None) -> str:
    """A results location for scheduled runs: it must name each run apart."""
    if raw is None:
        return default
    if is_uri(raw):
        scheduled = checked_uri(raw, flag)
    elif store is not None:
        raise UsageError(
            f"{flag} {raw}: scheduled runs with {ENV_BATCH_STORE} keep their results in the "
            f"store; give {flag} as a URI, or leave it out"
        )
    else:
        scheduled = location(storage(), raw)
    if WORKFLOW_ID_PLACEHOLDER not in scheduled:
        raise UsageError(
            f"{flag} {raw!r}: every scheduled run would overwrite the last one's file; "
            f"put {WORKFLOW_ID_PLACEHOLDER} in it (replaced by each run's workflow id), "
            f"e.g. results/{WORKFLOW_ID_PLACEHOLDER}.jsonl"
        )
    return scheduled


def schedule_files(args: argparse.Namespace) -> JobFiles:
    """The input every run reads (copied once to BATCH_STORE if local and set), results per run."""
    store = batch_store()
    upload: Transfer | None = None
    if store is not None and not is_uri(args.file):
        local = existing_local(args.file)
        folder = f"{store}/schedules/{args.name}.{uuid.uuid4().hex[:8]}"
        upload = Transfer(local, f"{folder}/input.jsonl")
        input_path = upload.remote
    else:
        input_path = plan_job_files(args.file, None, None, "").input_path
    stem = input_path[: -len(".jsonl")] if input_path.endswith(".jsonl") else input_path
    return JobFiles(
        input_path,
        _scheduled_location(
            args.output, f"{stem}.{WORKFLOW_ID_PLACEHOLDER}.output.jsonl", "--output", store
        ),
        _scheduled_location(
            args.errors, f"{stem}.{WORKFLOW_ID_PLACEHOLDER}.errors.jsonl", "--errors", store
        ),
        upload,
    )


def build_schedule(args: argparse.Namespace) -> tuple[Schedule, JobFiles]:
    """The schedule: one BatchJobWorkflow per action, results under the run's workflow id."""
    files = schedule_files(args)
    job = build_input(args, files)
    if args.cron is not None:
        check_cron(args.cron)
    local = files.upload.local if files.upload else (None if is_uri(args.file) else Path(args.file))
    if local is not None:
        # Every run (one batch each) would fail: exit 2.
        input_problems(local, job.endpoint, args.file, job.limits)
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
            WORKFLOW_NAME, job, id=args.name, task_queue=task_queue()
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=OVERLAP_POLICIES[args.overlap]),
        state=ScheduleState(note=args.note or f"created by starter.py for {args.file}"),
    ), files


def describe_spec(spec: ScheduleSpec) -> str:
    parts = [f"every {format_every(i.every)}" for i in spec.intervals]
    parts += [f"cron {c!r}" for c in spec.cron_expressions]
    if spec.calendars and not parts:
        parts.append("calendar")
    if spec.time_zone_name:
        parts.append(spec.time_zone_name)
    return ", ".join(parts) or "-"


async def cmd_schedule_create(args: argparse.Namespace, client: Client) -> int:
    schedule, files = build_schedule(args)
    await upload_input(files)
    try:
        await client.create_schedule(args.name, schedule)
    except BaseException as exc:
        await remove_job_copies(files)
        if isinstance(exc, RPCError) and exc.status is RPCStatusCode.INVALID_ARGUMENT:
            raise UsageError(f"schedule {args.name!r} refused: {exc.message}") from None
        if not isinstance(exc, ScheduleAlreadyRunningError):
            raise
        raise UsageError(
            f"schedule {args.name!r} already exists "
            f"({hints.starter('schedule', 'delete', args.name)} first)"
        ) from exc
    assert isinstance(schedule.action, ScheduleActionStartWorkflow)
    [job] = schedule.action.args
    assert isinstance(job, BatchJobInput)
    print(f"schedule {args.name} created: {describe_spec(schedule.spec)}, overlap {args.overlap}")
    print(f"runs:    workflow ids {args.name}-<time>, on task queue {task_queue()}")
    print(f"results: {job.resolved_output_path}")
    print(f"errors:  {job.resolved_errors_path}")
    if files.upload is not None:
        print(f"input:   {files.upload.remote} (copy of {files.upload.local})")
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
        if last is not None and last_run != "-":
            last_run += f" ({await run_outcome(client, last_run, last.action)})"
        upcoming = (
            info.next_action_times[0].strftime("%Y-%m-%d %H:%M:%S")
            if (info.next_action_times and not state.paused)
            else "-"
        )
        print(
            f"{entry.id:30} {'paused' if state.paused else 'active':7} "
            f"{describe_spec(described.schedule.spec):24} overlap {overlap:12} "
            f"runs {info.num_actions:<4} skipped {info.num_actions_skipped_overlap:<4} "
            f"next {upcoming:19} last {last_run}"
        )
        if state.paused and state.note:
            print(f"{'':30} note: {state.note}")
        rows += 1
    if rows == 0:
        print("no batch schedules")
    return EXIT_OK


async def run_outcome(client: Client, workflow_id: str, action: object) -> str:
    """How a scheduled run ended, in a word: running, succeeded, completed_with_failures, failed."""
    run_id = getattr(action, "first_execution_run_id", None)
    handle = client.get_workflow_handle(
        workflow_id,
        run_id=run_id if isinstance(run_id, str) and run_id else None,
        result_type=BatchJobResult,
    )
    try:
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.COMPLETED:
            return described.status.name.lower() if described.status else "unknown"
        result: BatchJobResult = await handle.result()
        return str(result.status.value)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "gone from Temporal's retention"
        raise
    except (WorkflowFailureError, ValueError):
        return "unknown"


async def _existing_schedule(client: Client, name: str) -> ScheduleHandle:
    handle = client.get_schedule_handle(name)
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(f"no schedule {name!r} ({hints.starter('schedule', 'list')})") from exc
        raise
    return handle


async def cmd_schedule_pause(args: argparse.Namespace, client: Client) -> int:
    handle = await _existing_schedule(client, args.name)
    await handle.pause(note=args.note or "paused by starter.py")
    print(f"schedule {args.name} paused; runs already started keep running")
    return EXIT_OK


async def cmd_schedule_unpause(args: argparse.Namespace, client: Client) -> int:
    handle = await _existing_schedule(client, args.name)
    await handle.unpause(note=args.note or "unpaused by starter.py")
    print(f"schedule {args.name} unpaused")
    return EXIT_OK


async def cmd_schedule_delete(args: argparse.Namespace, client: Client) -> int:
    handle = await _existing_schedule(client, args.name)
    await handle.delete()
    print(f"schedule {args.name} deleted; runs already started keep running")
    return EXIT_OK


async def cmd_schedule_trigger(args: argparse.Namespace, client: Client) -> int:
    handle = await _existing_schedule(client, args.name)
    await handle.trigger()
    print(
        f"schedule {args.name} triggered: a run starts now unless its overlap policy skips it "
        f"({hints.starter('schedule', 'list')})"
    )
    return EXIT_OK
