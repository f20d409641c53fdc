"""The sharded job's file work: split the input, pick resubmissions, merge, price.

Each activity wraps a streaming function of ``shards/`` and runs it in a
thread, heartbeating, so a million-request input never stalls the worker's
other jobs. Shard files live in a folder beside the job's results, on the
data directory every worker shares; the job's input and its two final files
may be anywhere the storage layer reaches (paths, file://, s3://, az://, gs://).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import temporal_failures
from activities.heartbeat import heartbeating
from contracts.job import ModelTokens, TokenTotals
from contracts.names import FAILURE_INVALID_INPUT, FAILURE_RESULT_INTEGRITY
from contracts.sharding import (
    JobCost,
    MergeShardsRequest,
    MergeSummary,
    ModelCostLine,
    ResubmissionSummary,
    RoundState,
    SelectResubmissionsRequest,
    ShardTokensRequest,
    SplitInputRequest,
    SplitSummary,
    round_dir,
    shard_errors,
    shard_input,
    shard_results,
)
from shards.cost import CostReport, ModelUsage, cost_of, load_prices, tally_usage
from shards.files import ShardFiles
from shards.limits import ShardLimits, limits_for
from shards.lines import LineError, custom_ids
from shards.merge import MergeError, merge_rounds
from shards.resubmit import select_resubmissions
from shards.split import LineTooLarge, SplitPlan, read_plan, split_jsonl
from storage import LocationError, Stores

SHARD_FAILED_CODE = "shard_failed"
"""Error code of the requests of a shard whose child workflow failed (permanent)."""


class ShardingActivities:
    def __init__(self, storage: Stores, dialect: str) -> None:
        self.storage = storage
        self.dialect = dialect

    def _local(self, location: str) -> Path:
        """Shard folders are on the shared data directory (object stores: not yet)."""
        try:
            return self.storage.local.path(location)
        except LocationError as exc:
            raise LocationError(
                f"{location}: a sharded job keeps its shard files on the data directory; "
                f"give results and errors locations there ({exc})"
            ) from None

    @activity.defn
    async def split_input(self, request: SplitInputRequest) -> SplitSummary:
        async with temporal_failures():
            limits = limits_for(
                self.dialect,
                max_requests=request.max_batch_requests,
                max_bytes=request.max_batch_bytes,
            )
            out_dir = self._local(request.round_dir)
            async with heartbeating(), self.storage.reading(request.input_path) as path:
                try:
                    plan = await asyncio.to_thread(
                        _fresh_split, path, out_dir, request.input_path, limits, request
                    )
                except LineTooLarge as exc:
                    raise ApplicationError(
                        str(exc), type=FAILURE_INVALID_INPUT, non_retryable=True
                    ) from None
            if plan.requests == 0:
                raise ApplicationError(
                    f"{request.input_path}: no requests to run",
                    type=FAILURE_INVALID_INPUT,
                    non_retryable=True,
                )
            activity.logger.info(
                "split %d requests (%d bytes) into %d shards of at most %d requests, %d bytes",
                plan.requests,
                plan.bytes,
                len(plan.shards),
                limits.max_requests,
                limits.max_bytes,
            )
            return SplitSummary(
                requests=plan.requests,
                bytes=plan.bytes,
                shards=len(plan.shards),
                estimated_input_tokens=plan.estimated_input_tokens,
            )

    @activity.defn
    async def shard_tokens(self, request: ShardTokensRequest) -> list[int]:
        """The estimated input tokens of a window of shards, for admission within the quota."""
        async with temporal_failures():
            plan = await asyncio.to_thread(read_plan, self._local(request.round_dir))
            window = plan.shards[request.start : request.start + request.count]
            return [spec.estimated_input_tokens for spec in window]

    @activity.defn
    async def select_resubmissions(
        self, request: SelectResubmissionsRequest
    ) -> ResubmissionSummary:
        async with temporal_failures(), heartbeating():
            folder = request.previous_round_dir
            files = await asyncio.to_thread(
                self._settled_round, folder, request.previous, "batch_cancelled"
            )
            out = self._local(request.out_path)
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                chosen = await asyncio.to_thread(select_resubmissions, files, out)
            except LineError as exc:
                raise ApplicationError(
                    str(exc), type=FAILURE_RESULT_INTEGRITY, non_retryable=True
                ) from None
            activity.logger.info(
                "%d requests to resubmit (%s); %d permanent failures kept",
                chosen.requests,
                ", ".join(f"{code} x{n}" for code, n in chosen.transient_by_code.items()) or "-",
                chosen.permanent,
            )
            return ResubmissionSummary(
                requests=chosen.requests,
                transient_by_code=chosen.transient_by_code,
                permanent=chosen.permanent,
            )

    @activity.defn
    async def merge_shards(self, request: MergeShardsRequest) -> MergeSummary:
        """All rounds into the job's results and errors, each custom_id once; then the cost."""
        async with temporal_failures(), heartbeating():
            rounds = [
                await asyncio.to_thread(
                    self._settled_round,
                    round_dir(request.work_dir, number),
                    state,
                    request.not_run_code,
                )
                for number, state in enumerate(request.rounds)
                if state.shards
            ]
            prices = None
            if request.prices_path:
                async with self.storage.reading(request.prices_path) as prices_file:
                    prices = await asyncio.to_thread(load_prices, prices_file)
            else:
                prices = load_prices()
            async with (
                self.storage.atomic_write(request.output_path) as results_tmp,
                self.storage.atomic_write(request.errors_path) as errors_tmp,
            ):
                started = time.monotonic()
                try:
                    tally = await asyncio.to_thread(
                        merge_rounds, rounds, results_tmp, errors_tmp, order=request.order
                    )
                except (MergeError, LineError) as exc:
                    raise ApplicationError(
                        str(exc), type=FAILURE_RESULT_INTEGRITY, non_retryable=True
                    ) from None
                merged = time.monotonic()
                usage = (
                    _children_usage(request.usage.by_model)
                    if request.usage is not None and request.usage.by_model is not None
                    else await asyncio.to_thread(tally_usage, results_tmp)
                )
                tallied = time.monotonic()
            activity.logger.info(
                "merged %d requests (%s order, %d recovered, %d unjoined lines kept) in %.2f s; "
                "usage %s in %.2f s; published in %.2f s",
                tally.requests,
                request.order,
                tally.recovered,
                tally.unjoined,
                merged - started,
                "summed from the children"
                if request.usage is not None
                else "read from the results",
                tallied - merged,
                time.monotonic() - tallied,
            )
            report = cost_of(usage, prices)
            return MergeSummary(
                requests=tally.requests,
                succeeded=tally.succeeded,
                failed=tally.failed,
                resubmitted=tally.resubmitted,
                recovered=tally.recovered,
                usage=_totals(usage),
                cost=job_cost(report),
            )

    def _settled_round(self, folder: str, state: RoundState, not_run_code: str) -> list[ShardFiles]:
        """The round's shard files; a shard whose child never wrote them gets an errors file.

        Every request of a shard that failed or never ran is written as an error
        line, so the merge still holds each custom_id exactly once.
        """
        plan = read_plan(self._local(folder))
        files = []
        for index in range(state.shards):
            inputs = self._local(shard_input(folder, index))
            results = self._local(shard_results(folder, index))
            errors = self._local(shard_errors(folder, index))
            if index in state.failed:
                _write_not_run(inputs, results, errors, SHARD_FAILED_CODE, state.failed[index])
            elif index >= state.next_shard or index in state.unrun or index in state.retry:
                _write_not_run(
                    inputs, results, errors, not_run_code, "not run: the job was cancelled first"
                )
            files.append(
                ShardFiles(
                    input_path=inputs,
                    results_path=results,
                    errors_path=errors,
                    cancelled_by_deadline=index in state.deadline_cancelled,
                    requests=plan.shards[index].requests,
                )
            )
        return files

    def all(self) -> list[Callable[..., Any]]:
        return [self.split_input, self.shard_tokens, self.select_resubmissions, self.merge_shards]


