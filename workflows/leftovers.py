"""What a job may delete at the gateway when it ends, and what it must leave there.

Pure, so the rule reads on its own: only files this job made, of a batch that
has ended, or an upload no batch uses because the gateway refused the batch
for its quota; never the input of a batch it attached to.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.steps import BatchSnapshot


def gateway_files(
    batch: BatchSnapshot | None,
    *,
    uploaded: str | None,
    attached: bool,
    keep: bool,
    refused: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """The file ids to delete, and those to leave at the gateway with why.

    uploaded: the input file this job uploaded (None when it attached to a batch).
    refused: the job's last create was refused for quota (QuotaRefused), so no
    batch runs on the upload: a shard's parent uploads again when it admits it.
    """
    if batch is None:
        if not (refused and uploaded) or attached:
            return [], {}
        if keep:
            return [], {uploaded: "kept on request (keep_gateway_files)"}
        return [uploaded], {}
    candidates = [uploaded, batch.output_file_id, batch.error_file_id]
    # Azure may send "" for a file a batch does not have.
    files = [file_id for file_id in dict.fromkeys(candidates) if file_id]
    if keep:
        why = "kept on request (keep_gateway_files)"
    elif attached:
        why = f"a file of batch {batch.id}, which this job attached to and did not make"
    elif not batch.status.is_terminal:
        why = f"batch {batch.id} had not ended ({batch.status})"
    else:
        return files, {}
    return [], dict.fromkeys(files, why)
