"""A first run reports what is missing before any slow or costly step."""

import socket
import time

import pytest
from fake_openai_server import FakeVLM, colour_image

from skvf import NeaRClassifier
from skvf.labeling import LabelingError
from skvf_bench.demo import TINY_BACKBONE_PARAMS


def test_a_missing_key_is_reported_before_any_backbone_is_built(server, make_labeler, monkeypatch):
    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone was built before the key was checked")

    monkeypatch.setattr("skvf._backbone.build_backbone", no_backbone)
    config = FakeVLM()
    labeler = make_labeler(server(config), api_key_env=None, cache=None)  # OPENAI_API_KEY unset
    classifier = NeaRClassifier(labeler=labeler, **TINY_BACKBONE_PARAMS)
    started = time.perf_counter()
    with pytest.raises(LabelingError, match="environment variable OPENAI_API_KEY.*api_key_env"):
        classifier.fit([colour_image("red"), colour_image("blue")])
    assert time.perf_counter() - started < 5.0
    assert config.requests == 0


def test_a_refused_connection_names_the_server_and_asks_if_it_runs(make_labeler):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    labeler = make_labeler(f"http://127.0.0.1:{port}/v1", max_retries=1).fit()
    with pytest.raises(LabelingError) as caught:
        labeler.label([colour_image("red")])
    message = str(caught.value)
    assert (
        f"could not connect to http://127.0.0.1:{port}/v1 (connection refused): is the server "
        "running, and is its address right?"
    ) in message
    assert "2 request(s) for this image, retries exhausted" in message