def _fresh_split(
    path: Path, out_dir: Path, label: str, limits: ShardLimits, request: SplitInputRequest
) -> SplitPlan:
    """Split, first removing results an earlier run under the same workflow id left here."""
    if out_dir.is_dir():
        for stale in (
            *out_dir.glob("shard-*.results.jsonl"),
            *out_dir.glob("shard-*.errors.jsonl"),
        ):
            stale.unlink()
    return split_jsonl(path, out_dir, limits, label=label, count_tokens=request.count_tokens)


def _write_not_run(inputs: Path, results: Path, errors: Path, code: str, message: str) -> None:
    results.write_bytes(b"")
    with errors.open("wb") as out:
        for _, custom_id, _ in custom_ids(inputs):
            line = {
                "custom_id": custom_id,
                "response": None,
                "error": {"code": code, "message": message},
            }
            out.write(json.dumps(line).encode() + b"\n")


def _children_usage(by_model: dict[str, ModelTokens]) -> dict[str, ModelUsage]:
    """What tally_usage would read from the merged results, as the children counted it."""
    return {
        model: ModelUsage(input_tokens=t.prompt_tokens, output_tokens=t.completion_tokens)
        for model, t in by_model.items()
    }


def _totals(usage: dict[str, ModelUsage]) -> TokenTotals:
    prompt = sum(u.input_tokens for u in usage.values())
    completion = sum(u.output_tokens for u in usage.values())
    return TokenTotals(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def job_cost(report: CostReport) -> JobCost:
    return JobCost(
        currency=report.currency,
        prices_as_of=report.prices_as_of.isoformat(),
        total=report.total,
        by_model=[ModelCostLine(**row.model_dump()) for row in report.by_model],
        unpriced_models=report.unpriced_models,
    )
