"""A loopback HTTP server that records every POST (headers and JSON body): the receiver both
Alertmanager's webhook_configs and monitor's own webhook sink post to in tests. It runs on a
thread, so synchronous and asynchronous tests, and other processes, can post to it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookRecorder:
    def __init__(self, status: int = 200):
        self.posts: list[Post] = []
        self.status = status  # what it answers; set e.g. 503 to play a failing receiver
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                size = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                body = self.rfile.read(size)
                with recorder._lock:
                    recorder.posts.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(recorder.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str | None = None) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if path is None or p.path == path]

    def wait_for(self, predicate: Callable[[list[Post]], bool], timeout: float, path: str | None = None) -> list[Post]:
        """Poll (bounded) until `predicate(posts)` holds; the posts then, or AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            posts = self.received(path)
            if predicate(posts):
                return posts
            if time.monotonic() >= deadline:
                raise AssertionError(f"webhook recorder: condition not met in {timeout} s; got {[p.body[:300] for p in posts]}")
            time.sleep(0.1)

    def __enter__(self) -> WebhookRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
