"""Ids are ids: a caller's or a gateway's id that is not one never walks the gateway's paths."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import respx

from contracts.ids import MAX_ID_CHARS, id_problem
from contracts.job import BatchJobInput
from gateway.client import GatewayClient
from gateway.errors import GatewayError, NotAnIdError, RetryableGatewayError
from tests.gateway.helpers import (
    BASE_URL,
    BATCH_ID,
    assert_secret_free,
    client_for,
    completed_batch,
    settings,
    uploaded_file,
    validating_batch,
)

# Real shapes: OpenAI, Azure, and a LiteLLM managed id (unpadded url-safe base64).
REAL_IDS = [
    "batch_abc123",
    "file-abc123",
    "batch_379f1007-8057-4f43-be38-12f3d456c7da",
    "file-da4364d8fd714dd9b29706b91236ab02",
    "bGl0ZWxsbV9wcm94eTphcHBsaWNhdGlvbi9vY3RldC1zdHJlYW07dW5pZmllZF9pZCxmZDRjNmUyNy1iZjQ2LTQ4"
    "YTItYjcyMS1mNmY2MjE3YzU0NWQ7dGFyZ2V0X21vZGVsX25hbWVzLGdwdC00by1iYXRjaA",
]
NOT_IDS = [
    "../files/file-other/content",
    "batch_1/../../files/file-other",
    "..",
    "batch 1",
    "batch_1\nERROR forged",
    "batch_1?x=1",
    "batch_1#x",
    "batch_1%2F..",
    "",
    "b" * (MAX_ID_CHARS + 1),
]


@pytest.mark.parametrize("value", REAL_IDS)
def test_real_ids_are_ids(value):
    assert id_problem(value) is None
    assert BatchJobInput(input_path="in.jsonl", batch_id=value).batch_id == value


@pytest.mark.parametrize("value", NOT_IDS)
def test_a_caller_cannot_attach_to_what_is_not_an_id(value):
    with pytest.raises(ValueError, match=r"is not an id|characters long|at least 1 character"):
        BatchJobInput(input_path="in.jsonl", batch_id=value)


def _calls(client: GatewayClient, bad: str, tmp: Path) -> list:
    return [
        client.get_batch(bad),
        client.cancel_batch(bad),
        client.get_file(bad),
        client.delete_file(bad),
        client.download_file(bad, tmp / "out.jsonl"),
        client.create_batch(input_file_id=bad, endpoint="/v1/chat/completions"),
    ]


@pytest.mark.parametrize("value", [v for v in NOT_IDS if v])
async def test_no_request_is_sent_for_an_id_that_is_not_an_id(value, tmp_path):
    # No route is mocked: any request at all fails the test.
    with respx.mock(assert_all_mocked=True) as mock:
        async with client_for(settings()) as client:
            for call in _calls(client, value, tmp_path):
                with pytest.raises(NotAnIdError, match="no request was sent") as caught:
                    await call
                assert caught.value.retryable is False
                assert "\n" not in str(caught.value)
                assert len(str(caught.value)) < 400
        assert mock.calls.call_count == 0
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("value", [*REAL_IDS[-1:], "batch:a=b+c"])
async def test_each_id_is_one_percent_encoded_path_segment(value, tmp_path):
    encoded = quote(value, safe="")
    with respx.mock(assert_all_called=True) as mock:
        got = mock.get(f"{BASE_URL}/batches/{encoded}").respond(200, json=completed_batch(id=value))
        content = mock.get(f"{BASE_URL}/files/{encoded}/content").respond(200, text="{}\n")
        async with client_for(settings()) as client:
            assert (await client.get_batch(value)).id == value
            await client.download_file(value, tmp_path / "out.jsonl")
    assert got.calls.last.request.url.raw_path.decode().startswith(f"/batches/{encoded}")
    assert content.calls.last.request.url.raw_path.decode().startswith(f"/files/{encoded}/")


@pytest.mark.parametrize(
    "field", ["id", "output_file_id", "error_file_id", "input_file_id"], ids=str
)
async def test_a_gateway_id_that_is_not_an_id_is_refused_for_good(field):
    answer = completed_batch(**{field: "../files/file-other/content"})
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches/{BATCH_ID}").respond(200, json=answer)
        async with client_for(settings()) as client:
            with pytest.raises(NotAnIdError) as caught:
                await client.get_batch(BATCH_ID)
    error = caught.value
    assert error.retryable is False  # the same answer comes back on every try
    assert field in str(error)
    assert "../files" not in str(error)


async def test_a_created_batch_with_a_hostile_id_is_an_unknown_outcome():
    with respx.mock() as mock:
        mock.post(f"{BASE_URL}/batches").respond(200, json=validating_batch(id="a\nb"))
        async with client_for(settings()) as client:
            with pytest.raises(NotAnIdError) as caught:
                await client.create_batch(input_file_id="file-1", endpoint="/v1/chat/completions")
    assert caught.value.outcome_unknown is True


async def test_a_body_that_is_not_the_routes_answer_is_never_quoted():
    """Another file's content, answered to a get: its words do not reach the error."""
    secret_line = '{"custom_id": "payroll-7", "body": {"salary": 912345}}\n'
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches/{BATCH_ID}").respond(
            200, text=secret_line * 3, headers={"content-type": "application/jsonl"}
        )
        async with client_for(settings()) as client:
            with pytest.raises(RetryableGatewayError) as caught:
                await client.get_batch(BATCH_ID)
    message = str(caught.value)
    assert "payroll" not in message and "912345" not in message
    assert f"{len(secret_line) * 3} bytes of application/jsonl" in message
    assert_secret_free(caught.value)


async def test_a_deeply_nested_answer_is_an_error_not_a_crash():
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/files/file-1").respond(200, text="[" * 100_000)
        async with client_for(settings()) as client:
            with pytest.raises(GatewayError, match="not a FileObject"):
                await client.get_file("file-1")


async def test_a_list_page_of_a_million_items_is_refused():
    page = {"data": [uploaded_file()] * 1001, "has_more": False}
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/files").respond(200, json=page)
        async with client_for(settings()) as client:
            with pytest.raises(GatewayError, match="data"):
                await client.list_files()


@pytest.mark.parametrize("field", ["input_path", "output_path", "errors_path"], ids=str)
def test_a_location_with_a_control_character_or_of_a_megabyte_is_refused(field):
    fields = {"input_path": "in.jsonl", field: "out\n2026 ERROR forged.jsonl"}
    with pytest.raises(ValueError, match=f"{field} holds a control character"):
        BatchJobInput(**fields)
    with pytest.raises(ValueError, match="job_key holds a control character"):
        BatchJobInput(input_path="in.jsonl", job_key="nightly\x1b[2J")
    fields[field] = "x" * 1_000_000
    with pytest.raises(ValueError, match="over 2048 characters"):
        BatchJobInput(**fields)
