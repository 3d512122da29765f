"""The persistent answer cache: where it lives and what its key holds.

Answers are stored one JSON file per image under a namespace that hashes everything the
answer depends on: the model, the server (``api_base``: the same model name on another
server is another model), the rendered prompt, the JSON mode, the size and quality of the
image sent, and the completion arguments that change the answer (temperature, seed, ...).
Inside a namespace the key is the image's content digest, so the same photo given as a
path, a PIL image or an array is answered once. Files are written atomically by
:class:`skvf._store.ItemStore` the moment an answer arrives; an answer that cannot be
written (a read-only folder, a full disk) is still returned, with one ``CacheWarning``.

Processes sharing a cache folder ask for each image once: before asking, a process claims
the image with a file created beside the answer's (:meth:`AnswerCache.claim`), and a
process that finds the image claimed waits for the answer instead of paying for it again.
A claim whose process is gone, or that was not refreshed (at each attempt) for longer
than one attempt can take, is taken over.

A stored record has the form :meth:`~skvf.labeling._client.Answer.record` writes; any
other file (foreign, corrupt, edited) is dropped with a ``CacheWarning`` and the image is
asked again. An unusable answer is stored as at most :data:`UNUSABLE_EXCERPT_CHARS`
characters, marked ``"truncated"`` with its reason when cut, so the cache never holds
unbounded text.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from .._store import CacheWarning, ItemStore, stable_hash
from .._warnings import warn
from ._client import Cancelled
from ._parsing import REASONS, UnusableAnswer

__all__ = [
    "UNUSABLE_EXCERPT_CHARS",
    "AnswerCache",
    "Claim",
    "answer_affecting",
    "bounded_record",
    "default_cache_dir",
    "is_answer_record",
    "parse_record",
    "resolve_cache_dir",
]

#: The most characters of an unusable answer (or refusal message) the cache stores.
UNUSABLE_EXCERPT_CHARS = 2_000
#: Seconds between two looks for an answer another process claimed.
CLAIM_POLL = 0.1
#: Seconds a claim outlives the longest attempt before it counts as abandoned.
CLAIM_MARGIN = 30.0

logger = logging.getLogger("skvf.labeling")
_RECORD_KEYS = frozenset(
    {"answer", "refusal", "model", "prompt_tokens", "completion_tokens", "cost_usd"}
)
_OPTIONAL_KEYS = frozenset({"truncated", "reason"})

# Completion arguments that change how a request travels, not what the model answers.
_TRANSPORT_ARGUMENTS = frozenset(
    {
        "timeout",
        "max_retries",
        "num_retries",
        "metadata",
        "user",
        "extra_headers",
        "headers",
        "drop_params",
        "stream_timeout",
        "ssl_verify",
        "api_version",
        "organization",
    }
)


def default_cache_dir() -> Path:
    """The user's cache directory for skvf, as platformdirs picks it.

    ``$XDG_CACHE_HOME/skvf`` (``~/.cache/skvf`` when unset) on Linux and other Unix
    systems, ``~/Library/Caches/skvf`` on macOS and ``%LOCALAPPDATA%\\skvf\\Cache`` on
    Windows (``platformdirs.user_cache_dir("skvf", appauthor=False)``).
    """
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("skvf", appauthor=False))


def resolve_cache_dir(cache) -> Path | None:
    """Turn the labeler's ``cache`` parameter into a directory (``None``: no cache)."""
    if cache is None:
        return None
    if isinstance(cache, str) and cache == "default":
        return default_cache_dir() / "labels"
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser()
    raise TypeError(
        f"cache must be 'default', a directory path or None, got {type(cache).__name__}: {cache!r}."
    )


def answer_affecting(completion_kwargs: dict) -> dict:
    """The completion arguments that change the answer, for the cache key."""
    return {
        key: value for key, value in completion_kwargs.items() if key not in _TRANSPORT_ARGUMENTS
    }


