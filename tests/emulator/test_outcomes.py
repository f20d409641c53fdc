"""Line failures, forced outcomes and expiry: the unhappy endings of a batch."""

from __future__ import annotations

import time

import openai
import pytest

from devstack.emulator import EmulatorProcess
from emulator.backends import injected_failure
from tests.emulator.helpers import chat_file, read_jsonl, submit, wait_for

DAY = 86_400


def test_line_failures_are_the_predicted_lines(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    emu.set_knobs(line_failure_rate=0.3, seed=11)
    ids = [f"req-{i}" for i in range(60)]
    predicted = {cid: injected_failure(cid, 11, 0.3) for cid in ids}
    failing = {cid for cid, status in predicted.items() if status}
    assert 5 < len(failing) < 35

    done = wait_for(client, submit(client, chat_file(60)).id, {"completed"})

    assert done.request_counts is not None
    assert done.request_counts.failed == len(failing)
    assert done.request_counts.completed == 60 - len(failing)
    errors = read_jsonl(client, done.error_file_id)
    assert {e["custom_id"] for e in errors} == failing
    for e in errors:
        assert e["response"]["status_code"] == predicted[e["custom_id"]]
        assert e["response"]["status_code"] in (429, 500)
        assert e["response"]["body"]["error"]["message"]
    outputs = read_jsonl(client, done.output_file_id)
    assert {o["custom_id"] for o in outputs} == set(ids) - failing


def test_force_outcome_failed(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    emu.set_knobs(force_outcome="failed")

    done = wait_for(client, submit(client, chat_file(3)).id, {"failed"})

    assert done.errors is not None and done.errors.data
    assert done.errors.data[0].code == "forced_failure"


def test_force_outcome_expired_sends_every_line_to_the_error_file(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    emu.set_knobs(force_outcome="expired")

    done = wait_for(client, submit(client, chat_file(4)).id, {"expired"})

    assert done.expired_at is not None and done.output_file_id is None
    errors = read_jsonl(client, done.error_file_id)
    assert sorted(e["custom_id"] for e in errors) == [f"req-{i}" for i in range(4)]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert all(e["response"] is None for e in errors)


@pytest.mark.parametrize(
    ("outcome", "status", "released"),
    [
        # The window passed while it was stuck, so its lines never run.
        ("stuck_validating", "validating", "expired"),
        # Every line already ran; finalizing is past the window's reach.
        ("stuck_finalizing", "finalizing", "completed"),
    ],
)
def test_stuck_batches_stay_past_their_window_until_released(
    emu: EmulatorProcess, client: openai.OpenAI, outcome: str, status: str, released: str
) -> None:
    emu.set_knobs(force_outcome=outcome)
    batch = submit(client, chat_file(2))
    wait_for(client, batch.id, {status})
    emu.set_knobs(force_outcome="none", time_scale=DAY * 10)

    time.sleep(0.5)  # five emulated days
    assert client.batches.retrieve(batch.id).status == status

    emu.force(batch.id, "none")
    done = wait_for(client, batch.id, {released})
    assert done.request_counts is not None and done.request_counts.total == 2


def test_force_route_fails_a_running_batch(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    emu.set_knobs(line_latency_seconds=100, batch_concurrency=1)
    batch = submit(client, chat_file(50))
    wait_for(client, batch.id, {"in_progress"})

    forced = emu.force(batch.id, "failed")
    assert forced["id"] == batch.id

    done = wait_for(client, batch.id, {"failed"})
    assert done.errors is not None and done.errors.data
    assert done.errors.data[0].code == "forced_failure"


def test_force_route_expires_keeping_finished_lines(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    emu.set_knobs(line_latency_seconds=5, batch_concurrency=1)
    batch = submit(client, chat_file(100))
    deadline = time.monotonic() + 10
    while (b := client.batches.retrieve(batch.id)).request_counts is None or (
        b.request_counts.completed < 3
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)

    emu.force(batch.id, "expired")
    done = wait_for(client, batch.id, {"expired"})

    assert done.request_counts is not None
    finished = done.request_counts.completed
    assert 3 <= finished < 100
    outputs = read_jsonl(client, done.output_file_id)
    errors = read_jsonl(client, done.error_file_id)
    assert len(outputs) == finished
    assert len(errors) == 100 - finished
    assert {o["custom_id"] for o in outputs}.isdisjoint({e["custom_id"] for e in errors})


def test_force_route_on_a_finished_or_unknown_batch(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    import httpx

    done = wait_for(client, submit(client, chat_file(1)).id, {"completed"})
    with httpx.Client(base_url=emu.base_url) as http:
        assert (
            http.post(f"/_emulator/batches/{done.id}/force", json={"outcome": "failed"}).status_code
            == 409
        )
        assert (
            http.post("/_emulator/batches/batch_x/force", json={"outcome": "failed"}).status_code
            == 404
        )
        assert (
            http.post(f"/_emulator/batches/{done.id}/force", json={"outcome": "maybe"}).status_code
            == 400
        )


def test_completion_window_expires_in_scaled_time(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    # The 24h window passes in 1.5 real seconds; a line takes 0.1 real s.
    scale = DAY / 1.5
    emu.set_knobs(time_scale=scale, line_latency_seconds=0.1 * scale, batch_concurrency=1)
    batch = submit(client, chat_file(40))
    assert batch.expires_at is not None and batch.expires_at - batch.created_at <= 3

    done = wait_for(client, batch.id, {"expired"}, timeout=10)

    assert done.request_counts is not None
    finished = done.request_counts.completed
    assert 0 < finished < 40
    assert len(read_jsonl(client, done.output_file_id)) == finished
    expired = read_jsonl(client, done.error_file_id)
    assert len(expired) == 40 - finished
    assert {e["error"]["code"] for e in expired} == {"batch_expired"}


def test_successes_count_each_custom_id_once_per_batch_that_ran_it_to_success(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    emu.set_knobs(line_failure_rate=0.3, seed=5)
    ids = [f"twice-{i}" for i in range(30)]
    failing = {cid for cid in ids if injected_failure(cid, 5, 0.3)}
    assert 0 < len(failing) < 30

    wait_for(client, submit(client, chat_file(30, prefix="twice")).id, {"completed"})
    once = emu.successes_by_custom_id("twice-")
    assert once == {cid: 1 for cid in ids if cid not in failing}, "failed lines are not successes"
    assert emu.successes("twice-")["repeated"] == {}

    wait_for(client, submit(client, chat_file(30, prefix="twice")).id, {"completed"})
    counted = emu.successes("twice-")
    assert counted["by_custom_id"] == {cid: 2 for cid in ids if cid not in failing}
    assert counted["repeated"] == counted["by_custom_id"]
    assert counted["successes"] == 2 * (30 - len(failing))
