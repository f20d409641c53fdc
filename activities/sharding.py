"""The sharded job's file work: split the input, pick resubmissions, merge, price.

Each activity wraps a streaming function of ``shards/`` and runs it in a
thread, heartbeating, so a million-request input never stalls the worker's
other jobs. Shard files live in a folder beside the job's results: on the
data directory (worked on in place), or in the object store that holds the
results (staged on the worker's disk by activities/shard_folders.py), so
split, children and merge may run on workers that share no disk.
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
from activities.results_owner import mark_as_written_by, refuse_others_results
from activities.shard_folders import ShardFolder, is_shard_file, ran, shard_folder
from contracts.job import ModelTokens, TokenTotals
from contracts.names import FAILURE_INVALID_INPUT, FAILURE_RESULT_INTEGRITY
from contracts.sharding import (
    JobCost,
    MergeShardsRequest,
    MergeSummary,
    ModelCostLine,
    RemoveShardFilesRequest,
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
from shards.check import InputRejected, check_input
from shards.cost import CostReport, ModelUsage, cost_of, load_prices, tally_usage
from shards.files import ShardFiles
from shards.limits import limits_for
from shards.lines import LineError, custom_ids
from shards.merge import MergeError, merge_rounds
from shards.resubmit import select_resubmissions
from shards.split import PLAN_NAME, LineTooLarge, SplitPlan, split_jsonl
from storage import Stores

SHARD_FAILED_CODE = "shard_failed"
"""Error code of the requests of a shard whose child workflow failed (permanent)."""


class ShardingActivities:
    def __init__(self, storage: Stores, dialect: str) -> None:
        self.storage = storage
        self.dialect = dialect

    @activity.defn
    async def split_input(self, request: SplitInputRequest) -> SplitSummary:
        async with temporal_failures():
            # Results are create-only: refused now, before any shard is paid for.
            await refuse_others_results(
                self.storage, tuple(request.refuse_results_at), activity.info().workflow_id
            )
            limits = limits_for(
                self.dialect,
                max_requests=request.max_batch_requests,
                max_bytes=request.max_batch_bytes,
            )
            async with (
                heartbeating(),
                shard_folder(self.storage, request.round_dir) as folder,
                self.storage.reading(request.input_path) as path,
            ):
                await folder.remove_stale_results(request.round_dir)
                out_dir = folder.path(request.round_dir)
                try:
                    if request.endpoint is not None:
                        checked = await asyncio.to_thread(
                            check_input,
                            path,
                            endpoint=request.endpoint,
                            limits=limits,
                            label=request.input_path,
                        )
                        activity.logger.info(
                            "whole input valid: %d requests, %d bytes, %d shards, model(s) %s",
                            checked.requests,
                            checked.bytes,
                            checked.shards,
                            ", ".join(checked.models),
                        )
                    plan = await asyncio.to_thread(
                        split_jsonl,
                        path,
                        out_dir,
                        limits,
                        label=request.input_path,
                        count_tokens=request.count_tokens,
                    )
                except (LineTooLarge, InputRejected) as exc:
                    raise ApplicationError(
                        str(exc), type=FAILURE_INVALID_INPUT, non_retryable=True
                    ) from None
                # The plan last: a folder with shards.json holds every shard.
                for spec in plan.shards:
                    await folder.publish(out_dir / spec.name, f"{request.round_dir}/{spec.name}")
                await folder.publish(out_dir / PLAN_NAME, f"{request.round_dir}/{PLAN_NAME}")
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
        async with temporal_failures(), shard_folder(self.storage, request.round_dir) as folder:
            plan = await folder.plan(request.round_dir)
            window = plan.shards[request.start : request.start + request.count]
            return [spec.estimated_input_tokens for spec in window]

    @activity.defn
    async def select_resubmissions(
        self, request: SelectResubmissionsRequest
    ) -> ResubmissionSummary:
        previous = request.previous_round_dir
        async with (
            temporal_failures(),
            heartbeating(),
            shard_folder(self.storage, previous) as folder,
        ):
            plan = await folder.fetch_round(previous, request.previous, results=False)
            files = await asyncio.to_thread(
                _settled_round, folder, previous, request.previous, "batch_cancelled", plan
            )
            async with self.storage.atomic_write(request.out_path) as out:
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
        async with (
            temporal_failures(),
            heartbeating(),
            shard_folder(self.storage, request.work_dir) as folder,
        ):
            # A merge of one round concatenates the shards' files: their inputs are
            # read only to splice in a later round's, or to name what is wrong.
            spliced = sum(1 for state in request.rounds if state.shards) > 1
            rounds = []
            for number, state in enumerate(request.rounds):
                if not state.shards:
                    continue
                location = round_dir(request.work_dir, number)
                plan = await folder.fetch_round(location, state, results=True, inputs=spliced)
                rounds.append(
                    await asyncio.to_thread(
                        _settled_round, folder, location, state, request.not_run_code, plan
                    )
                )
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
                    try:
                        tally = await asyncio.to_thread(
                            merge_rounds, rounds, results_tmp, errors_tmp, order=request.order
                        )
                    except FileNotFoundError:
                        if not folder.staged or spliced:
                            raise
                        # Counts that do not add up: the inputs name what is wrong.
                        first = round_dir(request.work_dir, 0)
                        await folder.fetch_round(first, request.rounds[0], results=True)
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
            await mark_as_written_by(
                self.storage,
                (request.output_path, request.errors_path),
                activity.info().workflow_id,
            )
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

    @activity.defn
    async def remove_shard_files(self, request: RemoveShardFilesRequest) -> int:
        """After the merge: the job's shard folder in an object store; how many files it held."""
        async with temporal_failures():
            removed = await self.storage.objects.delete_under(request.work_dir, only=is_shard_file)
            activity.logger.info("removed %d shard files under %s", removed, request.work_dir)
            return removed

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.split_input,
            self.shard_tokens,
            self.select_resubmissions,
            self.merge_shards,
            self.remove_shard_files,
        ]


def _settled_round(
    folder: ShardFolder, location: str, state: RoundState, not_run_code: str, plan: SplitPlan
) -> list[ShardFiles]:
    """The round's shard files; a shard whose child never wrote them gets an errors file.

    Every request of a shard that failed or never ran is written as an error
    line, so the merge still holds each custom_id exactly once (in an object
    store, on the worker's staged copy only: the store's folder is not touched).
    """
    files = []
    for index in range(state.shards):
        inputs = folder.path(shard_input(location, index))
        results = folder.path(shard_results(location, index))
        errors = folder.path(shard_errors(location, index))
        failure = state.failure_of(index)
        if failure is not None:
            _write_not_run(inputs, results, errors, SHARD_FAILED_CODE, failure)
        elif not ran(index, state):
            _write_not_run(
                inputs, results, errors, not_run_code, "not run: the job was cancelled first"
            )
        files.append(
            ShardFiles(
                input_path=inputs,
                results_path=results,
                errors_path=errors,
                cancelled_by_deadline=index in state.deadline_shards(),
                batch_may_run=index in state.running_shards(),
                requests=plan.shards[index].requests,
            )
        )
    return files


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
