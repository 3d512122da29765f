"""Answers paid for are never lost: unwritable caches, SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import KEY_ENV
from fake_openai_server import FakeVLM, colour_image

from skvf._store import CacheWarning
from skvf.labeling._cache import AnswerCache

TESTS = str(Path(__file__).parent)
ROOT = str(Path(__file__).parents[2])
posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def _answer_files(directory):
    return sorted(directory.rglob("*.json"))


def _run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=ROOT, LITELLM_LOCAL_MODEL_COST_MAP="True")
    return subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- an answer that cannot be stored is still returned ---------------------------------

_FULL_DISK_CHILD = """
import json, resource, sys, warnings
sys.path.insert(0, {tests!r})
from fake_openai_server import COLOURS, colour_image
from skvf.labeling import MLLMLabeler

images = [colour_image(colour, seed=index) for index, colour in enumerate(COLOURS)]
labeler = MLLMLabeler(
    "openai/fake-vlm", api_base={url!r}, api_key_env={env!r}, cache={cache!r},
    max_concurrency=4,
).fit()
# A full disk: no file may grow past 8 bytes (Python ignores SIGXFSZ: writes fail, EFBIG).
resource.setrlimit(resource.RLIMIT_FSIZE, (8, resource.RLIM_INFINITY))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    names = labeler.transform(images)
print(json.dumps({{
    "names": names.tolist(),
    "answers": labeler.usage_["answers"],
    "warnings": [f"{{w.category.__name__}}: {{w.message}}" for w in caught],
}}))
"""


@posix_only
def test_answers_are_returned_when_the_disk_is_full(server, colour_images, tmp_path):
    images, expected = colour_images
    config = FakeVLM()
    cache = tmp_path / "cache"
    code = _FULL_DISK_CHILD.format(tests=TESTS, url=server(config), env=KEY_ENV, cache=str(cache))
    result = _run_child(code)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["names"] == expected
    assert outcome["answers"] == len(images) == config.requests
    (warning,) = outcome["warnings"]  # one warning for the run, not one per answer
    assert warning.startswith("CacheWarning: the answer cache ")
    assert str(cache) in warning and "File too large" in warning
    assert _answer_files(cache) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_answers_are_returned_when_the_cache_folder_is_read_only(
    server, make_labeler, colour_images, tmp_path
):
    images, expected = colour_images
    cache = tmp_path / "read-only"
    cache.mkdir()
    cache.chmod(0o555)
    config = FakeVLM()
    try:
        labeler = make_labeler(server(config), cache=cache).fit()
        with pytest.warns(CacheWarning, match="cannot store answers.*Permission denied"):
            assert list(labeler.transform(images)) == expected
    finally:
        cache.chmod(0o755)
    assert labeler.usage_["answers"] == config.requests == len(images)


def test_a_failed_write_warns_once_per_run(tmp_path, monkeypatch, recwarn):
    cache = AnswerCache(tmp_path, {"model": "m"})

    def refuse(key, value):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(cache._store, "put", refuse)
    record = {"answer": "robin", "refusal": None, "model": "m", "prompt_tokens": 1,
              "completion_tokens": 1, "cost_usd": 0.0}  # fmt: skip
    assert [cache.put(f"{index:040d}", record) for index in range(5)] == [False] * 5
    assert len(recwarn.list) == 1 and recwarn.list[0].category is CacheWarning
    assert str(cache.directory) in str(recwarn.list[0].message)
    assert cache.write_failure.startswith("PermissionError: [Errno 13] Permission denied")


# -- SIGTERM ---------------------------------------------------------------------------

_TERMINATED_CHILD = """
import os, signal, sys, threading, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from fake_openai_server import COLOURS, colour_image
from skvf.labeling import MLLMLabeler

cache = Path({cache!r})
images = [colour_image(colour, seed=index) for index, colour in enumerate(COLOURS)]
labeler = MLLMLabeler(
    "openai/fake-vlm", api_base={url!r}, api_key_env={env!r}, cache=str(cache),
    max_concurrency=2, timeout=30.0,
).fit()


def terminate_midway():
    while len(list(cache.rglob("*.json"))) < 3:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=terminate_midway, daemon=True).start()
labeler.label(images)
print("labelling ended without being terminated")
"""


@posix_only
def test_sigterm_keeps_the_answers_in_flight_and_ends_the_process(
    server, make_labeler, colour_images, tmp_path
):
    images, expected = colour_images
    config = FakeVLM(delay=0.4)
    base_url = server(config)
    cache = tmp_path / "cache"
    code = _TERMINATED_CHILD.format(tests=TESTS, url=base_url, env=KEY_ENV, cache=str(cache))
    result = _run_child(code)
    assert result.returncode == -signal.SIGTERM, result.stderr[-3000:]
    assert "waiting for" in result.stderr  # it drained the requests in flight...
    stored = _answer_files(cache)
    assert 3 <= len(stored) < len(images)
    assert len(stored) == config.requests  # ...and stored every answer it paid for

    before = config.requests
    resumed = make_labeler(base_url, cache=cache).fit()
    assert list(resumed.transform(images)) == expected
    assert resumed.usage_["cache_hits"] == len(stored)
    assert config.requests - before == len(images) - len(stored)


def test_the_sigterm_handler_is_installed_only_while_labelling_in_the_main_thread(
    server, make_labeler
):
    seen = []

    def answer(image, prompt):
        seen.append(signal.getsignal(signal.SIGTERM))
        return '{"name": "robin"}'

    previous = signal.getsignal(signal.SIGTERM)
    base_url = server(FakeVLM(answer=answer))
    make_labeler(base_url, cache=None).fit().label([colour_image("red")])
    assert seen[0] not in (previous, signal.SIG_DFL, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGTERM) is previous

    thread = threading.Thread(
        target=lambda: make_labeler(base_url, cache=None).fit().label([colour_image("blue")])
    )
    thread.start()
    thread.join()
    assert seen[1] is previous  # another thread: nothing installed, nothing raised
