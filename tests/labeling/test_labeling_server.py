"""MLLMLabeler against a real OpenAI-compatible server on 127.0.0.1, through LiteLLM."""

import json
import time

import numpy as np
import pytest
from conftest import KEY_ENV
from fake_openai_server import Fail, FakeVLM, Malformed, Reply, colour_image
from PIL import Image

from skvf.exceptions import ImageInputError
from skvf.labeling import (
    BudgetExceededError,
    LabelingError,
    LabelingWarning,
    MLLMLabeler,
    UnusableAnswerError,
)


def test_each_image_gets_the_name_the_server_gives_its_content(
    server, make_labeler, colour_images, tmp_path
):
    images, expected = colour_images
    path = tmp_path / "green.png"
    Image.fromarray(colour_image("green", seed=99)).save(path)
    mixed = [images[0], Image.fromarray(images[1]), str(path), *images[2:]]
    config = FakeVLM()
    labeler = make_labeler(server(config)).fit()

    names = labeler.transform(mixed)

    assert names.dtype == object and names.shape == (len(mixed),)
    assert list(names) == [expected[0], expected[1], "green test bird", *expected[2:]]
    assert config.requests == len(mixed)
    usage = labeler.usage_
    assert usage["calls"] == usage["answers"] == len(mixed)
    assert usage["prompt_tokens"] == 100 * len(mixed)
    assert usage["completion_tokens"] == 10 * len(mixed)
    assert usage["cost_usd"] == 0.0 and usage["unpriced_calls"] == len(mixed)
    assert usage["bytes_sent"] > 0 and usage["wall_time_s"] > 0


def test_requests_overlap(server, make_labeler):
    delay, n_images, concurrency = 0.2, 16, 8
    images = [colour_image("red", seed=seed) for seed in range(n_images)]
    config = FakeVLM(delay=delay)
    labeler = make_labeler(server(config), max_concurrency=concurrency, cache=None).fit()

    started = time.perf_counter()
    labeler.transform(images)
    wall = time.perf_counter() - started

    serial = n_images * delay
    assert config.max_active == concurrency
    assert wall < serial / 3, (wall, serial)


def test_requests_reuse_connections_to_a_keep_alive_server(server, make_labeler):
    n_images, concurrency = 24, 4
    images = [colour_image("green", seed=seed) for seed in range(n_images)]
    config = FakeVLM(delay=0.02, keep_alive=True)
    labeler = make_labeler(server(config), max_concurrency=concurrency, cache=None).fit()

    labeler.transform(images)

    assert config.requests == n_images
    # One connection per request would cost a TCP handshake of CPU each, under the GIL.
    # A request may open a spare connection while another is being handed back to the
    # pool (seen: 6 for 4 in flight on a loaded machine); without reuse it would be 24.
    assert config.connections <= 2 * concurrency, config.connections


def test_the_price_litellm_computed_is_not_computed_again(server, make_labeler, monkeypatch):
    from skvf.labeling import _client

    calls = []

    def price_of_call(*args):
        calls.append(args)
        return real_price_of_call(*args)

    real_price_of_call = _client.price_of_call
    monkeypatch.setattr(_client, "price_of_call", price_of_call)
    images = [colour_image("red", seed=seed) for seed in range(3)]
    labeler = make_labeler(server(FakeVLM()), cache=None).fit()

    labeler.transform(images)

    # LiteLLM has no price for the fake model: unpriced, as price_of_call would say.
    assert calls == []
    assert labeler.usage_["answers"] == labeler.usage_["unpriced_calls"] == 3
    assert labeler.usage_["cost_usd"] == 0.0
    priced = make_labeler(server(FakeVLM()), cache=None, price_per_token=(1e-3, 1e-2)).fit()
    priced.transform(images)
    assert len(calls) == 3
    assert priced.usage_["cost_usd"] == pytest.approx(3 * (100 * 1e-3 + 10 * 1e-2))
    assert priced.usage_["unpriced_calls"] == 0


