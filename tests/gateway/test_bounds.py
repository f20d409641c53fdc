"""Hostile answers are bounded: error text, answer size, download size, batch errors."""

from __future__ import annotations

import httpx
import pytest
import respx

from gateway.client import MAX_ANSWER_BYTES
from gateway.errors import GatewayError, RejectedByGatewayError
from gateway.models import MAX_BATCH_ERRORS, Batch
from tests.gateway.helpers import (
    BASE_URL,
    BATCH_ID,
    OUTPUT_FILE_ID,
    client_for,
    completed_batch,
    settings,
)

CONTENT_URL = f"{BASE_URL}/files/{OUTPUT_FILE_ID}/content"


async def test_a_gateways_error_text_is_cut_short_and_escaped():
    message = "bad\nERROR 2026-01-01 forged\x1b[2J" + "z" * 100_000
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches/{BATCH_ID}").respond(
            400, json={"error": {"message": message, "code": "c\nd" * 1000}}
        )
        async with client_for(settings()) as client:
            with pytest.raises(RejectedByGatewayError) as caught:
                await client.get_batch(BATCH_ID)
    text = str(caught.value)
    assert "\n" not in text and "\x1b" not in text
    assert "bad\\nERROR 2026-01-01 forged\\u001b[2J" in text
    assert len(text) < 700
    assert caught.value.code is not None and len(caught.value.code) < 200


async def test_an_answer_far_larger_than_the_route_answers_is_not_read_whole():
    with respx.mock() as mock:
        route = mock.get(f"{BASE_URL}/batches/{BATCH_ID}").respond(
            200, content=b" " * (MAX_ANSWER_BYTES + 1)
        )
        async with client_for(settings()) as client:
            with pytest.raises(GatewayError, match="far more than this route answers") as caught:
                await client.get_batch(BATCH_ID)
    assert route.called
    assert caught.value.retryable is False


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "streamed"])
async def test_a_download_over_its_limit_is_refused_for_good(tmp_path, with_length):
    body = b'{"custom_id": "a"}\n' * 1000

    async def chunks():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    answer = (
        httpx.Response(200, content=body) if with_length else httpx.Response(200, content=chunks())
    )
    destination = tmp_path / "out.jsonl"
    with respx.mock() as mock:
        mock.get(CONTENT_URL).mock(return_value=answer)
        async with client_for(settings()) as client:
            with pytest.raises(GatewayError, match="over the 5000 bytes") as caught:
                await client.download_file(OUTPUT_FILE_ID, destination, max_bytes=5000)
    assert caught.value.retryable is False
    assert not destination.exists()
    assert list(tmp_path.iterdir()) == [], "no part file left"


def test_a_failed_batchs_errors_are_few_and_each_one_line():
    errors = [{"line": n, "code": "x", "message": "m\n" + "w" * 5000} for n in range(10_000)]
    batch = Batch.model_validate(completed_batch(status="failed", errors={"data": errors}))
    assert len(batch.errors.data) == MAX_BATCH_ERRORS
    described = batch.errors.data[0].describe()
    assert "\n" not in described and len(described) < 400
