"""How long each activity step of BatchJobWorkflow may take, and how it is retried.

No step has a schedule-to-close or schedule-to-start timeout: those run while
no worker runs, and a job must survive workers away for days. A step is
bounded per attempt (start-to-close, and the job's heartbeat timeout) and
retried with backoff for as long as it takes; non-retryable errors still fail
at once. How long a batch may take is judged by the workflow, from the
gateway's own timestamps (see BatchJobWorkflow._watch).

Every value here is part of the commands the workflow issues: a change in the
kind of command a running job issues is versioned with workflow.patched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

# Gateway calls: retried with backoff, without limit; configuration errors are
# non-retryable and fail at once.
GATEWAY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)
# Validation reads a local file: bad input is non-retryable and fails at once;
# what is left to retry is a worker that died mid-read, however often that happens.
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


@dataclass(frozen=True)
class StepOptions:
    """Timeouts and retries of one step; its heartbeat timeout is the job's own."""

    start_to_close: timedelta
    retry: RetryPolicy
    schedule_to_close: timedelta | None = None
    cancellation: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL
    # None: the job's own heartbeat timeout.
    heartbeat_timeout: timedelta | None = None


VALIDATE = StepOptions(
    start_to_close=timedelta(minutes=30),
    retry=LOCAL_RETRY,
)
UPLOAD = StepOptions(
    start_to_close=timedelta(hours=1),
    retry=GATEWAY_RETRY,
)
# Validation, then the upload, in one step: bounded as both together, retried as an upload
# (bad input is non-retryable, so the gateway's backoff only meets what is worth retrying).
VALIDATE_AND_UPLOAD = StepOptions(
    start_to_close=VALIDATE.start_to_close + UPLOAD.start_to_close,
    retry=GATEWAY_RETRY,
)
CREATE = StepOptions(
    start_to_close=timedelta(minutes=5),
    retry=GATEWAY_RETRY,
    # A cancelled create is waited for, so the look-up after it sees any batch
    # its POST made before the cancel reached it.
    cancellation=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
)
# Validation, the upload and the create in one step: bounded as all three together,
# waited for when cancelled as a create is (its POST may be out).
SUBMIT = replace(
    CREATE,
    start_to_close=VALIDATE_AND_UPLOAD.start_to_close + CREATE.start_to_close,
)
# Reads one batch: a batch id that does not exist is final, the rest is retried.
ATTACH = StepOptions(start_to_close=timedelta(minutes=5), retry=GATEWAY_RETRY)
COLLECT = StepOptions(
    start_to_close=timedelta(hours=1),
    retry=GATEWAY_RETRY,
)
CANCEL = StepOptions(
    start_to_close=timedelta(minutes=2),
    retry=GATEWAY_RETRY,
)


# How often a watch returns even with nothing to report, so that one attempt is
# bounded (start-to-close) whatever the phase deadlines are.
WATCH_REFRESH = timedelta(hours=6)
WATCH = StepOptions(
    # Past its return time, a watch still waits for one read that works.
    start_to_close=WATCH_REFRESH + timedelta(hours=1),
    retry=GATEWAY_RETRY,
)
# A watch beats after each read; its heartbeat timeout spans this many polls.
WATCH_POLLS_PER_HEARTBEAT_TIMEOUT = 3


def watch(heartbeat_timeout: timedelta, poll: timedelta) -> StepOptions:
    """The watch beats once a poll, not once a third of the job's heartbeat timeout.

    At 10,000 waiting jobs a 60 s heartbeat timeout meant 500 heartbeats a second,
    which stalled the dev server (docs/benchmarks.md); one beat per read is what
    the Web UI needs. A watch whose worker died is then taken over after at most
    three polls (or the job's heartbeat timeout, if that is longer).
    """
    return replace(
        WATCH, heartbeat_timeout=max(heartbeat_timeout, WATCH_POLLS_PER_HEARTBEAT_TIMEOUT * poll)
    )


def await_change(poll: timedelta, deadline: timedelta | None) -> StepOptions:
    """Jobs started before watch_batch: Temporal retries one poll until the deadline.

    The deadline of the batch's phase is the step's schedule-to-close timeout,
    so a wait of any length costs a handful of history events; None: no deadline
    (a batch the gateway would not cancel, waited for until it ends).
    """
    return StepOptions(
        start_to_close=timedelta(minutes=5),
        schedule_to_close=deadline,
        retry=RetryPolicy(initial_interval=poll, backoff_coefficient=1.0, maximum_interval=poll),
    )


def file_processed(poll: timedelta) -> StepOptions:
    """Wait until the gateway has processed an upload: a look every poll, for as long as it takes.

    No schedule-to-close: a job whose workers were away for days resumes here
    instead of failing; a file the gateway failed to process fails the step at once.
    """
    return StepOptions(
        start_to_close=timedelta(minutes=5),
        schedule_to_close=None,
        retry=RetryPolicy(initial_interval=poll, backoff_coefficient=1.0, maximum_interval=poll),
    )


# Best effort at the end of a job: a few tries, then the workflow reports what is left.
CLEAN_UP = StepOptions(
    start_to_close=timedelta(minutes=5),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=1),
        maximum_attempts=5,
    ),
)
