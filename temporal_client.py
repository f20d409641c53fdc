"""One way to reach Temporal for the worker and the starter alike.

Connection settings come from temporalio.envconfig (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the
TOML config file), exactly as the temporal CLI reads them. When BATCH_CODEC_KEY
is set, payloads (and failure messages) are AES-GCM encrypted: see codec/ and
docs/encryption.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from codec.aes_gcm import codec_from_env

DEFAULT_ADDRESS = "localhost:7233"


class TemporalUnreachableError(RuntimeError):
    """Temporal did not answer; the message says what to start or set."""


def connect_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Client.connect keyword arguments from the standard Temporal environment and profile."""
    env = dict(os.environ if environ is None else environ)
    config: dict[str, Any] = dict(
        ClientConfig.load_client_connect_config(
            profile=env.get("TEMPORAL_PROFILE") or None,
            config_file=env.get("TEMPORAL_CONFIG_FILE") or None,
            override_env_vars=env,
        )
    )
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if not config.get("target_host"):
        config["target_host"] = DEFAULT_ADDRESS
    config.setdefault("namespace", "default")
    return config


def data_converter(environ: Mapping[str, str] | None = None) -> DataConverter:
    """The pydantic converter, plus the AES-GCM codec when BATCH_CODEC_KEY is set.

    Worker, starter and tests all take it from here, so they agree on the bytes.
    With the codec, failure messages and stack traces are encoded too: they can
    quote inputs, and otherwise stay readable in the history.
    """
    codec = codec_from_env(os.environ if environ is None else environ)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


_QUOTED_CAUSE = re.compile(r'(?:message|error): "([^"]+)"')
_CONNECT_STEP = re.compile(r'ConnectError\("([^"]+)"')


def connect_failure(text: str) -> str:
    """The SDK's connect error (a Rust debug dump) as the one phrase that says what happened."""
    causes = _QUOTED_CAUSE.findall(text)
    steps = _CONNECT_STEP.findall(text)
    if causes:
        return f"{steps[0]}: {causes[-1]}" if steps else str(causes[-1])
    if steps:
        return str(steps[0])
    first = text.strip().splitlines()[0] if text.strip() else "no answer"
    return first if len(first) <= 200 else f"{first[:200]}..."


async def connect(
    environ: Mapping[str, str] | None = None, *, runtime: Runtime | None = None
) -> Client:
    """A client from the environment; ``runtime`` is the worker's (metrics, log forwarding)."""
    config = connect_config(environ)
    target = config["target_host"]
    converter = data_converter(environ)
    try:
        return await Client.connect(data_converter=converter, runtime=runtime, **config)
    except RuntimeError as exc:
        raise TemporalUnreachableError(
            f"cannot reach Temporal at {target} (namespace {config['namespace']}): "
            f"{connect_failure(str(exc))}. "
            "Start one with `make up` (or `temporal server start-dev`), or set TEMPORAL_ADDRESS."
        ) from exc


async def register_search_attributes(client: Client) -> None:
    """Register BatchStatus and BatchId; the workflow upserts them, and an unknown one hangs it."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    from contracts.names import SEARCH_ATTRIBUTES

    kinds = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}
    for name, kind in SEARCH_ATTRIBUTES.items():
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=client.namespace, search_attributes={name: kinds[kind]}
                )
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.ALREADY_EXISTS:
                raise


def exit_process(code: int) -> NoReturn:
    """Flush and end the process with ``code``, skipping interpreter finalization.

    The SDK's runtime threads can abort a finalizing interpreter (sdk-python #300),
    which would replace the true exit code: worker and starter end through here.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
