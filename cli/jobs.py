"""The job commands: run, start, status, result, list and schema (cancel: cli/cancel.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from cli import hints, interrupts
from cli.durations import took
from cli.environment import task_queue, web_ui_link
from cli.exits import EXIT_FAILED, EXIT_NOT_ALL_SUCCEEDED, EXIT_OK, UsageError
from cli.follow import (
    QUERY_TIMEOUT,
    follow,
    last_known_state,
    no_worker_answered,
    result_through_outages,
)
from cli.job_ids import StartedJob, default_workflow_id, identity_of, start_or_use_existing
from cli.job_input import build_input
from cli.job_summary import input_facts, job_summary
from cli.locations import JobFiles, is_uri, plan_job_files
from cli.progress import ProgressLine, live_progress, render_finished, render_progress
from cli.sharded import (
    needs_shards,
    sharded_input,
    sharding_asked,
    summarise_sharded,
)
from cli.transfers import bring_back, remove_job_copies, upload_input
from contracts.job import BatchJobInput, BatchJobResult, JobStatus
from contracts.names import (
    SEARCH_ATTRIBUTE_BATCH_ID,
    SEARCH_ATTRIBUTE_BATCH_STATUS,
    SHARDED_JOB_WORKFLOW_NAME,
    WORKFLOW_NAME,
)
from contracts.sharding import ShardedJobInput, ShardedJobResult
from storage import LocationError, StorageUnavailable


async def worker_polls(client: Client, queue: str) -> bool:
    """Whether a worker polls the queue; True when Temporal cannot say (assume the best)."""
    try:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except RPCError:
        return True
    return bool(described.pollers)


async def warn_if_no_worker(client: Client, out: TextIO) -> None:
    if not await worker_polls(client, task_queue()):
        print(
            f"warning: no worker is polling task queue {task_queue()!r}; the job waits until one "
            f"starts ({hints.worker()})",
            file=out,
        )


def job_folder(workflow_id: str) -> str:
    """The job's folder in BATCH_STORE: its id, and a token so a reused id never overwrites."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", workflow_id).lstrip(".") or "_"
    return f"{safe}.{uuid.uuid4().hex[:8]}"


async def start_job(
    client: Client,
    job: BatchJobInput,
    workflow_id: str | None,
    source: Path | None,
    results: str | None = None,
    input_name: str | None = None,
    sharded: ShardedJobInput | None = None,
    kind: str = "batch",
) -> StartedJob:
    """Start the job, or pick up the same job already running (see cli/job_ids.py).

    results is where the user reads the results (a local file BATCH_STORE's copies
    come back to); by default the job's own results location. sharded is the
    parent's input when the job runs as many batches: the same id, the same policies.
    """
    await warn_if_no_worker(client, sys.stderr)
    queue = task_queue()
    results = results or job.resolved_output_path
    requests, model = input_facts(source)
    return await start_or_use_existing(
        client,
        job if sharded is None else sharded,
        identity_of(job, source, results, input_name, sharded),
        workflow_id=workflow_id or default_workflow_id(results, queue, kind),
        task_queue=queue,
        explicit_id=workflow_id is not None,
        summary=job_summary(job, results, requests, model),
    )


def _local_source(file: str, files: JobFiles) -> Path | None:
    """The input on this machine, to hash; None for a URI the starter does not read."""
    if files.upload is not None:
        return files.upload.local
    return None if is_uri(file) else Path(file)


