"""`starter.py validate FILE`: the job's own checks of an input, before paying for a job.

No Temporal and no gateway: every problem as file:line, custom_id, field and
fix, the same words the job would fail with (cli/input_check.py), exit 2; or
one line saying what would run, exit 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.exits import EXIT_OK, UsageError
from cli.input_check import ENDPOINT_HELP, chosen_endpoint, input_problems
from cli.locations import is_uri
from cli.sharded import add_limit_options, limits_from
from shards.cost import estimate
from shards.split import LineTooLarge


def add_validate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "validate",
        help="check an input as its job would, before sending it (no Temporal needed)",
        description="Check FILE line by line as its job would: every problem with its "
        "file:line, custom_id, field and fix (exit 2), or one line saying what would run (exit 0).",
    )
    check.add_argument("file", help="JSONL input, one request per line")
    check.add_argument("--endpoint", help=ENDPOINT_HELP)
    add_limit_options(check)


def cmd_validate(args: argparse.Namespace) -> int:
    """InvalidInput (every problem, exit 2) is printed by cli.app as estimate's is."""
    if is_uri(args.file):
        raise UsageError(f"{args.file}: validate reads a local file; copy it here first")
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{args.file}: no such file")
    endpoint = chosen_endpoint(args, path)
    valid = input_problems(path, endpoint, args.file)
    limits = limits_from(args)
    try:
        shards = estimate(path, limits).shards
    except LineTooLarge as exc:
        raise UsageError(str(exc)) from None
    print(
        f"{args.file}: valid: {valid.requests:,} requests, model {valid.model}, endpoint "
        f"{endpoint}, {valid.bytes:,} bytes, {shards:,} batch(es) (at most "
        f"{limits.max_requests:,} requests and {limits.max_bytes:,} bytes a batch)"
    )
    return EXIT_OK
