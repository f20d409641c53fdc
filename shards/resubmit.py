"""Which failed requests are worth sending again, and the follow-up input that sends them.

Transient: the request did not get a fair run (429, 408, 5xx, a timeout,
``batch_expired``, a batch that failed mid-run, a line the gateway lost, an
upstream that was down, a quota refusal, or a batch our deadline cancelled).
Permanent: the gateway judged the request itself (other 4xx, e.g. a context
too long or a content filter): sending it again bills again and fails again.
A batch cancelled by someone else (a user, an operator) is not resubmitted, nor
any request of a batch that had not ended when it was collected: it may still run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shards.files import ShardFiles
from shards.lines import LineError, custom_id_key, custom_ids, numbered_lines
from shards.streams import find_lines

TRANSIENT_STATUSES = frozenset({408, 429})
TRANSIENT_CODES = frozenset(
    {
        "batch_expired",
        "batch_failed",
        "deadline_exceeded",
        "missing_from_output",
        "upstream_unavailable",
        "rate_limit_exceeded",
        "token_limit_exceeded",
        "insufficient_quota",
        "quota_exceeded",
        "server_error",
        "internal_error",
        "service_unavailable",
        "engine_overloaded",
        "timeout",
        "request_timeout",
    }
)
CANCELLED_CODE = "batch_cancelled"


class Resubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = Field(description="Requests written to the follow-up input.")
    transient_by_code: dict[str, int] = Field(default_factory=dict)
    permanent: int = 0
    permanent_by_code: dict[str, int] = Field(default_factory=dict)


def failure_code(line: dict[str, Any]) -> tuple[str, int | None]:
    """The most specific code an error line carries, and its HTTP status if it has one."""
    response = line.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    status = status if isinstance(status, int) else None
    error = line.get("error")
    if isinstance(error, dict) and (error.get("code") or error.get("type")):
        return str(error.get("code") or error.get("type")), status
    body = response.get("body") if isinstance(response, dict) else None
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict) and (inner.get("code") or inner.get("type")):
        return str(inner.get("code") or inner.get("type")), status
    return (f"http_{status}" if status is not None else "error"), status


def is_transient(line: dict[str, Any], *, cancelled_by_deadline: bool = False) -> bool:
    code, status = failure_code(line)
    if status is not None and (status in TRANSIENT_STATUSES or status >= 500):
        return True
    if status is not None and 400 <= status < 500:
        return False
    if code == CANCELLED_CODE:
        return cancelled_by_deadline
    return code in TRANSIENT_CODES


def _transient(
    shard: ShardFiles, transient: Counter[str], permanent: Counter[str]
) -> tuple[set[str], list[bytes]]:
    """The custom_ids to send again, and their keys as the errors file has them, in its order."""
    chosen: set[str] = set()
    keys: list[bytes] = []
    for number, raw in numbered_lines(shard.errors_path):
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise LineError(f"{shard.errors_path}:{number}: not JSON") from exc
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if custom_id is None and isinstance(line, dict) and "custom_id" in line:
            continue  # a gateway line collect_results could join to no request
        if not isinstance(custom_id, str):
            raise LineError(f"{shard.errors_path}:{number}: no custom_id")
        code, _ = failure_code(line)
        if not shard.batch_may_run and is_transient(
            line, cancelled_by_deadline=shard.cancelled_by_deadline
        ):
            chosen.add(custom_id)
            keys.append(custom_id_key(raw) or b"")
            transient[code] += 1
        else:
            permanent[code] += 1
    return chosen, keys


def _input_lines(shard: ShardFiles, chosen: set[str], keys: list[bytes]) -> list[bytes]:
    """The chosen requests' input lines, in input order.

    The errors file is in input order (collect_results writes it so), so the
    lines are found by searching forward; a shard whose file is not, or whose
    custom_ids are escaped differently in its input, is read line by line.
    """
    found = find_lines(shard.input_path, keys)
    if found is not None:
        return [raw if raw.endswith(b"\n") else raw + b"\n" for _, raw in found]
    return [raw for _, custom_id, raw in custom_ids(shard.input_path) if custom_id in chosen]


def select_resubmissions(shards: Sequence[ShardFiles], out_path: Path) -> Resubmission:
    """Write the input lines of every transient failure, in input order, to ``out_path``.

    Works one shard at a time (memory bounded by a shard's failures), and is
    deterministic, so a retried activity writes the same follow-up input. An
    empty follow-up (nothing to resubmit) is still written, with no lines.
    """
    transient: Counter[str] = Counter()
    permanent: Counter[str] = Counter()
    written = 0
    part = out_path.with_name(out_path.name + ".part")
    try:
        with part.open("wb") as out:
            for shard in shards:
                chosen, keys = _transient(shard, transient, permanent)
                if not chosen:
                    continue
                lines = _input_lines(shard, chosen, keys)
                out.writelines(lines)
                written += len(lines)
                if written != sum(transient.values()):
                    raise LineError(
                        f"{shard.errors_path}: names requests that are not in {shard.input_path}"
                    )
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out_path)
    return Resubmission(
        requests=written,
        transient_by_code=dict(sorted(transient.items())),
        permanent=sum(permanent.values()),
        permanent_by_code=dict(sorted(permanent.items())),
    )
