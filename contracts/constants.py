"""Environment variable names and defaults; names on the wire are in contracts.names."""

from __future__ import annotations

# Worker environment (besides gateway.settings and temporalio.envconfig's TEMPORAL_*).
ENV_TASK_QUEUE = "TEMPORAL_TASK_QUEUE"
ENV_METRICS_PORT = "WORKER_METRICS_PORT"
ENV_CODEC_KEY = "BATCH_CODEC_KEY"
ENV_CODEC_OLD_KEYS = "BATCH_CODEC_OLD_KEYS"
ENV_MAX_CONCURRENT_ACTIVITIES = "WORKER_MAX_CONCURRENT_ACTIVITIES"

DEFAULT_WEB_UI = "http://localhost:8233"
ENV_WEB_UI = "TEMPORAL_WEB_UI"

# Root of the claim-check store: input and result locations in workflow inputs
# are relative to it, on the starter's machine and on every worker's.
ENV_DATA_DIR = "BATCH_DATA_DIR"
# Worker: the locations jobs may read and write (comma-separated prefixes of
# s3://, az://, gs:// and folders under the data directory; * for all). Unset:
# the data directory alone.
ENV_ALLOWED_LOCATIONS = "BATCH_ALLOWED_LOCATIONS"
# Worker: "true" lets jobs attach to batches that are not theirs (neither tagged
# with their job key nor running a file uploaded from their input).
ENV_ATTACH_ANY_BATCH = "BATCH_ATTACH_ANY_BATCH"

# Object-store folder (s3://bucket/prefix, az://container/prefix, gs://...) the
# starter copies local inputs to, and brings results back from: no shared disk.
ENV_BATCH_STORE = "BATCH_STORE"

# While `make up` runs, it writes this file (under the repository root): its pid,
# Temporal address and the poll interval its gateway emulator allows. The starter
# reads it for --poll-seconds' default, so a first run there finishes with its batch.
LOCAL_STACK_FILE = ".local/stack.json"

# The webhook receiver (python -m webhooks) and the worker's watch when events arrive.
ENV_WEBHOOK_HOST = "WEBHOOK_HOST"
ENV_WEBHOOK_PORT = "WEBHOOK_PORT"
ENV_WEBHOOK_SECRET = "WEBHOOK_SECRET"
"""One whsec_ secret, or several comma-separated while one is rotated."""
ENV_WEBHOOK_FALLBACK_POLL = "WEBHOOK_FALLBACK_POLL_SECONDS"
"""Set on workers whose gateway sends batch events: a watch then reads its batch this rarely."""
