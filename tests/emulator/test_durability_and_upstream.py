"""SIGKILL mid-batch and restart; lines forwarded to a real (fake) model server."""

from __future__ import annotations

import time
from pathlib import Path

import openai

from devstack.emulator import EmulatorProcess
from tests.emulator.fake_upstream import FakeUpstream
from tests.emulator.helpers import chat_file, chat_line, jsonl, read_jsonl, submit, wait_for


def _client(emu: EmulatorProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url + "/v1", api_key="sk-test", max_retries=0)


def _wait_progress(client: openai.OpenAI, batch_id: str, at_least: int) -> int:
    deadline = time.monotonic() + 15
    while True:
        b = client.batches.retrieve(batch_id)
        done = b.request_counts.completed if b.request_counts else 0
        if b.status == "in_progress" and done >= at_least:
            return done
        assert b.status in ("validating", "in_progress"), b.status
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)


def test_sigkill_mid_batch_resumes_without_losing_or_repeating_lines(tmp_path: Path) -> None:
    # 60 lines, 4 at a time, 0.4 real s each: 6 s of work, so a restart on a
    # loaded machine still finds the batch mid-run.
    knobs = {"time_scale": 100, "line_latency_seconds": 40, "batch_concurrency": 4}
    emu = EmulatorProcess(tmp_path / "data", knobs=knobs).start()
    try:
        with _client(emu) as client:
            batch = submit(client, chat_file(60))
            before = _wait_progress(client, batch.id, at_least=8)
            emu.kill()

            emu.restart()
            resumed = client.batches.retrieve(batch.id)
            assert resumed.status == "in_progress"
            assert resumed.request_counts is not None
            assert resumed.request_counts.completed >= before
            assert client.files.retrieve(batch.input_file_id).bytes > 0

            done = wait_for(client, batch.id, {"completed"})
            assert done.request_counts is not None
            assert (done.request_counts.completed, done.request_counts.total) == (60, 60)
            ids = [line["custom_id"] for line in read_jsonl(client, done.output_file_id)]
            assert sorted(ids) == sorted(f"req-{i}" for i in range(60))
            assert emu.stats()["lines_executed"] <= 60 - before
            # Lines re-run after the kill were not committed before it: each counts once.
            assert emu.successes_by_custom_id("req-") == {f"req-{i}": 1 for i in range(60)}
    finally:
        emu.stop()


def test_sigkill_while_validating_and_finalizing(tmp_path: Path) -> None:
    knobs = {"time_scale": 100, "validating_seconds": 100, "finalizing_seconds": 100}
    emu = EmulatorProcess(tmp_path / "data", knobs=knobs).start()
    try:
        with _client(emu) as client:
            validating = submit(client, chat_file(3, prefix="v"))
            emu.kill()
            emu.restart()
            wait_for(client, validating.id, {"finalizing"})
            emu.kill()
            emu.restart()
            done = wait_for(client, validating.id, {"completed"})
            assert len(read_jsonl(client, done.output_file_id)) == 3
    finally:
        emu.stop()


def test_upstream_gets_each_line_with_bounded_concurrency(tmp_path: Path) -> None:
    with FakeUpstream(delay=0.05) as upstream:
        knobs = {
            "time_scale": 100,
            "upstream": upstream.base_url,
            "upstream_concurrency": 3,
            "upstream_model": "llama3.2",
            "upstream_api_key": "local-key",
        }
        rows = [chat_line(f"c{i}", f"prompt {i}") for i in range(18)]
        rows += [chat_line("f1", "please fail"), chat_line("f2", "fail again")]
        with EmulatorProcess(tmp_path / "data", knobs=knobs) as emu, _client(emu) as client:
            done = wait_for(client, submit(client, jsonl(rows)).id, {"completed"})
            outputs = {o["custom_id"]: o for o in read_jsonl(client, done.output_file_id)}
            errors = read_jsonl(client, done.error_file_id)

    assert upstream.paths == {"/v1/chat/completions"}
    assert upstream.models == {"llama3.2"}
    assert upstream.auth == {"Bearer local-key"}
    assert 2 <= upstream.max_inflight <= 3
    assert sum(upstream.calls.values()) == 20
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (18, 2)
    content = outputs["c5"]["response"]["body"]["choices"][0]["message"]["content"]
    assert content == "up:prompt 5"
    assert {e["custom_id"] for e in errors} == {"f1", "f2"}
    assert {e["response"]["status_code"] for e in errors} == {503}


def test_upstream_lines_finished_before_a_kill_are_not_sent_again(tmp_path: Path) -> None:
    with FakeUpstream(delay=0.08) as upstream:
        knobs = {"time_scale": 100, "upstream": upstream.base_url, "upstream_concurrency": 2}
        emu = EmulatorProcess(tmp_path / "data", knobs=knobs).start()
        try:
            with _client(emu) as client:
                batch = submit(client, chat_file(30))
                _wait_progress(client, batch.id, at_least=6)
                emu.kill()
                emu.restart()
                done = wait_for(client, batch.id, {"completed"})
                ids = [line["custom_id"] for line in read_jsonl(client, done.output_file_id)]
        finally:
            emu.stop()

    assert sorted(ids) == sorted(f"req-{i}" for i in range(30))
    # Only requests not yet committed at the kill run twice: the scheduler holds
    # at most 2 x upstream_concurrency lines between launch and commit.
    assert 30 <= sum(upstream.calls.values()) <= 34


def test_unreachable_upstream_fails_lines_not_the_batch(tmp_path: Path) -> None:
    knobs = {"time_scale": 100, "upstream": "http://127.0.0.1:9/v1"}
    with EmulatorProcess(tmp_path / "data", knobs=knobs) as emu, _client(emu) as client:
        done = wait_for(client, submit(client, chat_file(2)).id, {"completed"})
        errors = read_jsonl(client, done.error_file_id)

    assert done.request_counts is not None and done.request_counts.failed == 2
    assert {e["error"]["code"] for e in errors} == {"upstream_unavailable"}
    assert all(e["response"] is None for e in errors)


def test_slow_upstream_times_out_per_line(tmp_path: Path) -> None:
    with FakeUpstream(delay=1.0) as upstream:
        knobs = {
            "time_scale": 100,
            "upstream": upstream.base_url,
            "upstream_timeout_seconds": 0.2,
        }
        with EmulatorProcess(tmp_path / "data", knobs=knobs) as emu, _client(emu) as client:
            done = wait_for(client, submit(client, chat_file(2)).id, {"completed"})
            errors = read_jsonl(client, done.error_file_id)

    assert done.request_counts is not None and done.request_counts.failed == 2
    assert {e["error"]["code"] for e in errors} == {"upstream_unavailable"}
    assert all("Timeout" in e["error"]["message"] for e in errors)
