"""Which workflow a job runs as, so that running the same command twice starts one job.

The default workflow id is derived from where the job writes its results (the
task queue and the results location), not from its input. Temporal keeps at
most one running workflow per id, so that id is also the lock on the results
file: two jobs started by the starter can never write the same file at once,
with no check-then-start race and no dependence on (eventually consistent)
visibility. What the job is, its input's content, endpoint and batch, is kept
in the workflow's memo. Starting with WorkflowIDConflictPolicy.USE_EXISTING
then hands back the running job when there is one: the same job is followed,
another one is refused with a line naming it. Once the job has closed, the id
is free again (ALLOW_DUPLICATE), and a new run starts. A sharded job (the
parent of many batches) takes the same id and the same policies: one job per
results location, however many batches it runs.

An explicit --id names the job instead; the memo still tells the same job from
another, but the results lock is then the caller's to keep.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from cli import hints
from cli.exits import UsageError
from contracts.job import BatchJobInput, BatchJobResult
from contracts.names import SHARDED_JOB_WORKFLOW_NAME, WORKFLOW_NAME
from contracts.sharding import ShardedJobInput, ShardedJobResult

MEMO_KEY = "batch_job"
ID_CONFLICT_POLICY = WorkflowIDConflictPolicy.USE_EXISTING
"""A start while the job runs returns the running job instead of failing or starting another."""
ID_REUSE_POLICY = WorkflowIDReusePolicy.ALLOW_DUPLICATE
"""A start after the job closed (in any way) starts a new run under the same id."""
_CHUNK = 1024 * 1024
_ID_HASH_CHARS = 12


class JobIdentity(BaseModel):
    """What the job is, kept in its memo: two starts of the same identity are one job."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    input_path: str
    input_sha256: str
    endpoint: str
    output_path: str = ""
    batch_id: str | None = None
    sharding: str | None = None
    """The sharding options a sharded job runs with (JSON), None for one batch."""

    def differs_from(self, other: JobIdentity) -> str | None:
        """How other is another job than this one, in words; None when it is this job."""
        if other.output_path != self.output_path:
            return f"it writes {other.output_path or 'results set by another starter'}"
        if other.batch_id != self.batch_id:
            running = f"batch {other.batch_id}" if other.batch_id else "a batch of its own"
            return f"it runs {running}"
        if other.endpoint != self.endpoint:
            return f"it runs endpoint {other.endpoint}"
        if other.sharding != self.sharding:
            return f"it runs {_how_sharded(other.sharding)}, not {_how_sharded(self.sharding)}"
        if other.input_sha256 != self.input_sha256:
            same_path = other.input_path == self.input_path
            what = "an earlier version of" if same_path else f"{other.input_path}, not"
            return f"it runs {what} {self.input_path} (sha256 {other.input_sha256[:12]}…)"
        return None


def _how_sharded(sharding: str | None) -> str:
    if sharding is None:
        return "as one batch"
    return "sharded (default options)" if sharding == "{}" else f"sharded with {sharding}"


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB chunks: inputs run to 200 MB."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def identity_of(
    job: BatchJobInput,
    source: Path | None,
    results: str | None = None,
    input_name: str | None = None,
    sharded: ShardedJobInput | None = None,
) -> JobIdentity:
    """The job's identity; source is its input on this machine (None: a URI, not read here),
    results and input_name what the user named (default: the job's own locations), sharded
    the parent's input when the job runs as many batches."""
    return JobIdentity(
        input_path=input_name or job.input_path,
        input_sha256="" if source is None else file_sha256(source),
        endpoint=job.endpoint,
        output_path=results or job.resolved_output_path,
        batch_id=job.batch_id,
        sharding=None
        if sharded is None
        else sharded.sharding.model_dump_json(exclude_defaults=True),
    )


def default_workflow_id(results: str, task_queue: str, kind: str = "batch") -> str:
    """<kind>-<results name>-<hash of task queue and results location>: stable across runs.

    attach's jobs are kind "attach": a failed attach never takes run's id, nor its place in list.
    """
    digest = hashlib.sha256(f"{task_queue}\n{results}".encode()).hexdigest()[:_ID_HASH_CHARS]
    name = Path(results).name
    for suffix in (".jsonl", ".output"):
        name = name.removesuffix(suffix)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "job"
    return f"{kind}-{name}-{digest}"


@dataclass(frozen=True)
class StartedJob:
    """A job the starter started (started=True), or the same job already running."""

    handle: WorkflowHandle[Any, Any]
    started: bool

    @property
    def id(self) -> str:
        return self.handle.id


def started_a_new_run(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the start made a new run, or USE_EXISTING returned the running one.

    The server says so in StartWorkflowExecutionResponse.started; the SDK keeps
    the response on the handle it returns.
    """
    response = getattr(handle, "_start_workflow_response", None)
    return bool(getattr(response, "started", True))


async def start_or_use_existing(
    client: Client,
    job: BatchJobInput | ShardedJobInput,
    identity: JobIdentity,
    *,
    workflow_id: str,
    task_queue: str,
    explicit_id: bool = False,
    summary: tuple[str, str] | None = None,
) -> StartedJob:
    """Start the job, or return the same job already running; refuse another job's id.

    job is a one-batch job's input, or a sharded job's (its parent workflow).
    summary is the workflow's static summary and details (cli/job_summary.py).
    """
    sharded = isinstance(job, ShardedJobInput)
    handle: WorkflowHandle[Any, BatchJobResult | ShardedJobResult] = await client.start_workflow(
        SHARDED_JOB_WORKFLOW_NAME if sharded else WORKFLOW_NAME,
        job,
        id=workflow_id,
        task_queue=task_queue,
        result_type=ShardedJobResult if sharded else BatchJobResult,
        id_conflict_policy=ID_CONFLICT_POLICY,
        id_reuse_policy=ID_REUSE_POLICY,
        memo={MEMO_KEY: identity},
        static_summary=summary[0] if summary else None,
        static_details=summary[1] if summary else None,
    )
    if started_a_new_run(handle):
        return StartedJob(handle, started=True)
    description = await handle.describe()
    try:
        running = await description.memo_value(MEMO_KEY, type_hint=JobIdentity)
    except KeyError:
        why: str | None = "it was not started by this starter (no job memo)"
    else:
        why = identity.differs_from(running)
    if why is None:
        return StartedJob(handle, started=False)
    if explicit_id:
        raise UsageError(
            f"workflow {workflow_id} is already running, but {why}; wait for it to end, "
            f"cancel it ({hints.starter('cancel', workflow_id)}), or give this job another --id"
        )
    raise UsageError(
        f"workflow {workflow_id} is already running and writes {identity.output_path}, "
        f"but {why}; wait for it to end, cancel it ({hints.starter('cancel', workflow_id)}), "
        "or give this job its own --output"
    )


BATCH_ID_SHAPE = re.compile(
    r"batch_[A-Za-z0-9_-]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.IGNORECASE,
)
"""Gateway batch ids (OpenAI's and the emulator's batch_<hex>, Azure's batch_<uuid> or a bare
uuid); the starter's own workflow ids are batch-<name>-<hash>, with a hyphen."""


def not_found(workflow_id: str) -> str:
    """One line for an id Temporal does not know: which kind of id it looks like, where to look."""
    listing = hints.starter("list")
    if BATCH_ID_SHAPE.fullmatch(workflow_id):
        return (
            f"{workflow_id} looks like a gateway batch id, not a workflow id; {listing} shows "
            "each job's workflow id beside its batch id"
        )
    return f"no job with workflow id {workflow_id}; {listing} shows the jobs and their ids"
