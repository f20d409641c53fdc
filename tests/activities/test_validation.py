"""validate_jsonl on files written by the test: every problem named by file, line, id, field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from activities.validation import MAX_REPORTED_PROBLEMS, InputProblems, validate_jsonl
from contracts.job import BatchJobInput, InputLimits
from tests.activities.helpers import CHAT, MODEL, chat_file, chat_line, jsonl

# What the user typed, distinct from the path on disk: messages must name this.
LABEL = "jobs/input.jsonl"


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "input.jsonl"
    path.write_bytes(data)
    return path


def problems_of(
    path: Path, *, endpoint: str = CHAT, limits: InputLimits | None = None
) -> InputProblems:
    with pytest.raises(InputProblems) as caught:
        validate_jsonl(path, label=LABEL, endpoint=endpoint, limits=limits or InputLimits())
    problems = caught.value
    assert problems.path == LABEL
    assert str(problems).startswith(f"{LABEL}: ")
    assert "nothing was uploaded" in str(problems)
    return problems


def only_problem(problems: InputProblems) -> str:
    assert len(problems.problems) == 1, problems.problems
    assert problems.more == 0
    assert problems.problems[0] in str(problems)
    return problems.problems[0]


def test_valid_chat_file_gives_count_bytes_model_and_sha256(tmp_path: Path) -> None:
    data = chat_file(5)
    valid = validate_jsonl(write(tmp_path, data), label=LABEL, endpoint=CHAT, limits=InputLimits())
    assert valid.requests == 5
    assert valid.bytes == len(data)
    assert valid.model == MODEL
    assert valid.sha256 == hashlib.sha256(data).hexdigest()


def test_last_line_without_newline_and_crlf_endings_are_valid(tmp_path: Path) -> None:
    lines = [json.dumps(chat_line(f"r-{i}")) for i in range(3)]
    data = "\r\n".join(lines).encode()
    valid = validate_jsonl(write(tmp_path, data), label=LABEL, endpoint=CHAT, limits=InputLimits())
    assert (valid.requests, valid.bytes) == (3, len(data))
    assert valid.sha256 == hashlib.sha256(data).hexdigest()


def test_missing_file(tmp_path: Path) -> None:
    problem = only_problem(problems_of(tmp_path / "nope.jsonl"))
    assert problem.startswith(f"{LABEL}:")
    assert "no such file" in problem


def test_empty_file(tmp_path: Path) -> None:
    problem = only_problem(problems_of(write(tmp_path, b"")))
    assert problem.startswith(f"{LABEL}:")
    assert "empty" in problem


def test_utf8_bom_is_named_on_line_1(tmp_path: Path) -> None:
    problem = only_problem(problems_of(write(tmp_path, b"\xef\xbb\xbf" + chat_file(3))))
    assert problem.startswith(f"{LABEL}:1:")
    assert "byte order mark" in problem


def test_non_utf8_bytes(tmp_path: Path) -> None:
    bad = json.dumps(chat_line("r-1", "caf\u00e9")).encode().replace(b"\\u00e9", b"\xe9")
    data = jsonl([chat_line("r-0")]) + bad + b"\n" + jsonl([chat_line("r-2")])
    problem = only_problem(problems_of(write(tmp_path, data)))
    assert problem.startswith(f"{LABEL}:2:")
    assert "not UTF-8" in problem
    assert "\\xe9" in problem


def test_line_that_is_not_json(tmp_path: Path) -> None:
    data = jsonl([chat_line("r-0"), chat_line("r-1"), '{"custom_id": "r-2", "method": "PO'])
    problem = only_problem(problems_of(write(tmp_path, data)))
    assert problem.startswith(f"{LABEL}:3:")
    assert "not JSON" in problem


@pytest.mark.parametrize(
    ("row", "kind"), [(["r-1", "POST"], "list"), ('"just a string"', "str"), ("42", "int")]
)
def test_line_that_is_json_but_not_an_object(
    tmp_path: Path, row: list[str] | str, kind: str
) -> None:
    data = jsonl([chat_line("r-0"), row, chat_line("r-2")])
    problem = only_problem(problems_of(write(tmp_path, data)))
    assert problem.startswith(f"{LABEL}:2:")
    assert "JSON object" in problem
    assert kind in problem


@pytest.mark.parametrize("custom_id", [None, "", 7])
def test_missing_custom_id(tmp_path: Path, custom_id: object) -> None:
    line = chat_line("x")
    if custom_id is None:
        del line["custom_id"]
    else:
        line["custom_id"] = custom_id
    problem = only_problem(problems_of(write(tmp_path, jsonl([chat_line("r-0"), line]))))
    assert problem.startswith(f"{LABEL}:2:")
    assert "field 'custom_id'" in problem


def test_duplicate_custom_id_names_the_first_line(tmp_path: Path) -> None:
    rows = [chat_line("dup"), chat_line("r-1"), chat_line("r-2"), chat_line("dup")]
    problem = only_problem(problems_of(write(tmp_path, jsonl(rows))))
    assert problem.startswith(f"{LABEL}:4:")
    assert "custom_id='dup'" in problem
    assert "field 'custom_id'" in problem
    assert "duplicate of line 1" in problem


def test_method_not_post(tmp_path: Path) -> None:
    line = {**chat_line("r-1"), "method": "GET"}
    problem = only_problem(problems_of(write(tmp_path, jsonl([chat_line("r-0"), line]))))
    assert problem.startswith(f"{LABEL}:2:")
    assert "custom_id='r-1'" in problem
    assert "field 'method'" in problem
    assert "'GET'" in problem


def test_url_that_is_not_the_endpoint(tmp_path: Path) -> None:
    line = chat_line("r-1", url="/v1/embeddings")
    problem = only_problem(problems_of(write(tmp_path, jsonl([chat_line("r-0"), line]))))
    assert problem.startswith(f"{LABEL}:2:")
    assert "custom_id='r-1'" in problem
    assert "field 'url'" in problem
    assert "'/v1/embeddings'" in problem
    assert f"{CHAT!r}" in problem


def test_every_line_checked_against_the_batch_endpoint(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, chat_file(2)), endpoint="/v1/embeddings")
    assert [p.split(" ", 1)[0] for p in problems.problems] == [f"{LABEL}:1:", f"{LABEL}:2:"]
    assert all("field 'url'" in p for p in problems.problems)


def test_missing_body(tmp_path: Path) -> None:
    line = chat_line("r-1")
    del line["body"]
    problem = only_problem(problems_of(write(tmp_path, jsonl([chat_line("r-0"), line]))))
    assert problem.startswith(f"{LABEL}:2:")
    assert "custom_id='r-1'" in problem
    assert "field 'body'" in problem


@pytest.mark.parametrize("model", [None, "", 3])
def test_missing_model(tmp_path: Path, model: object) -> None:
    line = chat_line("r-1")
    if model is None:
        del line["body"]["model"]
    else:
        line["body"]["model"] = model
    problem = only_problem(problems_of(write(tmp_path, jsonl([chat_line("r-0"), line]))))
    assert problem.startswith(f"{LABEL}:2:")
    assert "custom_id='r-1'" in problem
    assert "field 'body.model'" in problem


def test_mixed_models_name_the_lines(tmp_path: Path) -> None:
    rows = [
        chat_line("r-0", model="gpt-a"),
        chat_line("r-1", model="gpt-a"),
        chat_line("r-2", model="gpt-b"),
        chat_line("r-3", model="gpt-a"),
    ]
    problem = only_problem(problems_of(write(tmp_path, jsonl(rows))))
    assert problem.startswith(f"{LABEL}:")
    assert "field 'body.model'" in problem
    assert "'gpt-a' (first on line 1)" in problem
    assert "'gpt-b' (first on line 3)" in problem


def test_blank_line_in_the_middle(tmp_path: Path) -> None:
    data = jsonl([chat_line("r-0"), chat_line("r-1")]) + b"  \n" + jsonl([chat_line("r-3")])
    problem = only_problem(problems_of(write(tmp_path, data)))
    assert problem.startswith(f"{LABEL}:3:")
    assert "blank line" in problem


def test_over_the_request_count_limit(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, chat_file(5)), limits=InputLimits(max_requests=3))
    problem = only_problem(problems)
    assert problem.startswith(f"{LABEL}:4:")
    assert "limit of 3 requests" in problem


def test_at_the_request_count_limit_is_valid(tmp_path: Path) -> None:
    valid = validate_jsonl(
        write(tmp_path, chat_file(3)),
        label=LABEL,
        endpoint=CHAT,
        limits=InputLimits(max_requests=3),
    )
    assert valid.requests == 3


def test_over_the_byte_limit(tmp_path: Path) -> None:
    data = chat_file(5)
    problem = only_problem(
        problems_of(write(tmp_path, data), limits=InputLimits(max_bytes=len(data) - 1))
    )
    assert problem.startswith(f"{LABEL}:")
    assert f"{len(data)} bytes" in problem
    assert f"limit of {len(data) - 1} bytes" in problem


def test_several_problems_of_one_line_are_all_listed(tmp_path: Path) -> None:
    line = {"custom_id": "r-1", "method": "PUT", "url": "/v1/nothing", "body": {}}
    problems = problems_of(write(tmp_path, jsonl([chat_line("r-0"), line])))
    assert len(problems.problems) == 3
    assert all(p.startswith(f"{LABEL}:2: custom_id='r-1'") for p in problems.problems)
    fields = ("field 'method'", "field 'url'", "field 'body.model'")
    for name, problem in zip(fields, problems.problems, strict=True):
        assert name in problem


def test_many_problems_are_listed_up_to_the_cap_with_and_n_more(tmp_path: Path) -> None:
    total = MAX_REPORTED_PROBLEMS + 7
    rows = [{**chat_line(f"r-{i}"), "method": "GET"} for i in range(total)]
    problems = problems_of(write(tmp_path, jsonl(rows)))
    assert len(problems.problems) == MAX_REPORTED_PROBLEMS
    assert problems.more == 7
    text = str(problems)
    assert f"{total} problem(s)" in text
    assert text.rstrip().endswith("and 7 more")
    for number in range(1, MAX_REPORTED_PROBLEMS + 1):
        assert f"{LABEL}:{number}: custom_id='r-{number - 1}'" in text
    assert f"{LABEL}:{MAX_REPORTED_PROBLEMS + 1}:" not in text


def test_problems_of_different_kinds_in_one_pass(tmp_path: Path) -> None:
    rows: list[dict[str, object] | str] = [
        chat_line("r-0"),
        "not json",
        chat_line("r-0"),
        {**chat_line("r-3"), "method": "GET"},
    ]
    problems = problems_of(write(tmp_path, jsonl(rows)))
    prefixes = [p.split(" ", 1)[0] for p in problems.problems]
    assert prefixes == [f"{LABEL}:2:", f"{LABEL}:3:", f"{LABEL}:4:"]


def test_validation_estimates_the_input_tokens_the_quota_counts(tmp_path: Path) -> None:
    # 3 tokens a request and 3 a message, plus a token for each 4 characters.
    data = jsonl([chat_line("short", "x" * 40), chat_line("long", "y" * 400)])
    valid = validate_jsonl(write(tmp_path, data), label=LABEL, endpoint=CHAT, limits=InputLimits())
    assert valid.input_tokens == (6 + 10) + (6 + 100)
    assert (valid.largest_request_tokens, valid.largest_request_id) == (106, "long")


def test_a_json_bomb_in_the_input_names_its_line(tmp_path: Path) -> None:
    data = chat_file(2) + b"[" * 100_000 + b"\n" + jsonl([chat_line("req-2")])
    problem = only_problem(problems_of(write(tmp_path, data)))
    assert problem == f"{LABEL}:3: not a request: JSON nested too deeply"


def test_a_hostile_custom_id_is_quoted_short_and_escaped(tmp_path: Path) -> None:
    hostile = "x\nERROR forged line\x1b[31m" + "y" * 10_000
    data = jsonl([chat_line(hostile), chat_line(hostile)])
    problem = only_problem(problems_of(write(tmp_path, data)))
    assert "\n" not in problem and "\x1b" not in problem
    assert "x\\nERROR forged line\\x1b[31m" in problem
    assert len(problem) < 500


def test_a_job_cannot_raise_the_input_limits_past_what_any_provider_takes() -> None:
    with pytest.raises(ValueError, match="a batch's input holds at most"):
        BatchJobInput(input_path="in.jsonl", limits=InputLimits(max_bytes=2 * 1024**3))
    with pytest.raises(ValueError, match="a batch's input holds at most"):
        BatchJobInput.parse({"input_path": "in.jsonl", "limits": {"max_requests": 10**9}})
