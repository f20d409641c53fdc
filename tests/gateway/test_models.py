"""The models accept the real (and quirky) bodies and expose one normalised shape."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.models import Batch, BatchStatus, FileObject, Page, RequestCounts
from tests.gateway.helpers import (
    BATCH_ID,
    FILE_ID,
    OUTPUT_FILE_ID,
    completed_batch,
    uploaded_file,
    validating_batch,
)


def test_howto_upload_answer_parses():
    file = FileObject.model_validate(uploaded_file())
    assert file.id == FILE_ID
    assert file.bytes == 1648
    assert file.filename == "batch.jsonl"
    assert file.purpose == "batch"
    assert file.status == "processed"
    assert file.created_at == 1761817541


def test_howto_validating_batch_parses_with_blanks_normalised():
    batch = Batch.model_validate(validating_batch())
    assert batch.id == BATCH_ID
    assert batch.status is BatchStatus.VALIDATING
    assert not batch.status.is_terminal
    assert batch.input_file_id == FILE_ID
    assert batch.output_file_id is None  # was ""
    assert batch.error_file_id is None  # was ""
    assert batch.endpoint is None  # was ""
    assert batch.errors.data == []  # was null
    assert batch.metadata == {}  # was null
    assert batch.request_counts == RequestCounts(total=0, completed=0, failed=0)
    assert batch.completion_window == "24h"
    assert batch.created_at == 1761817562
    assert batch.expires_at == 1761903959
    assert batch.completed_at is None


def test_howto_completed_batch_parses():
    batch = Batch.model_validate(completed_batch())
    assert batch.status is BatchStatus.COMPLETED
    assert batch.status.is_terminal
    assert batch.output_file_id == OUTPUT_FILE_ID
    assert batch.error_file_id is None
    assert batch.endpoint == "/v1/chat/completions"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (5, 5)
    assert batch.request_counts.failed == 0
    assert batch.request_counts.finished == 5
    assert batch.finalizing_at == 1761817662
    assert batch.completed_at == 1761817685


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Validating", BatchStatus.VALIDATING),
        ("Completed", BatchStatus.COMPLETED),
        ("COMPLETED", BatchStatus.COMPLETED),
        ("In_progress", BatchStatus.IN_PROGRESS),
        ("In_Progress", BatchStatus.IN_PROGRESS),
        ("InProgress", BatchStatus.IN_PROGRESS),
        ("inProgress", BatchStatus.IN_PROGRESS),
        ("in-progress", BatchStatus.IN_PROGRESS),
        ("In Progress", BatchStatus.IN_PROGRESS),
        (" Finalizing ", BatchStatus.FINALIZING),
        ("Failed", BatchStatus.FAILED),
        ("Expired", BatchStatus.EXPIRED),
        ("Cancelling", BatchStatus.CANCELLING),
        ("Cancelled", BatchStatus.CANCELLED),
        ("canceling", BatchStatus.CANCELLING),
        ("Canceled", BatchStatus.CANCELLED),
    ],
)
def test_status_spellings_normalise(raw, expected):
    assert Batch.model_validate(completed_batch(status=raw)).status is expected


def test_terminal_statuses():
    terminal = {status for status in BatchStatus if status.is_terminal}
    assert terminal == {
        BatchStatus.COMPLETED,
        BatchStatus.FAILED,
        BatchStatus.EXPIRED,
        BatchStatus.CANCELLED,
    }


def test_unknown_status_is_rejected():
    with pytest.raises(ValidationError, match="status"):
        Batch.model_validate(completed_batch(status="exploded"))


def test_null_request_counts_is_unknown_not_zero():
    batch = Batch.model_validate(completed_batch(request_counts=None))
    assert batch.request_counts is None


def test_null_members_of_request_counts_are_zero():
    batch = Batch.model_validate(
        completed_batch(request_counts={"total": 3, "completed": None, "failed": None})
    )
    assert batch.request_counts == RequestCounts(total=3, completed=0, failed=0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/chat/completions", "/v1/chat/completions"),
        ("chat/completions", "/v1/chat/completions"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("v1/embeddings", "/v1/embeddings"),
        ("/embeddings", "/v1/embeddings"),
        ("/v1/responses", "/v1/responses"),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_endpoint_normalises_to_v1(raw, expected):
    assert Batch.model_validate(completed_batch(endpoint=raw)).endpoint == expected


@pytest.mark.parametrize("field", ["output_file_id", "error_file_id", "input_file_id"])
@pytest.mark.parametrize("blank", ["", " ", None])
def test_blank_file_ids_are_none(field, blank):
    assert getattr(Batch.model_validate(completed_batch(**{field: blank})), field) is None


def test_failed_batch_errors_data_lines():
    batch = Batch.model_validate(
        completed_batch(
            status="failed",
            output_file_id="",
            request_counts=None,
            errors={
                "object": "list",
                "data": [
                    {
                        "code": "invalid_request",
                        "message": "custom_id is duplicated",
                        "param": "custom_id",
                        "line": 3,
                    },
                    {"code": "model_not_found", "message": None, "param": None, "line": None},
                ],
            },
        )
    )
    assert batch.status is BatchStatus.FAILED
    first, second = batch.errors.data
    assert (first.code, first.param, first.line) == ("invalid_request", "custom_id", 3)
    assert first.describe() == "line 3: [invalid_request] custom_id is duplicated"
    assert second.describe() == "[model_not_found] no message"


def test_errors_with_null_data_is_empty():
    batch = Batch.model_validate(completed_batch(errors={"object": "list", "data": None}))
    assert batch.errors.data == []


def test_metadata_and_usage_parse():
    batch = Batch.model_validate(
        completed_batch(
            metadata={"job": "nightly"},
            usage={"input_tokens": 150, "output_tokens": 299, "total_tokens": 449},
        )
    )
    assert batch.metadata == {"job": "nightly"}
    assert batch.usage is not None and batch.usage.total_tokens == 449


def test_unknown_extra_fields_are_ignored():
    body = completed_batch(
        model="gpt-4o-batch",
        output_expires_after={"anchor": "created_at", "seconds": 3600},
        request_counts={"total": 5, "completed": 5, "failed": 0, "cancelled": 0},
        errors={"object": "list", "data": [{"code": "x", "severity": "high"}], "extra": 1},
    )
    batch = Batch.model_validate(body)
    assert batch.status is BatchStatus.COMPLETED
    assert not hasattr(batch, "model")
    assert batch.errors.data[0].code == "x"
    file = FileObject.model_validate(uploaded_file(status_details=None, expires_at=None))
    assert file.id == FILE_ID


def test_batch_requires_id_and_status():
    body = completed_batch()
    del body["id"]
    with pytest.raises(ValidationError, match="id"):
        Batch.model_validate(body)


def test_list_page_parses_with_quirky_items():
    page = Page[Batch].model_validate(
        {
            "object": "list",
            "data": [validating_batch(status="Validating"), completed_batch()],
            "first_id": BATCH_ID,
            "last_id": BATCH_ID,
            "has_more": True,
        }
    )
    assert [b.status for b in page.data] == [BatchStatus.VALIDATING, BatchStatus.COMPLETED]
    assert page.has_more is True
    assert page.last_id == BATCH_ID
