"""The starter's arguments, and which command runs with them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError, RPCStatusCode

from cli import attach, cancel, interrupts, job_ids, jobs, schedules, sharded, validate
from cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from cli.input_check import ENDPOINT_HELP, InvalidInput
from cli.job_input import add_job_options
from contracts.job import WORKFLOW_ID_PLACEHOLDER
from storage import StorageUnavailable
from temporal_client import TemporalUnreachableError, connect

DESCRIPTION = "The command line: start batch jobs, follow them, and read their results."

REFRESH_HELP = "how often the progress line is redrawn, in seconds (default 1)"
WORKFLOW_ID_HELP = "the job's workflow id, as run, start and list print it (not the batch id)"

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
    run.add_argument("--refresh-seconds", type=float, default=1.0, help=REFRESH_HELP)
    run.add_argument(
        "--keep-remote",
        action="store_true",
        help="with BATCH_STORE: leave the results in the store and print their URIs",
    )
    begin = commands.add_parser("start", help="start a job and return its workflow id")
    add_job_options(begin)
    for sub in (run, begin):
        sharded.add_sharding_options(sub)
        sub.add_argument(
            "--prices",
            help="price file over the committed table, for the cost (default shards/prices.json)",
        )
    cost = commands.add_parser(
        "estimate",
        help="requests, shards, tokens and cost of an input",
        description="Check FILE as validate does (exit 2 on problems), then estimate its "
        "requests, shards, tokens and cost at batch prices. No Temporal needed.",
    )
    cost.add_argument("file", help="JSONL input, one request per line")
    cost.add_argument("--endpoint", help=ENDPOINT_HELP)
    cost.add_argument(
        "--prices", help="price file over the committed table (default shards/prices.json only)"
    )
    sharded.add_limit_options(cost)
    validate.add_validate_parser(commands)
    attach.add_attach_parser(commands)
    status = commands.add_parser(
        "status",
        help="a job's progress, or how it ended",
        description="A running job's progress (within 5 s, worker or not); a job that ended: its "
        "summary, or why it failed (exit 1 failed or cancelled, 3 not every request succeeded).",
    )
    status.add_argument("workflow_id", help=WORKFLOW_ID_HELP)
    cancelling = commands.add_parser(
        "cancel",
        help="cancel the job and its batch, and say what the gateway did",
        description="Cancel the job: its batch is cancelled at the gateway and what finished is "
        "collected. Exit 0 once the job ended, 1 if it failed, 4 if it had not ended in time.",
    )
    cancelling.add_argument("workflow_id", help=WORKFLOW_ID_HELP)
    cancelling.add_argument(
        "--wait-seconds",
        type=float,
        default=cancel.DEFAULT_WAIT_SECONDS,
        help="how long to wait for the batch to settle before saying what is known (default 60)",
    )
    result = commands.add_parser(
        "result",
        help="wait for and print a job's result",
        description="Wait for the job to end and print its summary (exit 0 all succeeded, "
        "3 not all, 1 failed); says so while no worker runs it.",
    )
    result.add_argument("workflow_id", help=WORKFLOW_ID_HELP)
    result.add_argument(
        "--json", action="store_true", help="the whole result as JSON (default: a summary)"
    )
    listing = commands.add_parser(
        "list",
        help="recent batch jobs",
        description="One row per job: its latest run, RUNS the runs its id has had (reruns "
        "included), "
        "the job's status (Temporal's) and its batch's status and id (the gateway's).",
    )
    listing.add_argument("--limit", type=int, default=20, help="jobs shown at most (default 20)")
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
    create.add_argument("--time-zone", help="IANA zone of --cron and --every (default UTC)")
    create.add_argument(
        "--overlap",
        choices=tuple(schedules.OVERLAP_POLICIES),
        default="skip",
        help="when a run is due while the last still runs (default skip)",
    )
    create.add_argument(
        "--note", help="note shown with the schedule (default: created by starter.py for FILE)"
    )
    add_job_options(create, with_id=False)
    for action in create._actions:
        if action.dest in ("output", "errors"):
            action.help = (
                f"each run's {action.dest} file, with {WORKFLOW_ID_PLACEHOLDER} in it (default "
                f"FILE.{WORKFLOW_ID_PLACEHOLDER}.{action.dest}.jsonl)"
            )
    subcommands.add_parser("list", help="batch schedules, their state, last and next run")
    pause = subcommands.add_parser("pause", help="stop starting runs")
    pause.add_argument("name", help="the schedule's name")
    pause.add_argument("--note", help="why (default: paused by starter.py)")
    unpause = subcommands.add_parser("unpause", help="start runs again")
    unpause.add_argument("name", help="the schedule's name")
    unpause.add_argument("--note", help="why (default: unpaused by starter.py)")
    for name, text in (("delete", "delete the schedule"), ("trigger", "start a run now")):
        subcommands.add_parser(name, help=text).add_argument("name", help="the schedule's name")
    return top


async def main_async(args: argparse.Namespace) -> int:
    if args.command == "schema":
        return jobs.cmd_schema(args)
    if args.command == "estimate":
        return sharded.cmd_estimate(args)
    if args.command == "validate":
        return validate.cmd_validate(args)
    if args.command == "schedule" and args.schedule_command == "create":
        schedules.build_schedule(args)  # bad arguments are reported before connecting
    client = await connect()
    if args.command == "schedule":
        return await SCHEDULE_COMMANDS[args.schedule_command](args, client)
    return await COMMANDS[args.command](args, client)


def job_id(args: argparse.Namespace) -> str | None:
    """The workflow id the command was given, if any."""
    given = getattr(args, "workflow_id", None)
    return given if isinstance(given, str) else None


def main(argv: list[str] | None = None) -> int:
    """Run one command; every outcome is an exit code and at most a line on stderr."""
    args = parser().parse_args(argv)
    started = time.monotonic()
    workflow_id = job_id(args)
    if workflow_id is not None:
        interrupts.following(workflow_id)
    try:
        with interrupts.stop_within_a_second(started):
            return asyncio.run(main_async(args))
    except InvalidInput as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, TemporalUnreachableError) as exc:
        print(f"starter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageUnavailable as exc:
        print(f"starter: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND and workflow_id is not None:
            print(f"starter: {job_ids.not_found(workflow_id)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"starter: Temporal answered {exc.status.name}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except TemporalError as exc:
        print(f"starter: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        interrupts.say_stopped(started)
        return EXIT_INTERRUPTED
