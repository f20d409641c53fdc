"""Which workflow id a job gets, and how the starter tells the same job from another.

The id is the lock on the results file, so it must follow the results
location, not the input; the memo's identity says whether a running job under
that id is the one being started again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cli.job_ids import JobIdentity, default_workflow_id, file_sha256
from contracts.job import BatchJobInput


def job_id(j: BatchJobInput, queue: str) -> str:
    return default_workflow_id(j.resolved_output_path, queue)


def job(**fields: object) -> BatchJobInput:
    return BatchJobInput.model_validate({"input_path": "in.jsonl", **fields})


def test_the_same_results_location_gives_the_same_id_whatever_the_input():
    assert job_id(job(), "q") == default_workflow_id(job().resolved_output_path, "q")
    other_input = job(input_path="other.jsonl", output_path="in.output.jsonl")
    assert job_id(other_input, "q") == default_workflow_id(job().resolved_output_path, "q")


def test_another_results_location_or_task_queue_gives_another_id():
    ids = {
        job_id(job(), "q"),
        job_id(job(output_path="elsewhere.jsonl"), "q"),
        job_id(job(input_path="sub/in.jsonl"), "q"),
        job_id(job(), "another-queue"),
    }
    assert len(ids) == 4


def test_the_id_names_the_results_and_is_safe_to_type():
    assert job_id(job(), "q").startswith("batch-in-")
    odd = default_workflow_id(
        job(output_path="runs/{workflow_id} out.jsonl").resolved_output_path, "q"
    )
    assert odd.startswith("batch-workflow_id_out-")
    assert all(c.isalnum() or c in "._-" for c in odd)


def test_the_input_hash_is_the_files_sha256_read_in_chunks(tmp_path: Path):
    data = b'{"custom_id": "a"}\n' * 200_000  # several 1 MiB chunks
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


IDENTITY = JobIdentity(
    input_path="in.jsonl",
    input_sha256="a" * 64,
    endpoint="/v1/embeddings",
    output_path="in.output.jsonl",
)


def test_the_same_identity_is_the_same_job():
    assert IDENTITY.differs_from(IDENTITY.model_copy()) is None


@pytest.mark.parametrize(
    ("running", "said"),
    [
        ({"input_sha256": "b" * 64}, "an earlier version of in.jsonl (sha256 bbbbbbbbbbbb"),
        ({"input_path": "x.jsonl", "input_sha256": "b" * 64}, "x.jsonl, not in.jsonl"),
        ({"endpoint": "/v1/chat/completions"}, "endpoint /v1/chat/completions"),
        ({"batch_id": "batch_1"}, "it runs batch batch_1"),
        ({"output_path": "elsewhere.jsonl"}, "it writes elsewhere.jsonl"),
        ({"sharding": "{}"}, "it runs sharded (default options), not as one batch"),
        (
            {"sharding": '{"max_batch_requests":20}'},
            'it runs sharded with {"max_batch_requests":20}, not as one batch',
        ),
    ],
)
def test_another_identity_is_named_in_words(running: dict[str, str], said: str):
    why = IDENTITY.differs_from(IDENTITY.model_copy(update=running))
    assert why is not None and said in why


def test_a_sharded_job_run_as_one_batch_or_with_other_options_is_another_job():
    sharded = IDENTITY.model_copy(update={"sharding": '{"max_batch_requests":20}'})
    assert sharded.differs_from(sharded.model_copy()) is None
    other = sharded.model_copy(update={"sharding": '{"max_batch_requests":10}'})
    why = sharded.differs_from(other)
    assert why is not None and 'with {"max_batch_requests":10}, not sharded with' in why
    assert sharded.differs_from(IDENTITY) == (
        'it runs as one batch, not sharded with {"max_batch_requests":20}'
    )
