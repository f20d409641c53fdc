"""The sharded job's file steps with every shard file in an object store (moto's S3, Azurite).

The worker's data directory stays empty: split, select_resubmissions and merge
read and write the store only, as workers that share no disk must.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.sharding import ShardingActivities
from contracts.names import FAILURE_INVALID_INPUT, FAILURE_RESULT_INTEGRITY
from contracts.sharding import (
    MergeShardsRequest,
    RemoveShardFilesRequest,
    RoundState,
    SelectResubmissionsRequest,
    ShardTokensRequest,
    SplitInputRequest,
    SplitSummary,
    resubmit_input,
    round_dir,
    shard_errors,
    shard_input,
    shard_results,
)
from storage import LocalStorage, ObjectStorage, Stores
from tests.activities.helpers import ActivityRunner
from tests.storage.conftest import Backend, azurite, backend, moto  # noqa: F401  (fixtures)

# custom_id -> None (succeeds) or (HTTP status, error code)
Outcome = Callable[[str], tuple[int, str] | None]


@pytest.fixture
def bucket(backend: Backend) -> str:  # noqa: F811
    """A fresh bucket in moto's S3 server, or container in Azurite."""
    return f"{backend.scheme}://{backend.bucket}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def sharding(data_dir: Path, bucket: str) -> ShardingActivities:
    return ShardingActivities(Stores(LocalStorage(data_dir)), "openai")


async def put(location: str, data: bytes) -> None:
    async with ObjectStorage().atomic_write(location) as local:
        local.write_bytes(data)


async def get(location: str) -> bytes:
    return b"".join([chunk async for chunk in ObjectStorage().read_chunks(location)])


async def names_under(folder: str) -> list[str]:
    return sorted(
        location[len(folder) + 1 :] for location in await ObjectStorage().locations_under(folder)
    )


