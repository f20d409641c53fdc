"""A job's steps with its files in object stores (moto's S3, Azurite): no shared disk."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.batch_activities import BatchActivities
from activities.input_index import input_index_location
from contracts.job import InputLimits
from contracts.names import FAILURE_INPUT_CHANGED, FAILURE_INVALID_LOCATION
from contracts.steps import (
    CollectResultsRequest,
    CreateBatchRequest,
    UploadInputRequest,
    ValidateInputRequest,
)
from devstack.storage_servers import Azurite, MotoServer
from gateway.client import GatewayClient
from storage import LocalStorage, Stores
from tests.activities.helpers import CHAT, ActivityRunner, chat_file
from tests.activities.test_batch_activities import Job
from tests.storage.conftest import azurite, moto  # noqa: F401  (session fixtures)

_jobs = itertools.count()


@dataclass
class Places:
    stores: Stores
    inputs: str
    results: str


@pytest.fixture
def places(
    moto: MotoServer,  # noqa: F811
    azurite: Azurite,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Places:
    """A bucket for inputs and a container for results, reached through the environment."""
    n = next(_jobs)
    moto.create_bucket(f"inputs-{n}")
    azurite.create_container(f"results-{n}")
    for name, value in {**moto.env(), **azurite.env()}.items():
        monkeypatch.setenv(name, value)
    return Places(
        Stores(LocalStorage(tmp_path / "unused-data-dir")), f"s3://inputs-{n}", f"az://results-{n}"
    )


async def _put(stores: Stores, location: str, data: bytes) -> None:
    async with stores.atomic_write(location) as local:
        local.write_bytes(data)


async def _get(stores: Stores, location: str) -> bytes:
    return b"".join([chunk async for chunk in stores.read_chunks(location)])


async def test_a_job_reads_its_input_from_s3_and_writes_results_to_blob_storage(
    places: Places, gateway: GatewayClient, runner: ActivityRunner
) -> None:
    stores = places.stores
    acts = BatchActivities(gateway, stores)
    source, output, errors = (
        f"{places.inputs}/jobs/day1.jsonl",
        f"{places.results}/jobs/day1.output.jsonl",
        f"{places.results}/jobs/day1.errors.jsonl",
    )
    data = chat_file(12)
    await _put(stores, source, data)

    summary = await runner.run(
        acts.validate_input,
        ValidateInputRequest(
            input_path=source,
            endpoint=CHAT,
            limits=InputLimits(),
            output_path=output,
            errors_path=errors,
        ),
    )
    assert (summary.requests, summary.bytes) == (12, len(data))
    key = f"job-s3-{datetime.now(UTC).timestamp()}"
    uploaded = await runner.run(
        acts.upload_input,
        UploadInputRequest(input_path=source, job_key=key, sha256=summary.sha256, bytes=len(data)),
    )
    created = await runner.run(
        acts.create_batch,
        CreateBatchRequest(
            input_file_id=uploaded.file_id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={},
            job_key=key,
            not_before=datetime.now(UTC),
        ),
    )
    done = await Job(runner, acts, stores.local, key).wait(created)
    collected = await runner.run(
        acts.collect_results,
        CollectResultsRequest(
            batch=done,
            input_path=source,
            output_path=output,
            errors_path=errors,
            not_run_code="succeeded",
            input_sha256=summary.sha256,
        ),
    )

    results = [json.loads(line) for line in (await _get(stores, output)).splitlines()]
    assert Counter(r["custom_id"] for r in results) == Counter(f"req-{i}" for i in range(12))
    assert await _get(stores, errors) == b""
    assert collected.requests.succeeded == 12


async def test_an_input_rewritten_in_s3_while_its_batch_ran_is_still_collected(
    places: Places, gateway: GatewayClient, runner: ActivityRunner
) -> None:
    """A nightly schedule's input, replaced after the upload: the index in Blob Storage joins."""
    stores = places.stores
    acts = BatchActivities(gateway, stores)
    source = f"{places.inputs}/nightly.jsonl"
    output = f"{places.results}/nightly/run-1.output.jsonl"
    errors = f"{places.results}/nightly/run-1.errors.jsonl"
    await _put(stores, source, chat_file(7, prefix="night1"))
    summary = await runner.run(
        acts.validate_input,
        ValidateInputRequest(
            input_path=source,
            endpoint=CHAT,
            limits=InputLimits(),
            output_path=output,
            errors_path=errors,
        ),
    )
    index = input_index_location(output, summary.sha256)
    assert index == (
        f"{places.results}/nightly/.run-1.output.jsonl.{summary.sha256[:16]}.input-index"
    )
    assert await stores.exists(index)
    key = f"job-nightly-{datetime.now(UTC).timestamp()}"
    uploaded = await runner.run(
        acts.upload_input,
        UploadInputRequest(
            input_path=source, job_key=key, sha256=summary.sha256, bytes=summary.bytes
        ),
    )
    await _put(stores, source, chat_file(9, prefix="night2"))
    created = await runner.run(
        acts.create_batch,
        CreateBatchRequest(
            input_file_id=uploaded.file_id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={},
            job_key=key,
            not_before=datetime.now(UTC),
        ),
    )
    done = await Job(runner, acts, stores.local, key).wait(created)

    collected = await runner.run(
        acts.collect_results,
        CollectResultsRequest(
            batch=done,
            input_path=source,
            output_path=output,
            errors_path=errors,
            not_run_code="succeeded",
            input_sha256=summary.sha256,
        ),
    )

    results = [json.loads(line) for line in (await _get(stores, output)).splitlines()]
    assert Counter(r["custom_id"] for r in results) == Counter(f"night1-{i}" for i in range(7))
    assert await _get(stores, errors) == b""
    assert (collected.requests.succeeded, collected.problems) == (7, [])
    assert not await stores.exists(index)


async def test_an_input_changed_in_the_store_after_validation_is_refused(
    places: Places, gateway: GatewayClient, runner: ActivityRunner
) -> None:
    stores = places.stores
    acts = BatchActivities(gateway, stores)
    source = f"{places.inputs}/changing.jsonl"
    await _put(stores, source, chat_file(5, prefix="aaaa"))
    summary = await runner.run(
        acts.validate_input,
        ValidateInputRequest(
            input_path=source,
            endpoint=CHAT,
            limits=InputLimits(),
            output_path=f"{places.results}/changing.output.jsonl",
            errors_path=f"{places.results}/changing.errors.jsonl",
        ),
    )
    await _put(stores, source, chat_file(5, prefix="bbbb"))  # same size, other content
    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.upload_input,
            UploadInputRequest(
                input_path=source, job_key="job-changed", sha256=summary.sha256, bytes=summary.bytes
            ),
        )
    assert caught.value.type == FAILURE_INPUT_CHANGED
    assert caught.value.non_retryable
    assert caught.value.message.startswith(f"{source} changed since it was validated")


async def test_an_input_in_a_missing_bucket_fails_in_one_line_naming_it(
    places: Places, gateway: GatewayClient, runner: ActivityRunner
) -> None:
    stores = places.stores
    acts = BatchActivities(gateway, stores)
    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.validate_input,
            ValidateInputRequest(
                input_path="s3://no-such-bucket/ok.jsonl",
                endpoint=CHAT,
                limits=InputLimits(),
                output_path=f"{places.results}/ok.output.jsonl",
                errors_path=f"{places.results}/ok.errors.jsonl",
            ),
        )
    assert caught.value.type == FAILURE_INVALID_LOCATION
    assert caught.value.non_retryable
    assert caught.value.message == "s3://no-such-bucket/ok.jsonl: no such bucket or container"
