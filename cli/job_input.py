"""The job options of run, start and schedule create, and the workflow input they make."""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta

from pydantic import ValidationError

from cli.exits import UsageError
from cli.locations import JobFiles, plan_job_files
from contracts.job import BatchJobInput, PhaseDeadlines

PHASES_WITH_DEADLINES = ("validating", "in_progress", "finalizing")


def add_job_options(sub: argparse.ArgumentParser, with_id: bool = True) -> None:
    sub.add_argument(
        "file", help="JSONL input, one request per line: a path, or an s3://, az://, gs:// URI"
    )
    sub.add_argument("--endpoint", default="/v1/chat/completions")
    sub.add_argument("--output", help="results file (default FILE.output.jsonl)")
    sub.add_argument("--errors", help="errors file (default FILE.errors.jsonl)")
    sub.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    sub.add_argument("--poll-seconds", type=float, default=60.0)
    if with_id:
        sub.add_argument(
            "--id",
            help="workflow id (default from the results location: a rerun follows the first)",
        )
    sub.add_argument(
        "--keep-gateway-files",
        action="store_true",
        help="keep the uploaded input and the batch's output and error files at the gateway "
        "(default: deleted once the results are collected)",
    )
    sub.add_argument(
        "--replace",
        action="store_true",
        help="write over results already at --output/--errors that another job wrote "
        "(default: the job refuses at its start; a rerun of the same job may)",
    )
    for phase in PHASES_WITH_DEADLINES:
        sub.add_argument(
            f"--max-{phase.replace('_', '-')}-hours",
            type=float,
            dest=f"max_{phase}_hours",
            help=f"cancel the batch after this long in {phase}",
        )


def build_input(args: argparse.Namespace, files: JobFiles | None = None) -> BatchJobInput:
    """The workflow input from the job options, at the locations files names (default: planned
    from FILE, --output and --errors, in a fresh BATCH_STORE folder when that is set)."""
    if files is None:
        files = plan_job_files(args.file, args.output, args.errors, uuid.uuid4().hex)
    metadata: dict[str, str] = {}
    for pair in args.metadata or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--metadata {pair!r}: expected KEY=VALUE")
        metadata[key] = value
    deadlines = PhaseDeadlines()
    for phase in PHASES_WITH_DEADLINES:
        hours = getattr(args, f"max_{phase}_hours")
        if hours is not None:
            deadlines = deadlines.model_copy(update={phase: timedelta(hours=hours)})
    try:
        return BatchJobInput(
            input_path=files.input_path,
            endpoint=args.endpoint,
            output_path=files.output_path,
            errors_path=files.errors_path,
            metadata=metadata,
            poll_interval=timedelta(seconds=args.poll_seconds),
            deadlines=deadlines,
            keep_gateway_files=args.keep_gateway_files,
            replace_results=getattr(args, "replace", False),
        )
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise UsageError(message.removeprefix("Value error, ")) from None
