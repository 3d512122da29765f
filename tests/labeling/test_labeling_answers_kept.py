"""Answers paid for are never lost: unwritable caches, SIGTERM, processes sharing a cache."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import KEY_ENV
from fake_openai_server import COLOURS, FakeVLM, colour_image

from skvf._images import image_digest, load_image
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
    assert _answer_files(cache) == [] and list(cache.rglob("*.claim")) == []


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
    assert list(cache.rglob("*.claim")) == []

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


# -- processes sharing one cache -------------------------------------------------------

_SHARING_CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from fake_openai_server import COLOURS, colour_image
from skvf.labeling import MLLMLabeler

images = [colour_image(colour, seed=seed) for seed in range(2) for colour in list(COLOURS)[:6]]
labeler = MLLMLabeler(
    "openai/fake-vlm", api_base={url!r}, api_key_env={env!r}, cache={cache!r},
    max_concurrency=4,
).fit()
from skvf.labeling._client import import_litellm
import_litellm()
Path({ready!r}).touch()
while not Path({go!r}).exists():
    time.sleep(0.005)
names = labeler.transform(images)
print(json.dumps({{"names": names.tolist(), "usage": labeler.usage_}}))
"""


@posix_only
@pytest.mark.slow
def test_two_processes_sharing_a_cache_pay_for_each_image_once(server, tmp_path):
    config = FakeVLM(delay=0.3)
    base_url = server(config)
    go = tmp_path / "go"
    children = []
    for index in range(2):
        code = _SHARING_CHILD.format(
            tests=TESTS,
            url=base_url,
            env=KEY_ENV,
            cache=str(tmp_path / "cache"),
            ready=str(tmp_path / f"ready-{index}"),
            go=str(go),
        )
        environment = dict(os.environ, PYTHONPATH=ROOT, LITELLM_LOCAL_MODEL_COST_MAP="True")
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{index}").exists() for index in range(2)):
            assert time.monotonic() < deadline and all(c.poll() is None for c in children)
            time.sleep(0.02)
        go.touch()  # both start asking at once
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            child.kill()
    truth = [f"{colour} test bird" for seed in range(2) for colour in list(COLOURS)[:6]]
    usages = []
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr[-3000:]
        outcome = json.loads(stdout.strip().splitlines()[-1])
        assert outcome["names"] == truth
        usages.append(outcome["usage"])
    assert config.requests == len(truth)  # 12, not 24
    assert sum(usage["answers"] for usage in usages) == len(truth)
    assert all(usage["answers"] + usage["cache_hits"] == len(truth) for usage in usages)
    assert list((tmp_path / "cache").rglob("*.claim")) == []


def _claim_path(labeler, image):
    cache = AnswerCache(labeler.cache, labeler._answer_key(labeler.prompt_text_))
    digest = image_digest(load_image(image))
    return cache, digest, cache._store.path(digest).with_suffix(".claim")


def _ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("claimant", ["ended process", "not refreshed"])
def test_an_abandoned_claim_is_taken_over(server, make_labeler, tmp_path, claimant):
    config = FakeVLM()
    labeler = make_labeler(server(config)).fit()
    image = colour_image("red")
    _, _, claim = _claim_path(labeler, image)
    claim.parent.mkdir(parents=True)
    pid = _ended_pid() if claimant == "ended process" else os.getpid()
    claim.write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "time": 0}))
    if claimant == "not refreshed":  # older than a request, its retries and a margin
        os.utime(claim, (time.time() - 1000, time.time() - 1000))
    started = time.perf_counter()
    assert list(labeler.transform([image])) == ["red test bird"]
    assert time.perf_counter() - started < 3.0
    assert config.requests == 1 and not claim.exists()


def test_a_live_claim_is_waited_for_and_its_answer_used(server, make_labeler):
    config = FakeVLM()
    labeler = make_labeler(server(config)).fit()
    image = colour_image("red")
    cache, digest, claim = _claim_path(labeler, image)
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "time": 0}))
    record = {"answer": '{"name": "answered elsewhere"}', "refusal": None,
              "model": "openai/fake-vlm", "prompt_tokens": 1, "completion_tokens": 1,
              "cost_usd": 0.0}  # fmt: skip

    def answer_elsewhere():
        time.sleep(0.5)
        cache.put(digest, record)
        claim.unlink()

    threading.Thread(target=answer_elsewhere).start()
    assert list(labeler.transform([image])) == ["answered elsewhere"]
    assert config.requests == 0
    assert labeler.usage_["cache_hits"] == 1 and labeler.usage_["answers"] == 0


@pytest.mark.slow
def test_a_parallel_grid_search_pays_for_each_image_once(server, make_labeler, tmp_path, caplog):
    import logging

    from sklearn.model_selection import GridSearchCV

    from skvf import NeaRClassifier
    from skvf_bench.demo import TINY_BACKBONE_PARAMS

    caplog.set_level(logging.ERROR)
    colours = list(COLOURS)[:6]
    images = [colour_image(colour, size=32, seed=seed) for seed in range(3) for colour in colours]
    truth = [f"{colour} test bird" for seed in range(3) for colour in colours]
    config = FakeVLM(delay=0.2)
    labeler = make_labeler(server(config), cache=tmp_path / "answers", max_concurrency=4)
    classifier = NeaRClassifier(  # names only: no synonym request
        labeler=labeler,
        **TINY_BACKBONE_PARAMS,
        merge_synonyms=False,
        max_epochs=5,
        warmup_epochs=2,
        random_state=0,
    )
    search = GridSearchCV(
        classifier, {"candidate_builder__n_neighbors": [3]}, cv=3, n_jobs=2, error_score="raise"
    )
    search.fit(images, truth)
    assert config.requests == len(images)  # 18: each image paid once over 3 folds and the refit
