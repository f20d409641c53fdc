"""collect_results: gateway output and error files joined to the input on custom_id."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from activities.results import (
    EXAMPLES_PER_PROBLEM,
    MAX_MODELS,
    OTHER_MODELS,
    CollectedFiles,
    collect_results,
    read_input_ids,
)
from contracts.job import BatchCounts
from tests.activities.helpers import chat_line, jsonl

NOT_RUN = "batch_cancelled"


def ok(custom_id: str, prompt: int = 10, completion: int = 5) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": f"req_{custom_id}",
            "body": {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        },
        "error": None,
    }


def http_failure(custom_id: str, status: int, code: str | None, kind: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": f"req_{custom_id}",
            "body": {"error": {"message": "failed", "type": kind, "param": None, "code": code}},
        },
        "error": None,
    }


def line_error(custom_id: str, code: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": "did not run"},
    }


class Run:
    """One collect_results call over files written by the test, and what it wrote."""

    def __init__(self, tmp_path: Path, ids: list[str]) -> None:
        self.tmp_path = tmp_path
        self.input_ids = {cid: n for n, cid in enumerate(ids, start=1)}
        self.results = io.BytesIO()
        self.errors = io.BytesIO()

    def file(self, name: str, content: bytes) -> Path:
        path = self.tmp_path / name
        path.write_bytes(content)
        return path

    def __call__(
        self,
        output: bytes | None,
        errors: bytes | None,
        *,
        counts: BatchCounts | None = None,
        completed: bool = True,
    ) -> CollectedFiles:
        return collect_results(
            input_ids=self.input_ids,
            output_file=None if output is None else self.file("output.jsonl", output),
            error_file=None if errors is None else self.file("errors.jsonl", errors),
            results_out=self.results,
            errors_out=self.errors,
            not_run_code=NOT_RUN,
            not_run_message="not run: the batch ended cancelled",
            batch_counts=counts,
            batch_completed=completed,
            output_file_id="file-out",
            error_file_id="file-err",
        )

    @staticmethod
    def _rows(buffer: io.BytesIO) -> list[dict[str, Any]]:
        data = buffer.getvalue()
        assert not data or data.endswith(b"\n"), "every written line ends with a newline"
        return [json.loads(line) for line in data.splitlines()]

    @property
    def result_rows(self) -> list[dict[str, Any]]:
        return self._rows(self.results)

    @property
    def error_rows(self) -> list[dict[str, Any]]:
        return self._rows(self.errors)

    def assert_each_input_exactly_once(self) -> None:
        rows = self.result_rows + self.error_rows
        seen = Counter(row["custom_id"] for row in rows if row["custom_id"] is not None)
        assert seen == Counter(list(self.input_ids)), seen


def shuffled(rows: list[dict[str, Any]], seed: int = 7) -> bytes:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return jsonl(rows)


IDS = [f"r-{i}" for i in range(8)]


def test_every_input_lands_once_across_results_and_errors(tmp_path: Path) -> None:
    run = Run(tmp_path, IDS)
    good = [ok(cid, prompt=10 + i, completion=i) for i, cid in enumerate(IDS[:6])]
    in_output = [*good, http_failure("r-6", 500, None, "server_error")]
    in_errors = [http_failure("r-7", 429, "rate_limit_exceeded", "requests")]

    collected = run(
        shuffled(in_output), jsonl(in_errors), counts=BatchCounts(total=8, completed=6, failed=2)
    )

    run.assert_each_input_exactly_once()
    assert {row["custom_id"] for row in run.result_rows} == set(IDS[:6])
    assert {row["custom_id"] for row in run.error_rows} == {"r-6", "r-7"}
    # Lines are copied as the gateway wrote them, not re-encoded into something else.
    by_id = {row["custom_id"]: row for row in good}
    assert all(row == by_id[row["custom_id"]] for row in run.result_rows)
    tally = collected.tally
    assert (tally.total, tally.succeeded, tally.failed, tally.not_run) == (8, 6, 2, 0)
    assert tally.failures_by_code == {"rate_limit_exceeded": 1, "server_error": 1}
    assert collected.problems == []


def test_both_files_are_in_input_order_whatever_order_the_gateway_wrote(tmp_path: Path) -> None:
    ids = [f"r-{i}" for i in range(12)]
    run = Run(tmp_path, ids)
    in_output = [ok(cid) for cid in ids[:8] if cid != "r-5"]
    in_output += [http_failure("r-5", 500, None, "server_error"), ok("stranger")]
    in_errors = [line_error("r-9", "server_error")]

    collected = run(shuffled(in_output), jsonl(in_errors), completed=False)

    run.assert_each_input_exactly_once()
    assert [row["custom_id"] for row in run.result_rows] == [c for c in ids[:8] if c != "r-5"]
    # Failures and never-run requests in their input places; a line that joined
    # no request after every request's own.
    assert [row["custom_id"] for row in run.error_rows] == [
        "r-5",
        "r-8",
        "r-9",
        "r-10",
        "r-11",
        None,
    ]
    by_id = {row["custom_id"]: row for row in in_output}
    assert all(row == by_id[row["custom_id"]] for row in run.result_rows)
    assert collected.tally.not_run == 3


def test_usage_is_summed_over_successful_lines(tmp_path: Path) -> None:
    run = Run(tmp_path, ["a", "b", "c", "d"])
    responses_style = ok("c")
    responses_style["response"]["body"]["usage"] = {
        "input_tokens": 100,
        "output_tokens": 50,
        "total_tokens": 150,
    }
    failed = http_failure("d", 500, None, "server_error")
    failed["response"]["body"]["usage"] = {"prompt_tokens": 1000, "total_tokens": 1000}
    output = jsonl([ok("a", 10, 5), ok("b", 20, 7), responses_style, failed])

    usage = run(output, None).usage

    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (130, 62, 192)


@pytest.mark.parametrize(
    ("output", "errors", "code", "where", "detail"),
    [
        pytest.param(
            jsonl([ok("r-0"), ok("stranger")]),
            None,
            "unknown_custom_id",
            "output file file-out line 2",
            "custom_id='stranger' is not in the input",
            id="unknown-custom-id",
        ),
        pytest.param(
            jsonl([ok("r-0"), ok("r-1"), ok("r-0")]),
            None,
            "duplicate_result",
            "output file file-out line 3",
            "custom_id='r-0' again; the first, output file file-out line 1, was kept",
            id="duplicate-in-output",
        ),
        pytest.param(
            jsonl([ok("r-0"), ok("r-1")]),
            jsonl([line_error("r-1", "server_error")]),
            "duplicate_result",
            "error file file-err line 1",
            "custom_id='r-1' again; the first, output file file-out line 2, was kept",
            id="duplicate-across-files",
        ),
        pytest.param(
            jsonl([ok("r-0")]) + json.dumps(ok("r-1")).encode()[:57],
            None,
            "unparseable_output_line",
            "output file file-out line 2",
            "not JSON: ",
            id="truncated-line",
        ),
        pytest.param(
            jsonl([ok("r-0")]) + '{"custom_id": "r-1", "answer": "caf\u00e9'.encode()[:-1],
            None,
            "unparseable_output_line",
            "output file file-out line 2",
            "not JSON: not UTF-8",
            id="truncated-inside-a-utf8-character",
        ),
        pytest.param(
            jsonl([ok("r-0"), {"id": "x", "response": None}]),
            None,
            "missing_custom_id",
            "output file file-out line 2",
            "no custom_id",
            id="no-custom-id",
        ),
        pytest.param(
            jsonl([ok("r-0"), ["r-1"]]),
            None,
            "missing_custom_id",
            "output file file-out line 2",
            "no custom_id",
            id="line-not-an-object",
        ),
    ],
)
def test_a_line_that_joins_no_request_is_kept_and_costs_no_other(
    tmp_path: Path, output: bytes, errors: bytes | None, code: str, where: str, detail: str
) -> None:
    run = Run(tmp_path, IDS)

    collected = run(output, errors, completed=False)

    run.assert_each_input_exactly_once()
    assert "r-0" in {row["custom_id"] for row in run.result_rows}
    [kept] = [row for row in run.error_rows if row["custom_id"] is None]
    assert kept["error"]["code"] == code
    assert kept["error"]["message"].startswith(f"{where}: {detail}")
    _, _, file_id, _, line = where.split()
    assert (kept["error"]["file_id"], kept["error"]["line"]) == (file_id, int(line))
    bad_line = (errors or output).rstrip(b"\n").split(b"\n")[kept["error"]["line"] - 1]
    assert kept["raw"] == bad_line.decode("utf-8", errors="backslashreplace")
    [problem] = collected.problems
    assert problem.startswith("1 line(s) of the gateway's files ")
    assert f"written to the errors file as {code}: {where} ({detail}" in problem
    # Not a failed request: the tally counts the input's requests only.
    assert collected.tally.total == len(IDS)
    assert collected.tally.succeeded + collected.tally.failed + collected.tally.not_run == len(IDS)


def test_many_unjoined_lines_make_a_bounded_problem(tmp_path: Path) -> None:
    run = Run(tmp_path, IDS)
    strangers = [ok(f"stranger-{i}") for i in range(500)]
    torn = [json.dumps(ok(f"r-{i}"))[:40] for i in range(4)]

    collected = run(jsonl([*strangers, *torn, *(ok(cid) for cid in IDS)]), None)

    run.assert_each_input_exactly_once()
    assert len(run.result_rows) == len(IDS)
    kept = Counter(row["error"]["code"] for row in run.error_rows if row["custom_id"] is None)
    assert kept == {"unknown_custom_id": 500, "unparseable_output_line": 4}
    assert len(collected.problems) == 2
    unknown = next(p for p in collected.problems if "unknown_custom_id" in p)
    assert unknown.startswith("500 line(s)")
    assert unknown.count("custom_id='stranger-") == EXAMPLES_PER_PROBLEM
    assert unknown.endswith(f"; and {500 - EXAMPLES_PER_PROBLEM} more")
    assert sum(len(p) for p in collected.problems) < 2_000


def test_cancelled_batch_gets_not_run_lines_for_what_never_ran(tmp_path: Path) -> None:
    run = Run(tmp_path, IDS)
    output = shuffled([ok("r-0"), ok("r-3"), ok("r-5")])
    errors = jsonl([http_failure("r-6", 500, None, "server_error")])

    collected = run(
        output, errors, counts=BatchCounts(total=8, completed=3, failed=1), completed=False
    )

    run.assert_each_input_exactly_once()
    never_ran = {"r-1", "r-2", "r-4", "r-7"}
    synthetic = [row for row in run.error_rows if row["custom_id"] in never_ran]
    assert len(synthetic) == 4
    for row in synthetic:
        assert row["response"] is None
        assert row["error"]["code"] == NOT_RUN
        assert row["error"]["message"] == "not run: the batch ended cancelled"
    tally = collected.tally
    assert (tally.total, tally.succeeded, tally.failed, tally.not_run) == (8, 3, 1, 4)
    assert tally.failures_by_code == {NOT_RUN: 4, "server_error": 1}
    assert collected.problems == []


def test_expired_batch_unfinished_lines_count_as_not_run(tmp_path: Path) -> None:
    run = Run(tmp_path, ["a", "b", "c"])
    collected = collect_results(
        input_ids=run.input_ids,
        output_file=run.file("out.jsonl", jsonl([ok("b")])),
        error_file=run.file(
            "err.jsonl", jsonl([line_error("c", "batch_expired"), line_error("a", "batch_expired")])
        ),
        results_out=run.results,
        errors_out=run.errors,
        not_run_code="batch_expired",
        not_run_message="not run: the batch ended expired",
        batch_counts=BatchCounts(total=3, completed=1, failed=0),
        batch_completed=False,
    )
    run.assert_each_input_exactly_once()
    tally = collected.tally
    assert (tally.succeeded, tally.failed, tally.not_run) == (1, 0, 2)
    assert tally.failures_by_code == {"batch_expired": 2}


def test_completed_batch_with_missing_lines_is_reported(tmp_path: Path) -> None:
    run = Run(tmp_path, IDS)
    output = shuffled([ok(cid) for cid in IDS if cid not in ("r-2", "r-6")])

    collected = run(output, None, counts=BatchCounts(total=8, completed=8, failed=0))

    run.assert_each_input_exactly_once()
    assert {row["custom_id"] for row in run.error_rows} == {"r-2", "r-6"}
    for row in run.error_rows:
        assert row["response"] is None
        assert row["error"]["code"] == "missing_from_output"
    tally = collected.tally
    assert (tally.succeeded, tally.failed, tally.not_run) == (6, 2, 0)
    assert tally.failures_by_code == {"missing_from_output": 2}
    assert any(
        "2 request(s) are missing" in p and "custom_id='r-2'" in p and "input line 3" in p
        for p in collected.problems
    ), collected.problems


def test_request_counts_that_do_not_match_the_files_are_reported(tmp_path: Path) -> None:
    run = Run(tmp_path, IDS)
    output = jsonl([ok(cid) for cid in IDS])

    collected = run(output, None, counts=BatchCounts(total=10, completed=5, failed=1))

    assert collected.tally.succeeded == 8
    assert len(collected.problems) == 2, collected.problems
    assert "counts 10 requests, the input has 8" in collected.problems[0]
    assert "reports 6 finished requests, its files hold 8" in collected.problems[1]


def test_matching_request_counts_report_nothing(tmp_path: Path) -> None:
    run = Run(tmp_path, IDS)
    collected = run(jsonl([ok(cid) for cid in IDS]), None, counts=BatchCounts(total=8, completed=8))
    assert collected.problems == []


def test_azure_zero_byte_error_file_on_success_is_fine(tmp_path: Path) -> None:
    run = Run(tmp_path, IDS)

    collected = run(
        shuffled([ok(cid) for cid in IDS]), b"", counts=BatchCounts(total=8, completed=8)
    )

    run.assert_each_input_exactly_once()
    assert run.errors.getvalue() == b""
    assert collected.tally.succeeded == 8
    assert collected.tally.failures_by_code == {}
    assert collected.problems == []


def test_no_output_file_when_every_request_failed(tmp_path: Path) -> None:
    run = Run(tmp_path, ["a", "b"])
    errors = jsonl(
        [
            http_failure("a", 400, "invalid_request", "invalid_request_error"),
            http_failure("b", 400, None, "invalid_request_error"),
        ]
    )

    collected = run(None, errors, counts=BatchCounts(total=2, completed=0, failed=2))

    run.assert_each_input_exactly_once()
    assert run.results.getvalue() == b""
    assert collected.tally.failed == 2
    assert collected.tally.failures_by_code == {"invalid_request": 1, "invalid_request_error": 1}


def test_last_line_without_newline_is_written_with_one(tmp_path: Path) -> None:
    run = Run(tmp_path, ["a", "b"])
    run(jsonl([ok("a")]) + json.dumps(ok("b")).encode(), None)
    assert [row["custom_id"] for row in run.result_rows] == ["a", "b"]


def test_read_input_ids_maps_custom_id_to_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl([chat_line("x"), chat_line("y"), chat_line("z")]))
    assert read_input_ids(path) == {"x": 1, "y": 2, "z": 3}


def test_odd_usage_from_a_model_server_does_not_fail_the_collection(tmp_path: Path) -> None:
    run = Run(tmp_path, ["odd", "good"])
    odd = ok("odd")
    odd["response"]["body"]["usage"] = {
        "prompt_tokens": "12",
        "completion_tokens": None,
        "total_tokens": 7.5,
    }
    good = ok("good")
    good["response"]["body"]["usage"] = {"input_tokens": 3, "output_tokens": 4}

    usage = run(jsonl([odd, good]), None).usage

    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 4, 7)


def test_usage_is_counted_by_the_model_each_response_names(tmp_path: Path) -> None:
    """What a sharded job's parent prices, without reading the results again."""
    run = Run(tmp_path, ["a", "b", "c", "d"])
    rows = [ok("a", 10, 1), ok("b", 20, 2), ok("c", 40, 4), http_failure("d", 500, None, "x")]
    rows[0]["response"]["body"]["model"] = "gpt-4o-mini-2024-07-18"
    rows[1]["response"]["body"]["model"] = "gpt-4o-mini-2024-07-18"
    rows[3]["response"]["body"]["usage"] = {"prompt_tokens": 1000, "completion_tokens": 0}

    by_model = run(jsonl(rows), None).usage.by_model

    assert by_model is not None
    assert {m: (t.prompt_tokens, t.completion_tokens) for m, t in by_model.items()} == {
        "gpt-4o-mini-2024-07-18": (30, 3),
        "unknown": (40, 4),
    }


def test_token_counts_by_model_stay_few_whatever_models_the_responses_name(tmp_path: Path):
    """A hostile output naming 500 models cannot grow the job's result (and its history)."""
    lines = []
    for i in range(500):
        line = ok(f"r{i}")
        line["response"]["body"]["model"] = f"m-{i}\n" + "x" * 1000
        lines.append(line)
    output = tmp_path / "out.jsonl"
    output.write_bytes(jsonl(lines))
    collected = collect_results(
        input_ids={f"r{i}": i + 1 for i in range(500)},
        output_file=output,
        error_file=None,
        results_out=io.BytesIO(),
        errors_out=io.BytesIO(),
        not_run_code=NOT_RUN,
        not_run_message="not run",
        batch_counts=None,
        batch_completed=True,
    )
    by_model = collected.usage.by_model
    assert by_model is not None
    assert len(by_model) == MAX_MODELS + 1
    assert by_model[OTHER_MODELS].prompt_tokens == (500 - MAX_MODELS) * 10
    assert sum(m.prompt_tokens for m in by_model.values()) == 500 * 10
    assert all("\n" not in name and len(name) < 150 for name in by_model)
