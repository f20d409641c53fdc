"""The rule for what a job deletes at the gateway when it ends (workflows/leftovers.py)."""

from __future__ import annotations

from contracts.steps import BatchSnapshot
from workflows.leftovers import gateway_files


def batch(status: str) -> BatchSnapshot:
    return BatchSnapshot(
        id="batch_1", status=status, input_file_id="file-in", output_file_id="file-out"
    )


def test_an_ended_batch_made_by_the_job_has_its_files_deleted() -> None:
    assert gateway_files(batch("completed"), uploaded="file-in", attached=False, keep=False) == (
        ["file-in", "file-out"],
        {},
    )


def test_no_batch_and_no_refusal_deletes_nothing() -> None:
    """A create whose outcome is unknown may have made a batch that runs on the upload."""
    assert gateway_files(None, uploaded="file-in", attached=False, keep=False) == ([], {})


def test_a_create_refused_for_quota_deletes_the_upload_no_batch_uses() -> None:
    assert gateway_files(None, uploaded="file-in", attached=False, keep=False, refused=True) == (
        ["file-in"],
        {},
    )


def test_a_refused_upload_kept_on_request_is_named_as_left() -> None:
    delete, left = gateway_files(None, uploaded="file-in", attached=False, keep=True, refused=True)
    assert delete == []
    assert left == {"file-in": "kept on request (keep_gateway_files)"}


def test_a_refusal_before_any_upload_deletes_nothing() -> None:
    assert gateway_files(None, uploaded=None, attached=False, keep=False, refused=True) == ([], {})
