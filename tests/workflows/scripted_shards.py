"""A scripted stand-in of a shard's child: no gateway and no activity, so a parent of
thousands of shards runs in seconds on the time-skipping server.

Unsandboxed, as it writes the shard's results and errors files itself, the way the
collect step does; its own module, so the sandbox of the real parent never loads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from contracts.job import BatchJobInput, BatchJobResult, JobStatus, RequestTally, TokenTotals
from contracts.names import WORKFLOW_NAME

ROOT: list[Path] = []
"""The data directory the shard files are under (set by the test)."""


def outcome_of(index: int) -> str:
    """Every third shard's child fails, every third is cancelled at a deadline."""
    return ("failed", "deadline", "succeeded")[index % 3]


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class ScriptedShard:
    @workflow.run
    async def run(self, job: dict[str, Any]) -> BatchJobResult:
        request = BatchJobInput.parse(job)
        match = re.search(r"shard-(\d+)\.jsonl$", request.input_path)
        assert match is not None
        index = int(match.group(1))
        outcome = outcome_of(index)
        if outcome == "failed":
            raise ApplicationError(
                f"scripted: shard {index}'s gateway refused the upload " + "x" * 200,
                non_retryable=True,
            )
        root = ROOT[0]
        ids = [
            json.loads(line)["custom_id"]
            for line in (root / request.input_path).read_text().splitlines()
        ]
        assert request.output_path is not None and request.errors_path is not None
        with (
            (root / request.output_path).open("w") as results,
            (root / request.errors_path).open("w") as errors,
        ):
            for custom_id in ids:
                if outcome == "succeeded":
                    line = {"custom_id": custom_id, "response": {"status_code": 200, "body": {}}}
                    results.write(json.dumps(line) + "\n")
                else:
                    error = {"code": "batch_cancelled", "message": "cancelled at the deadline"}
                    errors.write(json.dumps({"custom_id": custom_id, "error": error}) + "\n")
        succeeded = len(ids) if outcome == "succeeded" else 0
        now = workflow.now()
        return BatchJobResult(
            status=JobStatus.SUCCEEDED if succeeded else JobStatus.DEADLINE_EXCEEDED,
            batch_id=f"batch-{index}",
            batch_status="completed" if succeeded else "cancelled",
            input_file_id=f"file-{index}",
            output_path=request.output_path,
            errors_path=request.errors_path,
            requests=RequestTally(
                total=len(ids), succeeded=succeeded, not_run=len(ids) - succeeded
            ),
            usage=TokenTotals(by_model={}),
            started_at=now,
            finished_at=now,
        )