async def start_with_files(
    args: argparse.Namespace, client: Client
) -> tuple[StartedJob, BatchJobInput, JobFiles]:
    """Plan the job's locations, copy a local input to BATCH_STORE if set, start the workflow.

    The default workflow id follows where the user reads the results, so the same
    command twice is one job even when each run plans its own folder in the store.
    """
    provisional = plan_job_files(args.file, args.output, args.errors, "planning")
    results = (
        str(provisional.bring_back[0].local)
        if provisional.bring_back
        else build_input(args, provisional).resolved_output_path
    )
    workflow_id = args.id or default_workflow_id(results, task_queue())
    files = plan_job_files(args.file, args.output, args.errors, job_folder(workflow_id))
    job = build_input(args, files)
    source = _local_source(args.file, files)
    # Larger than one batch, or asked for (an input in a store is not read here):
    # the sharded parent, one job over every shard, under the same id as one batch.
    sharded = (
        sharded_input(args, job)
        if (needs_shards(args, source, job.limits) if source else sharding_asked(args))
        else None
    )
    if files.upload is not None:
        print(f"input:   {files.upload.remote} (copy of {files.upload.local})", file=sys.stderr)
    await upload_input(files)
    try:
        started = await start_job(
            client,
            job,
            args.id,
            source,
            results,
            str(files.upload.local) if files.upload else None,
            sharded,
        )
    except BaseException:
        await remove_job_copies(files)
        raise
    if not started.started:
        # The same job runs already, with its own copy of the input: ours is not needed.
        await remove_job_copies(files)
    return started, job, files


def print_locations(job: BatchJobInput, workflow_id: str, out: TextIO) -> None:
    output, errors = job.output_paths_for(workflow_id)
    print(f"results: {output}\nerrors:  {errors}", file=out)


def summarise(result: BatchJobResult | ShardedJobResult, link: str) -> str:
    if isinstance(result, ShardedJobResult):
        return summarise_sharded(result, link)
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
        *gateway_files_lines(result),
        f"took:     {took(result.started_at, result.finished_at)}",
        f"web ui:   {link}",
    ]
    return "\n".join(lines)


def gateway_files_lines(result: BatchJobResult) -> list[str]:
    """What the job deleted at the gateway, and each file it left there with why."""
    files = result.gateway_files
    if files is None:
        return []
    lines = [f"gateway:  {len(files.deleted)} file(s) deleted"] if files.deleted else []
    lines += [f"gateway:  {file_id} left: {why}" for file_id, why in files.left.items()]
    return lines


def exit_code(result: BatchJobResult | ShardedJobResult) -> int:
    return EXIT_OK if result.status is JobStatus.SUCCEEDED else EXIT_NOT_ALL_SUCCEEDED


def failure_text(exc: WorkflowFailureError) -> str:
    """The innermost cause's message: the one that says what went wrong."""
    cause: BaseException | None = exc.cause
    messages = []
    while cause is not None:
        message = getattr(cause, "message", None) or str(cause)
        messages.append(message)
        cause = cause.__cause__
    return messages[-1] if messages else str(exc)


