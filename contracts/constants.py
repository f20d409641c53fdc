"""Names with a meaning, kept in one place."""

from __future__ import annotations

TASK_QUEUE = "llm-batches"
WORKFLOW_NAME = "BatchJobWorkflow"
SHARDED_WORKFLOW_NAME = "BatchFanOutWorkflow"

# Search attributes the dev server registers at start (scripts/stack.py) and the
# workflow upserts; an unregistered one would hang the workflow task.
SEARCH_ATTRIBUTE_BATCH_STATUS = "BatchStatus"
SEARCH_ATTRIBUTE_BATCH_ID = "BatchId"
SEARCH_ATTRIBUTES = {
    SEARCH_ATTRIBUTE_BATCH_STATUS: "Keyword",
    SEARCH_ATTRIBUTE_BATCH_ID: "Keyword",
}

# Worker environment (besides gateway.settings and temporalio.envconfig's TEMPORAL_*).
ENV_TASK_QUEUE = "TEMPORAL_TASK_QUEUE"
ENV_METRICS_PORT = "WORKER_METRICS_PORT"
ENV_CODEC_KEY = "BATCH_CODEC_KEY"
ENV_MAX_CONCURRENT_ACTIVITIES = "WORKER_MAX_CONCURRENT_ACTIVITIES"

DEFAULT_WEB_UI = "http://localhost:8233"
ENV_WEB_UI = "TEMPORAL_WEB_UI"

# Metadata key that tags a batch with the job that created it, so a retried
# create adopts the batch instead of paying for a second one.
JOB_KEY_METADATA = "temporal_job_key"

# Root of the claim-check store: input and result locations in workflow inputs
# are relative to it, on the starter's machine and on every worker's.
ENV_DATA_DIR = "BATCH_DATA_DIR"
