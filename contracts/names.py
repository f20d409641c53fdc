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

# Signals.
SIGNAL_BATCH_EVENT = "batch_event"
"""A batch's end as the provider pushed it (webhooks/): the job reads its batch at once."""

# Activity types (the method names of activities.batch_activities.BatchActivities).
ACTIVITY_VALIDATE_INPUT = "validate_input"
ACTIVITY_UPLOAD_INPUT = "upload_input"
ACTIVITY_CREATE_BATCH = "create_batch"
ACTIVITY_AWAIT_STATUS_CHANGE = "await_status_change"
"""Kept for jobs started before watch_batch (their histories poll by retries)."""
ACTIVITY_WATCH_BATCH = "watch_batch"
ACTIVITY_COLLECT_RESULTS = "collect_results"
ACTIVITY_CANCEL_BATCH = "cancel_batch"
ACTIVITY_AWAIT_FILE_PROCESSED = "await_file_processed"
ACTIVITY_ATTACH_BATCH = "attach_batch"
ACTIVITY_CLEAN_UP = "clean_up"
ACTIVITY_VALIDATE_AND_UPLOAD = "validate_and_upload"
"""validate_input then upload_input as one step (patch validate-and-upload-v1)."""
ACTIVITY_SUBMIT_BATCH = "submit_batch"
"""validate_and_upload then create_batch as one step (patch submit-v1)."""

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
FAILURE_STORAGE_UNAVAILABLE = "StorageUnavailable"
"""Retryable: the object store did not answer or answered 5xx."""
FAILURE_BATCH_FAILED = "BatchFailed"
FAILURE_FILE_NOT_PROCESSED = "FileNotProcessed"
"""Benign: the gateway still processes the uploaded file; retried after the poll interval."""
FAILURE_INPUT_FILE_UNUSABLE = "InputFileUnusable"
"""Non-retryable: the gateway failed to process the input file (or it was deleted)."""
FAILURE_CREATE_OUTCOME_UNKNOWN = "CreateOutcomeUnknown"
"""Non-retryable: a create may have made a batch the gateway cannot list; not repeated."""
FAILURE_BATCH_NOT_FOR_INPUT = "BatchNotForInput"
"""Non-retryable: the batch to attach to does not run this job's input."""
FAILURE_INVALID_JOB = "InvalidJob"
"""Non-retryable: the workflow input does not validate (a field is named)."""
FAILURE_QUOTA_REFUSED = "QuotaRefused"
"""Non-retryable for the step: the gateway refused the batch for its enqueued-token quota
(nothing runs); the workflow waits and creates again, or, as a shard, fails for its parent."""

FAILURE_QUOTA_NEVER_FITS = "QuotaNeverFits"
"""Non-retryable: the enqueued-token limit the gateway states is below the job's own estimate
(of one request, or of the whole batch): no wait lets it run."""
FAILURE_QUOTA_WAIT_EXCEEDED = "QuotaWaitExceeded"
"""Non-retryable: the gateway kept refusing the batch for its quota for longer than the job's
quota_retry.max_wait; nothing runs."""
FAILURE_GATEWAY_REFUSES = "GatewayRefuses"
"""Non-retryable: the gateway refused to read the batch (401/403/404) for longer than the
worker's patience; the job gives up without cancelling a batch it cannot read."""

# workflow.patched ids: recorded in running jobs' histories, so never reused or renamed.
PATCH_FILE_PROCESSED = "file-processed-v1"
PATCH_CANCEL_AFTER_CREATE = "cancel-after-create-v1"
PATCH_UPLOAD_READY = "upload-ready-v1"
PATCH_CANCEL_DURING_ATTACH = "cancel-during-attach-v1"
PATCH_CLEAN_UP = "clean-up-v1"
"""A job's last step removes its input index and deletes its files at the gateway."""
PATCH_VALIDATE_AND_UPLOAD = "validate-and-upload-v1"
PATCH_SHARDS_IN_STORE = "shards-in-store-v1"
"""A sharded job with results in an object store keeps its shard files there, not on the
data directory, and removes them after the merge."""
PATCH_EXACT_SHARD_CANCEL = "exact-shard-cancel-v1"
"""A sharded job's cancel that lands while a child's start is unconfirmed waits for the
start and cancels the child, which cancels its batch; the shard counts what it did."""
PATCH_SHARDS_OUTLIVE_PARENT_FAILURE = "shards-outlive-parent-failure-v1"
"""A sharded job whose own step fails for good lets its shards in flight finish (each
collects its batch) before it fails naming them, instead of cancelling them."""
PATCH_COLLECT_CLEANS_UP = "collect-cleans-up-v1"
"""The collect step deletes the job's gateway files once the results are published (no
clean-up step after it); a job on it runs validate-and-upload-v1's code, and asks only this."""
PATCH_SUBMIT = "submit-v1"
"""A new job validates, uploads and creates its batch in one step (submit_batch); a job on
it runs collect-cleans-up-v1's code, and asks only this."""
PATCH_WAIT_OUT_UNCANCELLED = "wait-out-uncancelled-v1"
"""A batch the gateway did not cancel (no cancel route, or still cancelling past its
deadline) is waited for to its end and collected, never left running uncollected."""
PATCH_LATE_QUOTA_REFUSAL = "late-quota-refusal-v1"
"""A batch the gateway failed for its enqueued-token quota after answering the create
(OpenAI's refusal) is waited out and created again on the same upload, as a create refused
at once is; a shard fails with QuotaRefused for its parent."""
PATCH_QUOTA_BOUNDS = "quota-bounds-v1"
"""A quota wait ends: at once when the limit the refusal states is below the job's estimate,
else once it has lasted quota_retry.max_wait."""
PATCH_REFUSED_NOT_CANCELLED = "refused-not-cancelled-v1"
"""A wait the gateway refused to read for longer than the worker's patience ends the job
without a cancel (it could not be sent either), naming the batch and how to attach to it."""
PATCH_BATCH_EVENTS = "batch-events-v1"
"""A batch event (signal) cuts the in-flight watch short and a fresh watch reads the batch
at once; asked only when such an event arrives, so a job without events records nothing."""

# Metadata key that tags a batch with the job that created it, so a retried
# create adopts the batch instead of paying for a second one.
JOB_KEY_METADATA = "temporal_job_key"

# The sharded job (workflows/sharded_job.py): one job of any size, one child
# BatchJobWorkflow per shard, each named "<parent id>-shard-<round>-<n>".
SHARDED_JOB_WORKFLOW_NAME = "ShardedBatchJobWorkflow"
QUERY_SHARDS = "shards"
ACTIVITY_SPLIT_INPUT = "split_input"
ACTIVITY_SHARD_TOKENS = "shard_tokens"
ACTIVITY_SELECT_RESUBMISSIONS = "select_resubmissions"
ACTIVITY_MERGE_SHARDS = "merge_shards"
ACTIVITY_REMOVE_SHARD_FILES = "remove_shard_files"
QUOTA_REFUSAL_CODE = "token_limit_exceeded"
"""The error code of a batch the gateway refused for its enqueued-token quota."""
