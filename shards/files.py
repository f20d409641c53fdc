"""The files of one shard once its batch has been collected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ShardFiles:
    """One batch's input and the results and errors files collected for it."""

    input_path: Path
    results_path: Path
    errors_path: Path
    cancelled_by_deadline: bool = False
    """The job cancelled this batch at a phase deadline: its not-run requests are transient."""
    batch_may_run: bool = False
    """Its batch had not ended when it was collected: none of its requests is sent again."""
    requests: int | None = None
    """The input's requests, when the split plan says (else its lines are counted)."""
