"""`starter.py attach BATCH_ID FILE`: a job for a batch that already exists at the gateway.

The batch was left by a create whose outcome was unknown (CreateOutcomeUnknown
names its job key), or made by hand (curl, as in the how-to), which workers
attach to only with BATCH_ATTACH_ANY_BATCH=true (docs/security.md). The job starts
at the wait: it validates FILE, which it needs to join the results, checks the
batch runs that input, then waits and collects like any other job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from cli import hints
from cli.exits import UsageError
from cli.job_input import add_job_options, build_input
from cli.jobs import follow_to_end, print_started, start_job
from contracts.job import BatchJobInput

DESCRIPTION = (
    "Start a job at the wait for BATCH_ID, a batch that already exists at the gateway, and "
    "collect its results into FILE's results files. The job refuses a batch that does not run "
    "FILE (BatchNotForInput). Like run it follows the job to its end; with --start it returns "
    "the workflow id, like start."
)
METADATA_NOTE = "no effect here: the batch exists already, with the metadata it was made with"
METADATA_HELP = f"{METADATA_NOTE} (default: none)"


def add_attach_parser(commands: Any) -> None:
    """The attach command's arguments: the batch, then run's options and --start."""
    attach: argparse.ArgumentParser = commands.add_parser(
        "attach", help="collect a batch that already exists at the gateway", description=DESCRIPTION
    )
    attach.add_argument("batch_id", help="the gateway's batch id, e.g. batch_abc123")
    add_job_options(attach)
    for action in attach._actions:
        if action.dest == "metadata":
            action.help = METADATA_HELP
    attach.add_argument(
        "--refresh-seconds",
        type=float,
        default=1.0,
        help="how often the progress line is redrawn, in seconds (default 1)",
    )
    attach.add_argument(
        "--start", action="store_true", help="start the job and return its workflow id, like start"
    )


def build_attach_input(args: argparse.Namespace) -> BatchJobInput:
    job = build_input(args)
    try:
        return BatchJobInput.parse({**job.model_dump(), "metadata": {}, "batch_id": args.batch_id})
    except ValidationError as exc:
        # The message quotes the id escaped and cut short: it may hold anything.
        raise UsageError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def refuse_swapped(batch_id: str, file: str) -> None:
    """A file where the batch id belongs, and a batch id where the file does: say so, once."""
    looks_like_a_file = Path(batch_id).is_file() or batch_id.endswith(".jsonl")
    if looks_like_a_file and not Path(file).is_file():
        raise UsageError(
            f"the arguments look swapped: {batch_id} is a file and {file} no file; attach takes "
            f"the batch id first: {hints.starter('attach', file, batch_id)}"
        )


async def cmd_attach(args: argparse.Namespace, client: Client) -> int:
    if args.metadata:
        print(f"note: --metadata has {METADATA_NOTE}", file=sys.stderr)
    refuse_swapped(args.batch_id, args.file)
    job = build_attach_input(args)
    started = await start_job(client, job, args.id, Path(args.file), kind="attach")
    if args.start:
        return print_started(client, started)
    return await follow_to_end(client, started, args.refresh_seconds)
