"""The index of custom_ids validation keeps for collection: where it lives, what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.input_index import input_index_location, read_input_index, write_input_index

SHA = "ab" * 32
ODD_IDS = ["plain", "with\nnewline", 'quote"and\\slash', "caf\u00e9-\U0001f600", " spaced "]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("out.jsonl", ".out.jsonl.abababababababab.input-index"),
        ("jobs/x/out.jsonl", "jobs/x/.out.jsonl.abababababababab.input-index"),
        ("s3://bucket/a/out.jsonl", "s3://bucket/a/.out.jsonl.abababababababab.input-index"),
        ("file:///data/out.jsonl", "file:///data/.out.jsonl.abababababababab.input-index"),
    ],
)
def test_the_index_sits_beside_the_results_in_the_same_store(output: str, expected: str) -> None:
    assert input_index_location(output, SHA) == expected


def test_custom_ids_come_back_in_input_order_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "index"
    write_input_index(path, input_path="in.jsonl", sha256=SHA, custom_ids=ODD_IDS)
    assert read_input_index(path, sha256=SHA) == {cid: n for n, cid in enumerate(ODD_IDS, 1)}


def test_an_index_of_other_bytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index"
    write_input_index(path, input_path="in.jsonl", sha256=SHA, custom_ids=ODD_IDS)
    assert read_input_index(path, sha256="cd" * 32) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: data.rindex(b"\n", 0, len(data) - 1) + 1],  # last id lost
        lambda data: data + b'"one too many"\n',
        lambda data: data[:-3],  # cut inside the last id
        lambda data: b"",
        lambda data: b"not an index\n" + data,
    ],
    ids=["short", "long", "cut", "empty", "no-header"],
)
def test_a_damaged_index_is_refused_not_half_used(tmp_path: Path, damage) -> None:
    path = tmp_path / "index"
    write_input_index(path, input_path="in.jsonl", sha256=SHA, custom_ids=ODD_IDS)
    path.write_bytes(damage(path.read_bytes()))
    assert read_input_index(path, sha256=SHA) is None
