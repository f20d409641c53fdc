"""The emulator posts each batch's end as a signed event, and its knobs make delivery worse."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from devstack.emulator import EmulatorProcess
from devstack.ports import LOCALHOST
from tests.emulator.helpers import chat_file, submit, wait_for

SECRET = "whsec_" + base64.b64encode(b"emulator-test-secret-0123456789ab").decode()


class Collector:
    """An HTTP endpoint that records every post and answers the statuses it is given."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                collector.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = collector.answers.pop(0) if collector.answers else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.url = f"http://{LOCALHOST}:{self.server.server_address[1]}/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_posts(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            assert time.monotonic() < deadline, f"{len(self.posts)} posts, wanted {count}"
            time.sleep(0.05)


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


@pytest.fixture
def hooked(emu: EmulatorProcess, collector: Collector) -> EmulatorProcess:
    emu.set_knobs(webhook_url=collector.url, webhook_secret=SECRET)
    return emu


def test_a_finished_batch_is_posted_as_an_event_openai_sdk_verifies(
    hooked: EmulatorProcess, client: openai.OpenAI, collector: Collector
) -> None:
    batch = submit(client, chat_file(3))
    wait_for(client, batch.id, ["completed"])
    collector.wait_for_posts(1)
    headers, body = collector.posts[0]
    # The openai SDK is a second, independent implementation of the scheme.
    event = openai.OpenAI(api_key="x", webhook_secret=SECRET).webhooks.unwrap(body, headers)
    assert event.type == "batch.completed"
    assert event.data.id == batch.id


def test_a_forced_failure_is_posted_as_batch_failed(
    hooked: EmulatorProcess, client: openai.OpenAI, collector: Collector
) -> None:
    hooked.set_knobs(force_outcome="failed")
    batch = submit(client, chat_file(2))
    wait_for(client, batch.id, ["failed"])
    collector.wait_for_posts(1)
    assert b'"batch.failed"' in collector.posts[0][1]


def test_duplicates_carry_one_webhook_id(
    hooked: EmulatorProcess, client: openai.OpenAI, collector: Collector
) -> None:
    hooked.set_knobs(webhook_duplicates=2)
    batch = submit(client, chat_file(1))
    wait_for(client, batch.id, ["completed"])
    collector.wait_for_posts(3)
    assert len({headers["webhook-id"] for headers, _ in collector.posts}) == 1


def test_an_event_refused_with_5xx_is_delivered_again(
    hooked: EmulatorProcess, client: openai.OpenAI, collector: Collector
) -> None:
    collector.answers = [503]
    batch = submit(client, chat_file(1))
    wait_for(client, batch.id, ["completed"])
    collector.wait_for_posts(2)
    (first, _), (second, _) = collector.posts[:2]
    assert first["webhook-id"] == second["webhook-id"]
    assert hooked.stats()["webhooks"]["sent"] >= 1


def test_a_dropped_event_is_never_posted(
    hooked: EmulatorProcess, client: openai.OpenAI, collector: Collector
) -> None:
    hooked.set_knobs(webhook_drop_rate=1.0)
    before = hooked.stats()["webhooks"]["dropped"]
    batch = submit(client, chat_file(1))
    wait_for(client, batch.id, ["completed"])
    deadline = time.monotonic() + 10
    while hooked.stats()["webhooks"]["dropped"] == before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert collector.posts == []