def _is_count(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 0


def is_answer_record(record) -> bool:
    """Whether a stored value is a record the labeler writes (see ``Answer.record``)."""
    if not isinstance(record, dict) or not _RECORD_KEYS <= set(record):
        return False
    if not set(record) <= _RECORD_KEYS | _OPTIONAL_KEYS:
        return False
    cost = record["cost_usd"]
    valid = (
        (record["answer"] is None or isinstance(record["answer"], str))
        and (record["refusal"] is None or isinstance(record["refusal"], str))
        and isinstance(record["model"], str)
        and _is_count(record["prompt_tokens"])
        and _is_count(record["completion_tokens"])
        and (
            cost is None
            or (isinstance(cost, Real) and not isinstance(cost, bool) and math.isfinite(cost))
            and cost >= 0
        )
    )
    if not valid:
        return False
    if "truncated" in record or "reason" in record:
        return record.get("truncated") is True and record.get("reason") in REASONS
    return True


def bounded_record(record: dict, reason: str | None) -> dict:
    """The record to store: an unusable answer (``reason`` given) cut to an excerpt.

    A usable answer is stored whole (the parser reads none longer than
    :data:`~skvf.labeling._parsing.MAX_ANSWER_CHARS`); an unusable one keeps at most
    :data:`UNUSABLE_EXCERPT_CHARS` characters of its text and of its refusal message, and
    when cut, is marked ``truncated`` with its reason, so that it stays unusable when read
    back rather than being parsed again from a fragment.
    """
    if reason is None:
        return record
    bounded = dict(record)
    cut = False
    for field in ("answer", "refusal"):
        text = bounded.get(field)
        if isinstance(text, str) and len(text) > UNUSABLE_EXCERPT_CHARS:
            bounded[field] = text[:UNUSABLE_EXCERPT_CHARS]
            cut = True
    if cut:
        bounded.update(truncated=True, reason=reason)
    return bounded


def parse_record(record: dict, parse: Callable):
    """What ``parse(answer, refusal=...)`` reads from an answer record.

    A malformed reply (``"malformed"``: held in memory, never stored) and an excerpt of
    an unusable answer (``"truncated"``) are unusable as they were: never parsed from a
    part.

    Parameters
    ----------
    record : dict
        A record as :meth:`~skvf.labeling._client.Answer.record` writes it.
    parse : callable
        ``parse(answer, refusal=...)``, raising
        :class:`~skvf.labeling._parsing.UnusableAnswer` for an unusable answer.

    Raises
    ------
    UnusableAnswer
        Nothing else.
    """
    if record.get("malformed"):
        raise UnusableAnswer("malformed", record["malformed"])
    if record.get("truncated"):
        raise UnusableAnswer(record.get("reason", "overlong"), record.get("answer"))
    return parse(record.get("answer"), refusal=record.get("refusal"))


@dataclass
class Claim:
    """What :meth:`AnswerCache.claim` found.

    Attributes
    ----------
    record : dict or None
        The answer another process stored meanwhile; ``None`` when this process is to
        ask (holding the claim, unless the folder cannot be written).
    refresh : callable
        Marks the claim as alive; call it before each attempt.
    """

    record: dict | None
    refresh: Callable[[], None]


def _nothing() -> None:
    """A refresh with no claim to refresh."""


def _process_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would stop the process there: only the age decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def _create_claim(path: Path) -> str:
    """Create the claim file, or raise ``FileExistsError``; its content identifies it."""
    token = json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.time(),
            "nonce": secrets.token_hex(8),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(token)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return token


def _release(path: Path, token: str) -> None:
    """Remove the claim file if it is still this one (not taken over)."""
    try:
        if path.read_text(encoding="utf-8") == token:
            path.unlink()
    except OSError:
        pass


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _stale(path: Path, lifetime: float) -> str | None:
    """Why the claim at ``path`` is abandoned, or None while its process may still answer.

    Raises ``FileNotFoundError`` when the claim is gone.
    """
    age = time.time() - path.stat().st_mtime
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        pid, host = int(holder["pid"]), holder["host"]
    except (ValueError, TypeError, KeyError):
        pid = host = None  # being written, or not a claim: only its age tells
    if pid is not None and pid > 0 and host == socket.gethostname() and not _process_alive(pid):
        return f"process {pid} has ended"
    if age > lifetime:
        return f"not refreshed for {age:.0f} s"
    return None


class AnswerCache:
    """Answers of one model, server and prompt, one file per image digest.

    Parameters
    ----------
    root : pathlib.Path
        The cache directory.
    request : dict
        Everything the answers depend on (JSON-able; never a secret).

    Attributes
    ----------
    write_failure : str or None
        Why the first answer that could not be stored was not, if one was not.
    """

    def __init__(self, root: Path, request: dict):
        self._store = ItemStore(
            root, namespace=f"mllm-{stable_hash(request)}", kind="json", check=is_answer_record
        )
        self._lock = threading.Lock()
        self.write_failure: str | None = None

    @property
    def directory(self) -> Path:
        """Where the answers of this namespace are stored."""
        return self._store.directory

    def get(self, digest: str) -> dict | None:
        """The stored record for an image; ``None`` when absent or not a valid record."""
        return self._store.get(digest)

    def put(self, digest: str, record: dict) -> bool:
        """Store the record of an answer atomically; whether it could be stored.

        An answer that cannot be written (a read-only folder, a full disk) is not lost
        to the caller, who still holds it: the first such failure is reported with one
        :class:`~skvf._store.CacheWarning` naming the folder and the reason.
        """
        try:
            self._store.put(digest, record)
        except OSError as error:
            with self._lock:
                first = self.write_failure is None
                if first:
                    self.write_failure = f"{type(error).__name__}: {error}"
            if first:
                warn(
                    f"the answer cache {os.fspath(self.directory)} cannot store answers "
                    f"({self.write_failure}); the answers are still returned and counted, "
                    "but not kept: running again pays for them again. Free some space or make "
                    "the folder writable, or pass another cache= (None to cache nothing).",
                    CacheWarning,
                )
            return False
        return True

    @contextmanager
    def claim(self, digest: str, stop: threading.Event, attempt_span: float) -> Iterator[Claim]:
        """Claim an image before asking for it, or wait for the process that did.

        Parameters
        ----------
        digest : str
            The image's key.
        stop : threading.Event
            Once set, waiting ends with :class:`~skvf.labeling._client.Cancelled`.
        attempt_span : float
            The longest time between two attempts of the claiming process: a claim not
            refreshed for longer (plus :data:`CLAIM_MARGIN`) is abandoned.

        Yields
        ------
        Claim
            The answer another process stored, or ``None`` for this one to ask, the
            claim held until the block ends. A folder where no claim can be created
            (read-only) yields ``None`` unclaimed.
        """
        path = self._store.path(digest).with_suffix(".claim")
        record, token = self._wait_or_claim(digest, path, stop, attempt_span + CLAIM_MARGIN)
        try:
            yield Claim(record, _nothing if token is None else lambda: _touch(path))
        finally:
            if token is not None:
                _release(path, token)

    def _wait_or_claim(self, digest, path, stop, lifetime) -> tuple[dict | None, str | None]:
        """``(answer stored, None)``, or ``(None, claim token)``, or ``(None, None)``."""
        while True:
            record = self.get(digest)
            if record is not None:
                return record, None
            try:
                token = _create_claim(path)
            except FileExistsError:
                try:
                    why = _stale(path, lifetime)
                except FileNotFoundError:
                    continue  # released just now: look again
                if why is None:
                    if stop.wait(CLAIM_POLL):
                        raise Cancelled(digest) from None
                    continue
                logger.info("taking over the claim %s: %s", os.fspath(path), why)
                path.unlink(missing_ok=True)
                continue
            except OSError:
                return None, None  # nothing can be written there; put() will say so
            record = self.get(digest)  # stored between the first look and the claim
            if record is not None:
                _release(path, token)
                return record, None
            return None, token
