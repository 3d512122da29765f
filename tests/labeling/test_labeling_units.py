"""The small pieces of the labeler: prompts, secrets, cache location, the bounded runner."""

import threading
import time
from pathlib import Path

import pytest

from skvf.labeling._cache import answer_affecting, default_cache_dir, resolve_cache_dir
from skvf.labeling._client import Cancelled
from skvf.labeling._prompts import check_template, render_prompt
from skvf.labeling._runner import run_bounded
from skvf.labeling._secrets import check_no_secrets, scrub


def test_builtin_prompts_mention_the_domain_and_ask_for_json():
    direct = render_prompt("direct", None)
    assert "main object" in direct and '{"name": "<category name>"}' in direct
    assert "bird (the main object)" in render_prompt("direct", "bird")
    attributes = render_prompt("attributes", "car model")
    assert "attributes" in attributes and "car model" in attributes
    assert attributes.index("attributes") < attributes.index('"name"')


def test_templates_fill_domain_and_keep_literal_braces():
    text = render_prompt("Which {domain} is this? Not {{this}}.", "bird")
    assert text.startswith("Which bird is this? Not {this}.")
    assert text.endswith('{"name": "<category name>"}.')


@pytest.mark.parametrize(
    ("template", "domain", "message"),
    [
        ("Which {kind} is it?", None, r"unknown placeholder\(s\) \{kind\}"),
        ("Which {} is it?", "bird", r"unknown placeholder\(s\) \{\}"),
        ("Which {domain} is it?", None, "prompt uses {domain} but domain is None"),
        ("Which {domain is it?", "bird", "prompt is not a valid template"),
        ("   ", None, "prompt must be 'direct', 'attributes', 'expert' or a non-empty template"),
    ],
)
def test_bad_templates_are_refused_naming_the_parameter(template, domain, message):
    with pytest.raises(ValueError, match=message):
        check_template(template, domain)


def test_secrets_in_completion_kwargs_are_refused():
    check_no_secrets({"temperature": 0, "max_tokens": 50, "extra_headers": {"X-Trace": "1"}})
    with pytest.raises(ValueError, match="completion_kwargs must not hold secrets, got api_key"):
        check_no_secrets({"api_key": "sk-x"})
    with pytest.raises(ValueError, match=r"extra_headers\['Authorization'\]"):
        check_no_secrets({"extra_headers": {"Authorization": "Bearer x"}})


def test_scrub_redacts_known_values_environment_keys_and_key_shapes(monkeypatch):
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "plain-secret-value")
    text = (
        "Incorrect API key provided: sk-abcdefghijkl. Header Bearer abc.def "
        "api_key='zz-top-9' env plain-secret-value known hunter22hunter"
    )
    scrubbed = scrub(text, ["hunter22hunter"])
    for secret in ("sk-abcdefghijkl", "abc.def", "zz-top-9", "plain-secret-value", "hunter22"):
        assert secret not in scrubbed
    assert scrubbed.startswith("Incorrect API key provided: [redacted]")


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "skvf"
    assert resolve_cache_dir("default") == tmp_path / "skvf" / "labels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "skvf"
    assert resolve_cache_dir(None) is None
    assert resolve_cache_dir("~/answers") == Path.home() / "answers"
    with pytest.raises(TypeError, match="cache must be 'default', a directory path or None"):
        resolve_cache_dir(3)


def test_transport_arguments_are_not_part_of_the_cache_key():
    kwargs = {"temperature": 0.2, "seed": 1, "extra_headers": {"X-Trace": "1"}, "user": "me"}
    assert answer_affecting(kwargs) == {"temperature": 0.2, "seed": 1}


def test_runner_bounds_concurrency_and_returns_jobs_the_budget_refused():
    active, peak, lock = [0], [0], threading.Lock()

    def work(job):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return job * 2

    results = {}
    left = run_bounded(
        range(10),
        work,
        results.__setitem__,
        max_concurrency=3,
        stop=threading.Event(),
        may_start=lambda n_running: len(results) + n_running < 7,
    )
    assert peak[0] == 3
    assert results == {job: job * 2 for job in range(7)}
    assert left == [7, 8, 9]


def test_runner_hands_each_result_over_as_its_job_ends_on_the_calling_thread():
    # Jobs end in an order unlike the one they started in; every result reaches on_done,
    # on the calling thread, in the order the jobs ended, while the others still run.
    release = {job: threading.Event() for job in range(4)}
    handed, caller = [], threading.get_ident()

    def work(job):
        assert release[job].wait(5)
        return job * 10

    def on_done(job, result):
        assert threading.get_ident() == caller
        handed.append((job, result))
        if len(handed) < 4:
            release[order[len(handed)]].set()  # the next job ends only after this one

    order = [2, 0, 3, 1]
    release[order[0]].set()
    left = run_bounded(range(4), work, on_done, max_concurrency=4, stop=threading.Event())
    assert handed == [(job, job * 10) for job in order]
    assert left == []


def test_runner_interrupted_lets_requests_in_flight_finish():
    started, finished, stop = [], [], threading.Event()

    def work(job):
        if stop.is_set():
            raise Cancelled(job)
        started.append(job)
        time.sleep(0.1 if job else 0.0)
        finished.append(job)  # stands for "the answer is in the cache"
        return job

    def on_done(job, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bounded(range(20), work, on_done, max_concurrency=4, stop=stop)
    assert stop.is_set()
    assert sorted(finished) == sorted(started)  # every job that started has ended
    assert set(started) <= {0, 1, 2, 3}  # and none started after the interruption


def test_runner_reraises_the_first_failure_after_draining():
    def work(job):
        if job == 1:
            raise RuntimeError("boom")
        time.sleep(0.05)
        return job

    done = []
    with pytest.raises(RuntimeError, match="boom"):
        run_bounded(
            range(10),
            work,
            lambda job, _: done.append(job),
            max_concurrency=3,
            stop=threading.Event(),
        )
    assert len(done) < 10
