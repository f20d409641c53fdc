"""Splitting an input into shards within the request and byte limits."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from shards import split
from shards.limits import ShardLimits, limits_for
from shards.split import LineTooLarge, read_plan, split_jsonl
from tests.shards.helpers import request, write_jsonl


def line_ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines()]


def test_defaults_per_dialect_and_user_overrides() -> None:
    assert limits_for("openai") == ShardLimits(max_requests=50_000, max_bytes=200 * 1024**2)
    assert limits_for("azure").max_requests == 100_000
    assert limits_for("KONG").max_requests == 100_000
    assert limits_for("kong", max_bytes=1024**2) == ShardLimits(
        max_requests=100_000, max_bytes=1024**2
    )
    with pytest.raises(ValueError, match="unknown gateway dialect 'bedrock'"):
        limits_for("bedrock")


BOTH_PATHS = pytest.mark.parametrize("count_tokens", [True, False], ids=["tokens", "no-tokens"])


@BOTH_PATHS
def test_request_limit_makes_contiguous_shards_that_remember_their_first_line(
    tmp_path: Path, count_tokens: bool
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", (request(f"r{i}") for i in range(10)))

    plan = split_jsonl(
        source, tmp_path / "shards", ShardLimits(max_requests=4), count_tokens=count_tokens
    )

    assert [s.requests for s in plan.shards] == [4, 4, 2]
    assert [(s.first_line, s.last_line) for s in plan.shards] == [(1, 4), (5, 8), (9, 10)]
    files = [tmp_path / "shards" / s.name for s in plan.shards]
    assert [line_ids(f) for f in files] == [
        ["r0", "r1", "r2", "r3"],
        ["r4", "r5", "r6", "r7"],
        ["r8", "r9"],
    ]
    assert b"".join(f.read_bytes() for f in files) == source.read_bytes()
    assert plan.requests == 10 and plan.bytes == source.stat().st_size
    assert read_plan(tmp_path / "shards") == plan
    assert plan.shards[2].input_line(2) == 10


@BOTH_PATHS
def test_byte_limit_closes_a_shard_before_the_line_that_would_cross_it(
    tmp_path: Path, count_tokens: bool
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", (request(f"r{i}") for i in range(6)))
    line_size = len(source.read_bytes().splitlines(keepends=True)[0])

    limits = ShardLimits(max_bytes=2 * line_size + 1)
    plan = split_jsonl(source, tmp_path / "s", limits, count_tokens=count_tokens)

    assert [s.requests for s in plan.shards] == [2, 2, 2]
    assert all(s.bytes <= 2 * line_size + 1 for s in plan.shards)
    assert all((tmp_path / "s" / s.name).stat().st_size == s.bytes for s in plan.shards)


@BOTH_PATHS
def test_a_shard_exactly_at_both_limits_is_not_split(tmp_path: Path, count_tokens: bool) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", (request(f"r{i}") for i in range(3)))
    size = source.stat().st_size

    limits = ShardLimits(max_requests=3, max_bytes=size)
    plan = split_jsonl(source, tmp_path / "s", limits, count_tokens=count_tokens)

    assert [s.requests for s in plan.shards] == [3]


@BOTH_PATHS
def test_line_numbers_count_blank_lines_and_a_missing_final_newline_is_added(
    tmp_path: Path, count_tokens: bool
) -> None:
    source = tmp_path / "in.jsonl"
    rows = [json.dumps(request(f"r{i}")) for i in range(3)]
    source.write_text(rows[0] + "\n \n" + rows[1] + "\n" + rows[2])

    plan = split_jsonl(
        source, tmp_path / "s", ShardLimits(max_requests=2), count_tokens=count_tokens
    )

    assert [(s.first_line, s.requests) for s in plan.shards] == [(1, 2), (4, 1)]
    assert (tmp_path / "s" / plan.shards[1].name).read_text() == rows[2] + "\n"


@BOTH_PATHS
def test_one_line_over_the_byte_limit_names_file_line_and_custom_id(
    tmp_path: Path, count_tokens: bool
) -> None:
    rows = [request("small-1"), request("huge", "x" * 5000), request("small-2")]
    source = write_jsonl(tmp_path / "in.jsonl", rows)

    with pytest.raises(LineTooLarge) as caught:
        split_jsonl(
            source,
            tmp_path / "s",
            ShardLimits(max_bytes=1000),
            label="in.jsonl",
            count_tokens=count_tokens,
        )

    message = str(caught.value)
    assert message.startswith("in.jsonl:2: custom_id='huge': the request is ")
    assert "over the limit of 1000 bytes" in message and "--max-batch-bytes" in message
    assert (caught.value.line, caught.value.custom_id) == (2, "huge")
    assert not list((tmp_path / "s").glob("*.part"))


def test_same_input_gives_the_same_shards_byte_for_byte(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", (request(f"r{i}", "q" * i) for i in range(50)))
    limits = ShardLimits(max_requests=7, max_bytes=2000)

    first = split_jsonl(source, tmp_path / "a", limits)
    again = split_jsonl(source, tmp_path / "b", limits)

    assert first == again
    for spec in first.shards:
        assert (tmp_path / "a" / spec.name).read_bytes() == (
            tmp_path / "b" / spec.name
        ).read_bytes()


def test_shards_carry_token_estimates_for_admission(tmp_path: Path) -> None:
    rows = [
        request("a", "x" * 40, max_tokens=100),
        request("b", "y" * 8, max_completion_tokens=10, n=2),
        request("c", "z" * 4),
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)

    plan = split_jsonl(source, tmp_path / "s", ShardLimits(max_requests=2))

    # 4 characters a token, 3 per message, 3 per request.
    assert [s.estimated_input_tokens for s in plan.shards] == [(10 + 6) + (2 + 6), 1 + 6]
    assert [s.output_token_ceiling for s in plan.shards] == [100 + 20, 0]
    assert [s.unlimited_requests for s in plan.shards] == [0, 1]
    assert plan.estimated_input_tokens == 31


@pytest.mark.parametrize("seed", range(12))
def test_block_cutting_gives_the_same_shards_as_line_by_line(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    rows = [request(f"r{i}", "w" * rng.randrange(0, 300)) for i in range(rng.randrange(1, 400))]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    longest = max(len(x) for x in source.read_bytes().splitlines(keepends=True))
    limits = ShardLimits(
        max_requests=rng.randrange(1, 60), max_bytes=rng.randrange(longest, 20 * longest)
    )

    blocks = split_jsonl(source, tmp_path / "b", limits)
    monkeypatch.setattr(split, "_may_hold_blank_lines", lambda *_: True)
    by_line = split_jsonl(source, tmp_path / "p", limits)

    assert by_line.shards == blocks.shards
    for spec in by_line.shards:
        assert (tmp_path / "p" / spec.name).read_bytes() == (
            tmp_path / "b" / spec.name
        ).read_bytes()


def test_lines_longer_than_a_read_block_are_cut_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(split, "BLOCK", 64)
    rows = [request(f"r{i}", "v" * (i * 40)) for i in range(8)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)

    plan = split_jsonl(source, tmp_path / "s", ShardLimits(max_requests=3), count_tokens=False)

    assert (
        b"".join((tmp_path / "s" / s.name).read_bytes() for s in plan.shards) == source.read_bytes()
    )
    assert [s.requests for s in plan.shards] == [3, 3, 2]

    with pytest.raises(LineTooLarge, match=r":8: custom_id='r7'"):
        split_jsonl(source, tmp_path / "t", ShardLimits(max_bytes=400), count_tokens=False)


def test_many_uneven_lines_per_shard_cut_at_the_exact_request_count(tmp_path: Path) -> None:
    rng = random.Random(7)
    rows = [request(f"r{i}", "u" * int(rng.paretovariate(1.2) * 20)) for i in range(5000)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)

    plan = split_jsonl(source, tmp_path / "s", ShardLimits(max_requests=777), count_tokens=False)

    assert [s.requests for s in plan.shards] == [777] * 6 + [5000 - 6 * 777]
    assert [line_ids(tmp_path / "s" / s.name)[0] for s in plan.shards] == [
        f"r{i * 777}" for i in range(7)
    ]


def reference_shards(data: bytes, limits: ShardLimits) -> list[tuple[int, int, bytes]]:
    """(first line, last line, bytes) of each shard, cut one line at a time."""
    shards: list[tuple[int, int, bytes]] = []
    first = last = 0
    body = b""
    count = 0
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    for number, part in enumerate(parts, start=1):
        raw = part + b"\n"
        if raw.isspace():
            continue
        if body and (count >= limits.max_requests or len(body) + len(raw) > limits.max_bytes):
            shards.append((first, last, body))
            body, count = b"", 0
        if not body:
            first = number
        body, count, last = body + raw, count + 1, number
    if body:
        shards.append((first, last, body))
    return shards


@pytest.mark.parametrize("seed", range(10))
def test_tiny_read_blocks_blank_lines_and_a_last_line_without_newline_cut_as_line_by_line(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines across reads, blank and indented lines anywhere: what a line-by-line cut gives."""
    monkeypatch.setattr(split, "BLOCK", 61)
    rng = random.Random(seed)
    lines = []
    for i in range(rng.randrange(20, 200)):
        line = json.dumps(request(f"r{i}", "z" * rng.randrange(0, 150)))
        lines.append(rng.choice(["", "  ", "\t"]) + line if rng.random() < 0.1 else line)
        if rng.random() < 0.1:
            lines.append(rng.choice(["", " ", "\r", " \t "]))
    data = ("\n".join(lines) + rng.choice(["", "\n"])).encode()
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    longest = max(len(x) for x in data.splitlines()) + 1
    limits = ShardLimits(
        max_requests=rng.randrange(1, 40), max_bytes=rng.randrange(longest, 12 * longest)
    )

    plan = split_jsonl(source, tmp_path / "s", limits, count_tokens=False)

    expected = reference_shards(data, limits)
    found = [
        (spec.first_line, spec.last_line, (tmp_path / "s" / spec.name).read_bytes())
        for spec in plan.shards
    ]
    assert found == expected
    assert [spec.requests for spec in plan.shards] == [body.count(b"\n") for *_, body in expected]
