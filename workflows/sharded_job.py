"""ShardedBatchJobWorkflow: one job of any size, as many batches as the gateway's limits need.

split -> run each shard as a child BatchJobWorkflow, within a window of
concurrent batches and an enqueued-token budget -> resubmit transient
failures -> merge everything into one results and one errors file.

A create the gateway refuses for its enqueued-token quota fails that child
(its batch was never run, so nothing is lost); the parent starts the shard
again once another shard ends, or after a back-off when none is in flight,
with its window lowered. The history stays bounded: the run continues as new
after ``children_per_run`` children (or when Temporal suggests it), between
children, carrying only counts.

Over 400 lines on purpose: admission, rounds, continue-as-new and cancel share
one loop's state; the pure admission rule is workflows/admission.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    is_cancelled_exception,
)
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.sharding import ShardingActivities
    from contracts.batch_status import TERMINAL_STATUSES
    from contracts.job import (
        BatchCounts,
        BatchJobInput,
        BatchJobResult,
        InputLimits,
        JobPhase,
        JobProgress,
        JobStatus,
        ModelTokens,
        TokenTotals,
    )
    from contracts.names import (
        PATCH_EXACT_SHARD_CANCEL,
        PATCH_SHARDS_IN_STORE,
        PATCH_SHARDS_OUTLIVE_PARENT_FAILURE,
        QUERY_PROGRESS,
        QUERY_SHARDS,
        SHARDED_JOB_WORKFLOW_NAME,
    )
    from contracts.sharding import (
        LEFT_EXAMPLES,
        MergeShardsRequest,
        MergeSummary,
        RemoveShardFilesRequest,
        RoundState,
        SelectResubmissionsRequest,
        ShardedJobInput,
        ShardedJobResult,
        ShardedProgress,
        ShardTokensRequest,
        SplitInputRequest,
        resubmit_input,
        round_dir,
        shard_errors,
        shard_input,
        shard_results,
        store_work_dir,
        work_dir_for,
    )
    from shards.limits import DIALECT_LIMITS

from workflows import metrics, step_options
from workflows.admission import Admission, innermost_message, quota_refused
from workflows.batch_job import BatchJobWorkflow
from workflows.carried import own_sharded_progress
from workflows.progress import describe

TOKEN_WINDOW = 1000
"""Shards whose token estimates one activity reads at a time."""


@workflow.defn(name=SHARDED_JOB_WORKFLOW_NAME, failure_exception_types=[ValidationError])
class ShardedBatchJobWorkflow:
    _request: ShardedJobInput
    _work_dir: str

    def __init__(self) -> None:
        self._state = ShardedProgress()
        self._phase = JobPhase.VALIDATING_INPUT
        self._reason: str | None = None
        self._children: dict[int, ChildWorkflowHandle[BatchJobWorkflow, BatchJobResult]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._tokens: dict[tuple[int, int], int] = {}
        self._admission = Admission(1, None, timedelta(0), timedelta(0))
        self._started_this_run = 0
        self._ended = 0
        self._cancels_on_start = False
        """The job was cancelled: a child whose start is confirmed now is cancelled at once."""

    @workflow.query(name=QUERY_PROGRESS)
    def progress(self) -> JobProgress:
        """The one-batch job's progress shape, over every shard: the starter's bar reads it."""
        s = self._state
        requests = s.rounds[0].requests if s.rounds else None
        return JobProgress(
            phase=self._phase,
            requests=requests,
            counts=None
            if requests is None
            else BatchCounts(total=requests, completed=s.succeeded, failed=s.failed),
            reason=self._reason or self._describe_shards(),
            updated_at=workflow.now(),
        )

    @workflow.query(name=QUERY_SHARDS)
    def shards(self) -> ShardedProgress:
        return self._state.model_copy(update={"in_flight": len(self._admission.in_flight)})

    @workflow.run
    async def run(self, request: ShardedJobInput) -> ShardedJobResult:
        self._request = request
        info = workflow.info()
        output, errors = request.job.output_paths_for(info.workflow_id)
        self._state = own_sharded_progress(request.carried, output) or ShardedProgress(
            started_at=workflow.now(), usage=TokenTotals(by_model={})
        )
        self._work_dir = self._state.work_dir or self._choose_work_dir(
            output, info.workflow_id, fresh=request.carried is None
        )
        self._state.work_dir = self._work_dir
        options = request.sharding
        self._admission = Admission(
            max_concurrent=options.max_concurrent_batches,
            max_tokens=options.max_enqueued_tokens,
            quota_retry=options.quota_retry,
            quota_retry_max=options.quota_retry_max,
        )
        try:
            await self._run_rounds()
        except asyncio.CancelledError:
            self._phase = JobPhase.CANCELLING
            self._reason = "cancel requested: cancelling every shard in flight"
            self._show()
            self._state.cancelled = True
            await self._cancel_children()
            if not self._state.rounds:
                raise  # cancelled before the input was split: nothing to keep
        except FailureError as exc:
            await self._fail_after_shards_in_flight(exc)
        merged = await self._merge(output, errors)
        await self._remove_shard_files()
        return self._result(merged, output, errors)

    def _choose_work_dir(self, output: str, workflow_id: str, *, fresh: bool) -> str:
        """Beside the results, in their object store if they are in one (fixed for the job).

        A job that started before shard files could live in a store (no marker
        in its history, or carried over without a folder) keeps the data directory.
        """
        in_store = store_work_dir(output, workflow_id)
        if in_store is not None and fresh and workflow.patched(PATCH_SHARDS_IN_STORE):
            return in_store
        return work_dir_for(output, workflow_id)

    # -- rounds: the input's shards, then follow-ups of transient failures -----------------

    async def _run_rounds(self) -> None:
        state, options = self._state, self._request.sharding
        while True:
            if state.round >= len(state.rounds):
                state.rounds.append(await self._split(state.round))
            if not await self._run_round(state.rounds[state.round]):
                self._continue_as_new()
            if state.round >= options.resubmit:
                return
            follow_up = await self._select_resubmissions(state.round)
            if follow_up == 0:
                return
            state.resubmitted += follow_up
            state.round += 1

    async def _split(self, number: int) -> RoundState:
        self._phase = JobPhase.VALIDATING_INPUT
        self._show()
        options = self._request.sharding
        source = (
            self._request.job.input_path
            if number == 0
            else resubmit_input(round_dir(self._work_dir, number))
        )
        split = await workflow.execute_activity_method(
            ShardingActivities.split_input,
            SplitInputRequest(
                refuse_results_at=list(
                    self._request.job.output_paths_for(workflow.info().workflow_id)
                )
                if number == 0 and not self._request.job.replace_results
                else [],
                input_path=source,
                round_dir=round_dir(self._work_dir, number),
                max_batch_requests=options.max_batch_requests,
                max_batch_bytes=options.max_batch_bytes,
                count_tokens=options.max_enqueued_tokens is not None,
                # Round 0 is the user's input: checked whole before any shard is uploaded.
                endpoint=self._request.job.endpoint if number == 0 else None,
            ),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=step_options.LOCAL_RETRY,
        )
        return RoundState(shards=split.shards, requests=split.requests)

    async def _select_resubmissions(self, number: int) -> int:
        chosen = await workflow.execute_activity_method(
            ShardingActivities.select_resubmissions,
            SelectResubmissionsRequest(
                previous_round_dir=round_dir(self._work_dir, number),
                previous=self._state.rounds[number],
                out_path=resubmit_input(round_dir(self._work_dir, number + 1)),
            ),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=step_options.LOCAL_RETRY,
        )
        return chosen.requests

    async def _run_round(self, state: RoundState) -> bool:
        """Run the round's shards within the admission limits; False: continue as new first."""
        self._phase = JobPhase.WAITING
        admission = self._admission
        while state.retry or state.next_shard < state.shards or admission.in_flight:
            if self._should_continue_as_new():
                if not admission.in_flight:
                    return False
            else:
                await self._admit(state)
            self._show()
            if admission.in_flight:
                await self._one_shard_ends()
            elif admission.retry_at is not None:
                # Refused with nothing else in flight: only time frees the quota.
                await workflow.sleep(max(admission.retry_at - workflow.now(), timedelta(0)))
                admission.waited()
        return True

    async def _one_shard_ends(self) -> None:
        ended = self._ended
        await workflow.wait_condition(lambda: self._ended > ended)

    async def _admit(self, state: RoundState) -> None:
        while True:
            index = state.retry[0] if state.retry else state.next_shard
            if index >= state.shards:
                return
            tokens = await self._tokens_of(index)
            if not self._admission.admits(tokens):
                return
            if state.retry:
                state.retry.pop(0)
            else:
                state.next_shard += 1
            self._admission.start(index, tokens)
            self._started_this_run += 1
            self._tasks[index] = asyncio.create_task(self._run_shard(state, index))

    async def _tokens_of(self, index: int) -> int:
        if self._request.sharding.max_enqueued_tokens is None:
            return 0
        number = self._state.round
        if (number, index) not in self._tokens:
            start = index - index % TOKEN_WINDOW
            window = await workflow.execute_activity_method(
                ShardingActivities.shard_tokens,
                ShardTokensRequest(
                    round_dir=round_dir(self._work_dir, number),
                    start=start,
                    count=TOKEN_WINDOW,
                ),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=step_options.LOCAL_RETRY,
            )
            self._tokens = {(number, start + n): count for n, count in enumerate(window)}
        return self._tokens.get((number, index), 0)

    # -- one shard: one child BatchJobWorkflow ---------------------------------------------

    async def _run_shard(self, state: RoundState, index: int) -> None:
        number = self._state.round
        try:
            handle = await workflow.start_child_workflow(
                BatchJobWorkflow.run,
                self._shard_job(number, index),
                id=self._child_id(number, index),
                static_summary=(
                    f"shard {index + 1} of {state.shards}"
                    + (f", resubmission round {number}" if number else "")
                    + f" of {workflow.info().workflow_id}"
                ),
                # A parent terminated or timed out asks its children to cancel, so
                # each cancels its batch and keeps what finished; none is killed.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            )
            self._children[index] = handle
            if self._cancels_on_start:
                # The job's cancel landed while this start was unconfirmed: the child
                # may have begun, so it is cancelled like any other (its batch too).
                handle.cancel()
            result = await handle
        except asyncio.CancelledError:
            state.unrun.append(index)
        except ChildWorkflowError as exc:
            if is_cancelled_exception(exc) or (quota_refused(exc) and self._state.cancelled):
                state.unrun.append(index)
            elif quota_refused(exc):
                self._quota_refused(state, index)
            else:
                state.shard_failed(index, innermost_message(exc))
                self._state.shards_done += 1
        except Exception as exc:
            # E.g. a child of this id still running from an earlier run: this shard
            # is reported failed, the job goes on.
            state.shard_failed(index, f"shard {index} could not start: {innermost_message(exc)}")
            self._state.shards_done += 1
        else:
            self._shard_ended(state, index, result)
        finally:
            self._admission.end(index)
            self._children.pop(index, None)
            self._tasks.pop(index, None)
            self._ended += 1

    def _shard_job(self, number: int, index: int) -> BatchJobInput:
        folder = round_dir(self._work_dir, number)
        options = self._request.sharding
        # The split kept each shard within the worker's dialect limits (or the
        # user's): the child's own check may only refuse what no dialect takes.
        most_requests = max(requests for requests, _ in DIALECT_LIMITS.values())
        most_bytes = max(size for _, size in DIALECT_LIMITS.values())
        return self._request.job.model_copy(
            update={
                "input_path": shard_input(folder, index),
                "output_path": shard_results(folder, index),
                "errors_path": shard_errors(folder, index),
                "job_key": None,
                # A refusal for quota fails the child at once: admission starts it again.
                "quota_retry": None,
                "limits": InputLimits(
                    max_requests=max(options.max_batch_requests or 0, most_requests),
                    max_bytes=max(options.max_batch_bytes or 0, most_bytes),
                ),
            }
        )

    def _child_id(self, number: int, index: int) -> str:
        parent = workflow.info().workflow_id
        return f"{parent}-shard-{index}" if number == 0 else f"{parent}-r{number}-shard-{index}"

    def _shard_ended(self, state: RoundState, index: int, result: BatchJobResult) -> None:
        s = self._state
        s.shards_done += 1
        tally = result.requests
        if self._state.round == 0:
            s.succeeded += tally.succeeded
            s.failed += tally.failed + tally.not_run
        else:  # a follow-up: what succeeded now had failed before
            s.succeeded += tally.succeeded
            s.failed -= tally.succeeded
        s.usage.prompt_tokens += result.usage.prompt_tokens
        s.usage.completion_tokens += result.usage.completion_tokens
        s.usage.total_tokens += result.usage.total_tokens
        s.usage.by_model = _add_by_model(s.usage.by_model, result.usage.by_model)
        if result.status is JobStatus.DEADLINE_EXCEEDED:
            state.cancelled_at_deadline(index)
        if result.batch_status not in TERMINAL_STATUSES:
            # A child from before wait-out-uncancelled-v1 gave up on a batch that runs on.
            state.ended_running(index)
        if result.gateway_files is not None:
            files = s.gateway_files
            files.deleted += len(result.gateway_files.deleted)
            files.left += len(result.gateway_files.left)
            for file_id, why in result.gateway_files.left.items():
                if len(files.left_examples) < LEFT_EXAMPLES:
                    files.left_examples[file_id] = why
        self._admission.succeeded()

    def _quota_refused(self, state: RoundState, index: int) -> None:
        """Start the shard again later, and admit no more than are in flight now."""
        self._state.quota_refusals += 1
        state.retry.append(index)
        when = self._admission.refused(index, workflow.now())
        workflow.logger.warning(
            "shard %d refused for the enqueued-token quota; started again %s", index, when
        )

    async def _cancel_children(self) -> None:
        """Cancel every shard in flight; each cancels its batch and keeps what finished.

        A shard whose child start is not confirmed yet may still begin (the server may
        have started it): its start is waited for and the child then cancelled, so the
        shard counts what its batch did (exact-shard-cancel-v1). Before the patch its
        start was abandoned and the shard counted not run, though its child might run.
        """
        starting = [index for index in self._tasks if index not in self._children]
        self._cancels_on_start = bool(starting) and workflow.patched(PATCH_EXACT_SHARD_CANCEL)
        for index, task in list(self._tasks.items()):
            child = self._children.get(index)
            if child is not None:
                child.cancel()
            elif not self._cancels_on_start:
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _fail_after_shards_in_flight(self, exc: FailureError) -> NoReturn:
        """A step of the job failed for good (its retries spent, or not retryable). The
        shards in flight are healthy and paid for: they finish, each collecting its batch
        into the shard folder, and only then does the job fail, naming them; failing at
        once would cancel them (the parent-close policy)."""
        in_flight = sorted(self._tasks)
        if not in_flight or not workflow.patched(PATCH_SHARDS_OUTLIVE_PARENT_FAILURE):
            raise exc
        number = self._state.round
        names = [self._child_id(number, index) for index in in_flight]
        shown = ", ".join(names[:LEFT_EXAMPLES]) + (" ..." if len(names) > LEFT_EXAMPLES else "")
        why = innermost_message(exc)
        self._phase = JobPhase.WAITING
        self._reason = f"{why}; letting the {len(names)} shard(s) in flight finish: {shown}"
        self._show()
        workflow.logger.error("the job failed: %s", self._reason)
        await workflow.wait_condition(lambda: not self._tasks)
        cause = exc.cause if isinstance(exc, ActivityError) else exc
        raise ApplicationError(
            f"{why}; the {len(names)} shard(s) in flight were let finish first, their "
            f"results and errors under {round_dir(self._work_dir, number)}: {shown}",
            type=cause.type if isinstance(cause, ApplicationError) else None,
            non_retryable=True,
        ) from exc

    # -- history, the end, and what the job shows ------------------------------------------

    def _should_continue_as_new(self) -> bool:
        if self._started_this_run >= self._request.sharding.children_per_run:
            return True
        return workflow.info().is_continue_as_new_suggested()

    def _continue_as_new(self) -> None:
        carried = self._state.model_copy(update={"runs": self._state.runs + 1, "in_flight": 0})
        workflow.continue_as_new(self._request.model_copy(update={"carried": carried}))

    async def _merge(self, output: str, errors: str) -> MergeSummary:
        """Merge what exists; a cancel during the merge still gets it (the shards are paid for)."""
        self._phase = JobPhase.DOWNLOADING
        self._show()
        try:
            return await self._merge_once(output, errors)
        except asyncio.CancelledError:
            self._state.cancelled = True
            return await self._merge_once(output, errors)

    async def _merge_once(self, output: str, errors: str) -> MergeSummary:
        rounds = list(self._state.rounds)
        while len(rounds) > 1 and not (rounds[-1].next_shard or rounds[-1].retry):
            rounds.pop()  # a follow-up cancelled before any of it ran changes nothing
        return await workflow.execute_activity_method(
            ShardingActivities.merge_shards,
            MergeShardsRequest(
                work_dir=self._work_dir,
                rounds=rounds,
                output_path=output,
                errors_path=errors,
                order=self._request.sharding.order,
                not_run_code="batch_cancelled",
                prices_path=self._request.prices_path,
                usage=self._state.usage if self._state.usage.by_model is not None else None,
            ),
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=step_options.LOCAL_RETRY,
        )

    async def _remove_shard_files(self) -> None:
        """Shard files in an object store cost money and nobody reads them after the merge.

        Best effort: a removal that fails is logged, and the job's results stand.
        """
        if "://" not in self._work_dir or self._work_dir.startswith("file://"):
            return  # on the data directory: kept for inspection (the result names it)
        try:
            await workflow.execute_activity_method(
                ShardingActivities.remove_shard_files,
                RemoveShardFilesRequest(work_dir=self._work_dir),
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=step_options.CLEAN_UP.retry,
                summary="remove shard files",
            )
        except (ActivityError, asyncio.CancelledError) as exc:
            # A cancel this late changes nothing: the results are published.
            workflow.logger.warning(
                "shard files under %s were not removed: %s",
                self._work_dir,
                innermost_message(exc) or "cancelled",
            )

    def _result(self, merged: MergeSummary, output: str, errors: str) -> ShardedJobResult:
        s = self._state
        if s.cancelled:
            status, reason = JobStatus.CANCELLED, "the job was cancelled; finished shards kept"
        elif merged.failed or merged.succeeded != merged.requests:
            status = JobStatus.COMPLETED_WITH_FAILURES
            reason = f"{merged.failed} of {merged.requests} requests did not succeed"
        else:
            status, reason = JobStatus.SUCCEEDED, None
        failed_shards = sum(len(r.failed_shards()) for r in s.rounds)
        if failed_shards:
            # The first one's cause says what to change (e.g. a 413 names --max-batch-bytes).
            first = next(why for r in s.rounds for why in r.failed.values())
            reason = f"{reason}; {failed_shards} shard(s) failed, the first: {first[:500]}"
        s.succeeded, s.failed = merged.succeeded, merged.failed
        self._phase, self._reason = JobPhase.DONE, reason
        metrics.record_cost(merged.cost)
        details = describe(self.progress())
        cost = merged.cost
        workflow.set_current_details(
            f"{details}\n\n**cost** {cost.total:.4f} {cost.currency} (prices as of "
            f"{cost.prices_as_of})"
        )
        return ShardedJobResult(
            status=status,
            reason=reason,
            output_path=output,
            errors_path=errors,
            work_dir=self._work_dir,
            requests=merged.requests,
            succeeded=merged.succeeded,
            failed=merged.failed,
            shards=sum(r.shards for r in s.rounds),
            rounds=len(s.rounds),
            resubmitted=merged.resubmitted,
            recovered=merged.recovered,
            quota_refusals=s.quota_refusals,
            failed_shards=failed_shards,
            usage=merged.usage,
            cost=merged.cost,
            gateway_files=(
                s.gateway_files if s.gateway_files.deleted or s.gateway_files.left else None
            ),
            started_at=s.started_at or workflow.now(),
            finished_at=workflow.now(),
        )

    def _describe_shards(self) -> str:
        s = self._state
        total = sum(r.shards for r in s.rounds)
        in_flight = len(self._admission.in_flight)
        text = f"shards: {s.shards_done}/{total} done, {in_flight} in flight"
        if s.round:
            text += f", resubmission round {s.round} ({s.resubmitted} requests)"
        if s.quota_refusals:
            text += f", {s.quota_refusals} quota refusals"
        return text

    def _show(self) -> None:
        workflow.set_current_details(describe(self.progress()))


def _add_by_model(
    total: dict[str, ModelTokens] | None, child: dict[str, ModelTokens] | None
) -> dict[str, ModelTokens] | None:
    """The sum by model; None (the merge then reads the results) once one child had none."""
    if total is None or child is None:
        return None
    for model, tokens in child.items():
        into = total.setdefault(model, ModelTokens())
        into.prompt_tokens += tokens.prompt_tokens
        into.completion_tokens += tokens.completion_tokens
    return total
