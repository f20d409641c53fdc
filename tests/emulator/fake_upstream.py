"""A tiny OpenAI-compatible model server in a thread, to test ``--upstream``.

It counts calls per prompt, records the most requests it ever had in flight,
and answers 503 to any prompt that contains ``fail``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class FakeUpstream:
    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.models: set[str] = set()
        self.paths: set[str] = set()
        self.auth: set[str] = set()
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                prompt = body["messages"][-1]["content"]
                with fake._lock:
                    fake.calls[prompt] += 1
                    fake.models.add(body["model"])
                    fake.paths.add(self.path)
                    fake.auth.add(self.headers.get("authorization", ""))
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                try:
                    time.sleep(fake.delay)
                    if "fail" in prompt:
                        status, answer = 503, {"error": {"message": "overloaded", "type": "x"}}
                    else:
                        status, answer = (
                            200,
                            {
                                "id": "chatcmpl-up",
                                "object": "chat.completion",
                                "model": body["model"],
                                "choices": [
                                    {
                                        "index": 0,
                                        "message": {"role": "assistant", "content": f"up:{prompt}"},
                                        "finish_reason": "stop",
                                    }
                                ],
                                "usage": {
                                    "prompt_tokens": 3,
                                    "completion_tokens": 2,
                                    "total_tokens": 5,
                                },
                            },
                        )
                    payload = json.dumps(answer).encode()
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    with fake._lock:
                        fake.inflight -= 1

        return Handler

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