def test_a_duplicate_image_is_asked_once(server, make_labeler):
    image = colour_image("blue")
    config = FakeVLM()
    names = make_labeler(server(config)).fit().transform([image, image.copy(), image])
    assert list(names) == ["blue test bird"] * 3
    assert config.requests == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_failures_are_retried(server, make_labeler, status):
    config = FakeVLM(script=[Fail(status), Fail(status)])
    labeler = make_labeler(server(config), max_retries=2).fit()
    assert list(labeler.transform([colour_image("red")])) == ["red test bird"]
    assert config.requests == 3
    assert labeler.usage_["retries"] == 2 and labeler.usage_["calls"] == 3


def test_retry_after_is_honoured(server, make_labeler):
    config = FakeVLM(script=[Fail(429, retry_after=0.4)])
    labeler = make_labeler(server(config)).fit()
    started = time.perf_counter()
    labeler.transform([colour_image("red")])
    assert time.perf_counter() - started >= 0.4
    assert config.requests == 2


def test_a_timeout_is_retried(server, make_labeler):
    config = FakeVLM(script=[Reply(delay=1.0)])
    labeler = make_labeler(server(config), timeout=0.3).fit()
    assert list(labeler.transform([colour_image("cyan")])) == ["cyan test bird"]
    assert config.requests == 2 and labeler.usage_["retries"] == 1


def test_a_server_that_never_answers_in_time_fails_within_the_retries(server, make_labeler):
    config = FakeVLM(delay=1.0)
    labeler = make_labeler(server(config), timeout=0.2, max_retries=1).fit()
    started = time.perf_counter()
    with pytest.raises(LabelingError, match="Timeout.*2 request.*retries exhausted"):
        labeler.transform([colour_image("cyan")])
    assert time.perf_counter() - started < 1.5
    assert config.requests == 2
    assert labeler.usage_["failures"] == 1


def test_a_refused_connection_is_retried_then_reported(make_labeler):
    labeler = make_labeler("http://127.0.0.1:9/v1", max_retries=1).fit()  # discard port
    with pytest.raises(LabelingError, match="retries exhausted") as caught:
        labeler.transform([colour_image("red")])
    assert labeler.usage_["calls"] == 2
    assert caught.value.answers_paid == 0


def test_authentication_failure_fails_fast_without_the_key(server, make_labeler, monkeypatch):
    config = FakeVLM(api_key="the-right-key-000000")
    labeler = make_labeler(server(config), max_concurrency=1).fit()
    images = [colour_image("red", seed=seed) for seed in range(5)]
    with pytest.raises(LabelingError, match="AuthenticationError.*not retried") as caught:
        labeler.transform(images)
    message = str(caught.value)
    assert "Incorrect API key provided" in message
    assert "sk-test-SECRET" not in message and "0123456789abcdef" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert config.requests == 1


def test_an_unknown_model_fails_fast(server, make_labeler):
    config = FakeVLM(script=[Fail(404, "The model `fake-vlm` does not exist")])
    labeler = make_labeler(server(config)).fit()
    with pytest.raises(LabelingError, match="NotFoundError.*does not exist"):
        labeler.transform([colour_image("red")])
    assert config.requests == 1


def test_a_missing_key_variable_fails_before_any_request(server, make_labeler, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    config = FakeVLM()
    labeler = make_labeler(server(config)).fit()
    with pytest.raises(ValueError, match=f"api_key_env names the environment variable '{KEY_ENV}'"):
        labeler.transform([colour_image("red")])
    assert config.requests == 0


def test_a_malformed_response_body_is_retried(server, make_labeler):
    config = FakeVLM(script=[Malformed()])
    labeler = make_labeler(server(config)).fit()
    assert list(labeler.transform([colour_image("red")])) == ["red test bird"]
    assert config.requests == 2


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(text='{"name": "red b'), "unparsable"),
        (Reply(text="I'm sorry, but I can't help with identifying this image."), "refusal"),
        (Reply(text=None, refusal="I must decline."), "refusal"),
        (Reply(text=""), "empty"),
        (Reply(text='{"name": "a small red bird that sits on a branch in the sun"}'), "overlong"),
    ],
)
def test_unusable_answers_follow_on_error(server, make_labeler, reply, reason):
    images = [colour_image("red"), colour_image("blue")]
    config = FakeVLM(script=[reply])
    base_url = server(config)

    with pytest.raises(UnusableAnswerError, match=f"X\\[0\\] \\(ndarray\\): {reason} answer"):
        make_labeler(base_url, max_concurrency=1).fit().transform(images)

    with pytest.warns(LabelingWarning, match=f"1 of 2 images got no usable name.*{reason}"):
        names, valid = make_labeler(base_url, on_error="warn").fit().label(images)
    assert list(valid) == [False, True]
    assert names[0] is None and names[1] == "blue test bird"

    skipping = make_labeler(base_url, on_error="skip").fit()
    names, valid, reasons = skipping.label(images, return_reasons=True)
    assert list(valid) == [False, True]
    assert reasons[1] is None and reason in reasons[0] and reasons[0].startswith("X[0]")
    with pytest.raises(ValueError, match=r"1 of 2 images got no usable name.*Use label\(X\)"):
        skipping.transform(images)
    assert config.requests == 2  # the unusable answer was paid once, then read from the cache


