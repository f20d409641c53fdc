"""What the starter's progress line shows a person."""

from __future__ import annotations

from contracts.job import BatchCounts, JobPhase, JobProgress
from starter import render_progress


def test_before_the_batch_exists_only_the_phase_is_shown():
    line = render_progress(JobProgress(phase=JobPhase.UPLOADING), None)
    assert line.endswith("] uploading")


def test_counts_fill_the_bar():
    progress = JobProgress(
        phase=JobPhase.WAITING,
        batch_status="in_progress",
        counts=BatchCounts(total=10, completed=4, failed=1),
    )
    line = render_progress(progress, None, width=10)
    assert line == "[#####-----] 5/10 finished, 1 failed · in_progress"


def test_a_failing_step_is_named():
    line = render_progress(
        JobProgress(phase=JobPhase.UPLOADING),
        "upload_input attempt 3: no answer from the gateway at http://x; is GATEWAY_URL right",
    )
    assert "retrying upload_input attempt 3" in line and "GATEWAY_URL" in line
