"""What the Web UI shows of a running job (its current details), from its progress."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.job import JobProgress


def describe(progress: JobProgress) -> str:
    """Phase, batch, request counts and reason, as short markdown paragraphs."""
    p = progress
    lines = [f"**phase** {p.phase.value}"]
    if p.batch_id:
        lines.append(f"**batch** {p.batch_id} ({p.batch_status})")
    if p.counts is not None:
        c = p.counts
        lines.append(
            f"**requests** {c.completed + c.failed}/{c.total or p.requests or '?'} "
            f"finished, {c.failed} failed"
        )
    elif p.requests is not None:
        lines.append(f"**requests** {p.requests}")
    if p.reason:
        lines.append(f"**reason** {p.reason}")
    return "\n\n".join(lines)