def requests(count: int) -> bytes:
    lines = [
        json.dumps(
            {
                "custom_id": f"req-{n:03d}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            }
        )
        for n in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


def ids(data: bytes) -> list[str]:
    return [json.loads(line)["custom_id"] for line in data.splitlines()]


async def run_children(folder: str, shards: int, outcome: Outcome, skip: set[int]) -> None:
    """What each shard's child writes: results and errors in the shard's input order."""
    for index in range(shards):
        if index in skip:
            continue
        results, errors = [], []
        for custom_id in ids(await get(shard_input(folder, index))):
            failed = outcome(custom_id)
            if failed is None:
                body = {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}
                line = {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}
                results.append(json.dumps(line) + "\n")
            else:
                status, code = failed
                body = {"error": {"code": code, "message": "scripted"}}
                line = {"custom_id": custom_id, "response": {"status_code": status, "body": body}}
                errors.append(json.dumps(line) + "\n")
        await put(shard_results(folder, index), "".join(results).encode())
        await put(shard_errors(folder, index), "".join(errors).encode())


async def split(
    sharding: ShardingActivities, source: str, folder: str, per_shard: int
) -> SplitSummary:
    return await ActivityRunner().run(
        sharding.split_input,
        SplitInputRequest(
            input_path=source, round_dir=folder, max_batch_requests=per_shard, count_tokens=True
        ),
    )


def nothing_in(data_dir: Path) -> list[Path]:
    return list(data_dir.rglob("*"))


async def test_the_split_writes_its_shards_and_plan_to_the_store_and_nothing_locally(
    sharding: ShardingActivities, bucket: str, data_dir: Path
) -> None:
    data = requests(23)
    await put(f"{bucket}/in/requests.jsonl", data)
    folder = round_dir(f"{bucket}/out/.shards/job-1", 0)

    summary = await split(sharding, f"{bucket}/in/requests.jsonl", folder, 5)

    assert (summary.requests, summary.shards) == (23, 5)
    assert await names_under(folder) == [
        *(f"shard-{n:05d}.jsonl" for n in range(5)),
        "shards.json",
    ]
    shards = [await get(shard_input(folder, n)) for n in range(5)]
    assert b"".join(shards) == data, "contiguous ranges of the input, in order, byte for byte"
    assert [len(ids(shard)) for shard in shards] == [5, 5, 5, 5, 3]
    tokens = await ActivityRunner().run(
        sharding.shard_tokens, ShardTokensRequest(round_dir=folder, start=3, count=10)
    )
    assert len(tokens) == 2 and all(count > 0 for count in tokens)
    assert nothing_in(data_dir) == []


async def test_a_split_again_removes_results_an_earlier_run_left_in_the_store(
    sharding: ShardingActivities, bucket: str
) -> None:
    await put(f"{bucket}/requests.jsonl", requests(4))
    folder = round_dir(f"{bucket}/.shards/job-2", 0)
    await put(shard_results(folder, 1), b"stale\n")
    await put(shard_errors(folder, 7), b"stale\n")

    await split(sharding, f"{bucket}/requests.jsonl", folder, 2)

    assert await names_under(folder) == ["shard-00000.jsonl", "shard-00001.jsonl", "shards.json"]


async def test_resubmission_and_merge_in_the_store_keep_input_order_and_each_id_once(
    sharding: ShardingActivities, bucket: str, data_dir: Path
) -> None:
    await put(f"{bucket}/in.jsonl", requests(23))
    work = f"{bucket}/out/.shards/job-3"
    first, second = round_dir(work, 0), round_dir(work, 1)
    await split(sharding, f"{bucket}/in.jsonl", first, 5)

    def round_0(custom_id: str) -> tuple[int, str] | None:
        number = int(custom_id[-3:])
        if number in (3, 12, 20):
            return 500, "server_error"
        return (400, "invalid_request_error") if number == 7 else None

    await run_children(first, 5, round_0, skip=set())
    state_0 = RoundState(shards=5, requests=23, next_shard=5)
    chosen = await ActivityRunner().run(
        sharding.select_resubmissions,
        SelectResubmissionsRequest(
            previous_round_dir=first, previous=state_0, out_path=resubmit_input(second)
        ),
    )
    assert chosen.requests == 3 and chosen.permanent == 1
    assert ids(await get(resubmit_input(second))) == ["req-003", "req-012", "req-020"]

    await split(sharding, resubmit_input(second), second, 2)
    await run_children(second, 2, lambda custom_id: None, skip=set())
    state_1 = RoundState(shards=2, requests=3, next_shard=2)
    merged = await ActivityRunner().run(
        sharding.merge_shards,
        MergeShardsRequest(
            work_dir=work,
            rounds=[state_0, state_1],
            output_path=f"{bucket}/out/results.jsonl",
            errors_path=f"{bucket}/out/errors.jsonl",
            not_run_code="batch_cancelled",
        ),
    )

    results = ids(await get(f"{bucket}/out/results.jsonl"))
    assert results == [f"req-{n:03d}" for n in range(23) if n != 7], "input order, each once"
    assert ids(await get(f"{bucket}/out/errors.jsonl")) == ["req-007"]
    assert (merged.requests, merged.succeeded, merged.failed) == (23, 22, 1)
    assert (merged.resubmitted, merged.recovered) == (3, 3)
    assert nothing_in(data_dir) == []

    removed = await ActivityRunner().run(
        sharding.remove_shard_files, RemoveShardFilesRequest(work_dir=work)
    )
    # round 0: 5 shards x 3 files and the plan; round 1: its input, 2 x 3 files, the plan
    assert removed == 5 * 3 + 1 + 1 + 2 * 3 + 1
    assert await names_under(work) == []
    assert await names_under(f"{bucket}/out") == [
        ".errors.jsonl.written-by",  # results are create-only: which job wrote them
        ".results.jsonl.written-by",
        "errors.jsonl",
        "results.jsonl",
    ]


async def test_removing_a_shard_folder_deletes_only_the_files_a_sharded_job_writes(
    sharding: ShardingActivities, bucket: str
) -> None:
    """A work_dir naming someone's folder: their objects stay, whatever the job was told."""
    theirs = [
        f"{bucket}/prod/ledger.jsonl",
        f"{bucket}/prod/round-0/notes.txt",
        f"{bucket}/prod/round-0/shard-00001.jsonl.bak",
        f"{bucket}/prod/deep/round-0/shard-00001.jsonl",
    ]
    for location in theirs:
        await put(location, b"keep me\n")
    ours = [
        shard_input(round_dir(f"{bucket}/prod", 0), 0),
        shard_results(round_dir(f"{bucket}/prod", 0), 0),
    ]
    for location in ours:
        await put(location, b"{}\n")

    removed = await ActivityRunner().run(
        sharding.remove_shard_files, RemoveShardFilesRequest(work_dir=f"{bucket}/prod")
    )

    assert removed == len(ours)
    assert sorted(await ObjectStorage().locations_under(f"{bucket}/prod")) == sorted(theirs)


async def test_a_failed_and_an_unrun_shard_become_errors_without_writing_the_store(
    sharding: ShardingActivities, bucket: str
) -> None:
    await put(f"{bucket}/in.jsonl", requests(10))
    work = f"{bucket}/.shards/job-4"
    folder = round_dir(work, 0)
    await split(sharding, f"{bucket}/in.jsonl", folder, 3)
    await run_children(folder, 4, lambda custom_id: None, skip={1, 3})
    state = RoundState(
        shards=4, requests=10, next_shard=3, failed={1: "the gateway refused the upload"}
    )
    before = await names_under(folder)

    merged = await ActivityRunner().run(
        sharding.merge_shards,
        MergeShardsRequest(
            work_dir=work,
            rounds=[state],
            output_path=f"{bucket}/results.jsonl",
            errors_path=f"{bucket}/errors.jsonl",
            not_run_code="batch_cancelled",
        ),
    )

    codes = {
        line["custom_id"]: line["error"]["code"]
        for line in map(json.loads, (await get(f"{bucket}/errors.jsonl")).splitlines())
    }
    assert codes == {
        **{f"req-{n:03d}": "shard_failed" for n in (3, 4, 5)},
        "req-009": "batch_cancelled",
    }
    assert ids(await get(f"{bucket}/results.jsonl")) == [f"req-{n:03d}" for n in (0, 1, 2, 6, 7, 8)]
    assert (merged.requests, merged.succeeded, merged.failed) == (10, 6, 4)
    assert await names_under(folder) == before, "the not-run errors were written on the worker"


async def test_a_shard_missing_a_request_fails_the_merge_naming_it(
    sharding: ShardingActivities, bucket: str
) -> None:
    await put(f"{bucket}/in.jsonl", requests(6))
    work = f"{bucket}/.shards/job-5"
    folder = round_dir(work, 0)
    await split(sharding, f"{bucket}/in.jsonl", folder, 3)
    await run_children(folder, 2, lambda custom_id: None, skip=set())
    lost = b"".join((await get(shard_results(folder, 1))).splitlines(keepends=True)[:-1])
    await put(shard_results(folder, 1), lost)

    with pytest.raises(ApplicationError) as failure:
        await ActivityRunner().run(
            sharding.merge_shards,
            MergeShardsRequest(
                work_dir=work,
                rounds=[RoundState(shards=2, requests=6, next_shard=2)],
                output_path=f"{bucket}/results.jsonl",
                errors_path=f"{bucket}/errors.jsonl",
                not_run_code="batch_cancelled",
            ),
        )

    assert failure.value.type == FAILURE_RESULT_INTEGRITY
    assert "custom_id='req-005'" in failure.value.message
    assert "is in neither" in failure.value.message
    assert not await ObjectStorage().exists(f"{bucket}/results.jsonl")


async def test_the_split_checks_the_whole_input_first_and_writes_no_shard_when_it_is_bad(
    sharding: ShardingActivities, bucket: str, data_dir: Path
) -> None:
    lines = requests(23).splitlines()
    lines[20] = lines[2]  # line 21 repeats line 3's custom_id, three shards later
    await put(f"{bucket}/in/requests.jsonl", b"\n".join(lines) + b"\n")
    folder = round_dir(f"{bucket}/out/.shards/job-1", 0)
    request = SplitInputRequest(
        input_path=f"{bucket}/in/requests.jsonl",
        round_dir=folder,
        max_batch_requests=5,
        endpoint="/v1/chat/completions",
    )

    with pytest.raises(ApplicationError) as refused:
        await ActivityRunner().run(sharding.split_input, request)

    assert refused.value.type == FAILURE_INVALID_INPUT and refused.value.non_retryable
    assert (
        f"{bucket}/in/requests.jsonl:21: custom_id='req-002' field 'custom_id': duplicate of "
        "line 3" in refused.value.message
    )
    assert await names_under(folder) == [], "no shard, no plan"
    assert nothing_in(data_dir) == []
    # Without the endpoint (a workflow from before the check), the shards' own checks apply.
    unchecked = await split(sharding, f"{bucket}/in/requests.jsonl", folder, 5)
    assert unchecked.shards == 5
