"""starter.py for inputs over one batch: estimate, the sharding decision, a line too large."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli.app import main, parser
from cli.exits import EXIT_OK, EXIT_USAGE
from cli.progress import live_progress
from cli.sharded import needs_shards, sharded_input
from contracts.job import BatchCounts, BatchJobInput, InputLimits, JobPhase, JobProgress


def write_requests(path: Path, count: int, content: str = "Describe the item") -> None:
    with path.open("w") as out:
        for n in range(count):
            body = {
                "model": "gpt-4o-mini",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": content}],
            }
            line = {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")


def run_args(*argv: str) -> object:
    return parser().parse_args(["run", *argv])


def test_estimate_prints_requests_shards_tokens_and_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_requests(tmp_path / "in.jsonl", 10)
    code = main(["estimate", str(tmp_path / "in.jsonl"), "--max-batch-requests", "4"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "requests: 10 in 3 shard(s)" in out
    assert "at most 500 tokens" in out, "10 requests x max_tokens 50"
    assert "gpt-4o-mini as gpt-4o-mini" in out


def test_estimate_takes_a_price_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_requests(tmp_path / "in.jsonl", 20)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"gpt-4o-mini": {"input": 1000.0, "output": 0}}}))
    assert main(["estimate", str(tmp_path / "in.jsonl"), "--prices", str(prices)]) == EXIT_OK
    out = capsys.readouterr().out
    tokens = int(re.search(r"input:    about ([\d,]+) tokens", out)[1].replace(",", ""))  # type: ignore[index]
    assert f"cost:     about ${tokens * 1000 / 1e6:,.2f} input" in out


def test_a_line_over_the_byte_limit_is_a_usage_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_requests(tmp_path / "in.jsonl", 3)
    with (tmp_path / "in.jsonl").open("a") as out:
        line = {
            "custom_id": "long-one",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "x": "y" * 5000},
        }
        out.write(json.dumps(line) + "\n")
    code = main(["estimate", str(tmp_path / "in.jsonl"), "--max-batch-bytes", "2000"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "in.jsonl:4: custom_id='long-one'" in err and "--max-batch-bytes" in err
    with pytest.raises(Exception, match="custom_id='long-one'"):
        needs_shards(
            run_args(str(tmp_path / "in.jsonl"), "--max-batch-bytes", "2000"), tmp_path / "in.jsonl"
        )  # type: ignore[arg-type]


def test_an_input_over_one_batch_or_a_sharding_flag_makes_a_sharded_job(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_requests(path, 5)
    assert not needs_shards(run_args(str(path)), path)  # type: ignore[arg-type]
    assert needs_shards(run_args(str(path), "--resubmit", "2"), path)  # type: ignore[arg-type]
    line = len(path.read_text().splitlines()[0]) + 1
    assert needs_shards(run_args(str(path), "--max-batch-bytes", str(3 * line)), path)  # type: ignore[arg-type]
    one_batch = InputLimits(max_requests=4)
    assert needs_shards(run_args(str(path)), path, one_batch), "over what one job accepts"  # type: ignore[arg-type]
    args = run_args(str(path), "--max-concurrent-batches", "2", "--order", "gateway")
    request = sharded_input(args, BatchJobInput(input_path="in.jsonl"))  # type: ignore[arg-type]
    assert request.sharding.max_concurrent_batches == 2
    assert request.sharding.order == "gateway"
    assert request.sharding.resubmit == 1


class FakeHandle:
    """A workflow as live_progress reads it: the progress query and describe()."""

    def __init__(self, client: FakeClient, id: str, progress: JobProgress, children: list[str]):
        self._client, self.id, self.progress, self.children = client, id, progress, children

    async def query(self, *_: object, **__: object) -> JobProgress:
        return self.progress

    async def describe(self) -> SimpleNamespace:
        pending = [SimpleNamespace(workflow_id=child) for child in self.children]
        return SimpleNamespace(
            raw_description=SimpleNamespace(pending_activities=[], pending_children=pending)
        )


class FakeClient:
    data_converter = None

    def __init__(self) -> None:
        self.handles: dict[str, FakeHandle] = {}

    def get_workflow_handle(self, workflow_id: str) -> FakeHandle:
        return self.handles[workflow_id]


async def test_the_progress_bar_counts_the_shards_in_flight_too() -> None:
    client = FakeClient()

    def add(id: str, completed: int, failed: int, total: int, children: list[str]) -> FakeHandle:
        counts = BatchCounts(total=total, completed=completed, failed=failed)
        progress = JobProgress(phase=JobPhase.WAITING, counts=counts)
        client.handles[id] = FakeHandle(client, id, progress, children)
        return client.handles[id]

    parent = add("job", 10, 2, 40, ["job-shard-2", "job-shard-3", "job-r1-shard-0"])
    add("job-shard-2", 4, 1, 10, [])
    add("job-shard-3", 3, 0, 10, [])
    add("job-r1-shard-0", 2, 0, 2, [])  # a follow-up: its requests are counted already
    progress, _ = await live_progress(parent)  # type: ignore[arg-type]
    assert progress.counts == BatchCounts(total=40, completed=17, failed=3)


def test_the_sharded_contract_is_printed_for_callers_in_other_languages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "sharded-input"]) == EXIT_OK
    schema = json.loads(capsys.readouterr().out)
    assert schema["required"] == ["job"]
    assert "max_enqueued_tokens" in json.dumps(schema)
