"""The batch lifecycle, driven by one loop for every batch.

Each tick (every ``TICK_SECONDS``) walks the batches
that are not terminal and moves each one on: ``validating`` → ``failed`` or
``in_progress`` → ``finalizing`` → ``completed``; ``cancelling`` → ``cancelled``;
``in_progress`` → ``expired`` when the completion window has passed. Lines run
in chunks, one task per chunk, with a global cap on lines in flight, so the
number of tasks is bounded by the number of batches, never by the number of
lines. Every result a tick collects is committed together with the counters
that count it, in one transaction; a killed emulator therefore re-runs, after
restart, exactly the lines whose results it had not committed.

Over 400 lines on purpose: the tick, the line runner and their commits share one
transaction discipline, and splitting them would spread that invariant over files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from emulator.backends import Backend, failure_outcome, injected_failure, make_backend
from emulator.clock import Anchor, EmulatedClock, wall_now
from emulator.errors import ApiError
from emulator.knobs import ForceOutcome, Knobs
from emulator.models import CANCELLABLE, BatchRecord, RequestCounts, TokenUsage
from emulator.outputs import result_line, sort_key, write_result_files
from emulator.store import LineRef, LineResult, Store
from emulator.validation import ValidationResult, validate_file


def late_refusal_message(limit: int | None, model: str | None) -> str:
    """OpenAI's words for a batch failed at the end of validation for its enqueued-token quota."""
    stated = f" Limit: {limit:,} enqueued tokens." if limit is not None else ""
    return (
        f"Enqueued token limit reached for {model or 'the model'} in organization "
        f"org-emulator.{stated} Please try again once some in_progress batches have been "
        "completed."
    )


log = logging.getLogger("emulator.scheduler")

TICK_SECONDS = 0.02
MAX_CHUNK = 256
PACED_INFLIGHT_CAP = 2048
CLOCK_META_KEY = "clock_anchor"

FinalStatus = Literal["completed", "expired", "cancelled"]


@dataclass
class _Done:
    result: LineResult
    input_tokens: int
    output_tokens: int


@dataclass
class Active:
    """A batch the loop is driving, with what only this process knows about it."""

    record: BatchRecord
    pending: deque[LineRef] = field(default_factory=deque)
    inflight: int = 0
    buffer: list[_Done] = field(default_factory=list)
    busy: bool = False  # validation or finishing under way
    dirty: bool = False


