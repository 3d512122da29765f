"""No key in any saved artefact, and no LiteLLM behind ``import skvf``."""

import logging
import pickle
import subprocess
import sys

import pytest
import skops.io
from conftest import TEST_KEY
from fake_openai_server import Fail, FakeVLM, colour_image
from sklearn.base import clone

from skvf.labeling import LabelingError


def _assert_no_key(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for fragment in (TEST_KEY, TEST_KEY[-16:]):
        assert fragment.encode() not in data, f"the API key leaked into {where}"


def test_no_key_in_any_saved_artefact(server, make_labeler, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # every logger, LiteLLM's included
    config = FakeVLM(api_key=TEST_KEY, script=[Fail(429)])
    labeler = make_labeler(server(config), cache=tmp_path / "cache", verbose=1)
    labeler.fit().transform([colour_image("red"), colour_image("blue")])
    assert config.requests == 3  # the key reached the server, retried once

    _assert_no_key(repr(labeler), "repr")
    _assert_no_key(repr(labeler.get_params(deep=True)), "get_params")
    _assert_no_key(repr(clone(labeler).get_params()), "a clone")
    _assert_no_key(pickle.dumps(labeler), "a pickle")
    skops_file = tmp_path / "labeler.skops"
    skops.io.dump(labeler, skops_file)
    _assert_no_key(skops_file.read_bytes(), "a skops file")
    loaded = skops.io.load(skops_file, trusted=skops.io.get_untrusted_types(file=skops_file))
    assert loaded.usage_ == labeler.usage_
    cache_files = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert len(cache_files) == 2
    for path in cache_files:
        _assert_no_key(path.read_bytes(), f"the cache file {path}")

    wrong = make_labeler(labeler.api_base, api_key_env="WRONG_KEY_VARIABLE")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WRONG_KEY_VARIABLE", "sk-wrong-" + TEST_KEY[-16:])
        with pytest.raises(LabelingError) as caught:
            wrong.fit().transform([colour_image("green")])
    _assert_no_key(str(caught.value), "the authentication error")
    assert "sk-wrong" not in str(caught.value)

    captured = capsys.readouterr()
    _assert_no_key(captured.out + captured.err, "stdout/stderr")
    _assert_no_key(caplog.text, "the log")
    assert any(record.name == "skvf.labeling" for record in caplog.records)  # the retry


def test_import_skvf_does_not_import_litellm_which_then_stays_offline():
    code = (
        "import os, sys\n"
        "os.environ.pop('LITELLM_LOCAL_MODEL_COST_MAP', None)\n"
        "import skvf, skvf.labeling\n"
        "from skvf import MLLMLabeler\n"
        "MLLMLabeler().fit()\n"
        "assert 'litellm' not in sys.modules, 'import skvf imported litellm'\n"
        "from skvf.labeling._client import import_litellm\n"
        "import_litellm()\n"
        "assert os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] == 'True'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
