"""How well MLLMLabeler overlaps requests, against a local server with a fixed latency.

Labels N distinct images against the fake OpenAI-compatible server of the test suite
(every answer takes ``--latency`` seconds), run in its own process as a real server would
be (keep-alive, TCP_NODELAY, a deep listen backlog), through LiteLLM's real client. Each
repeat first labels ``--serial-images`` with ``max_concurrency=1`` (the serial time per
image, scaled to N), then all N images once for each ``--max-concurrency`` value, side by
side, each run with its own empty answer cache. With ``--processes 2`` (or more) the same
runs are also made the way docs/recipes.md labels many images: the images split into that
many parts, each labelled by a joblib (loky) worker process with its share of the
requests in flight, all into one answer cache; the workers import LiteLLM and send one
request before they are timed, and that start-up is printed apart.

Prints, per run, the concurrency efficiency, serial time / (wall time x
max_concurrency): 1.0 means the requests overlap perfectly, 1 / max_concurrency means
they do not overlap at all; the labelling processes' CPU time per request, which bounds
it: one process cannot start more than 1 / (CPU per request) requests a second, whatever
``max_concurrency``; and the server process's CPU time per request, which competes for
the same cores when the server runs on the same machine. A last run reads every answer
from the answer cache.

Usage::

    python benchmarks/labeling.py --n-images 512 --latency 0.3 --max-concurrency 32 64 \\
        --processes 1 2 --repeats 2

Run it with ``PYTHONPATH`` set to another checkout to measure that checkout's labeler
against the same server.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "labeling"))

from fake_openai_server import COLOURS, FakeVLM, colour_image, serve  # noqa: E402

from skvf.labeling import MLLMLabeler  # noqa: E402

KEY_ENV = "SKVF_BENCHMARK_API_KEY"


def _images(n_images: int) -> list:
    colours = list(COLOURS)
    return [colour_image(colours[index % len(colours)], seed=index) for index in range(n_images)]


def _server_process(latency: float, keep_alive: bool, connection) -> None:
    """Serve until told to quit; between "start" and "measure", count CPU and peak."""
    config = FakeVLM(delay=latency, keep_alive=keep_alive)
    with serve(config) as base_url:
        connection.send(base_url)
        while (message := connection.recv()) != "quit":
            if message == "start":
                with config._lock:
                    config.max_active = config._active
                    requests, cpu_started = config.requests, time.process_time()
            else:
                connection.send(
                    (
                        time.process_time() - cpu_started,
                        config.requests - requests,
                        config.max_active,
                        config.connections,
                    )
                )


class _Server:
    """The fake server in its own process; ``start()`` and ``measure()`` bracket a run."""

    def __init__(self, latency: float, keep_alive: bool):
        self.connection, child_connection = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=_server_process, args=(latency, keep_alive, child_connection), daemon=True
        )
        self.process.start()
        self.base_url = self.connection.recv()

    def start(self) -> None:
        self.connection.send("start")

    def measure(self) -> tuple[float, int, int, int]:
        """CPU seconds, requests and peak requests at once since start; all connections."""
        self.connection.send("measure")
        return self.connection.recv()

    def close(self) -> None:
        self.connection.send("quit")
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()


def _timed_run(labeler: MLLMLabeler, images: list) -> tuple[float, float, dict]:
    """Wall time and CPU time of this process for labelling the images, and the usage."""
    labeler.fit()
    started, cpu_started = time.perf_counter(), time.process_time()
    labeler.transform(images)
    return time.perf_counter() - started, time.process_time() - cpu_started, labeler.usage_


def _label_part(labeler: MLLMLabeler, part: list) -> tuple[float, int]:
    """In a worker: label one part; its CPU time and requests."""
    _, cpu, usage = _timed_run(labeler, part)
    return cpu, usage["calls"]


def _warm_worker(labeler: MLLMLabeler, image, roll_call: str, n_workers: int) -> None:
    """In a worker: import LiteLLM and send one request, then wait for the other workers.

    Each worker leaves its process id in ``roll_call`` and returns once ``n_workers``
    are there, so that every worker of the pool runs one of these calls.
    """
    labeler.fit().transform([image])
    Path(roll_call, str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(roll_call)) < n_workers and time.monotonic() < deadline:
        time.sleep(0.01)


def _timed_parts(labelers: list, images: list) -> tuple[float, float, int]:
    """Label ``images`` in ``len(labelers)`` worker processes at once, a part each.

    Returns the wall time, the workers' CPU time and the requests they sent.
    """
    n_parts = len(labelers)
    started = time.perf_counter()
    results = Parallel(n_jobs=n_parts)(
        delayed(_label_part)(labeler, images[part::n_parts])
        for part, labeler in enumerate(labelers)
    )
    wall = time.perf_counter() - started
    return wall, sum(cpu for cpu, _ in results), sum(calls for _, calls in results)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per answer")
    parser.add_argument("--max-concurrency", type=int, nargs="+", default=[8])
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="worker processes sharing the requests in flight (1: this process)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all the runs")
    parser.add_argument(
        "--serial-images", type=int, default=16, help="images labelled one at a time"
    )
    parser.add_argument(
        "--no-keep-alive", action="store_true", help="one connection per request (HTTP/1.0)"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault(KEY_ENV, "benchmark-key")
    images = _images(args.n_images)
    n_serial = min(args.serial_images, args.n_images)
    load_before = os.getloadavg()[0]
    server = _Server(args.latency, keep_alive=not args.no_keep_alive)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as scratch:

            def labeler(max_concurrency: int, cache: str) -> MLLMLabeler:
                return MLLMLabeler(
                    "openai/fake-vlm",
                    api_base=server.base_url,
                    api_key_env=KEY_ENV,
                    max_concurrency=max_concurrency,
                    cache=os.path.join(scratch, cache),
                )

            _timed_run(labeler(1, "warm-up"), images[:1])  # import LiteLLM, connect
            warm_ups: dict = {}
            for repeat in range(args.repeats):
                server.start()
                wall, cpu, usage = _timed_run(labeler(1, f"serial-{repeat}"), images[:n_serial])
                server_cpu, requests, peak, _ = server.measure()
                serial = wall * args.n_images / n_serial
                serial_cpu = cpu / usage["calls"]
                rows.append((repeat, 1, 1, serial, serial, serial_cpu, server_cpu / requests, peak))
                for n_processes in args.processes:
                    if n_processes > 1:
                        roll_call = tempfile.mkdtemp(dir=scratch)
                        started = time.perf_counter()
                        Parallel(n_jobs=n_processes)(
                            delayed(_warm_worker)(
                                labeler(1, f"warm-{n_processes}-{repeat}"),
                                images[worker],
                                roll_call,
                                n_processes,
                            )
                            for worker in range(n_processes)
                        )
                        warm_ups.setdefault(n_processes, []).append(time.perf_counter() - started)
                    for max_concurrency in args.max_concurrency:
                        cache = f"run-{repeat}-{n_processes}-{max_concurrency}"
                        server.start()
                        if n_processes == 1:
                            wall, cpu, usage = _timed_run(labeler(max_concurrency, cache), images)
                            calls = usage["calls"]
                        else:
                            share = max(1, max_concurrency // n_processes)
                            wall, cpu, calls = _timed_parts(
                                [labeler(share, cache) for _ in range(n_processes)], images
                            )
                        server_cpu, requests, peak, _ = server.measure()
                        rows.append(
                            (
                                repeat,
                                max_concurrency,
                                n_processes,
                                wall,
                                serial,
                                cpu / calls,
                                server_cpu / requests,
                                peak,
                            )
                        )
            last = f"run-{args.repeats - 1}-{args.processes[-1]}-{args.max_concurrency[-1]}"
            cached, _, cached_usage = _timed_run(labeler(args.max_concurrency[-1], last), images)
        *_, connections = server.measure()
    finally:
        server.close()

    print(
        f"images {args.n_images}, latency {args.latency:.3f} s per answer, keep-alive "
        f"{not args.no_keep_alive}, {os.cpu_count()} CPUs, load average {load_before:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"serial time: max_concurrency=1 over {n_serial} images, scaled to {args.n_images}")
    print(
        f"{'repeat':>6} {'in flight':>9} {'processes':>9} {'wall s':>7} {'serial s':>8} "
        f"{'speed-up':>8} {'efficiency':>10} {'client CPU':>10} {'server CPU':>10} {'peak':>5}"
    )
    for repeat, max_concurrency, n_processes, wall, serial, client_cpu, server_cpu, peak in rows:
        print(
            f"{repeat:>6} {max_concurrency:>9} {n_processes:>9} {wall:>7.2f} {serial:>8.2f} "
            f"{serial / wall:>7.2f}x {serial / (wall * max_concurrency):>10.2f} "
            f"{1000 * client_cpu:>7.2f} ms {1000 * server_cpu:>7.2f} ms {peak:>5}"
        )
    print(
        "efficiency = serial / (wall x in flight); CPU: CPU time per request of the "
        "labelling process(es) (client) and of the server process; peak: requests the "
        "server served at once"
    )
    for n_processes, seconds in warm_ups.items():
        print(
            f"start-up of {n_processes} worker processes (not in the wall times above): "
            + ", ".join(f"{value:.2f} s" for value in seconds)
        )
    print(f"connections opened: {connections} over all runs")
    print(
        f"cached rerun: {cached:.2f} s, {cached_usage['cache_hits']} cache hits, "
        f"{cached_usage['calls']} requests"
    )


if __name__ == "__main__":
    main()
