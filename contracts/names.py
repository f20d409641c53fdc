"""Names that cross a process boundary, defined once.

Workers, starters, other SDKs, the Web UI and the benchmarks all meet on these
strings: a workflow type, a query, an activity type read from pending
activities, a search attribute, an ApplicationError type. Changing one is a
wire change (running workflows and their histories carry the old spelling).
Kept free of imports so the workflow sandbox can pass this module through.
"""

from __future__ import annotations

TASK_QUEUE = "llm-batches"

# Workflow types.
WORKFLOW_NAME = "BatchJobWorkflow"
SHARDED_WORKFLOW_NAME = "BatchFanOutWorkflow"

# Queries.
QUERY_PROGRESS = "progress"

# Activity types (the method names of activities.batch_activities.BatchActivities).
ACTIVITY_VALIDATE_INPUT = "validate_input"
ACTIVITY_UPLOAD_INPUT = "upload_input"
ACTIVITY_CREATE_BATCH = "create_batch"
ACTIVITY_AWAIT_STATUS_CHANGE = "await_status_change"
"""Kept for jobs started before watch_batch (their histories poll by retries)."""
ACTIVITY_WATCH_BATCH = "watch_batch"
ACTIVITY_COLLECT_RESULTS = "collect_results"
ACTIVITY_CANCEL_BATCH = "cancel_batch"

# Search attributes the dev server registers at start and the workflow upserts;
# an unregistered one would hang the workflow task.
SEARCH_ATTRIBUTE_BATCH_STATUS = "BatchStatus"
SEARCH_ATTRIBUTE_BATCH_ID = "BatchId"
SEARCH_ATTRIBUTES = {
    SEARCH_ATTRIBUTE_BATCH_STATUS: "Keyword",
    SEARCH_ATTRIBUTE_BATCH_ID: "Keyword",
}

# ApplicationError types the workflow, starter and callers act on.
FAILURE_BATCH_NOT_CHANGED = "BatchNotChanged"
"""Benign: the poll saw no change; Temporal retries it after the poll interval."""
FAILURE_INVALID_INPUT = "InvalidInput"
FAILURE_INVALID_LOCATION = "InvalidLocation"
FAILURE_RESULT_INTEGRITY = "ResultIntegrity"
FAILURE_PERMISSION_DENIED = "PermissionDenied"
FAILURE_INPUT_CHANGED = "InputChanged"
FAILURE_BATCH_FAILED = "BatchFailed"

# Metadata key that tags a batch with the job that created it, so a retried
# create adopts the batch instead of paying for a second one.
JOB_KEY_METADATA = "temporal_job_key"