class Scheduler:
    def __init__(self, store: Store, knobs: Callable[[], Knobs]) -> None:
        self.store = store
        self._knobs = knobs
        self.clock = EmulatedClock.starting_now(knobs().time_scale)
        self.backend: Backend = make_backend(knobs())
        self._retired: list[Backend] = []
        self.active: dict[str, Active] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._inflight_total = 0
        self._rotation = 0
        self.lines_executed = 0
        # Told of each batch that reached a terminal status (the webhook events).
        self.on_end: Callable[[BatchRecord], None] | None = None

    # start and stop

    async def start(self) -> None:
        raw = await self.store.get_meta(CLOCK_META_KEY)
        scale = self._knobs().time_scale
        if raw is None:
            anchor = self.clock.anchor
        else:
            self.clock = EmulatedClock(Anchor(**json.loads(raw)))
            anchor = self.clock.rescale(scale)
        await self._save_anchor(anchor)
        for record in await self.store.active_batches():
            act = Active(record)
            if record.status == "in_progress":
                act.pending = deque(await self.store.pending_lines(record.id))
            self.active[record.id] = act
        log.info("resumed %d unfinished batches", len(self.active))
        self._task = asyncio.create_task(self._run(), name="emulator-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        for backend in [self.backend, *self._retired]:
            await backend.aclose()

    async def _save_anchor(self, anchor: Anchor) -> None:
        payload = {"emulated": anchor.emulated, "wall": anchor.wall, "scale": anchor.scale}
        await self.store.set_meta(CLOCK_META_KEY, json.dumps(payload))

    async def knobs_changed(self, old: Knobs, new: Knobs) -> None:
        if old.time_scale != new.time_scale:
            await self._save_anchor(self.clock.rescale(new.time_scale))
        upstream_fields = (
            "upstream_url",
            "upstream_concurrency",
            "upstream_api_key",
            "upstream_model",
        )
        if any(getattr(old, f) != getattr(new, f) for f in upstream_fields) or (
            old.upstream_timeout_seconds != new.upstream_timeout_seconds
        ):
            self._retired.append(self.backend)
            self.backend = make_backend(new)

    # requests from routes

    def new_record_times(self, window_seconds: float) -> tuple[int, int, float, float]:
        """created_at, expires_at (wall), and the emulated start and deadline."""
        created = wall_now()
        emu_now = self.clock.now()
        expires = created + max(1, math.ceil(self.clock.real_seconds(window_seconds)))
        return created, expires, emu_now, emu_now + window_seconds

    async def create(self, record: BatchRecord) -> None:
        """Store first, then drive: the loop never sees a batch the database lacks."""
        await self.store.add_batch(record)
        self.active[record.id] = Active(record)

    async def _running(self, batch_id: str, finished_message: str, code: str) -> Active:
        """The batch if the loop still drives it: 404 if unknown, 409 once it has ended."""
        act = self.active.get(batch_id)
        if act is not None:
            return act
        record = await self.store.get_batch(batch_id)
        if record is None:
            raise ApiError(404, f"No such Batch object: {batch_id}", param="batch_id")
        raise ApiError(
            409, finished_message.format(status=record.status), param="batch_id", code=code
        )

    async def cancel(self, batch_id: str) -> BatchRecord:
        async with self._lock:
            act = await self._running(
                batch_id, "Cannot cancel a batch with status '{status}'.", "batch_not_cancellable"
            )
            record = act.record
            if record.status in CANCELLABLE:
                record.status = "cancelling"
                record.cancelling_at = wall_now()
                record.emu_phase_started = self.clock.now()
                act.pending.clear()
                await self.store.save_batches([record])
            return record.model_copy(deep=True)

    async def force(self, batch_id: str, outcome: ForceOutcome) -> BatchRecord:
        async with self._lock:
            act = await self._running(
                batch_id, f"Batch {batch_id} is already '{{status}}'.", "batch_terminal"
            )
            act.record.forced = outcome
            await self.store.save_batches([act.record])
            return act.record.model_copy(deep=True)

    # the loop

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed; trying again next tick")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _tick(self) -> None:
        if not self.active:
            return
        async with self._lock:
            knobs = self._knobs()
            now = self.clock.now()
            ready: list[tuple[Active, FinalStatus]] = []
            acts = list(self.active.values())
            self._rotation = (self._rotation + 1) % len(acts)
            acts = acts[self._rotation :] + acts[: self._rotation]
            budget = self._line_budget(knobs)
            for act in acts:
                if act.busy:
                    continue
                final, budget = self._advance(act, knobs, now, budget)
                if final is not None:
                    ready.append((act, final))
            results: dict[str, list[LineResult]] = {}
            changed: list[BatchRecord] = []
            undo: list[tuple[Active, list[_Done], RequestCounts, TokenUsage]] = []
            for act in self.active.values():
                if act.buffer:
                    record = act.record
                    undo.append(
                        (
                            act,
                            act.buffer,
                            record.request_counts.model_copy(),
                            record.usage.model_copy(),
                        )
                    )
                    results[record.id] = self._absorb(act)
                if act.dirty:
                    changed.append(act.record)
                    act.dirty = False
            if results or changed:
                try:
                    await self.store.commit_results(results, changed)
                except Exception:
                    # Nothing was stored: put the results back to be counted next tick.
                    for act, buffer, counts, usage in undo:
                        act.record.request_counts, act.record.usage = counts, usage
                        act.buffer[:0] = buffer
                    for record in changed:
                        if record.id in self.active:
                            self.active[record.id].dirty = True
                    raise
            for act, final in ready:
                act.busy = True
                self._spawn(self._finish(act, final, knobs), f"finish-{act.record.id}")

    def _line_budget(self, knobs: Knobs) -> int:
        cap = PACED_INFLIGHT_CAP if self.backend.paced else 2 * knobs.upstream_concurrency
        return max(0, cap - self._inflight_total)

    def _absorb(self, act: Active) -> list[LineResult]:
        """Count buffered results into the record; the caller commits both together."""
        record = act.record
        for done in act.buffer:
            if done.result.ok:
                record.request_counts.completed += 1
            else:
                record.request_counts.failed += 1
            record.usage.input_tokens += done.input_tokens
            record.usage.output_tokens += done.output_tokens
        act.dirty = True
        out = [d.result for d in act.buffer]
        act.buffer = []
        return out

    def _advance(
        self, act: Active, knobs: Knobs, now: float, budget: int
    ) -> tuple[FinalStatus | None, int]:
        """Move one batch on; returns the final status it is ready for, and the budget left."""
        record = act.record
        status = record.status
        validated = now >= record.emu_phase_started + knobs.validating_seconds
        if record.forced == "failed" and (
            status in ("in_progress", "finalizing") or (status == "validating" and validated)
        ):
            self._fail(
                act,
                [
                    {
                        "code": "forced_failure",
                        "message": "The emulator was told to fail this batch.",
                        "param": None,
                        "line": None,
                    }
                ],
            )
            return None, budget
        if record.forced == "token_limit_exceeded" and status == "validating" and validated:
            message = late_refusal_message(knobs.enqueued_token_limit, record.model)
            self._fail(
                act,
                [{"code": "token_limit_exceeded", "message": message, "param": None, "line": None}],
            )
            return None, budget
        if status == "validating":
            if record.forced != "stuck_validating" and validated:
                act.busy = True
                self._spawn(self._validate(act, knobs), f"validate-{record.id}")
            return None, budget
        if status == "in_progress":
            expiring = record.forced == "expired" or now >= record.emu_expires
            if expiring:
                act.pending.clear()
                if act.inflight == 0:
                    return "expired", budget
                return None, budget
            budget = self._launch(act, knobs, now, budget)
            if not act.pending and act.inflight == 0:
                record.status = "finalizing"
                record.finalizing_at = wall_now()
                record.emu_phase_started = now
                act.dirty = True
            return None, budget
        if status == "finalizing":
            if (
                record.forced != "stuck_finalizing"
                and now >= record.emu_phase_started + knobs.finalizing_seconds
            ):
                return "completed", budget
            return None, budget
        if status == "cancelling":
            if act.inflight == 0 and now >= record.emu_phase_started + knobs.cancelling_seconds:
                return "cancelled", budget
        return None, budget

    def _fail(self, act: Active, errors: list[dict[str, Any]]) -> None:
        record = act.record
        record.status = "failed"
        record.failed_at = wall_now()
        record.errors = errors
        act.pending.clear()
        act.dirty = True
        self.active.pop(record.id, None)
        self._spawn(self.store.finish_batch(record, []), f"drop-lines-{record.id}")
        self.ended(record)

    def ended(self, record: BatchRecord) -> None:
        if self.on_end is not None:
            self.on_end(record)

    # lines

    def _launch(self, act: Active, knobs: Knobs, now: float, budget: int) -> int:
        if not act.pending or budget <= 0:
            return budget
        record = act.record
        started = record.request_counts.total - len(act.pending)
        if self.backend.paced:
            if knobs.line_latency_seconds <= 0:
                due = record.request_counts.total
            else:
                elapsed = max(0.0, now - record.emu_phase_started)
                due = int(elapsed / knobs.line_latency_seconds * knobs.batch_concurrency)
            allowance = due - started
        else:
            allowance = len(act.pending)
        count = min(allowance, budget, MAX_CHUNK, len(act.pending))
        if count <= 0:
            return budget
        refs = [act.pending.popleft() for _ in range(count)]
        act.inflight += count
        self._inflight_total += count
        self._spawn(self._run_chunk(act, refs, knobs), f"lines-{record.id}")
        return budget - count

    async def _run_chunk(self, act: Active, refs: list[LineRef], knobs: Knobs) -> None:
        record = act.record
        backend = self.backend
        try:
            path = self.store.blob_path(record.input_file_id)
            bodies = await asyncio.to_thread(_read_bodies, path, refs)

            async def one(ref: LineRef, body: dict[str, Any]) -> _Done:
                status = injected_failure(ref.custom_id, knobs.seed, knobs.line_failure_rate)
                outcome = (
                    failure_outcome(status) if status else await backend.run(record.endpoint, body)
                )
                self.lines_executed += 1
                return _Done(
                    LineResult(
                        ref.idx,
                        outcome.ok,
                        sort_key(record.id, ref.custom_id),
                        result_line(record.id, ref.custom_id, outcome),
                    ),
                    outcome.input_tokens,
                    outcome.output_tokens,
                )

            if backend.paced:
                act.buffer.extend(
                    [await one(ref, body) for ref, body in zip(refs, bodies, strict=True)]
                )
            else:
                act.buffer.extend(
                    await asyncio.gather(*(one(r, b) for r, b in zip(refs, bodies, strict=True)))
                )
        except Exception:
            log.exception("lines of %s failed to run; they go back to pending", record.id)
            if record.status == "in_progress":
                act.pending.extendleft(reversed(refs))
        finally:
            act.inflight -= len(refs)
            self._inflight_total -= len(refs)

    # phases that run off the loop

    async def _validate(self, act: Active, knobs: Knobs) -> None:
        record = act.record
        result: ValidationResult | None = None
        error: dict[str, Any] = {}
        try:
            path = self.store.blob_path(record.input_file_id)
            result = await asyncio.to_thread(
                validate_file,
                path,
                record.endpoint,
                max_requests=knobs.max_requests_per_file,
                lenient_url=knobs.dialect == "azure",
            )
        except OSError as exc:
            error = {"code": "file_unavailable", "message": str(exc), "param": None, "line": None}
        except Exception as exc:
            log.exception("validating %s crashed", record.id)
            error = {"code": "server_error", "message": repr(exc), "param": None, "line": None}
        async with self._lock:
            act.busy = False
            if record.status != "validating" or record.id not in self.active:
                return
            if result is None:
                self._fail(act, [error])
                return
            if not result.ok:
                self._fail(act, result.errors)
                return
            record.status = "in_progress"
            record.in_progress_at = wall_now()
            record.emu_phase_started = self.clock.now()
            record.model = result.model
            record.request_counts.total = len(result.lines)
            await self.store.start_lines(record, result.lines)
            act.pending = deque(result.lines)

    async def _finish(self, act: Active, final: FinalStatus, knobs: Knobs) -> None:
        record = act.record
        try:
            files = await write_result_files(
                self.store,
                record,
                expired=final == "expired",
                always_error_file=knobs.dialect == "azure" and final == "completed",
            )
            async with self._lock:
                record.status = final
                stamp = wall_now()
                if final == "completed":
                    record.completed_at = stamp
                elif final == "expired":
                    record.expired_at = stamp
                else:
                    record.cancelled_at = stamp
                await self.store.finish_batch(record, files)
                self.active.pop(record.id, None)
            self.ended(record)
        except Exception:
            log.exception("finishing %s failed; trying again next tick", record.id)
            act.busy = False


def _read_bodies(path: Path, refs: list[LineRef]) -> list[dict[str, Any]]:
    """Blocking: read the request bodies of ``refs`` from the input file."""
    bodies = []
    with path.open("rb") as fh:
        for ref in refs:
            fh.seek(ref.offset)
            obj = json.loads(fh.read(ref.length))
            bodies.append(obj["body"])
    return bodies
