"""A worker interceptor that shows a parent a child's start only once the parent's
cancel has arrived: the child has begun at the server, the parent's code does not
know it yet. The window in which a real cancel races a start, held open.

Its own module, free of test imports, so the workflow sandbox can load it.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartChildWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)


class HoldChildStartsUntilCancel(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Outbound(WorkflowOutboundInterceptor):
    async def start_child_workflow(
        self, input: StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        handle = await super().start_child_workflow(input)
        await workflow.wait_condition(lambda: workflow.cancellation_reason() is not None)
        return handle
