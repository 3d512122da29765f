"""An offline machine asked for weights to download is told so at once, with the fix."""

from __future__ import annotations

import socket
import sys
import time

import open_clip
import pytest

from skvf import _backbone as backbone_module
from skvf._backbone import _weights_to_download, build_backbone
from skvf._process_cache import ProcessCache
from skvf.exceptions import BackboneError

FAKE_TAG = "skvf-never-published"
FAKE_HUB = "skvf-tests/never-published/"  # a hub repository no cache holds


@pytest.fixture
def fake_hub_tag(monkeypatch):
    """A pretrained tag of ViT-B-32 whose weights would come from :data:`FAKE_HUB`."""
    monkeypatch.setattr(backbone_module, "_BUILT", ProcessCache(max_entries=2))
    real = open_clip.get_pretrained_cfg

    def pretrained_cfg(name, tag):
        return {"hf_hub": FAKE_HUB, "url": ""} if tag == FAKE_TAG else real(name, tag)

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", pretrained_cfg)

    def never(*args, **kwargs):
        raise AssertionError("open_clip was asked to build the model (and download)")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", never)
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hf_hub_offline_refuses_a_download_at_once(fake_hub_tag, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(BackboneError) as caught:
        build_backbone("ViT-B-32", FAKE_TAG)
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert f"backbone='ViT-B-32' with pretrained={FAKE_TAG!r} needs its weights" in message
    assert "skvf-tests/never-published on the Hugging Face hub" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "pretrained='/path/to/open_clip_pytorch_model.bin'" in message


def test_an_unreachable_hub_refuses_a_download_at_once(fake_hub_tag, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    started = time.perf_counter()
    with pytest.raises(BackboneError, match=f"{endpoint} cannot be reached.*refused") as caught:
        build_backbone("ViT-B-32", FAKE_TAG)
    assert time.perf_counter() - started < 6.0
    assert "pretrained='/path/to/" in str(caught.value)


def test_weights_already_on_this_machine_need_no_network(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _weights_to_download({"file": str(tmp_path / "w.bin")}) is None
    monkeypatch.setattr(
        huggingface_hub,
        "try_to_load_from_cache",
        lambda repo, name: str(tmp_path / name) if name.endswith(".safetensors") else None,
    )
    assert _weights_to_download({"hf_hub": FAKE_HUB, "url": ""}) is None


def test_weights_from_a_url_are_looked_for_in_open_clips_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    url = "https://example.invalid/clip/models/ViT-X.pt"
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # no hub client
    assert _weights_to_download({"hf_hub": FAKE_HUB, "url": url}) == (url, url, False)
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    (tmp_path / ".cache" / "clip" / "ViT-X.pt").write_bytes(b"weights")
    assert _weights_to_download({"hf_hub": FAKE_HUB, "url": url}) is None
