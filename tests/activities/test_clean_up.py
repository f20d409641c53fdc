"""clean_up against the real emulator: what a job leaves at the gateway and beside its results."""

from __future__ import annotations

import time

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.batch_activities import BatchActivities
from activities.collect_record import PublishedResults, published_before
from contracts.job import GatewayFiles, RequestTally, TokenTotals
from contracts.steps import (
    BatchSnapshot,
    CleanUpRequest,
    CollectedResults,
    CollectResultsRequest,
    InputSummary,
)
from devstack.emulator import EmulatorProcess
from storage import LocalStorage
from tests.activities.helpers import ActivityRunner, TemporalHeartbeats, chat_file, read_jsonl
from tests.activities.test_batch_activities import Job
from tests.activities.test_collection import OUTPUT, collect_request, index_of, run_batch


@pytest.fixture
def job(
    request: pytest.FixtureRequest,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
) -> Job:
    return Job(runner, acts, storage, key=f"job-{request.node.name}-{time.time_ns()}")


def status_of_file(emu: EmulatorProcess, file_id: str) -> int:
    with httpx.Client(base_url=emu.base_url, timeout=10.0) as http:
        return http.get(f"/files/{file_id}").status_code


def listed_files(emu: EmulatorProcess) -> set[str]:
    with httpx.Client(base_url=emu.base_url, timeout=10.0) as http:
        page = http.get("/files", params={"limit": 10_000}).raise_for_status().json()
    return {item["id"] for item in page["data"]}


def files_of(batch: BatchSnapshot) -> list[str]:
    return [f for f in (batch.input_file_id, batch.output_file_id, batch.error_file_id) if f]


def request_for(summary: InputSummary, file_ids: list[str]) -> CleanUpRequest:
    return CleanUpRequest(
        output_path=OUTPUT, input_sha256=summary.sha256, gateway_file_ids=file_ids
    )


