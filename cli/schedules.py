"""The schedule commands: recurring batch jobs as Temporal Schedules."""

from __future__ import annotations

import argparse

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
)
from temporalio.service import RPCError, RPCStatusCode

from cli.durations import format_every, parse_every
from cli.environment import location, storage, task_queue
from cli.exits import EXIT_OK, UsageError
from cli.job_input import build_input
from contracts.job import WORKFLOW_ID_PLACEHOLDER, BatchJobInput
from contracts.names import WORKFLOW_NAME
from storage import LocalStorage

OVERLAP_POLICIES = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer-one": ScheduleOverlapPolicy.BUFFER_ONE,
    "cancel-other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "allow-all": ScheduleOverlapPolicy.ALLOW_ALL,
}
OVERLAP_NAMES = {policy: name for name, policy in OVERLAP_POLICIES.items()}


def _scheduled_location(store: LocalStorage, raw: str | None, default: str, flag: str) -> str:
    """A results location for scheduled runs: it must name each run apart."""
    if raw is None:
        return default
    scheduled = location(store, raw)
    if WORKFLOW_ID_PLACEHOLDER not in scheduled:
        raise UsageError(
            f"{flag} {raw!r}: every scheduled run would overwrite the last one's file; "
            f"put {WORKFLOW_ID_PLACEHOLDER} in it (replaced by each run's workflow id), "
            f"e.g. results/{WORKFLOW_ID_PLACEHOLDER}.jsonl"
        )
    return scheduled


def build_schedule(args: argparse.Namespace) -> Schedule:
    """The schedule: one BatchJobWorkflow per action, results under the run's workflow id."""
    store = storage()
    stem = location(store, args.file)
    stem = stem[: -len(".jsonl")] if stem.endswith(".jsonl") else stem
    job = build_input(
        args,
        output=_scheduled_location(
            store, args.output, f"{stem}.{WORKFLOW_ID_PLACEHOLDER}.output.jsonl", "--output"
        ),
        errors=_scheduled_location(
            store, args.errors, f"{stem}.{WORKFLOW_ID_PLACEHOLDER}.errors.jsonl", "--errors"
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
            WORKFLOW_NAME, job, id=args.name, task_queue=task_queue()
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=OVERLAP_POLICIES[args.overlap]),
        state=ScheduleState(note=args.note or f"created by starter.py for {args.file}"),
    )


def describe_spec(spec: ScheduleSpec) -> str:
    parts = [f"every {format_every(i.every)}" for i in spec.intervals]
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
    print(f"schedule {args.name} created: {describe_spec(schedule.spec)}, overlap {args.overlap}")
    print(f"runs:    workflow ids {args.name}-<time>, on task queue {task_queue()}")
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


async def _existing_schedule(client: Client, name: str) -> ScheduleHandle:
    handle = client.get_schedule_handle(name)
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(f"no schedule {name!r} (python starter.py schedule list)") from exc
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
        f"(python starter.py schedule list)"
    )
    return EXIT_OK
