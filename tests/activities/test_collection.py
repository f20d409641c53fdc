"""collect_results against the real emulator: what was paid for is kept, whatever the files hold.

The input may be rewritten after validation (a nightly schedule), and the
gateway's files may hold lines that join no request: neither costs a result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities import results as results_module
from activities.batch_activities import BatchActivities
from activities.input_index import input_index_location, write_input_index
from contracts.job import JobStatus
from contracts.names import FAILURE_INPUT_CHANGED
from contracts.steps import BatchSnapshot, CollectedResults, CollectResultsRequest, InputSummary
from devstack.emulator import EmulatorProcess
from emulator.backends import injected_failure
from gateway.client import GatewayClient
from storage import LocalStorage
from tests.activities.helpers import ActivityRunner, chat_file, read_jsonl
from tests.activities.test_batch_activities import INPUT, Job, validate_request, write_input
from workflows.outcome import Outcome

OUTPUT = validate_request().output_path
ERRORS = validate_request().errors_path


def index_of(summary: InputSummary) -> str:
    return input_index_location(OUTPUT, summary.sha256)


@pytest.fixture
def job(
    request: pytest.FixtureRequest,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
) -> Job:
    return Job(runner, acts, storage, key=f"job-{request.node.name}-{time.time_ns()}")


def collect_request(batch: BatchSnapshot, summary: InputSummary) -> CollectResultsRequest:
    """What the workflow sends: the results location validation was given, the checksum."""
    return CollectResultsRequest(
        batch=batch,
        input_path=INPUT,
        output_path=OUTPUT,
        errors_path=ERRORS,
        not_run_code="succeeded",
        input_sha256=summary.sha256,
    )


async def run_batch(job: Job, data: bytes) -> tuple[InputSummary, BatchSnapshot]:
    summary = await job.validate(data)
    uploaded = await job.upload(summary)
    done = await job.wait(await job.create(uploaded.file_id))
    assert done.status == "completed"
    return summary, done


def ids(prefix: str, n: int) -> Counter[str]:
    return Counter(f"{prefix}-{i}" for i in range(n))


def joined_ids(storage: LocalStorage) -> Counter[str]:
    """Each input custom_id found in the results or errors file, with its count."""
    rows = read_jsonl(storage.path(OUTPUT)) + read_jsonl(storage.path(ERRORS))
    return Counter(row["custom_id"] for row in rows if row["custom_id"] is not None)


@pytest.mark.parametrize(
    "rewrite",
    [chat_file(4, prefix="tomorrow"), b"", b"not json at all\n", None],
    ids=["next-nights-requests", "emptied", "not-json", "deleted"],
)
async def test_an_input_rewritten_after_validation_does_not_cost_its_results(
    job: Job, emu: EmulatorProcess, rewrite: bytes | None
) -> None:
    rate, requests = 0.3, 12
    emu.set_knobs(line_failure_rate=rate)
    summary, done = await run_batch(job, chat_file(requests))
    assert job.storage.path(index_of(summary)).is_file(), (
        "validation keeps the custom_ids beside the results"
    )
    if rewrite is None:
        job.storage.path(INPUT).unlink()
    else:
        write_input(job.storage, rewrite)  # the schedule's next run, while this batch ran

    collected = await job.runner.run(job.acts.collect_results, collect_request(done, summary))

    assert joined_ids(job.storage) == ids("req", requests)
    failing = {f"req-{i}" for i in range(requests) if injected_failure(f"req-{i}", 0, rate)}
    assert {r["custom_id"] for r in read_jsonl(job.storage.path(ERRORS))} == failing
    tally = collected.requests
    assert (tally.total, tally.succeeded, tally.failed) == (
        requests,
        requests - len(failing),
        len(failing),
    )
    assert collected.problems == []
    assert not job.storage.path(index_of(summary)).exists(), "collected: the index has served"
    assert not list(job.storage.root.rglob("*.part"))


async def test_a_second_job_validated_for_the_same_results_keeps_its_own_index(job: Job) -> None:
    """Another job, of other requests, given this job's results location while this one ran."""
    summary, done = await run_batch(job, chat_file(5))
    other = await job.validate(chat_file(3, prefix="other"))

    collected = await job.runner.run(job.acts.collect_results, collect_request(done, summary))

    assert joined_ids(job.storage) == ids("req", 5)
    assert collected.problems == []
    assert not job.storage.path(index_of(summary)).exists()
    assert job.storage.path(index_of(other)).is_file(), "the other job's is left for it"


