"""The worker's allow-list of locations: what jobs may read and write is the operator's choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import AllowedLocations, LocalStorage, LocationError, Stores

SETTING = "BATCH_ALLOWED_LOCATIONS"


def allowed(raw: str | None, root: Path) -> AllowedLocations:
    return AllowedLocations.from_setting(raw, LocalStorage(root), SETTING)


@pytest.mark.parametrize(
    "location",
    [
        "s3://team-a/jobs/day.jsonl",
        "s3://team-a/jobs/deep/er/x.jsonl",
        "az://acct-a/day.jsonl",
        "teams/a/in.jsonl",
        "teams/a",
    ],
)
def test_locations_under_a_listed_prefix_are_allowed(tmp_path, location):
    allowed("s3://team-a/jobs/, az://acct-a, teams/a", tmp_path).check(location)


@pytest.mark.parametrize(
    "location",
    [
        "s3://team-a/other/day.jsonl",
        "s3://team-a/jobs",  # the folder's name without its slash is another key
        "s3://team-a/jobs/../other/x.jsonl",
        "s3://team-a-evil/jobs/x.jsonl",
        "az://acct-ab/day.jsonl",
        "gs://team-a/jobs/x.jsonl",
        "teams/b/in.jsonl",
        "teams/ab/in.jsonl",
        "in.jsonl",
    ],
)
def test_anything_else_is_refused_in_one_line_naming_the_setting(tmp_path, location):
    with pytest.raises(LocationError) as caught:
        allowed("s3://team-a/jobs/, az://acct-a, teams/a", tmp_path).check(location)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{location}: not a location this worker lets jobs use")
    assert f"({SETTING}: s3://team-a/jobs/, az://acct-a, teams/a)" in message


def test_unset_allows_the_data_directory_alone(tmp_path):
    unset = allowed(None, tmp_path)
    unset.check("in.jsonl")
    unset.check(f"file://{tmp_path}/deep/in.jsonl")
    with pytest.raises(LocationError, match=r"\(BATCH_ALLOWED_LOCATIONS: unset: the data"):
        unset.check("s3://any/x.jsonl")


def test_a_star_allows_everything_and_only_alone(tmp_path):
    allowed("*", tmp_path).check("s3://any/x.jsonl")
    with pytest.raises(LocationError, match="give it alone"):
        allowed("*, s3://a", tmp_path)


def test_a_listed_folder_outside_the_data_directory_or_a_bad_prefix_stops_the_worker(tmp_path):
    with pytest.raises(LocationError, match=r"'\.\.' may not appear"):
        allowed("../elsewhere", tmp_path)
    with pytest.raises(LocationError, match="outside the data directory"):
        allowed("file:///etc", tmp_path)
    with pytest.raises(LocationError, match="unknown scheme"):
        allowed("http://x/y", tmp_path)


async def test_stores_check_every_access(tmp_path):
    local = LocalStorage(tmp_path)
    stores = Stores(local, allowed=AllowedLocations.from_setting("in", local, SETTING))
    (tmp_path / "secret.txt").write_text("x")
    with pytest.raises(LocationError, match="not a location this worker lets jobs use"):
        await stores.exists("secret.txt")
    with pytest.raises(LocationError):
        async with stores.atomic_write("out.jsonl"):
            pass
    assert await stores.exists("in/nothing.jsonl") is False
    assert stores.describe("secret.txt") == str(tmp_path / "secret.txt"), "messages still say where"


def test_the_worker_refuses_a_data_directory_that_would_expose_everything(
    tmp_path, monkeypatch, caplog
):
    from worker import worker_storage

    for exposed in ("/", str(Path.home())):
        with pytest.raises(LocationError, match="jobs could read and write every file there"):
            worker_storage({"BATCH_DATA_DIR": exposed})
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING"):
        stores = worker_storage({})
    assert stores.local.root == tmp_path.resolve()
    assert "BATCH_DATA_DIR is not set" in caplog.text
    assert stores.allowed is not None and not stores.allowed.everything
    opened = worker_storage({"BATCH_DATA_DIR": str(tmp_path), SETTING: "*"})
    assert opened.allowed is not None and opened.allowed.everything
