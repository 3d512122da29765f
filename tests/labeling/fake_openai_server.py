"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

LiteLLM's real client talks to it through ``model="openai/fake-vlm"`` and
``api_base=<the URL that serve() yields>``. By default the server names each image after
its mean colour (``{"name": "red test bird"}``), so a test can check that every image got
its own answer. A :class:`FakeVLM` scripts faults per request (status codes, delays,
malformed bodies, replies of the wrong shape, refusals, empty answers, token counts) and
records what it saw: the number of requests, the request bodies, the ``Authorization``
headers, the largest number of requests served at once, and the replies the client
stopped reading before their end (a :class:`Trickle` or a :class:`Huge` reply).

Example
-------
>>> config = FakeVLM(delay=0.05)
>>> with serve(config) as base_url:  # doctest: +SKIP
...     ...  # MLLMLabeler(model="openai/fake-vlm", api_base=base_url, ...)
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

__all__ = [
    "COLOURS",
    "Body",
    "Fail",
    "FakeVLM",
    "Huge",
    "Malformed",
    "Reply",
    "Trickle",
    "colour_answer",
    "colour_image",
    "serve",
]

#: The colours the default answer tells apart, by their RGB value.
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 30),
    "magenta": (220, 30, 220),
    "cyan": (30, 220, 220),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
}


@dataclass
class Reply:
    """Answer with this text (``None``: the default answer for the image)."""

    text: str | None = None
    delay: float = 0.0
    refusal: str | None = None
    usage: dict | None = None  # the reply's "usage" (default: 100 prompt, 10 completion)


@dataclass
class Fail:
    """Answer with an HTTP error status and an OpenAI-style error body."""

    status: int
    message: str = "fake failure"
    delay: float = 0.0
    retry_after: float | str | None = None  # seconds, or an HTTP date as it is sent


@dataclass
class Body:
    """Answer 200 with this JSON body as it is (a reply of the wrong shape)."""

    payload: object
    delay: float = 0.0


@dataclass
class Malformed:
    """Answer 200 with a body that is not JSON."""

    delay: float = 0.0


@dataclass
class Trickle:
    """Send a normal reply, status line and headers included, one byte every ``interval`` s."""

    interval: float = 0.3


@dataclass
class Huge:
    """Answer 200 with a reply of ``size`` bytes whose answer is padding, streamed in chunks."""

    size: int = 50_000_000
    chunk: int = 1 << 16


def colour_image(colour: str, size: int = 64, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 image of one of :data:`COLOURS`, with a little noise."""
    rng = np.random.default_rng(seed)
    base = np.asarray(COLOURS[colour], dtype=float)
    noise = rng.normal(0, 8, size=(size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def colour_answer(image: Image.Image, prompt: str) -> str:
    """The default answer: a JSON name made of the colour nearest the image's mean."""
    mean = np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)
    colour = min(COLOURS, key=lambda name: np.sum((np.asarray(COLOURS[name]) - mean) ** 2))
    return json.dumps({"name": f"{colour} test bird"})


@dataclass
class FakeVLM:
    """What the server answers, and what it saw.

    Parameters
    ----------
    answer : callable, default=colour_answer
        ``answer(image, prompt) -> str``, the text of a normal reply.
    text_answer : callable or None, default=None
        ``text_answer(prompt) -> str``, the reply to a request that holds no image;
        ``None``: such a request gets a 400, as a vision-only server would give.
    script : sequence of Reply, Fail or Malformed
        Actions for the first requests, one per request in arrival order; requests
        after the script get a normal reply.
    delay : float
        Seconds every normal reply waits before answering.
    api_key : str or None
        When set, requests must carry ``Authorization: Bearer <api_key>``; others get a
        401 whose message echoes the key they sent.
    fail_after : int or None
        After this many normal replies, every request gets a 500.
    keep_alive : bool
        Keep connections open for further requests, as real servers do (HTTP/1.1);
        otherwise each connection serves one request (HTTP/1.0).

    Attributes
    ----------
    requests, answered, max_active, connections : int
        Requests received, normal replies sent, most requests served at once, TCP
        connections accepted (fewer than requests when the client reuses them).
    unfinished : int
        Replies the client stopped reading (it closed the connection) before their end.
    bytes_streamed : int
        Bytes of :class:`Trickle` and :class:`Huge` replies sent before they ended or
        the client closed the connection.
    bodies, authorizations : list
        Each request's JSON body and ``Authorization`` header, in arrival order.
    """

    answer: Callable[[Image.Image, str], str] = colour_answer
    text_answer: Callable[[str], str] | None = None
    script: Sequence = ()
    delay: float = 0.0
    api_key: str | None = None
    fail_after: int | None = None
    keep_alive: bool = False
    requests: int = 0
    answered: int = 0
    max_active: int = 0
    connections: int = 0
    unfinished: int = 0
    bytes_streamed: int = 0
    bodies: list = field(default_factory=list)
    authorizations: list = field(default_factory=list)
    _active: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, body: dict, authorization: str = "") -> int:
        with self._lock:
            index = self.requests
            self.requests += 1
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            self.bodies.append(body)
            self.authorizations.append(authorization)
            return index

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1

    def _action(self, index: int, authorization: str):
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            sent = authorization.removeprefix("Bearer ")
            return Fail(401, f"Incorrect API key provided: {sent}.")
        if index < len(self.script):
            return self.script[index]
        with self._lock:
            if self.fail_after is not None and self.answered >= self.fail_after:
                return Fail(500, "the fake server is down for good")
            self.answered += 1
        return Reply()


