"""Merging shards' results into one results and one errors file, each custom_id once."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from shards import streams
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
    write_jsonl,
)


def failed(row: dict[str, Any]) -> bool:
    return row["error"] is not None or row["response"]["status_code"] >= 400


def run_shards(
    tmp_path: Path,
    ids: list[str],
    outcome: dict[str, dict[str, Any]],
    per_shard: int,
    tag: str,
    unjoined: dict[int, list[dict[str, Any]]] | None = None,
) -> list[ShardFiles]:
    """Split ``ids`` and write each shard's files as collect_results does: in input order,
    with the lines that joined no request (``unjoined[shard]``) at the end of its errors."""
    source = write_jsonl(tmp_path / f"{tag}.jsonl", (request(i) for i in ids))
    folder = tmp_path / f"{tag}-shards"
    plan = split_jsonl(source, folder, ShardLimits(max_requests=per_shard))
    shards = []
    for spec in plan.shards:
        shard_ids = [
            json.loads(x)["custom_id"] for x in (folder / spec.name).read_text().splitlines()
        ]
        lines = [outcome.get(i, ok(i)) for i in shard_ids]
        stem = folder / spec.name.removesuffix(".jsonl")
        bad = [x for x in lines if failed(x)] + (unjoined or {}).get(spec.index, [])
        shards.append(
            ShardFiles(
                input_path=folder / spec.name,
                results_path=write_jsonl(
                    Path(f"{stem}.results.jsonl"), [x for x in lines if not failed(x)]
                ),
                errors_path=write_jsonl(Path(f"{stem}.errors.jsonl"), bad),
                requests=spec.requests,
            )
        )
    return shards


def ids_of(path: Path) -> list[str]:
    return [row["custom_id"] for row in read_jsonl(path)]


def stranger(n: int) -> dict[str, Any]:
    """A gateway line collect_results could join to no request, as it keeps it."""
    return {"custom_id": None, "response": None, "error": {"code": "unknown_custom_id", "line": n}}


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
    # One round is the shards' files one after the other, byte for byte.
    written = b"".join(s.results_path.read_bytes() for s in shards)
    assert (tmp_path / "out.jsonl").read_bytes() == written
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("order", ["input", "gateway"])
def test_lines_that_joined_no_request_are_kept_and_not_counted(tmp_path: Path, order: Any) -> None:
    ids = [f"r{i}" for i in range(9)]
    shards = run_shards(
        tmp_path, ids, {"r4": http_failure("r4", 400)}, 3, "job", {1: [stranger(7), stranger(8)]}
    )

    tally = merge_shards(shards, tmp_path / "o", tmp_path / "e", order=order)

    assert ids_of(tmp_path / "o") == [i for i in ids if i != "r4"]
    assert ids_of(tmp_path / "e") == ["r4", None, None]
    assert (tally.requests, tally.succeeded, tally.failed, tally.unjoined) == (9, 8, 1, 2)


def test_a_line_in_the_errors_file_that_is_neither_a_request_nor_kept_is_refused(
    tmp_path: Path,
) -> None:
    shards = run_shards(tmp_path, ["a", "b"], {}, 5, "job")
    write_jsonl(shards[0].errors_path, [{"custom_id": None}, http_failure("x", 500)])

    with pytest.raises(MergeError, match=r"errors.jsonl:2: custom_id='x' is not in"):
        merge_shards(shards, tmp_path / "o", tmp_path / "e")


@pytest.mark.parametrize("order", ["input", "gateway"])
def test_a_missing_result_is_an_error_not_a_silent_gap(tmp_path: Path, order: Any) -> None:
    shards = run_shards(tmp_path, [f"r{i}" for i in range(5)], {}, 5, "job")
    rows = read_jsonl(shards[0].results_path)
    write_jsonl(shards[0].results_path, [r for r in rows if r["custom_id"] != "r2"])

    with pytest.raises(MergeError, match=r"custom_id='r2' of .* is in neither"):
        merge_shards(shards, tmp_path / "o", tmp_path / "e", order=order)
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob("*.part"))


def test_a_custom_id_twice_or_foreign_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    """Line counts find that something is wrong; a read of the shard then names it."""
    shards = run_shards(tmp_path, ["a", "b"], {"b": http_failure("b", 429)}, 5, "job")
    write_jsonl(shards[0].errors_path, [http_failure("b", 429), ok("a")])

    with pytest.raises(MergeError, match=r"errors.jsonl:2: custom_id='a' appears twice"):
        merge_shards(shards, tmp_path / "o", tmp_path / "e")

    write_jsonl(shards[0].errors_path, [http_failure("zz", 429), http_failure("b", 429)])
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
        tally = merge_rounds([round0, round1], out, err, order=order)

        assert sorted(ids_of(out) + ids_of(err)) == ids
        assert [(e["custom_id"], e["response"]["status_code"]) for e in read_jsonl(err)] == [
            ("q08", 400),
            ("q10", 503),
        ]
        assert (tally.requests, tally.succeeded, tally.failed) == (12, 10, 2)
        assert (tally.resubmitted, tally.recovered) == (3, 2)
    # Input order: a recovered request in its input place. Gateway order: after
    # every line of the round before.
    assert ids_of(tmp_path / "out-input") == [i for i in ids if i not in ("q08", "q10")]
    assert ids_of(tmp_path / "out-gateway") == [
        i for i in ids if i not in ("q01", "q05", "q08", "q10")
    ] + ["q01", "q05"]


def test_three_rounds_recover_in_place_across_shards_each_custom_id_once(tmp_path: Path) -> None:
    ids = [f"j{i:03d}" for i in range(40)]
    again = ["j000", "j006", "j007", "j019", "j020", "j039"]  # first and last lines of shards
    round0 = run_shards(tmp_path, ids, {i: http_failure(i, 500) for i in again}, 7, "r0")
    still = ["j007", "j039"]
    round1 = run_shards(tmp_path, again, {i: not_run(i, "batch_expired") for i in still}, 4, "r1")
    round2 = run_shards(tmp_path, still, {"j039": http_failure("j039", 400)}, 1, "r2")

    tally = merge_rounds([round0, round1, round2], tmp_path / "o", tmp_path / "e")

    assert ids_of(tmp_path / "o") == [i for i in ids if i != "j039"]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in read_jsonl(tmp_path / "e")] == [
        ("j039", 400)
    ]
    assert (tally.requests, tally.succeeded, tally.failed) == (40, 39, 1)
    assert (tally.resubmitted, tally.recovered) == (6, 5)


def test_a_follow_up_out_of_input_order_is_refused(tmp_path: Path) -> None:
    round0 = run_shards(
        tmp_path, ["a", "b", "c"], {k: http_failure(k, 500) for k in "abc"}, 5, "r0"
    )
    round1 = run_shards(tmp_path, ["c", "a"], {}, 5, "r1")

    with pytest.raises(MergeError, match="not in input order"):
        merge_rounds([round0, round1], tmp_path / "o", tmp_path / "e")


def test_errors_out_of_input_order_are_refused_when_a_recovery_needs_their_places(
    tmp_path: Path,
) -> None:
    """A shard collected by a worker that wrote the gateway's order cannot be spliced."""
    round0 = run_shards(tmp_path, ["a", "b", "c"], {k: http_failure(k, 500) for k in "ac"}, 5, "r0")
    write_jsonl(round0[0].errors_path, [http_failure("c", 500), http_failure("a", 500)])
    round1 = run_shards(tmp_path, ["c", "a"], {}, 5, "r1")

    with pytest.raises(MergeError, match="custom_id='a' is out of input order"):
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


