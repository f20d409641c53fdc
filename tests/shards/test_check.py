"""The whole-input check: every line as a batch would see it, custom_ids across every shard."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from shards.check import MAX_REPORTED, InputRejected, check_input
from shards.limits import ShardLimits
from shards.split import split_jsonl

CHAT = "/v1/chat/completions"


def request(custom_id: str, model: str = "gpt-4o-mini", **changes: Any) -> dict[str, Any]:
    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": custom_id}]},
    }
    return {**line, **changes}


def write(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def rejected(path: Path, limits: ShardLimits | None = None) -> InputRejected:
    with pytest.raises(InputRejected) as caught:
        check_input(path, endpoint=CHAT, limits=limits or ShardLimits(max_requests=20))
    return caught.value


def test_a_good_input_gives_its_counts_and_the_shards_the_split_makes(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [request(f"req-{i}") for i in range(60)] + [" "])
    checked = check_input(path, endpoint=CHAT, limits=ShardLimits(max_requests=20))
    plan = split_jsonl(path, tmp_path / "shards", ShardLimits(max_requests=20))
    assert (checked.requests, checked.bytes, checked.shards) == (60, plan.bytes, 3)
    assert checked.models == ("gpt-4o-mini",)


def test_a_custom_id_repeated_in_another_shard_names_both_lines(tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [request(f"req-{i}") for i in range(60)]
    lines[45] = request("req-5")  # line 46 repeats line 6's id, two shards later
    found = rejected(write(tmp_path / "in.jsonl", lines))
    assert [(p.line, p.custom_id) for p in found.problems] == [(46, "req-5")]
    assert str(found).splitlines() == [
        f"{found.label}: 1 problem(s) in the whole input, nothing was uploaded:",
        f"  {found.label}:46: custom_id='req-5' field 'custom_id': duplicate of line 6",
    ]


def test_a_bad_line_in_the_last_shard_is_found(tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [request(f"req-{i}") for i in range(60)]
    lines[50] = '{"custom_id": "req-50", "method": "POST"'
    found = rejected(write(tmp_path / "in.jsonl", lines))
    assert found.first.line == 51
    assert found.first.message.startswith("not JSON")


def test_field_rules_are_a_batchs_own(tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [
        request("a"),
        request("b", method="GET"),
        request("c", url="/v1/embeddings"),
        {"custom_id": "d", "method": "POST", "url": CHAT},
        request(""),
        [1, 2],  # type: ignore[list-item]
        "\xef\xbb\xbf",
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"".join(
            (json.dumps(x).encode() if not isinstance(x, str) else b"\xff\xfe") + b"\n"
            for x in lines
        )
    )
    found = rejected(path)
    assert [(p.line, p.custom_id, p.message.split(":")[0]) for p in found.problems] == [
        (2, "b", "field 'method'"),
        (3, "c", "field 'url'"),
        (4, "d", "field 'body'"),
        (5, None, "field 'custom_id'"),
        (6, None, "a request must be a JSON object, got list"),
        (7, None, "not UTF-8 (byte 0"),
    ]


def test_two_models_in_one_batch_are_refused_in_separate_batches_allowed(tmp_path: Path) -> None:
    split_by_model = [request(f"a-{i}", "gpt-4o") for i in range(2)] + [
        request(f"b-{i}", "gpt-4o-mini") for i in range(2)
    ]
    path = write(tmp_path / "in.jsonl", split_by_model)  # type: ignore[arg-type]
    assert check_input(path, endpoint=CHAT, limits=ShardLimits(max_requests=2)).models == (
        "gpt-4o",
        "gpt-4o-mini",
    )
    found = rejected(path, ShardLimits(max_requests=3))
    assert [(p.line, p.custom_id) for p in found.problems] == [(3, "b-0")]
    assert "batch 1 (from line 1) runs 'gpt-4o'" in found.first.message


def test_a_request_over_the_byte_limit_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [request("small"), request("big", note="x" * 500)])
    found = rejected(path, ShardLimits(max_bytes=400))
    assert (found.first.line, found.first.custom_id) == (2, "big")
    assert "over the limit of 400 bytes per batch file" in found.first.message


def test_problems_are_listed_in_line_order_and_the_rest_counted(tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [request("same") for _ in range(30)]
    lines[3] = "not json"
    found = rejected(write(tmp_path / "in.jsonl", lines))
    assert len(found.problems) == MAX_REPORTED
    assert found.problems[0].line == 2 and found.problems[2].line == 4
    assert [p.line for p in found.problems] == sorted(p.line or 0 for p in found.problems)
    assert found.more == 28 + 1 - MAX_REPORTED  # 28 repeats and 1 bad line, 20 shown


def test_an_empty_input_holds_no_requests(tmp_path: Path) -> None:
    found = rejected(write(tmp_path / "in.jsonl", ["", "  "]))
    assert found.first.message == "the file holds no requests"


@pytest.mark.parametrize("seed", range(12))
def test_the_batches_it_follows_are_the_ones_the_split_cuts(tmp_path: Path, seed: int) -> None:
    """Random sizes, blank lines and model runs: exactly the lines the split would put in a
    shard begun with another model are refused, and a good input's counts are the plan's."""
    rng = random.Random(seed)
    lines: list[dict[str, Any] | str] = []
    model = "gpt-4o"
    for i in range(rng.randint(20, 80)):
        if rng.random() < 0.1:
            lines.append("")
        if rng.random() < 0.03:
            model = "gpt-4o-mini" if model == "gpt-4o" else "gpt-4o"
        lines.append(request(f"req-{i}", model, note="x" * rng.randint(0, 300)))
    path = write(tmp_path / "in.jsonl", lines)
    limits = ShardLimits(max_requests=rng.randint(3, 15), max_bytes=rng.randint(800, 3000))
    plan = split_jsonl(path, tmp_path / "shards", limits)
    numbered = [
        (number, json.loads(text)["body"]["model"])
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if text.strip()
    ]
    expected, start = [], 0
    for spec in plan.shards:
        shard = numbered[start : start + spec.requests]
        start += spec.requests
        expected += [number for number, model in shard if model != shard[0][1]]
    try:
        checked = check_input(path, endpoint=CHAT, limits=limits)
    except InputRejected as found:
        assert [p.line for p in found.problems] == expected[:MAX_REPORTED]
        assert all("one batch runs one model" in p.message for p in found.problems)
    else:
        assert expected == []
        assert (checked.requests, checked.bytes, checked.shards) == (
            plan.requests,
            plan.bytes,
            len(plan.shards),
        )
