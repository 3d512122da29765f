"""No route LiteLLM offers takes a key to a host the user did not name in this process.

Each test serves "their" server on 127.0.0.1 (the host a shared model file names) and
checks it receives nothing, whatever field of the labeler points at it.
"""

import pytest
from conftest import KEY_ENV, TEST_KEY
from fake_openai_server import FakeVLM, colour_image

from skvf import NeaRClassifier
from skvf.labeling import MLLMLabeler
from skvf.serialization import dump, load
from skvf_bench.demo import TINY_BACKBONE_PARAMS

OTHER_ENV = "SKVF_TEST_OTHER_TOKEN"
OTHER_SECRET = "ghp-other-secret-0123456789"


def _images():
    return [
        colour_image(colour, size=32, seed=seed) for seed in range(3) for colour in ("red", "blue")
    ]


def _routes(url: str) -> dict:
    """completion_kwargs that make LiteLLM send the request to ``url``."""
    deployment = {"model_name": "fake", "litellm_params": {"model": "openai/fake", "api_base": url}}
    return {
        "model_list": {"model_list": [deployment]},
        "fallbacks": {"fallbacks": [{"model": "openai/fake", "api_base": url}]},
        "context_window_fallbacks": {"context_window_fallbacks": [{"openai/x": ["openai/fake"]}]},
        "content_policy_fallbacks": {"content_policy_fallbacks": [{"openai/x": [url]}]},
    }


@pytest.mark.parametrize("route", sorted(_routes("http://x")))
def test_litellm_routing_is_refused_even_in_this_process(route, server, tmp_path):
    theirs = FakeVLM()
    kwargs = _routes(server(theirs))[route]
    labeler = MLLMLabeler(
        "openai/fake-vlm",
        api_base=server(FakeVLM()),
        api_key_env=KEY_ENV,
        completion_kwargs=kwargs,
        cache=None,
    )
    with pytest.raises(ValueError, match=f"must not set '{route}'.*LiteLLM proxy"):
        labeler.fit()
    assert theirs.requests == 0


@pytest.mark.parametrize("route", sorted(_routes("http://x")))
def test_a_model_file_with_litellm_routing_sends_no_request(route, server, tmp_path):
    theirs = FakeVLM()
    shared = NeaRClassifier(
        labeler=MLLMLabeler("openai/fake-vlm", completion_kwargs=_routes(server(theirs))[route]),
        **TINY_BACKBONE_PARAMS,
        max_epochs=2,
        warmup_epochs=1,
        random_state=0,
    )
    dump(shared, tmp_path / "m.skops")  # written by hand: nothing validates a file
    clf = load(tmp_path / "m.skops")
    with pytest.raises(ValueError, match=f"must not set '{route}'"):
        clf.fit(_images())
    assert theirs.requests == 0 and theirs.authorizations == []


def test_an_address_nested_in_completion_kwargs_waits_for_confirmation(server, tmp_path):
    theirs = FakeVLM()
    their_url = server(theirs)
    kwargs = {"extra_body": {"upstream": {"servers": [their_url]}}, "temperature": 0}
    shared = MLLMLabeler(
        "openai/fake-vlm", api_base=their_url, completion_kwargs=kwargs, cache=None
    )
    dump(shared, tmp_path / "l.skops")
    loaded = load(tmp_path / "l.skops")
    loaded.set_params(api_base=their_url)  # the host confirmed, the nested address not
    with pytest.raises(ValueError, match=r"names completion_kwargs=\{'extra_body': \.\.\.\}"):
        loaded.fit()
    assert theirs.requests == 0
    # The message never quotes the address itself.
    with pytest.raises(ValueError) as refused:
        loaded.fit()
    assert their_url not in str(refused.value)
    loaded.set_params(completion_kwargs=kwargs)
    loaded.fit()


@pytest.mark.parametrize("address", ["127.0.0.1:9", "//evil.example/v1", "HTTPS://evil.example"])
def test_every_form_of_address_counts(address, tmp_path):
    shared = MLLMLabeler("gpt-4o-mini", completion_kwargs={"extra_body": [address]}, cache=None)
    dump(shared, tmp_path / "l.skops")
    with pytest.raises(ValueError, match="loaded from a file and names completion_kwargs"):
        load(tmp_path / "l.skops").fit()


def test_a_model_file_does_not_choose_which_secret_is_sent(server, tmp_path, monkeypatch):
    monkeypatch.setenv(OTHER_ENV, OTHER_SECRET)
    mine = FakeVLM()
    my_url = server(mine)
    shared = NeaRClassifier(
        labeler=MLLMLabeler("openai/fake-vlm", api_key_env=OTHER_ENV),
        **TINY_BACKBONE_PARAMS,
        max_epochs=2,
        warmup_epochs=1,
        random_state=0,
    )
    dump(shared, tmp_path / "m.skops")
    clf = load(tmp_path / "m.skops")
    clf.set_params(labeler__api_base=my_url, labeler__cache=tmp_path / "answers")
    with pytest.raises(ValueError, match=f"names api_key_env='{OTHER_ENV}'.*labeler__api_key_env"):
        clf.fit(_images())
    assert mine.requests == 0

    clf.set_params(labeler__api_key_env=KEY_ENV)  # the user names the key
    clf.fit(_images())
    assert set(mine.authorizations) == {f"Bearer {TEST_KEY}"}
    assert not any(OTHER_SECRET in str(value) for value in mine.authorizations + mine.bodies)


@pytest.mark.parametrize(
    "kwargs",
    [{"custom_llm_provider": "hosted_vllm"}, {"ssl_verify": False}, {"use_litellm_proxy": True}],
)
def test_a_file_does_not_choose_the_provider_proxy_or_tls_check(kwargs, tmp_path):
    shared = MLLMLabeler("gpt-4o-mini", completion_kwargs=kwargs, cache=None)
    dump(shared, tmp_path / "l.skops")
    loaded = load(tmp_path / "l.skops")
    with pytest.raises(
        ValueError, match=f"completion_kwargs=\\{{'{next(iter(kwargs))}': \\.\\.\\."
    ):
        loaded.fit()
    loaded.set_params(completion_kwargs=kwargs)
    loaded.fit()