def test_unreadable_images_follow_on_error(server, make_labeler, tmp_path):
    base_url = server(FakeVLM())
    images = [str(tmp_path / "missing.jpg"), colour_image("red")]
    with pytest.raises(ImageInputError, match="X\\[0\\] .*missing.jpg.*file not found"):
        make_labeler(base_url).fit().label(images)
    names, valid = make_labeler(base_url, on_error="skip").fit().label(images)
    assert list(valid) == [False, True] and names[1] == "red test bird"


def test_a_second_run_is_served_from_the_cache(server, make_labeler, colour_images):
    images, expected = colour_images
    config = FakeVLM()
    base_url = server(config)
    first = make_labeler(base_url).fit()
    first.transform(images)
    assert config.requests == len(images)

    second = make_labeler(base_url).fit()  # a new instance, as after clone() in a CV fold
    assert list(second.transform(images)) == expected
    assert config.requests == len(images)
    assert second.usage_["calls"] == 0 and second.usage_["cache_hits"] == len(images)

    make_labeler(base_url, prompt="attributes").fit().transform(images[:2])
    make_labeler(base_url, completion_kwargs={"temperature": 0.5}).fit().transform(images[:2])
    assert config.requests == len(images) + 4  # another prompt or temperature: new answers


def test_usage_accumulates_over_calls_and_fit_resets_it(server, make_labeler):
    labeler = make_labeler(server(FakeVLM()), cache=None).fit()
    labeler.transform([colour_image("red")])
    labeler.transform([colour_image("blue")])
    assert labeler.usage_["calls"] == 2
    labeler.fit()
    assert labeler.usage_["calls"] == 0


def test_a_run_killed_midway_resumes_with_only_the_missing(server, make_labeler, colour_images):
    images, expected = colour_images
    dying = FakeVLM(fail_after=3)
    labeler = make_labeler(server(dying), max_concurrency=1, max_retries=1).fit()
    with pytest.raises(LabelingError) as caught:
        labeler.transform(images)
    error = caught.value
    assert error.answers_paid == 3 and error.answers_cached == 3
    assert error.cache_dir is not None and error.cache_dir in str(error)
    assert "paid for 3 answer(s)" in str(error)
    assert "3 of 8 images now have one: running again requests only the 5 missing" in str(error)

    dying.fail_after = None  # the provider is back
    before = dying.requests
    resumed = make_labeler(labeler.api_base).fit()
    assert list(resumed.transform(images)) == expected
    assert dying.requests - before == 5
    assert resumed.usage_["cache_hits"] == 3 and resumed.usage_["answers"] == 5


def test_max_cost_stops_before_the_budget_is_exceeded(server, make_labeler, colour_images):
    images, expected = colour_images
    config = FakeVLM()
    base_url = server(config)
    # 100 prompt + 10 completion tokens at 1e-3 USD each: 0.11 USD per call.
    labeler = make_labeler(base_url, price_per_token=(1e-3, 1e-3), max_cost=0.25).fit()
    with pytest.raises(BudgetExceededError, match=r"max_cost=0.25 USD reached: \$0.220000"):
        labeler.transform(images)
    assert config.requests == 2
    assert labeler.usage_["cost_usd"] == pytest.approx(0.22)

    richer = make_labeler(base_url, price_per_token=(1e-3, 1e-3), max_cost=10.0).fit()
    assert list(richer.transform(images)) == expected
    assert config.requests == len(images)
    assert richer.usage_["cost_usd"] == pytest.approx(0.11 * 6)


