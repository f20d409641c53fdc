"""What the starter's progress line shows a person."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from cli.progress import (
    ProgressLine,
    render_finished,
    render_progress,
    render_waiting,
    step_running,
)
from contracts.job import (
    BatchCounts,
    BatchJobResult,
    JobPhase,
    JobProgress,
    JobStatus,
    RequestTally,
)
from contracts.steps import InputSummary, SubmittedBatch, UploadedInput, ValidatedUpload


def test_before_the_batch_exists_only_the_phase_is_shown():
    line = render_progress(JobProgress(phase=JobPhase.UPLOADING), None)
    assert line.endswith("] uploading")


def test_before_any_heartbeat_the_submit_step_shows_every_part_it_runs():
    progress = JobProgress(
        phase=JobPhase.UPLOADING,
        reason="validating the input, uploading it, then creating the batch",
    )
    line = render_progress(progress, None, width=3)
    assert line == "[---] validating the input, uploading it, then creating the batch"


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


def test_while_waiting_the_last_progress_stays_on_screen():
    seen = JobProgress(
        phase=JobPhase.WAITING,
        batch_status="in_progress",
        counts=BatchCounts(total=10, completed=4, failed=1),
    )
    line = render_waiting(seen, "waiting for a worker", width=10)
    assert line == "[#####-----] 5/10 finished, 1 failed · in_progress · waiting for a worker"


def test_waiting_before_any_progress_shows_an_empty_bar():
    assert render_waiting(None, "waiting for Temporal: down", width=4) == (
        "[----] · waiting for Temporal: down"
    )


class Screen(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_off_a_terminal_each_change_is_one_line_and_repeats_are_dropped():
    out = Screen(tty=False)
    line = ProgressLine(out)
    for text in ("a", "a", "b", "b", "a"):
        line.show(text)
    line.close()
    assert out.getvalue() == "a\nb\na\n"


def test_on_a_terminal_the_line_is_rewritten_in_place_and_ended_once():
    out = Screen(tty=True)
    line = ProgressLine(out)
    line.show("a")
    line.show("b")
    line.close()
    assert out.getvalue() == "\r\033[Ka\r\033[Kb\n"


SUMMARY = InputSummary(requests=5, bytes=100, model="m", sha256="0" * 64)
UPLOADED = UploadedInput(file_id="file-1", bytes=100, adopted=False, ready=True)


@pytest.mark.parametrize(
    ("heartbeat", "shown"),
    [
        (None, None),  # no beat yet: the workflow's own words are shown
        (SubmittedBatch(), JobPhase.VALIDATING_INPUT),
        (SubmittedBatch(summary=SUMMARY), JobPhase.UPLOADING),
        (SubmittedBatch(summary=SUMMARY, uploaded=UPLOADED), JobPhase.CREATING_BATCH),
        (ValidatedUpload(summary=SUMMARY), JobPhase.UPLOADING),
        (ValidatedUpload(summary=SUMMARY, uploaded=UPLOADED), JobPhase.UPLOADING),
    ],
)
def test_the_phase_shown_is_the_part_of_the_submit_step_that_runs(
    heartbeat: SubmittedBatch | ValidatedUpload | None, shown: JobPhase | None
):
    assert step_running(heartbeat) is shown


def test_the_finished_bar_is_drawn_from_the_result():
    now = datetime.now(UTC)
    result = BatchJobResult(
        status=JobStatus.COMPLETED_WITH_FAILURES,
        batch_id="batch_1",
        batch_status="completed",
        input_file_id="file-1",
        output_path="out.jsonl",
        errors_path="err.jsonl",
        requests=RequestTally(total=10, succeeded=8, failed=2),
        started_at=now,
        finished_at=now,
    )
    assert render_finished(result, width=10) == "[##########] 10/10 finished, 2 failed · completed"