def _request_image_and_prompt(body: dict) -> tuple[Image.Image | None, str]:
    image, texts = None, []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                texts.append(part["text"])
            elif part.get("type") == "image_url":
                url = (
                    part["image_url"]["url"]
                    if isinstance(part["image_url"], dict)
                    else part["image_url"]
                )
                payload = url.split(",", 1)[1]
                image = Image.open(io.BytesIO(base64.b64decode(payload)))
    return image, "\n".join(texts)


def _completion_body(
    model: str, text: str | None, refusal: str | None, usage: dict | None = None
) -> dict:
    if usage is None:
        usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": refusal},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def _handler_class(config: FakeVLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections alive for the client to reuse; HTTP/1.0 closes each.
        protocol_version = "HTTP/1.1" if config.keep_alive else "HTTP/1.0"
        # The headers and the body leave in two writes: with Nagle's algorithm the body
        # waits for the client's delayed ACK of the headers, about 40 ms on Linux, which
        # real servers (uvicorn, vLLM) avoid by setting TCP_NODELAY, as here.
        disable_nagle_algorithm = True

        def setup(self):
            super().setup()
            with config._lock:
                config.connections += 1

        def log_message(self, format, *args):  # noqa: A002 - silence the access log
            pass

        def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self, pieces, interval: float = 0.0) -> None:
            """Send raw bytes piece by piece; count a reply the client stopped reading."""
            try:
                for piece in pieces:
                    self.wfile.write(piece)
                    with config._lock:
                        config.bytes_streamed += len(piece)
                    time.sleep(interval)
            except OSError:  # the client closed the connection before the end
                with config._lock:
                    config.unfinished += 1
                self.close_connection = True

        def _trickle(self, body: dict, interval: float) -> None:
            payload = json.dumps(_completion_body(body.get("model", "fake-vlm"), "robin", None))
            reply = (
                f"{self.protocol_version} 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n{payload}"
            ).encode()
            self._stream((reply[i : i + 1] for i in range(len(reply))), interval)

        def _huge(self, body: dict, size: int, chunk: int) -> None:
            head, tail = json.dumps(
                _completion_body(body.get("model", "fake-vlm"), "", None)
            ).split('"content": ""', 1)
            head, tail = (head + '"content": "').encode(), ('"' + tail).encode()
            padding = size - len(head) - len(tail)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            padding_pieces = (b"x" * min(chunk, padding - at) for at in range(0, padding, chunk))
            self._stream(itertools.chain([head], padding_pieces, [tail]))

        def do_POST(self):  # noqa: N802 - the name http.server dispatches to
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            index = config._enter(body, self.headers.get("Authorization", ""))
            try:
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": "no such route"}}).encode())
                    return
                action = config._action(index, self.headers.get("Authorization", ""))
                self._respond(action, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout); nothing left to answer
            finally:
                config._leave()

        def _respond(self, action, body: dict) -> None:
            time.sleep(
                getattr(action, "delay", 0.0) + (config.delay if isinstance(action, Reply) else 0.0)
            )
            if isinstance(action, Fail):
                error = {"error": {"message": action.message, "type": "fake", "code": None}}
                headers = {}
                if action.retry_after is not None:
                    headers["Retry-After"] = str(action.retry_after)
                self._send(action.status, json.dumps(error).encode(), headers)
            elif isinstance(action, Body):
                self._send(200, json.dumps(action.payload).encode())
            elif isinstance(action, Malformed):
                self._send(200, b'{"choices": [{"message": {"content": "cut short')
            elif isinstance(action, Trickle):
                self._trickle(body, action.interval)
            elif isinstance(action, Huge):
                self._huge(body, action.size, action.chunk)
            else:
                text = action.text
                if text is None and action.refusal is None:
                    image, prompt = _request_image_and_prompt(body)
                    if image is None and config.text_answer is not None:
                        text = config.text_answer(prompt)
                    elif image is None:
                        self._send(400, b'{"error": {"message": "the request holds no image"}}')
                        return
                    else:
                        text = config.answer(image, prompt)
                model = body.get("model", "fake-vlm")
                payload = _completion_body(model, text, action.refusal, action.usage)
                self._send(200, json.dumps(payload).encode())

    return Handler


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog of 5 overflows when dozens of requests connect at
    # once, and each refused connection waits a second for the retransmission; real
    # servers listen with a deep backlog (uvicorn: 2048).
    request_queue_size = 1024


@contextmanager
def serve(config: FakeVLM | None = None) -> Iterator[str]:
    """Run the fake server on a free port of 127.0.0.1 while the block runs.

    Parameters
    ----------
    config : FakeVLM, optional
        What to answer; it also records what the server saw.

    Yields
    ------
    str
        The base URL to pass as ``api_base``, e.g. ``"http://127.0.0.1:40123/v1"``.
    """
    config = FakeVLM() if config is None else config
    server = _Server(("127.0.0.1", 0), _handler_class(config))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
