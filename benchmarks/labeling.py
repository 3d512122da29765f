"""How well MLLMLabeler overlaps requests, against a local server with a fixed latency.

Labels N distinct images twice against the fake OpenAI-compatible server of the test suite
(every answer takes ``--latency`` seconds), run in its own process as a real server would
be (keep-alive, a deep listen backlog), through LiteLLM's real client: the first
``--serial-images`` with ``max_concurrency=1`` (the serial time per image, scaled to N)
and all N with ``--max-concurrency``, in the same run. Prints the concurrency
efficiency, serial time / (wall time x max_concurrency): 1.0 means the requests overlap
perfectly, 1 / max_concurrency means they do not overlap at all; and the labeling
process's CPU time per request, which bounds it: one process cannot start more than
1 / (CPU per request) requests a second, whatever ``max_concurrency``. A last run reads
every answer from the answer cache.

Usage::

    python benchmarks/labeling.py --n-images 32 --latency 0.5 --max-concurrency 8

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "labeling"))

from fake_openai_server import COLOURS, FakeVLM, colour_image, serve  # noqa: E402

from skvf.labeling import MLLMLabeler  # noqa: E402

KEY_ENV = "SKVF_BENCHMARK_API_KEY"


def _images(n_images: int) -> list:
    colours = list(COLOURS)
    return [colour_image(colours[index % len(colours)], seed=index) for index in range(n_images)]


def _server_process(latency: float, keep_alive: bool, connection) -> None:
    """Serve until told to stop, then report the peak requests at once and connections."""
    config = FakeVLM(delay=latency, keep_alive=keep_alive)
    with serve(config) as base_url:
        connection.send(base_url)
        connection.recv()
    connection.send((config.max_active, config.connections))


def _timed_run(labeler: MLLMLabeler, images: list) -> tuple[float, float, MLLMLabeler]:
    """Wall time and CPU time of this process for labelling the images."""
    labeler.fit()
    started, cpu_started = time.perf_counter(), time.process_time()
    labeler.transform(images)
    return time.perf_counter() - started, time.process_time() - cpu_started, labeler


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per answer")
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument(
        "--serial-images", type=int, default=16, help="images labelled one at a time"
    )
    parser.add_argument(
        "--no-keep-alive", action="store_true", help="one connection per request (HTTP/1.0)"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault(KEY_ENV, "benchmark-key")
    images = _images(args.n_images)
    connection, child_connection = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_server_process,
        args=(args.latency, not args.no_keep_alive, child_connection),
        daemon=True,
    )
    server.start()
    base_url = connection.recv()
    try:
        with tempfile.TemporaryDirectory() as cache:

            def labeler(max_concurrency: int, cache_dir) -> MLLMLabeler:
                return MLLMLabeler(
                    "openai/fake-vlm",
                    api_base=base_url,
                    api_key_env=KEY_ENV,
                    max_concurrency=max_concurrency,
                    cache=cache_dir,
                )

            _timed_run(labeler(1, None), images[:1])  # import LiteLLM, open a connection
            n_serial = min(args.serial_images, args.n_images)
            serial_part, _, _ = _timed_run(labeler(1, None), images[:n_serial])
            serial = serial_part * args.n_images / n_serial
            wall, cpu, concurrent = _timed_run(labeler(args.max_concurrency, cache), images)
            cached, _, _ = _timed_run(labeler(args.max_concurrency, cache), images)
        connection.send("stop")
        peak, connections = connection.recv()
    finally:
        server.join(timeout=5)
        if server.is_alive():
            server.terminate()

    efficiency = serial / (wall * args.max_concurrency)
    print(f"images                 {args.n_images}")
    print(f"latency per request    {args.latency:.3f} s")
    print(f"serial time            {serial:.2f} s  (max_concurrency=1, {n_serial} images, scaled)")
    print(f"wall time              {wall:.2f} s  (max_concurrency={args.max_concurrency})")
    print(f"peak requests at once  {peak}")
    print(f"connections            {connections}  (all runs, keep-alive={not args.no_keep_alive})")
    print(
        f"CPU per request        {1000 * cpu / concurrent.usage_['calls']:.2f} ms  (this process)"
    )
    print(f"speed-up               {serial / wall:.2f}x")
    print(f"concurrency efficiency {efficiency:.2f}  = serial / (wall x max_concurrency)")
    print(f"cached rerun           {cached:.2f} s  (0 requests)")
    print(f"usage                  {concurrent.usage_}")


if __name__ == "__main__":
    main()