async def test_lines_that_join_no_request_are_kept_and_the_rest_written(
    job: Job, gateway: GatewayClient
) -> None:
    requests = 6
    summary, done = await run_batch(job, chat_file(requests))
    assert done.output_file_id
    real = job.storage.root / "real-output.jsonl"
    await gateway.download_file(done.output_file_id, real)
    lines = real.read_bytes().splitlines(keepends=True)
    assert len(lines) == requests
    stranger = json.loads(lines[0])
    stranger["custom_id"] = "not-in-the-input"
    odd = [
        json.dumps(stranger).encode() + b"\n",  # line 7
        lines[2],  # line 8: req-? a second time
        lines[4][:50] + b"\n",  # line 9: cut short
    ]
    tampered = job.storage.root / "tampered.jsonl"
    tampered.write_bytes(b"".join(lines + odd))
    uploaded = await gateway.upload_file(tampered, filename="tampered.jsonl")
    for name in (OUTPUT, ERRORS):
        job.storage.path(name).write_text("previous run\n")

    collected = await job.runner.run(
        job.acts.collect_results,
        collect_request(done.model_copy(update={"output_file_id": uploaded.id}), summary),
    )

    results = job.storage.path(OUTPUT).read_bytes().splitlines(keepends=True)
    order = [f"req-{i}" for i in range(requests)]
    in_input_order = sorted(lines, key=lambda raw: order.index(json.loads(raw)["custom_id"]))
    assert results == in_input_order, "each joining line once, as the gateway wrote it"
    errors = read_jsonl(job.storage.path(ERRORS))
    assert joined_ids(job.storage) == ids("req", requests)
    kept = {row["error"]["code"]: row for row in errors if row["custom_id"] is None}
    assert sorted(kept) == ["duplicate_result", "unknown_custom_id", "unparseable_output_line"]
    where = {code: (row["error"]["file_id"], row["error"]["line"]) for code, row in kept.items()}
    assert where == {
        "unknown_custom_id": (uploaded.id, 7),
        "duplicate_result": (uploaded.id, 8),
        "unparseable_output_line": (uploaded.id, 9),
    }
    assert kept["unknown_custom_id"]["error"]["found_custom_id"] == "not-in-the-input"
    assert json.loads(kept["duplicate_result"]["raw"]) == json.loads(lines[2])
    assert kept["unparseable_output_line"]["raw"] == lines[4][:50].decode()

    assert collected.requests.succeeded == requests
    assert len(collected.problems) == 3
    for code, (file_id, line) in where.items():
        [problem] = [p for p in collected.problems if f"as {code}:" in p]
        assert problem.startswith("1 line(s)")
        assert f"output file {file_id} line {line}" in problem
    assert job_status(done, collected) is JobStatus.COMPLETED_WITH_FAILURES
    assert not job.storage.path(index_of(summary)).exists()


def job_status(batch: BatchSnapshot, collected: CollectedResults) -> JobStatus:
    """How the workflow ends the job on these results (its own rule, run here)."""
    outcome = Outcome(batch)
    outcome.read_batch_end()
    outcome.read_results(collected)
    return outcome.status


