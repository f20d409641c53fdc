"""Input files that fail validation: each error names its code and 1-based line."""

from __future__ import annotations

import openai
import pytest

from devstack.emulator import EmulatorProcess
from emulator.validation import validate_file
from tests.emulator.helpers import CHAT, chat_line, jsonl, submit, wait_for

GOOD = chat_line("ok-1")


@pytest.mark.parametrize(
    ("bad", "code", "param"),
    [
        ("{not json", "invalid_json_line", None),
        ('["a", "list"]', "invalid_json_line", None),
        ({"method": "POST", "url": CHAT, "body": {"model": "m"}}, "missing_custom_id", "custom_id"),
        (chat_line("ok-1"), "duplicate_custom_id", "custom_id"),
        ({**chat_line("x"), "method": "GET"}, "invalid_method", "method"),
        ({**chat_line("x"), "url": "/v1/embeddings"}, "url_mismatch", "url"),
        ({**chat_line("x"), "body": "text"}, "invalid_body", "body"),
        (
            {"custom_id": "x", "method": "POST", "url": CHAT, "body": {}},
            "missing_model",
            "body.model",
        ),
        (chat_line("x", model="gpt-4o"), "model_mismatch", "body.model"),
    ],
)
def test_bad_line_fails_the_batch_naming_its_line(
    client: openai.OpenAI, bad: object, code: str, param: str | None
) -> None:
    rows = [GOOD, chat_line("ok-2"), bad, chat_line("ok-3")]
    batch = submit(client, jsonl(rows))  # type: ignore[arg-type]

    failed = wait_for(client, batch.id, {"failed"})

    assert failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data
    (error,) = failed.errors.data
    assert (error.code, error.line, error.param) == (code, 3, param)
    assert error.message
    assert failed.output_file_id is None and failed.error_file_id is None


def test_every_bad_line_is_reported(client: openai.OpenAI) -> None:
    rows = ["nope", GOOD, {**chat_line("y"), "method": "PUT"}, "", GOOD]
    batch = submit(client, jsonl(rows))  # type: ignore[arg-type]

    failed = wait_for(client, batch.id, {"failed"})

    assert failed.errors is not None and failed.errors.data
    found = [(e.line, e.code) for e in failed.errors.data]
    assert found == [(1, "invalid_json_line"), (3, "invalid_method"), (5, "duplicate_custom_id")]


def test_more_lines_than_the_limit_fail_at_the_first_extra_line(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    emu.set_knobs(max_requests_per_file=3)
    batch = submit(client, jsonl(chat_line(f"r{i}") for i in range(5)))

    failed = wait_for(client, batch.id, {"failed"})

    assert failed.errors is not None and failed.errors.data
    (error,) = failed.errors.data
    assert (error.code, error.line) == ("too_many_tasks", 4)


def test_an_empty_file_fails(client: openai.OpenAI) -> None:
    batch = submit(client, b"\n\n")

    failed = wait_for(client, batch.id, {"failed"})

    assert failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "empty_file"


def test_blank_lines_are_skipped_and_numbering_stays_physical(tmp_path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl([GOOD, "", chat_line("ok-2"), "", "{"]))

    result = validate_file(path, CHAT, max_requests=10, lenient_url=False)

    assert [(e["line"], e["code"]) for e in result.errors] == [(5, "invalid_json_line")]


def test_line_index_points_at_each_request(tmp_path) -> None:
    path = tmp_path / "in.jsonl"
    data = jsonl([GOOD, "", chat_line("ok-2")])
    path.write_bytes(data)

    result = validate_file(path, CHAT, max_requests=10, lenient_url=False)

    assert result.ok and result.model == "gpt-4o-mini"
    assert [ln.custom_id for ln in result.lines] == ["ok-1", "ok-2"]
    second = result.lines[1]
    assert (
        data[second.offset : second.offset + second.length].strip()
        == jsonl([chat_line("ok-2")]).strip()
    )
