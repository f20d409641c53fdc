"""The enqueued-token quota knob: creates refused like Azure's, admitted once batches end."""

from __future__ import annotations

import json

import openai
import pytest

from devstack.emulator import EmulatorProcess
from emulator.knobs import Knobs
from shards.tokens import request_tokens
from tests.emulator.helpers import chat_file, submit, wait_for

REQUESTS = 20


def tokens_of(data: bytes) -> int:
    """What the job's own estimate (shards.tokens) says the file holds."""
    return sum(request_tokens(json.loads(x)["body"]).input_tokens for x in data.splitlines())


def test_knob_defaults_to_no_limit() -> None:
    assert Knobs().enqueued_token_limit is None
    assert Knobs().enqueued_token_refusal == "failed_batch"


def test_create_over_quota_fails_fast_and_is_admitted_once_the_batch_in_flight_ends(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    data = chat_file(REQUESTS)
    one_batch = tokens_of(data)
    emu.set_knobs(enqueued_token_limit=one_batch + one_batch // 2, force_outcome="stuck_validating")
    holding = submit(client, data)

    refused = submit(client, data)

    assert refused.status == "failed"
    assert refused.errors is not None and refused.errors.data is not None
    error = refused.errors.data[0]
    assert error.code == "token_limit_exceeded"
    assert error.message is not None and "enqueued tokens has surpassed" in error.message
    assert error.line is None
    assert client.batches.retrieve(refused.id).status == "failed"

    emu.set_knobs(force_outcome="none")
    client.batches.cancel(holding.id)
    wait_for(client, holding.id, {"cancelled"})

    admitted = submit(client, data)
    assert admitted.status == "validating"
    assert wait_for(client, admitted.id, {"completed"}).request_counts.completed == REQUESTS  # type: ignore[union-attr]


def test_quota_counts_tokens_as_the_jobs_estimate_does(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    data = chat_file(REQUESTS)
    exact = tokens_of(data)

    emu.set_knobs(enqueued_token_limit=exact - 1)
    assert submit(client, data).status == "failed"

    emu.set_knobs(enqueued_token_limit=exact)
    assert submit(client, data).status == "validating"


def test_http_429_refusal_names_the_code(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    emu.set_knobs(enqueued_token_limit=1, enqueued_token_refusal="http_429")

    with pytest.raises(openai.RateLimitError) as caught:
        submit(client, chat_file(3))

    assert caught.value.code == "token_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"
