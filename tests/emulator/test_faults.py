"""Injected API errors and dropped connections, seen by the SDK and raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from devstack.emulator import EmulatorProcess
from tests.emulator.helpers import chat_file, upload


def test_error_rate_429_carries_retry_after(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    emu.set_knobs(error_rate=1.0, error_statuses=[429], retry_after_seconds=7)

    with pytest.raises(openai.RateLimitError) as caught:
        client.batches.list()

    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body is not None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_error_rate_server_errors(emu: EmulatorProcess, http: httpx.Client, status: int) -> None:
    emu.set_knobs(error_rate=1.0, error_statuses=[status], retry_after_seconds=2)

    resp = http.get("/batches")

    assert resp.status_code == status
    assert resp.json()["error"]["type"] == "server_error"
    assert ("retry-after" in resp.headers) == (status == 503)


def test_error_rate_is_a_fraction_of_calls(emu: EmulatorProcess, http: httpx.Client) -> None:
    emu.set_knobs(error_rate=0.5, error_statuses=[500])

    codes = [http.get("/files").status_code for _ in range(200)]

    assert 60 < codes.count(500) < 140
    assert codes.count(500) + codes.count(200) == 200


def test_dropped_connection_has_no_response(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    emu.set_knobs(drop_rate=1.0)

    with pytest.raises(openai.APIConnectionError):
        client.files.list()
    with httpx.Client(base_url=emu.base_url) as raw, pytest.raises(httpx.RemoteProtocolError):
        raw.get("/batches")
    assert emu.stats()["dropped_connections"] >= 2


def test_admin_routes_are_never_faulted(emu: EmulatorProcess, http: httpx.Client) -> None:
    emu.set_knobs(drop_rate=1.0, error_rate=1.0)

    assert http.get("/_emulator/health").json() == {"status": "ok"}
    assert emu.get_knobs()["drop_rate"] == 1.0
    emu.set_knobs(drop_rate=0.0, error_rate=0.0)
    assert http.get("/batches").status_code == 200


def test_faults_can_be_switched_on_mid_flight(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    file_id = upload(client, chat_file(1))
    emu.set_knobs(error_rate=1.0, error_statuses=[503])

    with pytest.raises(openai.InternalServerError):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    emu.set_knobs(error_rate=0.0)
    assert client.files.retrieve(file_id).id == file_id


def test_bad_knob_patches_are_rejected_whole(emu: EmulatorProcess, http: httpx.Client) -> None:
    before = emu.get_knobs()

    for patch in ({"error_rate": 2}, {"no_such_knob": 1}, {"dialect": "gcp", "drop_rate": 0.5}):
        resp = http.patch("/_emulator/knobs", json=patch)
        assert resp.status_code == 400, patch
        assert "error" in resp.json()

    assert emu.get_knobs() == before


def test_stats_count_api_calls_by_route(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    before = emu.stats()["api_calls"]
    file_id = upload(client, chat_file(1))
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    client.batches.retrieve(batch.id)
    client.batches.retrieve(batch.id)
    emu.set_knobs(error_rate=1.0, error_statuses=[500])
    with httpx.Client(base_url=emu.base_url) as raw:
        assert raw.get("/openai/batches").status_code == 500

    after = emu.stats()["api_calls"]

    added = {route: n - before.get(route, 0) for route, n in after.items()}
    assert {route: n for route, n in added.items() if n} == {
        "GET /batches": 1,
        "GET /batches/{id}": 2,
        "POST /batches": 1,
        "POST /files": 1,
    }


def test_stats_count_api_requests_and_not_admin_ones(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    before = emu.stats()["api_requests"]
    emu.set_knobs(error_rate=0.0)

    http.get("/batches")
    http.get("/files")
    http.get("/batches/batch_missing")

    assert emu.stats()["api_requests"] - before == 3


def test_refused_batch_reads_answer_401_then_count_down(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    emu.set_knobs(refused_batch_reads=2)

    codes = [http.get("/batches/batch_none").status_code for _ in range(3)]

    assert codes == [401, 401, 404], "two refused, then the route answers (no such batch)"
    assert http.get("/batches").status_code == 200, "only reads of one batch are refused"
    assert emu.get_knobs()["refused_batch_reads"] == 0
    assert emu.stats()["refused_reads"] == 2


def test_a_refused_read_can_look_like_kong_reloading(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    emu.set_knobs(refused_batch_reads=1, refused_batch_read_answer="no_route")

    refused = http.get("/batches/batch_none")

    assert refused.status_code == 404
    assert refused.json() == {"message": "no Route matched with those values"}
