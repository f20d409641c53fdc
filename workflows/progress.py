"""What the Web UI shows of a running job (its current details), from its progress."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.job import JobProgress


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _span(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def describe(progress: JobProgress) -> str:
    """Phase, batch, request counts, time in the phase and its deadline, as markdown lines.

    Times are absolute (and the time in the phase is as of the last update),
    because current details change only when the workflow runs.
    """
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
    if p.phase_since is not None and p.batch_status is not None:
        since = f"**{p.batch_status} since** {_at(p.phase_since)}"
        if p.updated_at is not None:
            since += f" ({_span((p.updated_at - p.phase_since).total_seconds())} at last update)"
        lines.append(since)
    if p.deadline is not None:
        lines.append(f"**deadline** {_at(p.deadline)}")
    if p.gateway_error:
        lines.append(f"**last gateway error** {p.gateway_error} (retrying)")
    if p.updated_at is not None:
        lines.append(f"**updated** {_at(p.updated_at)}")
    if p.reason:
        lines.append(f"**reason** {p.reason}")
    return "\n\n".join(lines)
