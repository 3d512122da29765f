"""Fixtures of the labeling tests: the fake server, a test key, images and a labeler."""

from __future__ import annotations

import pytest
from fake_openai_server import COLOURS, FakeVLM, colour_image, serve

from skvf.labeling import MLLMLabeler

#: The key the tests put in the environment; no saved artefact may contain it.
TEST_KEY = "sk-test-SECRET-0123456789abcdef"
KEY_ENV = "SKVF_TEST_API_KEY"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """A test key in the environment, and a default cache directory inside tmp_path."""
    monkeypatch.setenv(KEY_ENV, TEST_KEY)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _warm_litellm():
    """Import LiteLLM and send one request before any test, so timings measure requests."""
    with pytest.MonkeyPatch.context() as patch, serve(FakeVLM()) as base_url:
        patch.setenv(KEY_ENV, TEST_KEY)
        labeler = MLLMLabeler("openai/fake-vlm", api_base=base_url, api_key_env=KEY_ENV, cache=None)
        labeler.fit().label([colour_image("red")])


@pytest.fixture
def server():
    """Start a fake server: ``base_url = server(FakeVLM(...))``; stopped after the test."""
    running = []

    def start(config: FakeVLM | None = None) -> str:
        context = serve(config)
        running.append(context)
        return context.__enter__()

    yield start
    for context in reversed(running):
        context.__exit__(None, None, None)


@pytest.fixture
def colour_images():
    """Eight images, one per colour, and the name the fake server gives each."""
    images = [colour_image(colour, seed=index) for index, colour in enumerate(COLOURS)]
    return images, [f"{colour} test bird" for colour in COLOURS]


@pytest.fixture
def make_labeler(tmp_path):
    """An MLLMLabeler for the fake server: fast retries, a cache in tmp_path."""

    def make(base_url: str, **params) -> MLLMLabeler:
        defaults = dict(
            api_base=base_url,
            api_key_env=KEY_ENV,
            cache=tmp_path / "cache",
            timeout=5.0,
            max_retries=2,
            backoff_base=0.001,
        )
        defaults.update(params)
        return MLLMLabeler("openai/fake-vlm", **defaults)

    return make
