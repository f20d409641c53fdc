"""The local store: locations cannot leave the data directory, and writes are all or nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storage import LocalStorage, LocationError


@pytest.mark.parametrize(
    "location",
    ["../outside.jsonl", "a/../../outside.jsonl", "/etc/passwd", "file:///etc/passwd", ""],
)
def test_locations_outside_the_root_are_refused(tmp_path: Path, location: str):
    store = LocalStorage(tmp_path / "data")
    with pytest.raises(LocationError):
        store.path(location)


def test_relative_absolute_and_file_uri_locations_inside_the_root(tmp_path: Path):
    root = tmp_path / "data"
    store = LocalStorage(root)
    expected = (root / "jobs" / "a.jsonl").resolve()
    assert store.path("jobs/a.jsonl") == expected
    assert store.path(str(expected)) == expected
    assert store.path(expected.as_uri()) == expected
    assert store.location_of(expected) == "jobs/a.jsonl"
    with pytest.raises(LocationError, match="BATCH_DATA_DIR"):
        store.location_of(tmp_path / "elsewhere.jsonl")
    with pytest.raises(LocationError, match="only relative paths and file:// locations are local"):
        store.path("s3://bucket/key.jsonl")


async def test_a_failed_write_publishes_nothing_and_keeps_the_old_file(tmp_path: Path):
    store = LocalStorage(tmp_path)
    (tmp_path / "out.jsonl").write_text("old\n")
    with pytest.raises(RuntimeError):
        async with store.atomic_write("out.jsonl") as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("crash mid-write")
    assert (tmp_path / "out.jsonl").read_text() == "old\n"
    assert not any(name.endswith(".part") for name in os.listdir(tmp_path))


async def test_a_write_is_published_whole_and_readable(tmp_path: Path):
    store = LocalStorage(tmp_path)
    async with store.atomic_write("res/out.jsonl") as tmp:
        tmp.write_text('{"custom_id": "a"}\n')
    published = tmp_path / "res" / "out.jsonl"
    assert published.read_text() == '{"custom_id": "a"}\n'
    assert stat.S_IMODE(published.stat().st_mode) == 0o644


async def test_leftovers_of_a_killed_writer_are_cleaned_on_the_next_write(tmp_path: Path):
    store = LocalStorage(tmp_path)
    leftover = tmp_path / ".out.jsonl.abc123.part"
    leftover.write_text("from a worker that was SIGKILLed")
    other = tmp_path / ".other.jsonl.abc123.part"
    other.write_text("another job's write in progress")
    async with store.atomic_write("out.jsonl") as tmp:
        tmp.write_text("new\n")
    assert not leftover.exists()
    assert other.exists(), "only this location's leftovers are removed"
    assert set(os.listdir(tmp_path)) == {"out.jsonl", ".other.jsonl.abc123.part"}


async def test_each_locations_leftovers_go_at_its_own_next_write(tmp_path: Path):
    """The folder is listed once, not on every write; what it held is still cleared."""
    store = LocalStorage(tmp_path)
    first = tmp_path / ".a.jsonl.abc123.part"
    second = tmp_path / ".b.jsonl.def456.part"
    first.write_text("dead writer")
    second.write_text("dead writer")
    async with store.atomic_write("a.jsonl") as tmp:
        tmp.write_text("a\n")
    assert not first.exists() and second.exists()
    async with store.atomic_write("b.jsonl") as tmp:
        tmp.write_text("b\n")
    assert set(os.listdir(tmp_path)) == {"a.jsonl", "b.jsonl"}


async def test_leftovers_made_since_the_listing_go_once_it_is_renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = LocalStorage(tmp_path)
    async with store.atomic_write("a.jsonl") as tmp:
        tmp.write_text("a\n")
    later = tmp_path / ".a.jsonl.abc123.part"
    later.write_text("a writer that died after the folder was listed")
    monkeypatch.setattr(type(store._leftovers), "RESCAN_SECONDS", 0.0)
    async with store.atomic_write("a.jsonl") as tmp:
        tmp.write_text("a again\n")
    assert set(os.listdir(tmp_path)) == {"a.jsonl"}
