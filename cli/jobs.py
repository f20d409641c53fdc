"""The job commands: run, start, status, result, cancel, list and schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from cli.environment import task_queue, web_ui_link
from cli.exits import EXIT_FAILED, EXIT_NOT_ALL_SUCCEEDED, EXIT_OK, UsageError
from cli.follow import follow, result_through_outages
from cli.job_input import build_input
from cli.progress import live_progress, render_progress
from cli.sharded import needs_shards, sharded_input, start_sharded, summarise_sharded
from contracts.job import BatchJobInput, BatchJobResult, JobStatus
from contracts.names import (
    SEARCH_ATTRIBUTE_BATCH_ID,
    SEARCH_ATTRIBUTE_BATCH_STATUS,
    SHARDED_JOB_WORKFLOW_NAME,
    WORKFLOW_NAME,
)
from contracts.sharding import ShardedJobInput, ShardedJobResult


async def warn_if_no_worker(client: Client, out: TextIO) -> None:
    try:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue()),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except RPCError:
        return
    if not described.pollers:
        print(
            f"warning: no worker is polling task queue {task_queue()!r}; the job waits until one "
            "starts (python worker.py)",
            file=out,
        )


async def start_job(
    client: Client, job: BatchJobInput, workflow_id: str | None
) -> WorkflowHandle[Any, BatchJobResult]:
    await warn_if_no_worker(client, sys.stderr)
    return await client.start_workflow(
        WORKFLOW_NAME,
        job,
        id=workflow_id or f"batch-{Path(job.input_path).stem}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue(),
        result_type=BatchJobResult,
    )


async def start_any(client: Client, args: argparse.Namespace) -> WorkflowHandle[Any, Any]:
    """One batch, or the sharded parent when the input needs more than one (or it is asked for)."""
    job = build_input(args)
    if needs_shards(args, Path(args.file), job.limits):
        await warn_if_no_worker(client, sys.stderr)
        return await start_sharded(client, sharded_input(args, job), args.id)
    return await start_job(client, job, args.id)


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
        f"took:     {result.finished_at - result.started_at}",
        f"web ui:   {link}",
    ]
    return "\n".join(lines)


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


async def cmd_run(args: argparse.Namespace, client: Client) -> int:
    handle = await start_any(client, args)
    link = web_ui_link(client, handle.id)
    print(f"started {handle.id}\nweb ui:  {link}", file=sys.stderr)
    follower = asyncio.create_task(follow(handle, sys.stderr, args.refresh_seconds))
    try:
        result = await result_through_outages(handle, args.refresh_seconds)
    except WorkflowFailureError as exc:
        print(f"job {handle.id} failed: {failure_text(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        follower.cancel()
        with suppress(asyncio.CancelledError, TemporalError):
            await follower
    print(summarise(result, link))
    return exit_code(result)


async def cmd_start(args: argparse.Namespace, client: Client) -> int:
    handle = await start_any(client, args)
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
    except TemporalError as exc:
        # Not a batch job (another workflow type), or one whose task is failing.
        print(f"progress: not available ({exc})")
        return EXIT_OK
    print(f"progress: {render_progress(progress, trouble)}")
    if progress.reason:
        print(f"reason:   {progress.reason}")
    print(f"web ui:   {web_ui_link(client, handle.id)}")
    return EXIT_OK


async def cmd_result(args: argparse.Namespace, client: Client) -> int:
    described = await client.get_workflow_handle(args.workflow_id).describe()
    result_type: type[BatchJobResult | ShardedJobResult] = (
        ShardedJobResult if described.workflow_type == SHARDED_JOB_WORKFLOW_NAME else BatchJobResult
    )
    handle = client.get_workflow_handle(args.workflow_id, result_type=result_type)
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


async def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    handle = client.get_workflow_handle(args.workflow_id)
    await handle.cancel()
    print(
        f"cancel requested for {handle.id}: its batches are cancelled at the gateway and "
        f"finished results are still collected (python starter.py result {handle.id})"
    )
    return EXIT_OK


async def cmd_list(args: argparse.Namespace, client: Client) -> int:
    query = f"WorkflowType = '{WORKFLOW_NAME}' OR WorkflowType = '{SHARDED_JOB_WORKFLOW_NAME}'"
    rows = 0
    async for execution in client.list_workflows(query, limit=args.limit):
        attrs = execution.search_attributes
        batch_status = (attrs.get(SEARCH_ATTRIBUTE_BATCH_STATUS) or ["-"])[0]
        batch_id = (attrs.get(SEARCH_ATTRIBUTE_BATCH_ID) or ["-"])[0]
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
