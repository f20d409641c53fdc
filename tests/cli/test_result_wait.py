"""run's wait for the result outlasts a Temporal outage, and stops at a real refusal."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from cli.follow import result_through_outages


class Handle:
    """Answers result() with each of the given outcomes in turn."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def result(self) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def rpc(status: RPCStatusCode) -> RPCError:
    return RPCError(status.name, status, b"")


async def test_the_result_arrives_after_temporal_comes_back():
    handle = Handle(rpc(RPCStatusCode.UNAVAILABLE), rpc(RPCStatusCode.UNAVAILABLE), "the result")
    assert await result_through_outages(handle, retry_every=0) == "the result"  # type: ignore[arg-type]
    assert handle.calls == 3


async def test_a_refusal_ends_the_wait():
    handle = Handle(rpc(RPCStatusCode.UNAVAILABLE), rpc(RPCStatusCode.NOT_FOUND), "never")
    with pytest.raises(RPCError) as raised:
        await result_through_outages(handle, retry_every=0)  # type: ignore[arg-type]
    assert raised.value.status is RPCStatusCode.NOT_FOUND
    assert handle.calls == 2
