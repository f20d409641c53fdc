"""Merging shards' results into one results and one errors file, each custom_id once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shards.files import ShardFiles
from shards.limits import ShardLimits
from shards.lines import custom_id_of
from shards.merge import MergeError, merge_rounds, merge_shards
from shards.split import split_jsonl
from tests.shards.helpers import (
    http_failure,
    not_run,
    ok,
    read_jsonl,
    request,
    shuffled,
    write_jsonl,
)


def run_shards(
    tmp_path: Path, ids: list[str], outcome: dict[str, dict[str, Any]], per_shard: int, tag: str
) -> list[ShardFiles]:
    """Split ``ids`` and write each shard's results/errors in a shuffled (gateway) order."""
    source = write_jsonl(tmp_path / f"{tag}.jsonl", (request(i) for i in ids))
    folder = tmp_path / f"{tag}-shards"
    plan = split_jsonl(source, folder, ShardLimits(max_requests=per_shard))
    shards = []
    for spec in plan.shards:
        shard_ids = [
            json.loads(x)["custom_id"] for x in (folder / spec.name).read_text().splitlines()
        ]
        lines = [outcome.get(i, ok(i)) for i in shard_ids]
        good = [x for x in lines if x["error"] is None and x["response"]["status_code"] < 400]
        bad = [x for x in lines if x not in good]
        stem = folder / spec.name.removesuffix(".jsonl")
        shards.append(
            ShardFiles(
                input_path=folder / spec.name,
                results_path=write_jsonl(Path(f"{stem}.results.jsonl"), shuffled(good)),
                errors_path=write_jsonl(Path(f"{stem}.errors.jsonl"), shuffled(bad, seed=2)),
            )
        )
    return shards


def ids_of(path: Path) -> list[str]:
    return [row["custom_id"] for row in read_jsonl(path)]


def test_input_order_across_shards_each_custom_id_once(tmp_path: Path) -> None:
    ids = [f"req-{i:03d}" for i in range(25)][::-1]
    failures = {
        "req-003": http_failure("req-003", 400),
        "req-017": not_run("req-017", "batch_expired"),
    }
    shards = run_shards(tmp_path, ids, failures, per_shard=7, tag="job")

    tally = merge_shards(shards, tmp_path / "out.jsonl", tmp_path / "err.jsonl")

    assert ids_of(tmp_path / "out.jsonl") == [i for i in ids if i not in failures]
    assert ids_of(tmp_path / "err.jsonl") == [i for i in ids if i in failures]
    assert (tally.requests, tally.succeeded, tally.failed) == (25, 23, 2)
    assert not list(tmp_path.glob("*.part"))


def test_gateway_order_keeps_each_shards_lines_as_written(tmp_path: Path) -> None:
    ids = [f"req-{i}" for i in range(20)]
    shards = run_shards(tmp_path, ids, {"req-5": http_failure("req-5", 500)}, 6, "job")

    tally = merge_shards(shards, tmp_path / "out.jsonl", tmp_path / "err.jsonl", order="gateway")

    written = b"".join(s.results_path.read_bytes() for s in shards)
    assert (tmp_path / "out.jsonl").read_bytes() == written
    assert sorted(ids_of(tmp_path / "out.jsonl")) == sorted(i for i in ids if i != "req-5")
    assert (tally.succeeded, tally.failed) == (19, 1)


@pytest.mark.parametrize("order", ["input", "gateway"])
def test_a_missing_result_is_an_error_not_a_silent_gap(tmp_path: Path, order: Any) -> None:
    shards = run_shards(tmp_path, [f"r{i}" for i in range(5)], {}, 5, "job")
    rows = read_jsonl(shards[0].results_path)
    write_jsonl(shards[0].results_path, [r for r in rows if r["custom_id"] != "r2"])

    with pytest.raises(MergeError, match="r2" if order == "input" else "4 lines for the 5"):
        merge_shards(shards, tmp_path / "o", tmp_path / "e", order=order)
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob("*.part"))


