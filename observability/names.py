"""Names of our own metrics: recorded through the SDK's meter, so they share its endpoint.

Kept free of imports so the workflow sandbox can pass this module through.
"""

from __future__ import annotations

# Workflow side (workflow.metric_meter(): nothing is recorded while replaying).
METRIC_JOBS = "llm_batch_jobs_total"
"""Counter, label status: succeeded, completed_with_failures, expired, cancelled,
deadline_exceeded, failed (the workflow failed, e.g. invalid input or a batch the
gateway rejected)."""
METRIC_REQUESTS = "llm_batch_requests_total"
"""Counter, label outcome: succeeded, failed, not_run; added when a job ends."""
METRIC_BATCH_WAIT = "llm_batch_wait_seconds"
"""Histogram, label batch_status: from batch created to terminal, as the job saw it."""
METRIC_TOKENS = "llm_batch_tokens_total"
"""Counter, labels model and direction (input, output): from the responses' usage, added when a
sharded job ends."""
METRIC_JOB_COST = "llm_batch_job_cost"
"""Histogram, label currency: a sharded job's cost at batch prices (shards/prices.json), recorded
when it ends; its _sum is the spend."""

# Activity side (activity.metric_meter()).
METRIC_BYTES_UPLOADED = "llm_batch_bytes_uploaded_total"
"""Counter: input bytes sent to the gateway (an adopted earlier upload counts nothing)."""
METRIC_BYTES_DOWNLOADED = "llm_batch_bytes_downloaded_total"
"""Counter: bytes of output and error files downloaded from the gateway."""

# Seconds: a batch waits from seconds (the emulator) to a day and more (OpenAI, Azure).
BATCH_WAIT_BUCKETS = (
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
    129600.0,
)