async def test_collection_heartbeats_while_it_downloads(
    job: Job, runner: ActivityRunner, acts: BatchActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download that cannot finish until the activity has beaten twice during it."""
    summary, done = await run_batch(job, chat_file(3))
    runner.env.info = dataclasses.replace(runner.env.info, heartbeat_timeout=timedelta(seconds=0.6))
    real_download = acts.client.download_file
    beats_while_downloading: list[int] = []

    async def slow_download(file_id: str, destination: Path) -> int:
        before = len(runner.heartbeats)
        for _ in range(200):  # at most 10 s
            if len(runner.heartbeats) >= before + 2:
                break
            await asyncio.sleep(0.05)
        beats_while_downloading.append(len(runner.heartbeats) - before)
        return await real_download(file_id, destination)

    monkeypatch.setattr(acts.client, "download_file", slow_download)
    runner.heartbeats.clear()

    collected = await runner.run(acts.collect_results, collect_request(done, summary))

    assert collected.requests.succeeded == 3
    assert beats_while_downloading and min(beats_while_downloading) >= 2


async def test_a_job_validated_without_an_index_joins_on_its_unchanged_input(job: Job) -> None:
    """A job an older worker validated (no index) collects as it always did."""
    summary, done = await run_batch(job, chat_file(5))
    job.storage.path(index_of(summary)).unlink()

    collected = await job.runner.run(job.acts.collect_results, collect_request(done, summary))

    assert joined_ids(job.storage) == ids("req", 5)
    assert collected.requests.succeeded == 5


async def test_an_index_of_another_input_is_not_joined_on(job: Job) -> None:
    """An index left at this results location by an earlier job of other requests."""
    summary, done = await run_batch(job, chat_file(5))
    write_input_index(
        job.storage.path(index_of(summary)),
        input_path=INPUT,
        sha256="0" * 64,
        custom_ids=[f"other-{i}" for i in range(5)],
    )

    collected = await job.runner.run(job.acts.collect_results, collect_request(done, summary))

    assert joined_ids(job.storage) == ids("req", 5)
    assert collected.problems == []


async def test_without_an_index_a_changed_input_is_still_refused(
    job: Job, storage: LocalStorage
) -> None:
    """The one case left where collection needs the input: no index, and the input changed."""
    summary, done = await run_batch(job, chat_file(4))
    storage.path(index_of(summary)).unlink()
    write_input(storage, chat_file(4, prefix="other"))

    with pytest.raises(ApplicationError) as caught:
        await job.runner.run(job.acts.collect_results, collect_request(done, summary))

    assert caught.value.type == FAILURE_INPUT_CHANGED
    assert caught.value.non_retryable
    assert caught.value.message.startswith(f"{INPUT} changed since batch {done.id} was created")
    assert "no input index was kept at validation" in caught.value.message
    assert not storage.path(OUTPUT).exists()


async def test_a_json_bomb_and_an_oversized_line_cost_only_themselves(
    job: Job, gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line of 100,000 '[' and a line over the limit: collection ends, each line named."""
    monkeypatch.setattr(results_module, "MAX_OUTPUT_LINE_BYTES", 200_000)
    requests = 4
    summary, done = await run_batch(job, chat_file(requests))
    assert done.output_file_id
    real = job.storage.root / "real-output.jsonl"
    await gateway.download_file(done.output_file_id, real)
    lines = real.read_bytes().splitlines(keepends=True)
    hostile = job.storage.root / "hostile.jsonl"
    hostile.write_bytes(
        lines[0]
        + b"[" * 100_000
        + b"\n"  # line 2: nested past any parser's depth
        + b"".join(lines[1:3])
        + b'{"custom_id": "'
        + b"x" * 300_000
        + b'"}\n'  # line 5: over the line limit
        + lines[3]
    )
    uploaded = await gateway.upload_file(hostile, filename="hostile.jsonl")

    collected = await asyncio.wait_for(
        job.runner.run(
            job.acts.collect_results,
            collect_request(done.model_copy(update={"output_file_id": uploaded.id}), summary),
        ),
        60,
    )

    assert collected.requests.succeeded == requests, "every real line is still joined"
    assert joined_ids(job.storage) == ids("req", requests)
    kept = {
        row["error"]["code"]: row
        for row in read_jsonl(job.storage.path(ERRORS))
        if row["custom_id"] is None
    }
    assert kept["unparseable_output_line"]["error"]["line"] == 2
    assert "nested too deeply" in kept["unparseable_output_line"]["error"]["message"]
    assert kept["oversized_output_line"]["error"]["line"] == 5
    assert len(kept["oversized_output_line"]["raw"]) <= results_module.MAX_KEPT_RAW_BYTES
    problems = " ".join(collected.problems)
    assert f"output file {uploaded.id} line 2 (nested too deeply)" in problems
    assert f"output file {uploaded.id} line 5 (300018 bytes, over the 200000" in problems
    assert all(len(problem) < 2000 for problem in collected.problems)