def test_a_custom_id_twice_or_foreign_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    shards = run_shards(tmp_path, ["a", "b"], {"b": http_failure("b", 429)}, 5, "job")
    write_jsonl(shards[0].errors_path, [http_failure("b", 429), ok("a")])

    with pytest.raises(MergeError, match=r"errors.jsonl:2: custom_id='a' appears twice"):
        merge_shards(shards, tmp_path / "o", tmp_path / "e")

    write_jsonl(shards[0].errors_path, [http_failure("zz", 429)])
    with pytest.raises(MergeError, match=r"errors.jsonl:1: custom_id='zz' is not in"):
        merge_shards(shards, tmp_path / "o", tmp_path / "e")


def test_follow_up_round_replaces_entries_and_counts_recoveries(tmp_path: Path) -> None:
    ids = [f"q{i:02d}" for i in range(12)]
    first = {
        "q01": not_run("q01", "batch_expired"),
        "q05": http_failure("q05", 429),
        "q08": http_failure("q08", 400),
        "q10": http_failure("q10", 503),
    }
    round0 = run_shards(tmp_path, ids, first, per_shard=5, tag="r0")
    retried = ["q01", "q05", "q10"]
    round1 = run_shards(tmp_path, retried, {"q10": http_failure("q10", 503)}, 2, "r1")

    for order in ("input", "gateway"):
        out, err = tmp_path / f"out-{order}", tmp_path / f"err-{order}"
        tally = merge_rounds([round0, round1], out, err, order=order)  # type: ignore[arg-type]

        results, errors = read_jsonl(out), read_jsonl(err)
        assert sorted(ids_of(out) + ids_of(err)) == ids
        assert {r["custom_id"] for r in results} >= {"q01", "q05"}
        assert {e["custom_id"]: e["response"]["status_code"] for e in errors} == {
            "q08": 400,
            "q10": 503,
        }
        assert (tally.requests, tally.succeeded, tally.failed) == (12, 10, 2)
        assert (tally.resubmitted, tally.recovered) == (3, 2)
        if order == "input":
            assert ids_of(out) == [i for i in ids if i not in ("q08", "q10")]


def test_a_follow_up_out_of_input_order_is_refused(tmp_path: Path) -> None:
    round0 = run_shards(
        tmp_path, ["a", "b", "c"], {k: http_failure(k, 500) for k in "abc"}, 5, "r0"
    )
    round1 = run_shards(tmp_path, ["c", "a"], {}, 5, "r1")

    with pytest.raises(MergeError, match="not in input order"):
        merge_rounds([round0, round1], tmp_path / "o", tmp_path / "e")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"custom_id": "a-1", "method": "POST"}\n', "a-1"),
        (b'{"id": "batch_req_1", "custom_id": "x", "response": {}}\n', "x"),
        (b'{"body": {"custom_id": "inner"}, "custom_id": "outer"}\n', "outer"),
        (b'{"note": "say \\"custom_id\\": \\"fake\\"", "custom_id": "real"}\n', "real"),
        (b'{"custom_id": "tab\\tid"}\n', "tab\tid"),
        (b'{"custom_id": "caf\xc3\xa9"}\n', "caf\u00e9"),
        (b'{"custom_id": 7}\n', None),
        (b"[1, 2]\n", None),
        (b"not json\n", None),
    ],
)
def test_custom_id_is_read_from_the_top_level_only(raw: bytes, expected: str | None) -> None:
    assert custom_id_of(raw) == expected


def test_lines_of_any_shape_merge_the_same(tmp_path: Path) -> None:
    """Escaped custom_ids, members before custom_id, blank lines: read line by line."""
    ids = ["plain", 'quote"d', "tab\tid", "caf\u00e9"]
    shard_input = write_jsonl(tmp_path / "in.jsonl", (request(i) for i in ids))
    nested = {"response": {"status_code": 200, "body": {}}, "custom_id": "plain", "error": None}
    results = tmp_path / "results.jsonl"
    results.write_text(
        "\n".join(json.dumps(r) for r in [ok("caf\u00e9"), nested, ok('quote"d')]) + "\n\n"
    )
    errors = write_jsonl(tmp_path / "errors.jsonl", [http_failure("tab\tid", 400)])
    shard = ShardFiles(shard_input, results, errors)

    tally = merge_shards([shard], tmp_path / "o.jsonl", tmp_path / "e.jsonl")

    assert ids_of(tmp_path / "o.jsonl") == ["plain", 'quote"d', "caf\u00e9"]
    assert ids_of(tmp_path / "e.jsonl") == ["tab\tid"]
    assert (tally.succeeded, tally.failed) == (3, 1)
