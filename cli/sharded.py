"""One job of any size from the command line: sharding options, the sharded parent, estimate.

``run`` and ``start`` start the sharded parent (ShardedBatchJobWorkflow) when
the input exceeds one batch's limits or a sharding option is given; the user
still follows one workflow id, whose progress query covers every shard.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cli.durations import took
from cli.environment import location, storage
from cli.exits import EXIT_OK, UsageError
from cli.input_check import chosen_endpoint, input_problems
from contracts.job import BatchJobInput, InputLimits
from contracts.sharding import ShardedJobInput, ShardedJobResult, ShardingOptions
from gateway.settings import ENV_GATEWAY_DIALECT
from shards.cost import CostReport, describe_cost, describe_estimate, estimate, load_prices
from shards.limits import ShardLimits, limits_for
from shards.lines import custom_id_of
from shards.split import LineTooLarge

SHARDING_FLAGS = (
    "max_batch_requests",
    "max_batch_bytes",
    "max_concurrent_batches",
    "max_enqueued_tokens",
    "resubmit",
    "order",
)


def add_limit_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--max-batch-requests",
        type=int,
        help="requests per batch (default the gateway dialect's: 50,000 OpenAI, 100,000 Azure)",
    )
    sub.add_argument(
        "--max-batch-bytes",
        type=int,
        help="bytes per batch input file (default 200 MiB; behind Kong, below the route's "
        "max_request_body_size)",
    )


def add_sharding_options(sub: argparse.ArgumentParser) -> None:
    add_limit_options(sub)
    sub.add_argument(
        "--max-concurrent-batches", type=int, help="shards in flight at once (default 4)"
    )
    sub.add_argument(
        "--max-enqueued-tokens",
        type=int,
        help="estimated input tokens of the shards in flight at most, from the deployment's "
        "enqueued-token quota (default: no limit)",
    )
    sub.add_argument(
        "--resubmit",
        type=int,
        help="rounds that resubmit requests which failed transiently (default 1)",
    )
    sub.add_argument(
        "--order",
        choices=("input", "gateway"),
        help="input (default): every line in its input place, recovered requests included; "
        "gateway: each resubmission round's lines after the round before (no splice)",
    )


def dialect() -> str:
    return os.environ.get(ENV_GATEWAY_DIALECT, "kong")


def limits_from(args: argparse.Namespace) -> ShardLimits:
    try:
        return limits_for(
            dialect(), max_requests=args.max_batch_requests, max_bytes=args.max_batch_bytes
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def needs_shards(args: argparse.Namespace, path: Path, single: InputLimits | None = None) -> bool:
    """Whether this input runs as a sharded job: too large for one batch, or asked for.

    One batch is bounded by the dialect's limits and by what a one-batch job
    accepts (``single``). Reads the file once (a line at a time); a request
    that alone is over the byte limit is refused here, naming its line and
    custom_id.
    """
    limits = limits_from(args)
    one = single or InputLimits()
    requests = size = 0
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if len(raw) > limits.max_bytes:
                raise UsageError(
                    str(
                        LineTooLarge(
                            str(path), number, custom_id_of(raw), len(raw), limits.max_bytes
                        )
                    )
                )
            if raw.strip():
                requests += 1
                size += len(raw)
    asked = sharding_asked(args)
    most_requests = min(limits.max_requests, one.max_requests)
    return asked or requests > most_requests or size > min(limits.max_bytes, one.max_bytes)


def sharding_asked(args: argparse.Namespace) -> bool:
    """Whether a sharding flag was given: the job runs sharded whatever its size."""
    return any(getattr(args, flag, None) is not None for flag in SHARDING_FLAGS)


def sharded_input(args: argparse.Namespace, job: BatchJobInput) -> ShardedJobInput:
    given = {
        flag: getattr(args, flag)
        for flag in SHARDING_FLAGS
        if getattr(args, flag, None) is not None
    }
    prices = getattr(args, "prices", None)
    try:
        return ShardedJobInput(
            job=job,
            sharding=ShardingOptions(**given),
            prices_path=location(storage(), prices) if prices else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[-1]) from None


def summarise_sharded(result: ShardedJobResult, link: str) -> str:
    lines = [
        f"status:   {result.status.value}" + (f" ({result.reason})" if result.reason else ""),
        f"shards:   {result.shards} in {result.rounds} round(s)"
        + (f", {result.failed_shards} failed" if result.failed_shards else "")
        + (
            f", {result.quota_refusals} quota refusal(s) waited out"
            if result.quota_refusals
            else ""
        ),
        f"requests: {result.requests} total, {result.succeeded} succeeded, {result.failed} failed",
    ]
    if result.resubmitted:
        lines.append(
            f"resubmitted: {result.resubmitted} transient failure(s), {result.recovered} recovered"
        )
    usage = result.usage
    lines.append(f"tokens:   {usage.prompt_tokens} prompt, {usage.completion_tokens} completion")
    if result.cost is not None:
        report = CostReport.model_validate(result.cost.model_dump())
        lines += [f"cost:     {line}" for line in describe_cost(report)]
    lines += [
        f"results:  {result.output_path}",
        f"errors:   {result.errors_path}",
        *_gateway_lines(result),
        f"took:     {took(result.started_at, result.finished_at)}",
        f"web ui:   {link}",
    ]
    return "\n".join(lines)


def _gateway_lines(result: ShardedJobResult) -> list[str]:
    """The shards' files deleted and left at the gateway, counted; a few left named."""
    files = result.gateway_files
    if files is None:
        return []
    lines = [f"gateway:  {files.deleted} file(s) deleted, {files.left} left"]
    lines += [f"gateway:  {file_id} left: {why}" for file_id, why in files.left_examples.items()]
    if files.left > len(files.left_examples):
        lines.append(f"gateway:  ... and {files.left - len(files.left_examples)} more left")
    return lines


def cmd_estimate(args: argparse.Namespace) -> int:
    """Needs no Temporal: what the input will cost, before it is sent."""
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{args.file}: no such file")
    input_problems(path, chosen_endpoint(args, path), args.file)  # InvalidInput: exit 2
    try:
        prices = load_prices(Path(args.prices) if args.prices else None)
        found = estimate(path, limits_from(args), prices=prices, label=args.file)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    for line in describe_estimate(found):
        print(line)
    return EXIT_OK
