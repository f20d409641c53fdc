"""The command line: start batch jobs, follow them, and read their results.

    python starter.py run examples/batch.jsonl        start, follow with a progress bar, summarise
    python starter.py start examples/batch.jsonl      start and return the workflow id
    python starter.py status|result|cancel ID
    python starter.py list
    python starter.py schema [input|result]           JSON Schemas for callers in other languages

Paths are relative to BATCH_DATA_DIR (default: the current directory), the
folder the starter and every worker share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from contracts.constants import (
    DEFAULT_WEB_UI,
    ENV_DATA_DIR,
    ENV_TASK_QUEUE,
    ENV_WEB_UI,
    TASK_QUEUE,
    WORKFLOW_NAME,
)
from contracts.job import BatchJobInput, BatchJobResult, JobProgress, JobStatus, PhaseDeadlines
from contracts.steps import BatchSnapshot
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


def build_input(args: argparse.Namespace) -> BatchJobInput:
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
            output_path=_location(storage, args.output) if args.output else None,
            errors_path=_location(storage, args.errors) if args.errors else None,
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
    progress: JobProgress = await handle.query("progress", result_type=JobProgress)
    trouble: str | None = None
    description = await handle.describe()
    converter = handle._client.data_converter
    for pending in description.raw_description.pending_activities:
        name = pending.activity_type.name
        if name == "await_status_change" and pending.heartbeat_details.payloads:
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
    else:
        text = f"[{'-' * width}] {progress.phase.value} · {status}"
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
        except RPCError:
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
        except (asyncio.CancelledError, RPCError):
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
    except RPCError as exc:
        print(f"progress: not available ({exc.message})")
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
        batch_status = (attrs.get("BatchStatus") or ["-"])[0]
        batch_id = (attrs.get("BatchId") or ["-"])[0]
        started = (
            execution.start_time.strftime("%Y-%m-%d %H:%M:%S") if execution.start_time else "-"
        )
        state = execution.status.name if execution.status else "-"
        print(f"{execution.id:45} {state:11} {batch_status!s:12} {batch_id!s:40} {started}")
        rows += 1
    if rows == 0:
        print("no batch jobs yet")
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

    def job_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("file", help="JSONL input, one request per line")
        sub.add_argument("--endpoint", default="/v1/chat/completions")
        sub.add_argument("--output", help="results file (default FILE.output.jsonl)")
        sub.add_argument("--errors", help="errors file (default FILE.errors.jsonl)")
        sub.add_argument("--metadata", action="append", metavar="KEY=VALUE")
        sub.add_argument("--poll-seconds", type=float, default=60.0)
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
    return top


COMMANDS = {
    "run": cmd_run,
    "start": cmd_start,
    "status": cmd_status,
    "result": cmd_result,
    "cancel": cmd_cancel,
    "list": cmd_list,
}


async def main_async(args: argparse.Namespace) -> int:
    if args.command == "schema":
        return cmd_schema(args)
    client = await connect()
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