def test_a_zero_budget_sends_nothing(server, make_labeler):
    config = FakeVLM()
    labeler = make_labeler(server(config), max_cost=0.0).fit()
    with pytest.raises(BudgetExceededError, match="1 image\\(s\\) were not sent"):
        labeler.transform([colour_image("red")])
    assert config.requests == 0


def test_prompt_domain_and_json_mode_reach_the_server(server, make_labeler):
    config = FakeVLM()
    base_url = server(config)
    make_labeler(
        base_url, prompt="Which {domain} is this?", domain="parrot", json_mode=True
    ).fit().transform([colour_image("red")])
    make_labeler(base_url, json_mode="auto", completion_kwargs={"temperature": 0}).fit().transform(
        [colour_image("red")]
    )
    explicit, auto = config.bodies
    text = explicit["messages"][0]["content"][0]["text"]
    assert text.startswith("Which parrot is this?")
    assert explicit["response_format"] == {"type": "json_object"}
    assert "response_format" not in auto and auto["temperature"] == 0
    image_part = explicit["messages"][0]["content"][1]["image_url"]["url"]
    assert image_part.startswith("data:image/jpeg;base64,")


def test_images_are_downscaled_to_max_side(server, make_labeler):
    config = FakeVLM()
    answers = []

    def remember_size(image, prompt):
        answers.append(image.size)
        return json.dumps({"name": "large bird"})

    config.answer = remember_size
    big = np.zeros((300, 600, 3), dtype=np.uint8)
    make_labeler(server(config), max_side=100).fit().transform([big])
    assert answers == [(100, 50)]


def test_fit_sends_nothing_and_names_the_bad_parameter():
    labeler = MLLMLabeler("openai/x", api_base="http://127.0.0.1:9/v1")
    assert labeler.fit() is labeler and labeler.usage_["calls"] == 0
    bad = [
        ({"max_concurrency": 0}, "'max_concurrency' parameter of MLLMLabeler must be"),
        ({"on_error": "ignore"}, "'on_error' parameter of MLLMLabeler must be"),
        ({"timeout": 0}, "'timeout' parameter of MLLMLabeler must be"),
        ({"prompt": "Name the {thing}"}, r"unknown placeholder\(s\) \{thing\}"),
        ({"completion_kwargs": {"api_key": "sk-1"}}, "must not hold secrets.*api_key_env"),
        (
            {"completion_kwargs": {"timeout": 3}},
            "must not set 'timeout'; use the parameter timeout",
        ),
        ({"price_per_token": (1e-6,)}, "price_per_token must be"),
        ({"api_key_env": ""}, "api_key_env must be a non-empty string"),
    ]
    for params, message in bad:
        with pytest.raises((ValueError, TypeError), match=message):
            MLLMLabeler(**params).fit()


def test_label_before_fit_raises_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MLLMLabeler().label([colour_image("red")])


def test_no_key_at_all_fails_at_once_naming_the_variable(server, make_labeler):
    config = FakeVLM()
    labeler = make_labeler(server(config), api_key_env=None).fit()  # OPENAI_API_KEY unset
    started = time.perf_counter()
    with pytest.raises(LabelingError, match="environment variable OPENAI_API_KEY.*api_key_env"):
        labeler.transform([colour_image("red")])
    assert time.perf_counter() - started < 2.0
    assert config.requests == 0 and labeler.usage_["calls"] == 0


def test_ctrl_c_keeps_the_answers_in_flight(server, make_labeler, colour_images, monkeypatch):
    from skvf.labeling._mllm import _Run

    images, expected = colour_images
    config = FakeVLM(delay=0.1)
    base_url = server(config)
    accept = _Run._accept

    def interrupted(self, positions, record, name=None):
        monkeypatch.setattr(_Run, "_accept", accept)
        raise KeyboardInterrupt

    monkeypatch.setattr(_Run, "_accept", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_labeler(base_url, max_concurrency=4).fit().transform(images)
    sent = config.requests
    assert sent == 4  # nothing was sent after the interruption...

    resumed = make_labeler(base_url, max_concurrency=4).fit()
    assert list(resumed.transform(images)) == expected
    assert resumed.usage_["cache_hits"] == 4  # ...and every answer in flight was kept
    assert config.requests == len(images)
