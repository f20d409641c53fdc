"""The job options of run, start and schedule create, and the workflow input they make."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from cli.exits import UsageError
from cli.input_check import DEFAULT_ENDPOINT, ENDPOINT_HELP, endpoint_of
from cli.local_stack import DEFAULT_POLL_SECONDS, stack_poll_seconds
from cli.locations import JobFiles, is_uri, plan_job_files
from contracts.job import BatchJobInput, PhaseDeadlines, QuotaRetry

PHASES_WITH_DEADLINES = ("validating", "in_progress", "finalizing")


def add_job_options(sub: argparse.ArgumentParser, with_id: bool = True) -> None:
    sub.add_argument(
        "file", help="JSONL input, one request per line: a path, or an s3://, az://, gs:// URI"
    )
    sub.add_argument("--endpoint", help=ENDPOINT_HELP)
    sub.add_argument("--output", help="results file (default FILE.output.jsonl)")
    sub.add_argument("--errors", help="errors file (default FILE.errors.jsonl)")
    sub.add_argument(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="tag the batch at the gateway; repeat for more (default: none)",
    )
    sub.add_argument(
        "--poll-seconds",
        type=float,
        help=f"how often the job reads the batch while it runs (default {DEFAULT_POLL_SECONDS:g}: "
        "Azure asks for no more than one read a minute; 1 on the local stack of make up)",
    )
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
        "--max-quota-wait-hours",
        type=float,
        help="end the job after waiting this long in all for the gateway's enqueued-token "
        "quota (default 72)",
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
            help=f"cancel the batch after this long in {phase} "
            f"(default {getattr(PhaseDeadlines(), phase).total_seconds() / 3600:g})",
        )


def _resolve_defaults(args: argparse.Namespace, files: JobFiles) -> None:
    """--endpoint and --poll-seconds when not given, decided once and said on stderr."""
    if args.endpoint is None:
        local = files.upload.local if files.upload else None
        if local is None and not is_uri(args.file):
            local = Path(args.file)
        inferred = endpoint_of(local) if local is not None else None
        args.endpoint = inferred or DEFAULT_ENDPOINT
        if inferred is not None and inferred != DEFAULT_ENDPOINT:
            print(f"endpoint: {inferred} (every line's url; --endpoint sets it)", file=sys.stderr)
    if args.poll_seconds is None:
        fast = stack_poll_seconds()
        args.poll_seconds = fast or DEFAULT_POLL_SECONDS
        if fast is not None:
            print(
                f"polling every {fast:g} s: the local stack (make up) runs the gateway emulator "
                "(--poll-seconds sets it)",
                file=sys.stderr,
            )


def build_input(args: argparse.Namespace, files: JobFiles | None = None) -> BatchJobInput:
    """The workflow input from the job options, at the locations files names (default: planned
    from FILE, --output and --errors, in a fresh BATCH_STORE folder when that is set)."""
    if files is None:
        files = plan_job_files(args.file, args.output, args.errors, uuid.uuid4().hex)
    _resolve_defaults(args, files)
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
    quota_retry = QuotaRetry()
    quota_hours = getattr(args, "max_quota_wait_hours", None)
    if quota_hours is not None:
        if not quota_hours > 0:
            raise UsageError(f"--max-quota-wait-hours must be positive, got {quota_hours:g}")
        quota_retry = QuotaRetry(max_wait=timedelta(hours=quota_hours))
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
            quota_retry=quota_retry,
            replace_results=getattr(args, "replace", False),
        )
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise UsageError(message.removeprefix("Value error, ")) from None
