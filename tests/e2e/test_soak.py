"""The chaos soak in a reduced size: the same faults, kills and restart as bench/soak.py.

24 concurrent jobs x 15 requests through the session's dev server, the
emulator (5xx and 429 + Retry-After on 10 % of calls, 2 % dropped connections,
5 % failed lines) and two worker processes; mid-run worker 1 is SIGKILLed and
replaced, the emulator killed and restarted, and worker 2 SIGKILLed and
replaced. The full size is ``python -m bench.soak`` (docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from bench.soak import SoakConfig, figures, run_soak

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REDUCED = SoakConfig(
    jobs=24,
    requests_per_job=15,
    poll_seconds=1.0,
    heartbeat_seconds=4.0,
    timeout_seconds=150.0,
    # Reached in seconds at this size; the fallbacks keep the events inside the run.
    event_fallback_seconds=(15.0, 30.0, 45.0),
)


def test_the_reduced_size_keeps_the_full_fault_mix() -> None:
    full = SoakConfig()
    fault_knobs = ("error_rate", "error_statuses", "retry_after_seconds", "drop_rate")
    for knob in (*fault_knobs, "line_failure_rate"):
        assert getattr(REDUCED, knob) == getattr(full, knob), knob
    knobs = REDUCED.emulator_knobs()
    assert 429 in knobs["error_statuses"] and any(s >= 500 for s in knobs["error_statuses"])
    assert not set(fault_knobs) & set(replace(REDUCED, chaos=False).emulator_knobs())


async def test_every_request_lands_exactly_once_through_faults_kills_and_a_restart(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    report, _ = await run_soak(REDUCED, tmp_path, client=dev_server.client)
    print(figures(report, None))

    assert [e.name for e in report.events] == [
        "SIGKILL worker 1",
        "emulator kill + restart",
        "SIGKILL worker 2",
    ], "every kill and the restart happened while jobs were running"
    assert all(e.jobs_running > 0 for e in report.events)
    assert report.injected_errors > 0 and report.dropped_connections > 0
    assert report.failed > 0, "some lines failed inside the batches"

    assert report.ended == REDUCED.jobs, report.statuses
    assert report.lost == 0
    assert report.duplicates == 0
    assert report.unexpected_outcomes == 0
    assert report.succeeded + report.failed + report.not_run == REDUCED.requests
    assert report.extra_batches == 0 and report.missing_batches == 0
    assert report.extra_uploads == 0 and report.missing_uploads == 0
    assert report.unfinished_batches == 0
    assert report.leftover_part_files == 0
    assert report.problems() == []
