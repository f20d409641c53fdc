"""The starter's arguments, and which command runs with them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from cli import attach, cancel, jobs, schedules, sharded
from cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from cli.job_input import add_job_options
from contracts.job import WORKFLOW_ID_PLACEHOLDER
from storage import StorageUnavailable
from temporal_client import TemporalUnreachableError, connect

DESCRIPTION = "The command line: start batch jobs, follow them, and read their results."

Command = Callable[[argparse.Namespace, Client], Awaitable[int]]

COMMANDS: dict[str, Command] = {
    "run": jobs.cmd_run,
    "start": jobs.cmd_start,
    "status": jobs.cmd_status,
    "result": jobs.cmd_result,
    "cancel": cancel.cmd_cancel,
    "attach": attach.cmd_attach,
    "list": jobs.cmd_list,
}
SCHEDULE_COMMANDS: dict[str, Command] = {
    "create": schedules.cmd_schedule_create,
    "list": schedules.cmd_schedule_list,
    "pause": schedules.cmd_schedule_pause,
    "unpause": schedules.cmd_schedule_unpause,
    "delete": schedules.cmd_schedule_delete,
    "trigger": schedules.cmd_schedule_trigger,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="starter.py", description=DESCRIPTION)
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start a job and follow it to the end")
    add_job_options(run)
    run.add_argument("--refresh-seconds", type=float, default=1.0)
    run.add_argument(
        "--keep-remote",
        action="store_true",
        help="with BATCH_STORE: leave the results in the store and print their URIs",
    )
    begin = commands.add_parser("start", help="start a job and return its workflow id")
    add_job_options(begin)
    for sub in (run, begin):
        sharded.add_sharding_options(sub)
        sub.add_argument("--prices", help="price file over the committed table, for the cost")
    cost = commands.add_parser("estimate", help="requests, shards, tokens and cost of an input")
    cost.add_argument("file")
    cost.add_argument("--prices", help="price file over the committed table (shards/prices.json)")
    sharded.add_limit_options(cost)
    attach.add_attach_parser(commands)
    commands.add_parser("status", help="live progress").add_argument("workflow_id")
    cancelling = commands.add_parser(
        "cancel", help="cancel the job and its batch, and say what the gateway did"
    )
    cancelling.add_argument("workflow_id")
    cancelling.add_argument(
        "--wait-seconds",
        type=float,
        default=cancel.DEFAULT_WAIT_SECONDS,
        help="how long to wait for the batch to settle before saying what is known (default 60)",
    )
    result = commands.add_parser("result", help="wait for and print a job's result")
    result.add_argument("workflow_id")
    result.add_argument("--json", action="store_true")
    listing = commands.add_parser("list", help="recent batch jobs")
    listing.add_argument("--limit", type=int, default=20)
    schema = commands.add_parser("schema", help="JSON Schemas of the workflow's input and result")
    schema.add_argument(
        "which",
        nargs="?",
        choices=("input", "result", "sharded-input", "sharded-result", "all"),
        default="all",
        help="sharded-*: ShardedBatchJobWorkflow, one job of any size",
    )

    schedule = commands.add_parser("schedule", help="run a job on a schedule (Temporal Schedules)")
    subcommands = schedule.add_subparsers(dest="schedule_command", required=True)
    create = subcommands.add_parser(
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
        choices=tuple(schedules.OVERLAP_POLICIES),
        default="skip",
        help="when a run is due while the last still runs (default skip)",
    )
    create.add_argument("--note", help="note shown with the schedule")
    add_job_options(create, with_id=False)
    subcommands.add_parser("list", help="batch schedules, their state, last and next run")
    pause = subcommands.add_parser("pause", help="stop starting runs")
    pause.add_argument("name")
    pause.add_argument("--note")
    unpause = subcommands.add_parser("unpause", help="start runs again")
    unpause.add_argument("name")
    unpause.add_argument("--note")
    for name, text in (("delete", "delete the schedule"), ("trigger", "start a run now")):
        subcommands.add_parser(name, help=text).add_argument("name")
    return top


async def main_async(args: argparse.Namespace) -> int:
    if args.command == "schema":
        return jobs.cmd_schema(args)
    if args.command == "estimate":
        return sharded.cmd_estimate(args)
    if args.command == "schedule" and args.schedule_command == "create":
        schedules.build_schedule(args)  # bad arguments are reported before connecting
    client = await connect()
    if args.command == "schedule":
        return await SCHEDULE_COMMANDS[args.schedule_command](args, client)
    return await COMMANDS[args.command](args, client)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every outcome is an exit code and at most a line on stderr."""
    args = parser().parse_args(argv)
    started = time.monotonic()
    try:
        return asyncio.run(main_async(args))
    except (UsageError, TemporalUnreachableError) as exc:
        print(f"starter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageUnavailable as exc:
        print(f"starter: {exc}", file=sys.stderr)
        return EXIT_FAILED
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
        return EXIT_INTERRUPTED
