"""Bounded concurrency that never abandons a paid answer.

:func:`run_bounded` keeps at most ``max_concurrency`` jobs running on threads and hands
each result to the caller on the calling thread, in the order the jobs finish: a job
that ends puts itself on a queue the calling thread reads, so each result costs the same
whatever the number of jobs in flight. On the first failure, or on
``KeyboardInterrupt``, it stops starting jobs, sets the shared ``stop`` event (so no retry
starts either) and waits for the requests already in flight: their answers are paid for,
and the jobs store them in the cache the moment they arrive.

SIGTERM (what ``kill``, systemd and Kubernetes send) stops a run in the main thread the
same way: while the run lasts it raises ``KeyboardInterrupt``; once the requests in flight
have ended, the previous handler is put back and the signal delivered again, so the
process ends as SIGTERM would have ended it, with nothing paid for lost.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from ._client import Cancelled

__all__ = ["run_bounded"]

logger = logging.getLogger("skvf.labeling")


def run_bounded(
    jobs: Iterable,
    work: Callable,
    on_done: Callable,
    *,
    max_concurrency: int,
    stop: threading.Event,
    may_start: Callable[[int], bool] | None = None,
) -> list:
    """Run ``work(job)`` for every job on at most ``max_concurrency`` threads.

    Parameters
    ----------
    jobs : iterable
        The jobs, started in this order.
    work : callable
        ``work(job) -> result``, run on a worker thread. A job that raises
        :class:`~skvf.labeling._client.Cancelled` was stopped and is ignored.
    on_done : callable
        ``on_done(job, result)``, run on the calling thread as results arrive. An
        exception it raises stops the run like a failed job.
    max_concurrency : int
        Jobs running at once.
    stop : threading.Event
        Set on failure or interruption; jobs check it before each request.
    may_start : callable, optional
        ``may_start(n_running) -> bool``, asked before each start (a budget). Once it
        says no and nothing runs, the run ends.

    Returns
    -------
    list
        The jobs never started because ``may_start`` said no.

    Raises
    ------
    BaseException
        The first exception of a job or of ``on_done``, after the jobs in flight ended.
    """
    with _terminate_after_draining():
        return _run(jobs, work, on_done, max_concurrency, stop, may_start)


def _run(jobs, work, on_done, max_concurrency, stop, may_start) -> list:
    """:func:`run_bounded`, signals aside."""
    pending = deque(jobs)
    running: dict = {}
    finished: queue.SimpleQueue = queue.SimpleQueue()
    failure: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="skvf-labeler")
    try:
        while pending or running:
            while (
                pending
                and failure is None
                and len(running) < max_concurrency
                and (may_start is None or may_start(len(running)))
            ):
                job = pending.popleft()
                future = pool.submit(work, job)
                running[future] = job
                future.add_done_callback(finished.put)
            if not running:
                break
            for future in _finished_now(finished):
                job = running.pop(future)
                try:
                    on_done(job, future.result())
                except Cancelled:
                    pass
                except Exception as error:  # noqa: BLE001 - re-raised once the run drained
                    if failure is None:
                        failure = error
                        stop.set()
                        pending.clear()
    except BaseException:
        stop.set()
        if running:
            logger.warning(
                "interrupted: waiting for %d request(s) in flight so that their answers are "
                "cached (interrupt again to abandon them)",
                len(running),
            )
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        raise failure
    return list(pending)


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived during a run."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextmanager
def _terminate_after_draining():
    """While the block runs in the main thread, SIGTERM interrupts it as Ctrl-C does.

    Once the block has ended (the requests in flight drained), the previous handler is
    restored and, if SIGTERM came, delivered again. Nothing is installed outside the main
    thread (Python runs handlers there only), where SIGTERM is ignored, or where its
    handler was not set from Python (it could not be put back).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)
        raise  # the previous handler returned: the run stays interrupted
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finished_now(finished: queue.SimpleQueue) -> list:
    """The jobs that ended: wait for the first, then take every other already there."""
    done = [finished.get()]
    while True:
        try:
            done.append(finished.get_nowait())
        except queue.Empty:
            return done
