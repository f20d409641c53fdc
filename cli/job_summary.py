"""What a job is, in words: the workflow's static summary and details in the Web UI.

Set once at start (Temporal's user metadata, shown in the workflow list and at
the top of the workflow page) and printed again by `starter.py status`, so a
person sees the same words in both places.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from contracts.job import BatchJobInput

_MODEL_PROBE_LINES = 20


def input_facts(source: Path | None) -> tuple[int | None, str | None]:
    """Requests and model of a local input (None for an input this machine cannot read)."""
    if source is None or not source.is_file():
        return None, None
    requests, model = 0, None
    with source.open("rb") as lines:
        for raw in lines:
            if not raw.strip():
                continue
            requests += 1
            if model is None and requests <= _MODEL_PROBE_LINES:
                try:
                    body = json.loads(raw).get("body") or {}
                    model = body.get("model") if isinstance(body, dict) else None
                except (ValueError, AttributeError):
                    pass
    return requests, model


def _name(location: str) -> str:
    return PurePosixPath(location.split("://", 1)[-1]).name or location


def job_summary(
    job: BatchJobInput, results: str, requests: int | None, model: str | None
) -> tuple[str, str]:
    """(summary, details): one line for lists, a few for the workflow page."""
    how_many = f"{requests:,} requests" if requests is not None else "requests"
    to_model = f" to {model}" if model else ""
    attached = f", attached to {job.batch_id}" if job.batch_id else ""
    summary = (
        f"{how_many}{to_model} · {job.endpoint} · {_name(job.input_path)} → {_name(results)}"
        f"{attached}"
    )
    details = [
        f"**input** {job.input_path}",
        f"**requests** {requests if requests is not None else '?'}",
        f"**endpoint** {job.endpoint}",
        f"**model** {model or '?'}",
        f"**results** {results}",
    ]
    if job.batch_id:
        details.append(f"**attached to batch** {job.batch_id}")
    return summary, "\n\n".join(details)
