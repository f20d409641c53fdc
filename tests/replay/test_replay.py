"""New workflow code must replay every committed history: a failure here means
a deploy would break running jobs (version the change with workflow.patched)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Interceptor, Replayer

from tests.workflows.hold_child_starts import HoldChildStartsUntilCancel
from workflows.batch_job import BatchJobWorkflow
from workflows.fan_out import BatchFanOutWorkflow
from workflows.sharded_job import ShardedBatchJobWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
INTERCEPTED: dict[str, list[Interceptor]] = {
    # Recorded with child starts held open until the cancel arrived: replayed the same way.
    "sharded_cancel_raced_start": [HoldChildStartsUntilCancel()],
}


def test_there_are_histories_to_replay():
    names = {path.stem for path in HISTORIES}
    assert {"succeeded_24h", "cancelled", "deadline_exceeded", "fan_out", "sharded"} <= names
    # Paths behind workflow.patched, recorded with the patch's marker.
    assert {"file_pending", "cancelled_during_create"} <= names
    assert {"attached", "create_outcome_unknown", "cancelled_during_create_lookup"} <= names
    # Jobs on the watch (patch watch-batch-in-one-activity), besides those from before it.
    assert {
        "watch_succeeded_24h",
        "watch_cancelled",
        "watch_stuck_cancelled_after_outage",
        "watch_moved_on_after_outage",
        "watch_collect_after_outage",
        "watch_gateway_gave_up",
        "watch_failed_mid_run",
        "watch_cancel_without_route",
    } <= names
    assert {"upload_ready"} <= names
    # Quota refusals waited out, or failed fast as a shard; a cancel while attaching
    # (patch cancel-during-attach-v1).
    assert {"quota_waited", "quota_refused_shard", "cancelled_while_attaching"} <= names
    # The job's last step (patch clean-up-v1) on each way it ends.
    assert {
        "clean_up_succeeded",
        "clean_up_kept",
        "clean_up_rejected",
        "clean_up_cancelled_during_create",
        "clean_up_failing",
    } <= names
    assert {"validate_and_upload", "watch_settles_before_reporting"} <= names
    # A sharded job with its shard files in an object store (patch shards-in-store-v1).
    assert {"sharded_in_store"} <= names
    # The collect deletes the gateway files, no clean-up step after it (collect-cleans-up-v1).
    assert {
        "collect_cleans_up",
        "collect_cleans_up_kept",
        "collect_cleans_up_older_worker",
        "collect_cleans_up_deadline",
        "collect_cleans_up_cancelled_during_collect",
    } <= names
    # Validate, upload and create in one step (submit-v1), and its ways back to the steps.
    assert {
        "submitted",
        "submitted_file_pending",
        "submitted_quota_waited",
        "submitted_quota_refused_shard",
        "submitted_create_refused",
        "submitted_cancelled_during_create",
    } <= names
    # Every path of the sharded parent: continue-as-new (the run that continues, and the
    # one that starts from what it carried), cancel, quota wait, token counting, and a
    # step failing while shards run (shards-outlive-parent-failure-v1); "sharded" holds
    # a resubmission round.
    assert {
        "sharded_continued_as_new",
        "sharded_carried_over",
        "sharded_cancelled",
        "sharded_quota_waited",
        "sharded_tokens_counted",
        "sharded_failed_after_shards_finished",
        "sharded_cancel_raced_start",
    } <= names
    # A batch the gateway did not cancel, waited for and collected (wait-out-uncancelled-v1).
    assert {"waited_out_without_cancel_route", "waited_out_cancelling"} <= names
    # A gateway refusing the key past the patience, late and bounded quota waits.
    assert {
        "gateway_refused_past_patience",
        "late_quota_refusal_waited",
        "late_quota_refusal_shard",
        "quota_never_fits",
        "quota_wait_exceeded",
    } <= names


def load_history(path: Path) -> WorkflowHistory:
    record = json.loads(path.read_text())
    return WorkflowHistory.from_json(record["workflow_id"], json.dumps(record["history"]))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_deterministically(path: Path):
    history = load_history(path)
    replayer = Replayer(
        workflows=[BatchJobWorkflow, BatchFanOutWorkflow, ShardedBatchJobWorkflow],
        data_converter=pydantic_data_converter,
        interceptors=INTERCEPTED.get(path.stem, []),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.stem}: {result.replay_failure}"