async def follow_to_end(
    client: Client,
    started: StartedJob,
    refresh_seconds: float,
    files: JobFiles | None = None,
    keep_remote: bool = False,
) -> int:
    """Follow the job with a progress line, then print its summary: run's and attach's end.

    With BATCH_STORE's copies (files), the results come back to the local paths
    the user named, unless keep_remote.
    """
    handle = started.handle
    interrupts.following(handle.id)
    link = web_ui_link(client, handle.id)
    if started.started:
        print(f"started {handle.id}", file=sys.stderr)
    else:
        print(f"already running as {handle.id}; following it", file=sys.stderr)
    print(f"web ui:  {link}", file=sys.stderr)
    line = ProgressLine(sys.stderr)
    follower = asyncio.create_task(follow(handle, sys.stderr, refresh_seconds, line=line))
    try:
        result: BatchJobResult | ShardedJobResult = await result_through_outages(
            handle, refresh_seconds
        )
    except WorkflowFailureError as exc:
        line.close()
        print(f"job {handle.id} failed: {failure_text(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        follower.cancel()
        with suppress(asyncio.CancelledError, TemporalError):
            await follower
    line.show(render_finished(result))
    line.close()
    if files is not None and files.bring_back and not keep_remote:
        try:
            result = await _results_brought_back(result, files, remove=started.started)
        except (LocationError, StorageUnavailable) as exc:
            print(summarise(result, link))
            print(
                f"bringing the results back failed, they stay in the store: {exc}", file=sys.stderr
            )
            return EXIT_FAILED
    print(summarise(result, link))
    return exit_code(result)


async def _results_brought_back(
    result: BatchJobResult | ShardedJobResult, files: JobFiles, *, remove: bool
) -> BatchJobResult | ShardedJobResult:
    """The result with the local paths the results were written to; the store's copies
    removed when this run started the job (remove).

    The transfers point at the result's own locations: a run that found the same
    job running follows that job's folder, not the one it had planned, and leaves
    that folder to the run that made it (which may be bringing the results back too).
    """
    actual = {files.output_path: result.output_path, files.errors_path: result.errors_path}
    files = replace(
        files,
        bring_back=tuple(
            replace(t, remote=actual.get(t.remote) or t.remote) for t in files.bring_back
        ),
    )
    brought = await bring_back(files, owner=remove)
    if remove:
        await remove_job_copies(files)
    local = {t.remote: str(t.local) for t in brought}
    return result.model_copy(
        update={
            "output_path": local.get(result.output_path, result.output_path),
            "errors_path": local.get(result.errors_path, result.errors_path),
        }
    )


def print_started(client: Client, started: StartedJob) -> int:
    """start's output: the workflow id on stdout, for scripts; the rest on stderr."""
    if not started.started:
        print(f"already running as {started.id}", file=sys.stderr)
    print(started.id)
    print(f"web ui: {web_ui_link(client, started.id)}", file=sys.stderr)
    return EXIT_OK


async def cmd_run(args: argparse.Namespace, client: Client) -> int:
    started, job, files = await start_with_files(args, client)
    if files.bring_back:
        print_locations(job, started.id, sys.stderr)
    return await follow_to_end(client, started, args.refresh_seconds, files, args.keep_remote)


async def cmd_start(args: argparse.Namespace, client: Client) -> int:
    started, job, _ = await start_with_files(args, client)
    code = print_started(client, started)
    print_locations(job, started.id, sys.stderr)
    return code


async def cmd_status(args: argparse.Namespace, client: Client) -> int:
    handle = client.get_workflow_handle(args.workflow_id, result_type=BatchJobResult)
    description = await handle.describe()
    status = description.status.name if description.status else "UNKNOWN"
    print(f"workflow: {handle.id} ({status})")
    summary = await description.static_summary()
    if summary:
        print(f"job:      {summary}")
    if description.status != WorkflowExecutionStatus.RUNNING:
        return await print_ending(client, description, sys.stdout)
    try:
        progress, trouble = await live_progress(handle, QUERY_TIMEOUT)
    except TemporalError as exc:
        if no_worker_answered(exc):
            print(
                f"progress: no worker answered within {QUERY_TIMEOUT.total_seconds():g}s on "
                f"task queue {description.task_queue!r} ({hints.worker()}); "
                f"{last_known_state(description)}"
            )
        else:
            # Not a batch job (another workflow type), or one whose task is failing.
            print(f"progress: not available ({exc}); {last_known_state(description)}")
        print(f"web ui:   {web_ui_link(client, handle.id)}")
        return EXIT_OK
    shown = render_progress(progress, trouble)
    print(f"progress: {shown}")
    if progress.reason and progress.reason not in shown:
        print(f"reason:   {progress.reason}")
    print(f"web ui:   {web_ui_link(client, handle.id)}")
    return EXIT_OK


def _result_type(
    description: WorkflowExecutionDescription,
) -> type[BatchJobResult | ShardedJobResult]:
    if description.workflow_type == SHARDED_JOB_WORKFLOW_NAME:
        return ShardedJobResult
    return BatchJobResult


async def print_ending(
    client: Client, description: WorkflowExecutionDescription, out: TextIO
) -> int:
    """How a closed job ended: its finished bar and summary, or why it failed (as result says),
    and the exit code."""
    handle = client.get_workflow_handle(description.id, result_type=_result_type(description))
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        how = (
            ENDED_WITHOUT_RESULT.get(description.status, "failed")
            if description.status
            else "failed"
        )
        print(f"job {handle.id} {how}: {failure_text(exc)}", file=out)
        print(f"web ui:   {web_ui_link(client, handle.id)}", file=out)
        return EXIT_FAILED
    except ValueError as exc:
        raise UsageError(f"{handle.id} did not return a batch job result ({exc})") from None
    print(f"progress: {render_finished(result)}", file=out)
    print(summarise(result, web_ui_link(client, handle.id)), file=out)
    return exit_code(result)


ENDED_WITHOUT_RESULT = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "was cancelled",
    WorkflowExecutionStatus.TERMINATED: "was terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}
"""How a workflow that returned no result ended, in words."""


async def cmd_result(args: argparse.Namespace, client: Client) -> int:
    described = await client.get_workflow_handle(args.workflow_id).describe()
    handle = client.get_workflow_handle(args.workflow_id, result_type=_result_type(described))
    if described.status == WorkflowExecutionStatus.RUNNING and not await worker_polls(
        client, described.task_queue
    ):
        print(
            f"waiting for a worker on task queue {described.task_queue!r}: none is polling "
            f"({hints.worker()}); the job, and this wait, go on once one runs it "
            f"({last_known_state(described)})",
            file=sys.stderr,
        )
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        print(f"job {handle.id} failed: {failure_text(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:
        raise UsageError(f"{handle.id} did not return a batch job result ({exc})") from None
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(summarise(result, web_ui_link(client, handle.id)))
    return exit_code(result)


LIST_SCAN = 1000
"""Runs read at most to group the latest jobs: earlier runs past it go uncounted."""


async def cmd_list(args: argparse.Namespace, client: Client) -> int:
    """One row per job (its latest run, and how many ran under its id), newest first."""
    query = f"WorkflowType = '{WORKFLOW_NAME}' OR WorkflowType = '{SHARDED_JOB_WORKFLOW_NAME}'"
    latest: dict[str, WorkflowExecution] = {}
    runs: dict[str, int] = {}
    async for execution in client.list_workflows(query, limit=LIST_SCAN):
        if execution.id not in latest and len(latest) >= args.limit:
            continue
        runs[execution.id] = runs.get(execution.id, 0) + 1
        shown = latest.get(execution.id)
        if shown is None or (execution.start_time or _EPOCH) > (shown.start_time or _EPOCH):
            latest[execution.id] = execution
    if not latest:
        print("no batch jobs yet")
        return EXIT_OK
    rows = [("WORKFLOW ID", "RUNS", "JOB", "BATCH", "BATCH ID", "STARTED (UTC)")]
    for workflow_id, execution in latest.items():
        attrs = execution.search_attributes
        rows.append(
            (
                workflow_id,
                str(runs[workflow_id]),
                execution.status.name.lower() if execution.status else "-",
                str((attrs.get(SEARCH_ATTRIBUTE_BATCH_STATUS) or ["-"])[0]),
                str((attrs.get(SEARCH_ATTRIBUTE_BATCH_ID) or ["-"])[0]),
                execution.start_time.strftime("%Y-%m-%d %H:%M:%S") if execution.start_time else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(
        "JOB: the workflow's state (running, completed, failed, ...); BATCH: the gateway's last "
        f"status of its batch; {hints.starter('status', 'WORKFLOW_ID')} says how a job ended",
        file=sys.stderr,
    )
    return EXIT_OK


_EPOCH = datetime.min.replace(tzinfo=UTC)


def cmd_schema(args: argparse.Namespace) -> int:
    """Needs no Temporal: callers in other languages read the contract from here."""
    schemas = {
        "input": BatchJobInput.model_json_schema(),
        "result": BatchJobResult.model_json_schema(),
        "sharded-input": ShardedJobInput.model_json_schema(),
        "sharded-result": ShardedJobResult.model_json_schema(),
    }
    chosen: Any = schemas if args.which == "all" else schemas[args.which]
    print(json.dumps(chosen, indent=2, sort_keys=True))
    return EXIT_OK
