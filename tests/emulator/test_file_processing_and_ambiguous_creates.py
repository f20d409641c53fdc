"""Files that are not processed yet (or never), and creates whose answer never arrives.

Time is skipped, not slept: a file stays pending for an emulated hour, then
``time_scale`` is raised so that hour passes within a millisecond. That also
expires every running batch, so this module has an emulator of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.emulator import EmulatorProcess
from tests.emulator.conftest import BASELINE, baseline_knobs
from tests.emulator.helpers import CHAT, chat_file

AZURE = "?api-version=2025-01-01-preview"
HOUR = 3600.0
SKIP_AHEAD = {"time_scale": 1e8}


@pytest.fixture(scope="module")
def own_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("emulator-files"), knobs=BASELINE) as emu:
        yield emu


@pytest.fixture
def emu(own_emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    own_emulator.set_knobs(**baseline_knobs())
    yield own_emulator
    own_emulator.set_knobs(**baseline_knobs())


@pytest.fixture
def http(emu: EmulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=10.0) as client:
        yield client


def _upload(http: httpx.Client, prefix: str = "") -> dict[str, object]:
    resp = http.post(
        f"{prefix}/files", files={"file": ("b.jsonl", chat_file(2))}, data={"purpose": "batch"}
    )
    assert resp.status_code in (200, 201), resp.text
    body: dict[str, object] = resp.json()
    return body


def _create(http: httpx.Client, file_id: object, prefix: str = "") -> httpx.Response:
    return http.post(
        f"{prefix}/batches",
        json={
            "input_file_id": file_id,
            "endpoint": CHAT,
            "completion_window": "24h",
            "metadata": {"job": "ambiguous"},
        },
    )


def _batch_ids(http: httpx.Client) -> set[str]:
    return {b["id"] for b in http.get("/batches", params={"limit": 100}).json()["data"]}


# -- files not yet processed ----------------------------------------------


def test_a_new_file_stays_pending_and_a_batch_on_it_is_refused_as_azure_refuses(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    emu.set_knobs(file_processing_seconds=HOUR, dialect="azure")

    uploaded = _upload(http, "/openai")
    file_id = uploaded["id"]
    seen = http.get(f"/openai/files/{file_id}{AZURE}").json()
    refused = _create(http, file_id, "/openai")

    assert uploaded["status"] == seen["status"] == "pending"
    assert seen["status_details"] is None
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["message"] == (
        f"The input file '{file_id}' is in 'pending' state. Only files with status "
        "'Processed' are accepted for batch inferencing. Please check the file status "
        "and try again"
    )
    assert error["param"] == "input_file_id"

    emu.set_knobs(**SKIP_AHEAD)
    assert http.get(f"/openai/files/{file_id}{AZURE}").json()["status"] == "processed"
    assert _create(http, file_id, "/openai").status_code == 200


def test_pending_files_show_in_the_list_and_earlier_uploads_stay_processed(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    before = _upload(http)["id"]
    emu.set_knobs(file_processing_seconds=HOUR)
    after = _upload(http)["id"]

    listed = {f["id"]: f["status"] for f in http.get("/files").json()["data"]}

    assert listed[before] == "processed"
    assert listed[after] == "pending"


def test_processing_can_fail_with_a_reason(emu: EmulatorProcess, http: httpx.Client) -> None:
    reason = "The file contains a UTF-8 byte order mark."
    emu.set_knobs(file_processing_error=reason)

    uploaded = _upload(http)
    refused = _create(http, uploaded["id"])

    assert uploaded["status"] == "error"
    assert uploaded["status_details"] == reason
    assert http.get(f"/files/{uploaded['id']}").json()["status_details"] == reason
    assert refused.status_code == 400
    assert "is in 'error' state" in refused.json()["error"]["message"]


def test_a_file_can_be_pending_first_and_fail_after(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    emu.set_knobs(file_processing_seconds=HOUR, file_processing_error="bad file")
    file_id = _upload(http)["id"]
    assert http.get(f"/files/{file_id}").json()["status"] == "pending"

    emu.set_knobs(**SKIP_AHEAD)

    seen = http.get(f"/files/{file_id}").json()
    assert (seen["status"], seen["status_details"]) == ("error", "bad file")


# -- ambiguous creates ----------------------------------------------------


def test_an_ambiguous_create_makes_the_batch_and_drops_the_connection(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    file_id = _upload(http)["id"]
    before = _batch_ids(http)
    emu.set_knobs(ambiguous_creates=1)

    with pytest.raises(httpx.RemoteProtocolError):
        _create(http, file_id)

    made = _batch_ids(http) - before
    assert len(made) == 1
    (batch_id,) = made
    assert http.get(f"/batches/{batch_id}").json()["metadata"] == {"job": "ambiguous"}
    assert emu.get_knobs()["ambiguous_creates"] == 0
    assert emu.stats()["ambiguous_creates"] >= 1
    answered = _create(http, file_id)
    assert answered.status_code == 200
    assert answered.json()["id"] not in before | made


def test_an_ambiguous_create_can_answer_502_instead(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    file_id = _upload(http, "/v1")["id"]
    before = _batch_ids(http)
    emu.set_knobs(ambiguous_creates=2, ambiguous_create_answer="502")

    answers = [_create(http, file_id, "/v1") for _ in range(3)]

    assert [a.status_code for a in answers] == [502, 502, 200]
    assert answers[0].json()["error"]["type"] == "server_error"
    assert len(_batch_ids(http) - before) == 3


def test_a_refused_create_does_not_use_up_an_ambiguous_one(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    emu.set_knobs(ambiguous_creates=1, ambiguous_create_answer="502")

    refused = _create(http, "file-does-not-exist")

    assert refused.status_code == 404
    assert emu.get_knobs()["ambiguous_creates"] == 1
    assert http.get("/batches").status_code == 200


def test_a_late_create_answers_504_and_its_batch_appears_later(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    file_id = _upload(http)["id"]
    before = _batch_ids(http)
    emu.set_knobs(late_creates=1, late_create_seconds=1.0)

    answered = _create(http, file_id)

    assert answered.status_code == 504
    assert _batch_ids(http) == before, "not there yet"
    assert emu.get_knobs()["late_creates"] == 0
    for _ in range(100):
        made = _batch_ids(http) - before
        if made:
            break
        time.sleep(0.05)
    assert len(made) == 1
    (batch_id,) = made
    assert http.get(f"/batches/{batch_id}").json()["metadata"] == {"job": "ambiguous"}


def test_a_gateway_that_drops_metadata_answers_and_lists_batches_without_it(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    file_id = _upload(http)["id"]
    emu.set_knobs(drop_metadata=True)

    answered = _create(http, file_id).json()

    assert answered["metadata"] is None
    assert http.get(f"/batches/{answered['id']}").json()["metadata"] is None