def test_lines_of_any_shape_recover_in_place(tmp_path: Path) -> None:
    """Escaped custom_ids and members before custom_id: their places are read line by line."""
    ids = ["plain", 'quote"d', "tab\tid", "caf\u00e9", "last"]
    shard_input = write_jsonl(tmp_path / "in.jsonl", (request(i) for i in ids))
    nested = {"response": {"status_code": 200, "body": {}}, "custom_id": "plain", "error": None}
    results = write_jsonl(tmp_path / "results.jsonl", [nested, ok("last")])
    errors = write_jsonl(
        tmp_path / "errors.jsonl",
        [
            http_failure('quote"d', 500),
            http_failure("tab\tid", 400),
            http_failure("caf\u00e9", 500),
        ],
    )
    round0 = [ShardFiles(shard_input, results, errors)]
    retried = ['quote"d', "caf\u00e9"]
    round1 = [
        ShardFiles(
            write_jsonl(tmp_path / "in1.jsonl", (request(i) for i in retried)),
            write_jsonl(tmp_path / "results1.jsonl", [ok(i) for i in retried]),
            write_jsonl(tmp_path / "errors1.jsonl", []),
        )
    ]

    tally = merge_rounds([round0, round1], tmp_path / "o.jsonl", tmp_path / "e.jsonl")

    assert ids_of(tmp_path / "o.jsonl") == ["plain", 'quote"d', "caf\u00e9", "last"]
    assert ids_of(tmp_path / "e.jsonl") == ["tab\tid"]
    assert (tally.succeeded, tally.failed, tally.recovered) == (4, 1, 2)


@pytest.mark.parametrize("seed", range(6))
def test_recovered_requests_land_in_place_across_read_blocks(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines of uneven sizes, blocks far smaller than a shard: the splice counts lines exactly."""
    monkeypatch.setattr(streams, "BLOCK", 97)
    rng = random.Random(seed)
    ids = [f"k{i:04d}-" + "x" * rng.randrange(0, 120) for i in range(rng.randrange(50, 300))]
    failed_first = set(rng.sample(ids, len(ids) // 4))
    round0 = run_shards(
        tmp_path, ids, {i: http_failure(i, 503) for i in failed_first}, rng.randrange(5, 80), "r0"
    )
    again = [i for i in ids if i in failed_first]
    lost = set(rng.sample(again, len(again) // 5))
    round1 = run_shards(
        tmp_path, again, {i: http_failure(i, 400) for i in lost}, rng.randrange(3, 40), "r1"
    )

    tally = merge_rounds([round0, round1], tmp_path / "o", tmp_path / "e")

    assert ids_of(tmp_path / "o") == [i for i in ids if i not in lost]
    assert ids_of(tmp_path / "e") == [i for i in ids if i in lost]
    assert (tally.requests, tally.resubmitted, tally.recovered) == (
        len(ids),
        len(again),
        len(again) - len(lost),
    )


def test_unjoined_lines_amid_the_errors_are_kept_too(tmp_path: Path) -> None:
    """As a collect before input order wrote them: among the errors, not after them."""
    shards = run_shards(tmp_path, ["a", "b", "c"], {"b": http_failure("b", 400)}, 5, "job")
    write_jsonl(shards[0].errors_path, [stranger(1), http_failure("b", 400)])

    tally = merge_shards(shards, tmp_path / "o", tmp_path / "e")

    assert ids_of(tmp_path / "e") == [None, "b"]
    assert (tally.requests, tally.failed, tally.unjoined) == (3, 1, 1)
