"""The job's own checks of an input, run by the starter: one place every command calls.

`validate`, `estimate`, `schedule create`, `run` and `start` check a local
input here before anything is sent, so an invalid file is refused the same way
(every problem as file:line, custom_id, field and fix) by every command.
`input_problems` is the one call of the job's validation.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from activities.validation import InputProblems, ValidInput, validate_jsonl
from cli.exits import UsageError
from contracts.job import InputLimits

DEFAULT_ENDPOINT = "/v1/chat/completions"
ENDPOINT_HELP = (
    "the batch endpoint: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses "
    f"(default: the lines' url when they all agree, else {DEFAULT_ENDPOINT})"
)
_WHOLE_INPUT = InputLimits(max_requests=10**12, max_bytes=10**15)
"""A job of any size is split into batches (cli/sharded.py): the limits are per shard."""
_URL = re.compile(rb'"url"\s*:\s*"([^"\\]*)"')


class InvalidInput(UsageError):
    """The input would fail its job: every problem found, one a line."""

    def __init__(self, problems: InputProblems) -> None:
        self.problems = problems
        count = len(problems.problems) + problems.more
        super().__init__(
            "\n".join(
                [*problems.problems, *([f"... and {problems.more} more"] * bool(problems.more))]
            )
            + f"\n{problems.path}: {count} problem(s); nothing was sent"
        )


def endpoint_of(path: Path) -> str | None:
    """The endpoint every line's url names, when they all name the same one; else None."""
    found: set[bytes] = set()
    try:
        with path.open("rb") as lines:
            for raw in lines:
                if raw.strip():
                    match = _URL.search(raw)
                    found.add(match.group(1) if match else b"")
                    if len(found) > 1:
                        return None
    except OSError:
        return None
    if len(found) != 1:
        return None
    url = found.pop().decode("utf-8", "replace")
    return url if url.startswith("/v1/") else None


def input_problems(
    path: Path, endpoint: str, label: str | None = None, limits: InputLimits | None = None
) -> ValidInput:
    """The job's validation of the input; InvalidInput lists every problem.

    limits: one batch's, for a job that cannot be split (a scheduled run); by
    default none, as run and start split an input over them into shards.
    """
    try:
        return validate_jsonl(
            path, label=label or str(path), endpoint=endpoint, limits=limits or _WHOLE_INPUT
        )
    except InputProblems as problems:
        raise InvalidInput(problems) from None


def chosen_endpoint(args: argparse.Namespace, path: Path | None) -> str:
    """--endpoint, else the one the lines agree on, else the default."""
    given: str | None = args.endpoint
    if given is not None:
        return given
    return (endpoint_of(path) if path is not None else None) or DEFAULT_ENDPOINT
