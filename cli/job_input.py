"""The job options of run, start and schedule create, and the workflow input they make."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from cli.environment import location, storage
from cli.exits import UsageError
from contracts.job import BatchJobInput, PhaseDeadlines

PHASES_WITH_DEADLINES = ("validating", "in_progress", "finalizing")


def add_job_options(sub: argparse.ArgumentParser, with_id: bool = True) -> None:
    sub.add_argument("file", help="JSONL input, one request per line")
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
    for phase in PHASES_WITH_DEADLINES:
        sub.add_argument(
            f"--max-{phase.replace('_', '-')}-hours",
            type=float,
            dest=f"max_{phase}_hours",
            help=f"cancel the batch after this long in {phase}",
        )


def build_input(
    args: argparse.Namespace, *, output: str | None = None, errors: str | None = None
) -> BatchJobInput:
    """The workflow input from the job options; output/errors override --output/--errors."""
    store = storage()
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
    for phase in PHASES_WITH_DEADLINES:
        hours = getattr(args, f"max_{phase}_hours")
        if hours is not None:
            deadlines = deadlines.model_copy(update={phase: timedelta(hours=hours)})
    try:
        return BatchJobInput(
            input_path=location(store, args.file),
            endpoint=args.endpoint,
            output_path=output or (location(store, args.output) if args.output else None),
            errors_path=errors or (location(store, args.errors) if args.errors else None),
            metadata=metadata,
            poll_interval=timedelta(seconds=args.poll_seconds),
            deadlines=deadlines,
        )
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[-1] if "\n" in str(exc) else str(exc)) from exc
