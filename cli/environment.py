"""The starter's settings from its environment: data folder, task queue, Web UI."""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import Client

from cli.exits import UsageError
from contracts.constants import DEFAULT_WEB_UI, ENV_DATA_DIR, ENV_TASK_QUEUE, ENV_WEB_UI
from contracts.names import TASK_QUEUE
from storage import LocalStorage, LocationError


def storage() -> LocalStorage:
    return LocalStorage(Path(os.environ.get(ENV_DATA_DIR, ".")))


def location(store: LocalStorage, raw: str) -> str:
    """A path given on the command line as a location in the shared data folder."""
    try:
        return store.location_of(Path(raw))
    except LocationError as exc:
        raise UsageError(str(exc)) from exc


def task_queue() -> str:
    return os.environ.get(ENV_TASK_QUEUE, TASK_QUEUE)


def web_ui_link(client: Client, workflow_id: str) -> str:
    base = os.environ.get(ENV_WEB_UI, DEFAULT_WEB_UI).rstrip("/")
    return f"{base}/namespaces/{client.namespace}/workflows/{workflow_id}"
