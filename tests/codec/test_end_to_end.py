"""A real workflow under the time-skipping server with the codec on: the history
holds no plaintext, the codec (in process, or behind the codec server the Web UI
and CLI use) reads it back, and a history started without the codec still runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
import pytest_asyncio
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from codec.server import build_app
from devstack import temporal as temporal_binaries
from temporal_client import data_converter
from tests.codec.helpers import KEY_B64, serve_in_thread

TOKEN = "e2e-token"


class Note(BaseModel):
    text: str
    refusal: str = ""


@activity.defn(name="codec_e2e_echo")
async def echo(text: str) -> str:
    return f"echo {text}"


@activity.defn(name="codec_e2e_refuse")
async def refuse(text: str) -> str:
    raise ApplicationError(f"refused {text}", non_retryable=True)


@workflow.defn(name="CodecEchoWorkflow", sandboxed=False)
class EchoWorkflow:
    @workflow.run
    async def run(self, note: Note) -> Note:
        echoed = await workflow.execute_activity(
            echo, note.text, start_to_close_timeout=timedelta(seconds=10)
        )
        try:
            await workflow.execute_activity(
                refuse,
                note.text,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            return Note(text=echoed, refusal=str(err.cause))
        raise ApplicationError("refuse did not refuse")


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter({"BATCH_CODEC_KEY": KEY_B64}),
        test_server_existing_path=temporal_binaries.test_server_path(),
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture(scope="module")
def codec_url(env: WorkflowEnvironment) -> Iterator[str]:
    codec = env.client.data_converter.payload_codec
    assert codec is not None
    with serve_in_thread(build_app(codec, token=TOKEN)) as url:
        yield url


def plain_client(env: WorkflowEnvironment) -> Client:
    config = env.client.config()
    config["data_converter"] = pydantic_data_converter
    return Client(**config)


async def run_echo(env: WorkflowEnvironment, starter: Client, marker: str) -> str:
    task_queue = f"codec-e2e-{uuid.uuid4().hex[:8]}"
    workflow_id = f"codec-e2e-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client, task_queue=task_queue, workflows=[EchoWorkflow], activities=[echo, refuse]
    ):
        handle = await starter.start_workflow(
            EchoWorkflow.run, Note(text=marker), id=workflow_id, task_queue=task_queue
        )
        result = await env.client.get_workflow_handle(workflow_id, result_type=Note).result()
    assert handle.id == workflow_id
    assert result.text == f"echo {marker}"
    assert marker in result.refusal
    return workflow_id


async def test_history_holds_only_ciphertext_and_the_codec_reads_it_back(env):
    marker = f"MARKER-{uuid.uuid4().hex}"
    workflow_id = await run_echo(env, env.client, marker)

    plain = plain_client(env)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    assert len(history.events) > 10
    for event in history.events:
        raw = event.SerializeToString()
        assert marker.encode() not in raw, event.event_type
        assert b"refused" not in raw, event.event_type
    assert b"binary/encrypted" in b"".join(e.SerializeToString() for e in history.events)

    with pytest.raises(Exception, match="binary/encrypted"):
        await plain.get_workflow_handle(workflow_id, result_type=Note).result()

    started = history.events[0].workflow_execution_started_event_attributes
    [note] = await env.client.data_converter.decode(started.input.payloads, [Note])
    assert note == Note(text=marker)


async def test_history_started_without_the_codec_is_still_read(env):
    marker = f"PLAIN-{uuid.uuid4().hex}"
    workflow_id = await run_echo(env, plain_client(env), marker)
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert marker.encode() in started.input.SerializeToString()


async def test_cli_decodes_through_the_codec_server(env, codec_url):
    marker = f"CLI-{uuid.uuid4().hex}"
    workflow_id = await run_echo(env, env.client, marker)
    target = env.client.service_client.config.target_host

    async def show(*extra: str) -> str:
        process = await asyncio.create_subprocess_exec(
            temporal_binaries.dev_server_path(),
            "workflow",
            "show",
            "--address",
            target,
            "--namespace",
            env.client.namespace,
            "--workflow-id",
            workflow_id,
            "--detailed",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
        return out.decode()

    without = await show()
    assert marker not in without
    decoded = await show("--codec-endpoint", codec_url, "--codec-auth", f"Bearer {TOKEN}")
    assert f"text: echo {marker}" in decoded
    assert f"encodedAttributes.message: refused {marker}" in decoded
