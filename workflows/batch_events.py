"""A batch event (a provider's webhook, relayed by webhooks/) wakes the job's wait.

The event is only a nudge: the job never believes it, it reads the batch. The
handler cancels the watch in flight (TRY_CANCEL: the workflow does not wait for
the detached watch to hear it) and the wait starts a fresh watch, whose first
read sees the batch's end at once. A job without events runs exactly as before:
the patch is asked only when an event cuts a watch short.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.step_options import StepOptions

with workflow.unsafe.imports_passed_through():
    from activities.batch_activities import BatchActivities
    from contracts.events import BatchEvent
    from contracts.names import PATCH_BATCH_EVENTS, SIGNAL_BATCH_EVENT
    from contracts.steps import BatchWatch, WatchBatchRequest

# Each wake costs about 10 history events (the signal, the cancel, a fresh watch and
# their workflow tasks) and a read; past this many, events (a misbehaving sender, a
# loop) stop waking the job and the fallback poll remains: the history stays bounded.
MAX_EVENT_WAKES = 20


class HearsBatchEvents:
    """The signal handler, and the watch step it cuts short; the workflow gives _start_step."""

    # Class defaults, so the workflow's __init__ need not know of this mixin.
    _watch_in_flight: workflow.ActivityHandle[BatchWatch] | None = None
    _watched_batch_id: str | None = None
    _cut_short = False
    _event_wakes = 0

    def _start_step(
        self, activity: Any, request: Any, options: StepOptions
    ) -> workflow.ActivityHandle[Any]:
        raise NotImplementedError

    @workflow.signal(name=SIGNAL_BATCH_EVENT)
    def batch_event(self, event: BatchEvent) -> None:
        watch = self._watch_in_flight
        if watch is None or watch.done() or event.batch_id != self._watched_batch_id:
            return
        if self._cut_short or self._event_wakes >= MAX_EVENT_WAKES:
            return
        if not workflow.patched(PATCH_BATCH_EVENTS):
            return
        self._event_wakes += 1
        self._cut_short = True
        workflow.logger.info("batch %s: %s event; reading it now", event.batch_id, event.type)
        watch.cancel()

    async def _watch_step(self, request: WatchBatchRequest, options: StepOptions) -> BatchWatch:
        """One watch_batch step; if an event cut it short, a fresh one reads the batch at once."""
        while True:
            self._cut_short = False
            watch: workflow.ActivityHandle[BatchWatch] = self._start_step(
                BatchActivities.watch_batch, request, options
            )
            self._watch_in_flight, self._watched_batch_id = watch, request.batch.id
            try:
                return await watch
            except ActivityError as exc:
                if not (self._cut_short and is_cancelled_exception(exc)):
                    raise
            finally:
                self._watch_in_flight = None
