"""Selecting transient failures into a follow-up input; permanent ones stay failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shards.files import ShardFiles
from shards.limits import ShardLimits
from shards.lines import LineError
from shards.merge import merge_rounds
from shards.resubmit import is_transient, select_resubmissions
from shards.split import split_jsonl
from tests.shards.helpers import http_failure, not_run, ok, read_jsonl, request, write_jsonl


@pytest.mark.parametrize(
    ("line", "transient"),
    [
        (http_failure("a", 429, "rate_limit_exceeded"), True),
        (http_failure("a", 500, "server_error"), True),
        (http_failure("a", 503), True),
        (http_failure("a", 408), True),
        (http_failure("a", 400, "context_length_exceeded"), False),
        (http_failure("a", 400, "content_filter"), False),
        (http_failure("a", 404, "model_not_found"), False),
        (not_run("a", "batch_expired"), True),
        (not_run("a", "batch_failed"), True),
        (not_run("a", "missing_from_output"), True),
        (not_run("a", "upstream_unavailable"), True),
        (not_run("a", "token_limit_exceeded"), True),
        (not_run("a", "batch_cancelled"), False),
        (not_run("a", "something_new"), False),
    ],
)
def test_transient_or_permanent(line: dict[str, Any], transient: bool) -> None:
    assert is_transient(line) is transient


def test_a_batch_our_deadline_cancelled_is_transient_a_user_cancel_is_not() -> None:
    line = not_run("a", "batch_cancelled")

    assert is_transient(line, cancelled_by_deadline=True)
    assert not is_transient(line, cancelled_by_deadline=False)


def shard(
    tmp_path: Path, name: str, ids: list[str], results: list[Any], errors: list[Any], **kw: Any
) -> ShardFiles:
    return ShardFiles(
        input_path=write_jsonl(tmp_path / f"{name}.jsonl", (request(i, f"text {i}") for i in ids)),
        results_path=write_jsonl(tmp_path / f"{name}.results.jsonl", results),
        errors_path=write_jsonl(tmp_path / f"{name}.errors.jsonl", errors),
        **kw,
    )


def test_follow_up_input_holds_the_original_lines_of_transient_failures_in_input_order(
    tmp_path: Path,
) -> None:
    one = shard(
        tmp_path,
        "s0",
        ["a", "b", "c", "d"],
        [ok("a")],
        [http_failure("d", 429), http_failure("c", 400), not_run("b", "batch_expired")],
    )
    two = shard(
        tmp_path,
        "s1",
        ["e", "f"],
        [ok("f")],
        [not_run("e", "batch_cancelled")],
        cancelled_by_deadline=True,
    )

    chosen = select_resubmissions([one, two], tmp_path / "follow-up.jsonl")

    inputs = {r["custom_id"]: r for s in (one, two) for r in read_jsonl(s.input_path)}
    assert read_jsonl(tmp_path / "follow-up.jsonl") == [inputs["b"], inputs["d"], inputs["e"]]
    assert chosen.requests == 3
    assert chosen.transient_by_code == {
        "batch_cancelled": 1,
        "batch_expired": 1,
        "rate_limit_exceeded": 1,
    }
    assert (chosen.permanent, chosen.permanent_by_code) == (1, {"invalid_request_error": 1})


def test_no_request_of_a_batch_that_may_still_run_is_sent_again(tmp_path: Path) -> None:
    # A child from before wait-out-uncancelled-v1 gave up on a batch the gateway would
    # not cancel: its not-run requests read deadline_exceeded, but the batch runs on.
    running = shard(
        tmp_path,
        "s0",
        ["a", "b", "c"],
        [ok("a")],
        [not_run("b", "deadline_exceeded"), http_failure("c", 429)],
        cancelled_by_deadline=True,
        batch_may_run=True,
    )
    ended = shard(tmp_path, "s1", ["d"], [], [not_run("d", "deadline_exceeded")])

    chosen = select_resubmissions([running, ended], tmp_path / "follow-up.jsonl")

    assert [r["custom_id"] for r in read_jsonl(tmp_path / "follow-up.jsonl")] == ["d"]
    assert chosen.permanent_by_code == {"deadline_exceeded": 1, "rate_limit_exceeded": 1}


def test_nothing_transient_writes_an_empty_follow_up(tmp_path: Path) -> None:
    only = shard(tmp_path, "s0", ["a", "b"], [ok("a")], [http_failure("b", 400, "bad")])

    chosen = select_resubmissions([only], tmp_path / "follow-up.jsonl")

    assert chosen.requests == 0 and (tmp_path / "follow-up.jsonl").read_bytes() == b""


def test_two_rounds_end_to_end_each_custom_id_once(tmp_path: Path) -> None:
    ids = [f"id{i:02d}" for i in range(10)]
    source = write_jsonl(tmp_path / "job.jsonl", (request(i) for i in ids))
    plan = split_jsonl(source, tmp_path / "r0", ShardLimits(max_requests=4))
    transient = {"id02", "id03", "id07"}
    round0 = []
    for spec in plan.shards:
        shard_ids = [r["custom_id"] for r in read_jsonl(tmp_path / "r0" / spec.name)]
        round0.append(
            ShardFiles(
                input_path=tmp_path / "r0" / spec.name,
                results_path=write_jsonl(
                    tmp_path / f"{spec.index}.out",
                    [ok(i) for i in shard_ids if i not in transient and i != "id09"],
                ),
                errors_path=write_jsonl(
                    tmp_path / f"{spec.index}.err",
                    [http_failure(i, 500) for i in shard_ids if i in transient]
                    + [http_failure(i, 400) for i in shard_ids if i == "id09"],
                ),
            )
        )
    follow_up = tmp_path / "round1.jsonl"
    assert select_resubmissions(round0, follow_up).requests == 3
    plan1 = split_jsonl(follow_up, tmp_path / "r1", ShardLimits(max_requests=2))
    round1 = []
    for spec in plan1.shards:
        shard_ids = [r["custom_id"] for r in read_jsonl(tmp_path / "r1" / spec.name)]
        round1.append(
            ShardFiles(
                input_path=tmp_path / "r1" / spec.name,
                results_path=write_jsonl(
                    tmp_path / f"1-{spec.index}.out", [ok(i) for i in shard_ids if i != "id07"]
                ),
                errors_path=write_jsonl(
                    tmp_path / f"1-{spec.index}.err",
                    [http_failure(i, 429) for i in shard_ids if i == "id07"],
                ),
            )
        )

    tally = merge_rounds([round0, round1], tmp_path / "out.jsonl", tmp_path / "err.jsonl")

    assert [r["custom_id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [
        i for i in ids if i not in ("id07", "id09")
    ]
    assert [
        (r["custom_id"], r["response"]["status_code"]) for r in read_jsonl(tmp_path / "err.jsonl")
    ] == [
        ("id07", 429),
        ("id09", 400),
    ]
    assert (tally.resubmitted, tally.recovered, tally.failed) == (3, 2, 2)


def test_an_error_line_for_a_request_not_in_the_shard_is_refused(tmp_path: Path) -> None:
    stray = shard(tmp_path, "s0", ["a"], [], [http_failure("zz", 500)])

    with pytest.raises(LineError, match="names requests that are not in"):
        select_resubmissions([stray], tmp_path / "follow-up.jsonl")
    assert not list(tmp_path.glob("follow-up*"))