async def test_clean_up_deletes_the_files_and_the_index(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    emu.set_knobs(line_failure_rate=0.3, seed=3)
    summary, batch = await run_batch(job, chat_file(20))
    files = files_of(batch)
    assert len(files) == 3, "an input, an output and an error file"
    assert await storage.exists(index_of(summary))

    done = await job.runner.run(job.acts.clean_up, request_for(summary, files))

    assert done.deleted == files and done.left == {}
    assert [status_of_file(emu, f) for f in files] == [404, 404, 404]
    assert not listed_files(emu) & set(files)
    assert not await storage.exists(index_of(summary))
    # A retry (the worker died before Temporal heard) finds nothing left: no error.
    again = await job.runner.run(job.acts.clean_up, request_for(summary, files))
    assert again.deleted == files


async def test_a_gateway_without_a_delete_route_keeps_the_files_and_says_why(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    summary, batch = await run_batch(job, chat_file(5))
    files = files_of(batch)
    emu.set_knobs(unsupported_routes=["delete_file"])

    done = await job.runner.run(job.acts.clean_up, request_for(summary, files))

    assert done.deleted == []
    assert set(done.left) == set(files)
    assert all("no delete route" in why for why in done.left.values())
    assert set(files) <= listed_files(emu)
    assert not await storage.exists(index_of(summary)), "the index goes whatever the gateway says"


async def test_a_gateway_failing_retryably_is_tried_again(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    summary, batch = await run_batch(job, chat_file(5))
    emu.set_knobs(error_rate=1.0, error_statuses=[503], retry_after_seconds=0)

    with pytest.raises(ApplicationError) as failure:
        await job.runner.run(job.acts.clean_up, request_for(summary, files_of(batch)))

    assert not failure.value.non_retryable
    emu.set_knobs(error_rate=0.0)
    assert set(files_of(batch)) <= listed_files(emu)


async def test_with_no_index_and_no_files_there_is_nothing_to_do(
    job: Job, storage: LocalStorage
) -> None:
    summary = await job.validate(chat_file(3))
    await storage.delete(index_of(summary))
    done = await job.runner.run(job.acts.clean_up, request_for(summary, []))
    assert done.deleted == [] and done.left == {}


class UndeletableStorage(LocalStorage):
    async def delete(self, location: str) -> None:
        raise PermissionError(13, "Permission denied", location)


async def test_an_index_that_cannot_be_removed_still_lets_the_files_go(
    job: Job, emu: EmulatorProcess, storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    summary, batch = await run_batch(job, chat_file(5))
    acts = BatchActivities(job.acts.client, UndeletableStorage(storage.root))

    done = await job.runner.run(acts.clean_up, request_for(summary, files_of(batch)))

    assert done.deleted == files_of(batch)
    assert await storage.exists(index_of(summary))
    assert "left behind" in caplog.text


# -- the collect step deletes the files once the results are published ------------------


def collect_and_delete(summary: InputSummary, batch: BatchSnapshot) -> CollectResultsRequest:
    return collect_request(batch, summary).model_copy(update={"gateway_file_ids": files_of(batch)})


async def test_collect_publishes_then_deletes_the_files(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    summary, batch = await run_batch(job, chat_file(5))
    temporal = TemporalHeartbeats()
    runner = ActivityRunner(temporal)

    collected = await runner.run(job.acts.collect_results, collect_and_delete(summary, batch))

    assert collected.requests.succeeded == 5
    assert len(read_jsonl(storage.path(OUTPUT))) == 5
    assert collected.gateway_files is not None
    assert collected.gateway_files.deleted == files_of(batch)
    assert [status_of_file(emu, f) for f in files_of(batch)] == [404, 404]
    assert not await storage.exists(index_of(summary))
    # Recorded at Temporal before the first delete: what a retry gets back.
    [(record,)] = temporal.sent
    assert published_before([record.model_dump(mode="json")]) == collected.model_copy(
        update={"gateway_files": None}
    )


async def test_a_collect_retried_after_the_deletes_returns_the_recorded_results(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    """The worker died after deleting, before Temporal heard: nothing to download now."""
    summary, batch = await run_batch(job, chat_file(5))
    temporal = TemporalHeartbeats()
    first = await ActivityRunner(temporal).run(
        job.acts.collect_results, collect_and_delete(summary, batch)
    )
    [(record,)] = temporal.sent
    storage.path(OUTPUT).unlink()  # so a second publish would show

    retried = await ActivityRunner(TemporalHeartbeats()).run(
        job.acts.collect_results,
        collect_and_delete(summary, batch),
        attempt=2,
        heartbeat_details=[record.model_dump(mode="json")],
    )

    assert retried == first
    assert not storage.path(OUTPUT).exists(), "nothing downloaded or written again"


async def test_a_collect_that_cannot_record_its_results_deletes_nothing(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    summary, batch = await run_batch(job, chat_file(5))
    runner = ActivityRunner(TemporalHeartbeats(accepts=0))

    collected = await runner.run(job.acts.collect_results, collect_and_delete(summary, batch))

    assert collected.requests.succeeded == 5
    assert collected.gateway_files is not None
    assert collected.gateway_files.deleted == []
    assert set(collected.gateway_files.left) == set(files_of(batch))
    assert all("could not record" in why for why in collected.gateway_files.left.values())
    assert set(files_of(batch)) <= listed_files(emu)


async def test_a_collect_whose_deletes_fail_retryably_reports_them_and_succeeds(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    """Best effort: the results are out, and a collect is never retried for a delete."""
    summary, batch = await run_batch(job, chat_file(5))
    published = CollectedResults(
        requests=RequestTally(total=5, succeeded=5), usage=TokenTotals(total_tokens=9)
    )
    emu.set_knobs(error_rate=1.0, error_statuses=[503], retry_after_seconds=0)

    collected = await ActivityRunner(TemporalHeartbeats()).run(
        job.acts.collect_results,
        collect_and_delete(summary, batch),
        attempt=2,
        heartbeat_details=[PublishedResults(published=published).model_dump(mode="json")],
    )

    emu.set_knobs(error_rate=0.0)
    assert collected.model_copy(update={"gateway_files": None}) == published
    assert collected.gateway_files is not None
    assert collected.gateway_files.deleted == []
    left = collected.gateway_files.left
    assert set(left) == set(files_of(batch))
    assert all(why.startswith("the delete did not finish") for why in left.values())
    assert set(files_of(batch)) <= listed_files(emu)


async def test_a_collect_asked_to_delete_nothing_records_nothing(
    job: Job, emu: EmulatorProcess, storage: LocalStorage
) -> None:
    summary, batch = await run_batch(job, chat_file(5))
    temporal = TemporalHeartbeats()
    request = collect_and_delete(summary, batch).model_copy(update={"gateway_file_ids": []})

    collected = await ActivityRunner(temporal).run(job.acts.collect_results, request)

    assert collected.gateway_files == GatewayFiles()
    assert temporal.sent == []
    assert set(files_of(batch)) <= listed_files(emu)
