"""A real HTTP server on loopback that speaks the OpenAI chat-completions protocol (JSON and SSE streaming), so
that tests and benchmarks exercise the real `openai` client. What it answers, and how it fails, is set per test."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[list[dict[str, Any]]], str]


def cite_first_source(messages: list[dict[str, Any]]) -> str:
    """A well-behaved model: the first sentence of source 1, cited, or a refusal without sources."""
    user = messages[-1]["content"]
    if "Standalone question:" in user:
        last = re.search(r"Last question: (.*)\n", user)
        previous = re.findall(r"user: (.*)", user)
        return f"{previous[-1] if previous else ''} {last.group(1) if last else ''}".strip()
    match = re.search(r'<source id="(\d+)"[^>]*>\n(.*?)\n</source>', user, re.DOTALL)
    if not match:
        return "The knowledge base does not contain the answer."
    sentence = re.split(r"(?<=[.!?])\s", match.group(2).strip())[0]
    return f"According to the documentation, {sentence} [{match.group(1)}]"


class StandIn:
    def __init__(self) -> None:
        self.responder: Responder = cite_first_source
        # "401", "429", "500", "timeout", "malformed", "cut" (a stream that stops before its end), "empty"
        self.failure: str | None = None
        self.delay = 0.0  # seconds before answering (and between streamed pieces: delay / 10)
        self.requests: list[dict[str, Any]] = []
        self.model = "stand-in-model"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle's algorithm on, the body waits for the
            # client's delayed ACK of the headers (~40 ms on Linux), which real servers avoid with TCP_NODELAY.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._json(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": stand_in.model, "object": "model", "owned_by": "tests"}],
                        },
                    )
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stand_in.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": "not found"}})
                    return
                failure = stand_in.failure
                if failure in ("401", "429", "500"):
                    self._json(
                        int(failure), {"error": {"message": f"stand-in failure {failure}", "type": "error"}}
                    )
                    return
                if failure == "timeout":
                    time.sleep(30)
                    return
                time.sleep(stand_in.delay)
                text = stand_in.responder(body.get("messages", []))
                if failure == "empty":
                    text = ""
                if body.get("stream"):
                    self._stream(
                        text, include_usage=bool((body.get("stream_options") or {}).get("include_usage"))
                    )
                elif failure == "malformed":
                    self._raw(200, b"{this is not json", "application/json")
                else:
                    self._json(200, _completion(stand_in.model, text))

            def _stream(self, text: str, *, include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                pieces = re.findall(r"\S+\s*", text) or [""]
                for index, piece in enumerate(pieces):
                    if stand_in.failure == "malformed" and index == 1:
                        self.wfile.write(b'data: {"choices": [{"delta": {"content": \n\n')
                        self.wfile.flush()
                        return
                    if stand_in.failure == "cut" and index == 3:
                        self.close_connection = True  # no finish reason, no [DONE]: the connection just ends
                        return
                    chunk = _chunk(
                        stand_in.model,
                        {"content": piece} if index else {"role": "assistant", "content": piece},
                    )
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if stand_in.delay:
                        time.sleep(stand_in.delay / 10)
                final = _chunk(stand_in.model, {}, finish_reason="stop")
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                if include_usage:
                    usage = {**_chunk(stand_in.model, {}), "choices": [], "usage": _usage(text)}
                    self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json")

            def _raw(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _usage(text: str) -> dict[str, int]:
    completion = len(text.split())
    return {"prompt_tokens": 100, "completion_tokens": completion, "total_tokens": 100 + completion}


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": _usage(text),
    }


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
