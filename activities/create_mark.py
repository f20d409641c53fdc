"""Whether a create's POST /batches may be out unanswered, recorded at Temporal before it leaves.

A worker killed while its POST is in flight leaves no answer to judge. Where
the gateway lists batches, the retry finds the batch by its job key; where it
cannot (Kong may not route GET /batches), a retry that created again could
bill a second, unwatched batch. So create_batch keeps a mark in its heartbeat
details, which Temporal hands to the next attempt:

- the mark is set just before the POST: sent through the client's activity
  handle and awaited, so it is at the server before the request leaves; the
  worker's buffered heartbeat is given the mark first (heartbeat_at_server), so
  no beat it sends later can erase it;
- the moment the POST is answered, the batch's id joins the mark, awaited the
  same way: a retry adopts that batch by id, whether or not the gateway lists;
- it is cleared only when the gateway answered that it created nothing.

A retry that finds the mark without a batch id, on a gateway that cannot list,
fails at once (CreateOutcomeUnknown). A worker lost before its POST (during
submit_batch's validation or upload) leaves no mark: its retry goes on cleanly.
In submit_batch the mark rides in the step's checkpoint (SubmittedBatch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import AsyncActivityCancelledError

from activities.heartbeat import heartbeat_at_server


class CreateMark(BaseModel):
    """create_batch's heartbeat details, shown in the Web UI as the pending create's."""

    post_may_be_out: bool
    answer_timed_out: bool = False
    """The POST got no answer in time (a timeout, a 504): the provider may still be making
    its batch, so a retry looks for it for a while before creating again."""
    created_batch_id: str | None = None
    """The batch the POST's answer named: a retry adopts it, whether or not the gateway lists."""


def marked(details: Sequence[Any]) -> bool:
    """Whether an earlier attempt's heartbeat said its POST may be out unanswered."""
    for detail in details:
        if isinstance(detail, dict):
            return bool(detail.get("post_may_be_out"))
        return bool(getattr(detail, "post_may_be_out", False))
    return False


def timed_out(details: Sequence[Any]) -> bool:
    """Whether an earlier attempt's POST got no answer in time, by its heartbeat."""
    for detail in details:
        if isinstance(detail, dict):
            return bool(detail.get("answer_timed_out"))
        return bool(getattr(detail, "answer_timed_out", False))
    return False


def created_batch(details: Sequence[Any]) -> str | None:
    """The batch an earlier attempt's POST was answered with, by its heartbeat."""
    for detail in details:
        if isinstance(detail, dict):
            found = detail.get("created_batch_id")
        else:
            found = getattr(detail, "created_batch_id", None)
        return found if isinstance(found, str) and found else None
    return None


class PostMark:
    """The mark of one attempt: set from its start, cleared on a definitive 'nothing made'.

    ``checkpoint`` turns the mark into the step's heartbeat details (by default
    the mark alone; submit_batch's carries what it has done so far too).
    """

    def __init__(self, checkpoint: Callable[[CreateMark], Any] | None = None) -> None:
        self.current = CreateMark(post_may_be_out=False)
        self._checkpoint = checkpoint or (lambda mark: mark)

    def details(self) -> Any:
        return self._checkpoint(self.current)

    async def before_post(self) -> None:
        """Durably at the server before the POST leaves; a create being cancelled sends nothing."""
        await self._record(CreateMark(post_may_be_out=True))

    async def answered(self, batch_id: str) -> bool:
        """Record the batch the POST was answered with, at once; whether the attempt is current
        (see still_current): a retry that starts later adopts this batch by its id."""
        self.current = self.current.model_copy(update={"created_batch_id": batch_id})
        return await self.still_current()

    async def no_answer_in_time(self) -> None:
        """The POST timed out: a retry looks for its batch for a while before creating."""
        await self._record(CreateMark(post_may_be_out=True, answer_timed_out=True))

    async def nothing_made(self) -> None:
        """The gateway answered that it created nothing: the next attempt may create freely."""
        await self._record(CreateMark(post_may_be_out=False))

    async def still_current(self) -> bool:
        """Whether Temporal still takes this attempt's heartbeats: no retry of it has started.

        The server refuses a heartbeat from an attempt it has timed out, so an accepted
        one, sent after the create was answered, means a retry can only start later and
        will find this attempt's batch by its look before creating.
        """
        try:
            return await heartbeat_at_server(self.details())
        except AsyncActivityCancelledError:
            return True  # still this attempt's: the workflow acts on a cancel after create
        except Exception as exc:  # any failure: not known to be current
            activity.logger.info("could not tell whether this attempt is current: %s", exc)
            return False

    async def _record(self, mark: CreateMark) -> None:
        self.current = mark
        try:
            await heartbeat_at_server(self.details())
        except AsyncActivityCancelledError:
            # The workflow is cancelling this create: send nothing, and end as
            # cancelled once the worker delivers the cancel (its own next beat).
            await activity.wait_for_cancelled()
            raise asyncio.CancelledError from None
