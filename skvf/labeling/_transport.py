"""Bounds on one request: a deadline over all of it, and a cap on the bytes of its reply.

httpx, under LiteLLM and the OpenAI client, applies a timeout to each wait on the network,
not to the request: a server that sends one byte every half second never trips it, and a
reply is read whole, however long. A labelling request instead runs under
:class:`RequestLimits`: a deadline on its whole life (connection, headers, body) and a
budget of bytes read, past which the reply is refused unread.

Two layers enforce them:

- :meth:`RequestLimits.call` runs the request on a thread of its own and stops waiting
  for it at the deadline, whatever the provider and its HTTP client: the wall time of a
  request is bounded everywhere.
- :func:`install` gives LiteLLM's OpenAI client path (OpenAI, and every ``openai/...``
  server: vLLM, llama.cpp, LM Studio, proxies) an httpx client whose connections are
  made by :class:`_BoundedBackend`. The socket layer is the only one that sees every
  read, of the headers as of the body: there each wait is cut to the time left before
  the deadline, and the bytes read are counted. At the deadline the read fails and the
  connection is closed (not left trickling on an abandoned thread); past the byte budget
  the reply is refused without reading the rest. The transport also asks for replies
  without content encoding (``Accept-Encoding: identity``) and refuses encoded ones, since
  a few kilobytes of gzip can decode into gigabytes.

The limits live in a thread-local set only while a labelling request runs, so any other
use of LiteLLM in the process goes through this client unbounded, as it would through
LiteLLM's own. Connections through a proxy from the environment (``HTTPS_PROXY``) are made
by httpx's own transports: for them only the deadline of :meth:`RequestLimits.call` holds.
"""

from __future__ import annotations

import ssl
import threading
import time

import httpcore
import httpx

__all__ = ["DEADLINE_GRACE", "RequestLimits", "RequestTimeout", "install"]

#: Seconds past the deadline that :meth:`RequestLimits.call` waits for the request to
#: report its own timeout before abandoning it.
DEADLINE_GRACE = 0.5
#: Idle connections kept for reuse (a labelling run keeps ``max_concurrency`` busy).
_KEEPALIVE_CONNECTIONS = 64

_local = threading.local()


class RequestTimeout(Exception):
    """No complete reply before the deadline: the request was abandoned."""


class RequestLimits:
    """The deadline and the byte budget of one request, and what broke them.

    Parameters
    ----------
    timeout : float
        Seconds the whole request may take, from now on.
    max_bytes : int
        Most bytes read from the server (headers and body) before the reply is refused.

    Attributes
    ----------
    refused : str or None
        Why the reply was refused (too long, or encoded though not asked to be); ``None``
        while it was not.
    """

    def __init__(self, timeout: float, max_bytes: int):
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.deadline = time.monotonic() + timeout
        self.bytes_read = 0
        self.refused: str | None = None

    def call(self, function):
        """Run ``function()`` under these limits; its value, or what it raised.

        Raises
        ------
        RequestTimeout
            ``function`` had not returned ``DEADLINE_GRACE`` seconds after the
            deadline; it goes on, abandoned, on its daemon thread.
        """
        self.deadline = time.monotonic() + self.timeout
        outcome: dict = {}
        finished = threading.Event()

        def run() -> None:
            _local.limits = self
            try:
                outcome["value"] = function()
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                outcome["error"] = error
            finally:
                _local.limits = None
                finished.set()

        threading.Thread(target=run, name="skvf-request", daemon=True).start()
        if not finished.wait(max(0.0, self.deadline - time.monotonic()) + DEADLINE_GRACE):
            raise RequestTimeout(f"no complete reply within the timeout of {self.timeout:g} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def time_left(self, timeout: float | None, error: type[Exception]) -> float:
        """``timeout`` cut to the time left before the deadline; ``error`` once past it."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error(f"the timeout of {self.timeout:g} s for the whole request has passed")
        return left if timeout is None else min(timeout, left)

    def count(self, n_bytes: int) -> None:
        """Count bytes read; past the budget, refuse the reply."""
        self.bytes_read += n_bytes
        if self.bytes_read > self.max_bytes:
            self.refused = f"a reply over {self.max_bytes:,} bytes, not read further"
            raise httpcore.ReadError(self.refused)


def _current() -> RequestLimits | None:
    return getattr(_local, "limits", None)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every wait ends at the deadline and whose reads are counted."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        limits = _current()
        if limits is None:
            return self._stream.read(max_bytes, timeout)
        data = self._stream.read(max_bytes, limits.time_left(timeout, httpcore.ReadTimeout))
        limits.count(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        limits = _current()
        if limits is not None:
            timeout = limits.time_left(timeout, httpcore.WriteTimeout)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        limits = _current()
        if limits is not None:
            timeout = limits.time_left(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, its connections made and wrapped as bounded streams."""

    def __init__(self):
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        limits = _current()
        if limits is not None:
            timeout = limits.time_left(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _BoundedStream(stream)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        limits = _current()
        if limits is not None:
            timeout = limits.time_left(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class BoundedTransport(httpx.BaseTransport):
    """Sends through ``inner``; under :class:`RequestLimits`, asks for and accepts only
    replies without content encoding.

    Parameters
    ----------
    inner : httpx.BaseTransport
        The transport that sends; :func:`bounded_client` gives it one whose connections
        are bounded.
    """

    def __init__(self, inner: httpx.BaseTransport):
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        limits = _current()
        if limits is None:
            return self._inner.handle_request(request)
        request.headers["Accept-Encoding"] = "identity"
        response = self._inner.handle_request(request)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            limits.refused = f"a reply encoded as {encoding!r}, which was not asked for"
            raise httpx.DecodingError(limits.refused, request=request)
        return response

    def close(self) -> None:
        self._inner.close()


def _ssl_context(verify) -> ssl.SSLContext:
    """The TLS context of LiteLLM's ``ssl_verify`` setting (True, False, a CA path or a context)."""
    if isinstance(verify, str) and verify.strip().lower() in ("false", "0"):
        verify = False
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify is not False)


def bounded_client(verify=True) -> httpx.Client:
    """An httpx client whose requests keep to the :class:`RequestLimits` they run under.

    Parameters
    ----------
    verify : bool, str or ssl.SSLContext, default=True
        Certificate checks, as LiteLLM's ``ssl_verify``: a CA bundle path, or False.

    Returns
    -------
    httpx.Client
    """
    context = verify if isinstance(verify, ssl.SSLContext) else _ssl_context(verify)
    sender = httpx.HTTPTransport(verify=context)
    # HTTPTransport takes no network backend: it sends every request through its httpcore
    # pool, made again here with the same TLS context around the bounded backend. No
    # connection limit: the labeler bounds the requests in flight (max_concurrency).
    sender._pool = httpcore.ConnectionPool(
        ssl_context=context,
        max_connections=None,
        max_keepalive_connections=_KEEPALIVE_CONNECTIONS,
        keepalive_expiry=5.0,
        network_backend=_BoundedBackend(),
    )
    return httpx.Client(transport=BoundedTransport(sender), follow_redirects=True)


def install(litellm) -> None:
    """Give LiteLLM's OpenAI client path a :func:`bounded_client`, unless one is set.

    ``litellm.client_session`` is LiteLLM's setting for the httpx client its OpenAI
    clients use; one the user set is kept (its requests keep the deadline of
    :meth:`RequestLimits.call` only).
    """
    if getattr(litellm, "client_session", None) is None:
        litellm.client_session = bounded_client(getattr(litellm, "ssl_verify", True))
