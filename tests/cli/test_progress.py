"""What the starter's progress line shows a person."""

from __future__ import annotations

import io

from cli.progress import ProgressLine, render_progress, render_waiting
from contracts.job import BatchCounts, JobPhase, JobProgress


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
