"""Saving and loading fitted NeaRClassifier models: skops with trusted types, and pickle."""

from __future__ import annotations

import importlib
import json
import logging
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from skops.io.exceptions import UntrustedTypesFoundException

import skvf
from skvf import NeaRClassifier, _backbone
from skvf._backbone import build_backbone
from skvf.exceptions import BackboneError
from skvf.serialization import dump, load, register_trusted_type, trusted_types
from skvf_bench import trusted_types as harness_types
from skvf_bench.datasets import load_digits_images
from skvf_bench.demo import TINY_BACKBONE, TINY_BACKBONE_PARAMS
from skvf_bench.demo import TINY_BACKBONE_KWARGS as TINY
from skvf_bench.encoders import ImagePixels
from skvf_bench.simulation import NoisyOracleLabeler, make_oracle

#: Where a fitted model's types may come from: no torch, nothing else.
ALLOWED_MODULE_PREFIXES = ("builtins", "numpy", "sklearn.", "skvf.", "skvf_bench.", "pathlib")


@pytest.fixture(autouse=True)
def _quiet_open_clip(caplog):
    # open_clip warns on the root logger that random-init models have no pretrained weights.
    caplog.set_level(logging.ERROR, logger="root")


@pytest.fixture(scope="module")
def digits():
    """60 images of the digits 0-3, 32x32 RGB (the tiny backbone's input size)."""
    images, names = load_digits_images(scale=4, n_class=4)
    return images[:60], names[:60]


def make_classifier(images, names, **params) -> NeaRClassifier:
    defaults = dict(
        TINY_BACKBONE_PARAMS,
        labeler=NoisyOracleLabeler(make_oracle(images, names), noise_rate=0.3),
        max_epochs=8,
        warmup_epochs=3,
        random_state=0,
    )
    return NeaRClassifier(**{**defaults, **params})


@pytest.fixture(scope="module", params=["clip-image-tower", "pixels-pca"])
def fitted(request, digits):
    """A fitted classifier per feature path: CLIP's image tower, or pixels -> PCA."""
    images, names = digits
    encoder = None
    if request.param == "pixels-pca":
        encoder = make_pipeline(ImagePixels(8), PCA(16, random_state=0))
    return make_classifier(images, names, image_encoder=encoder).fit(images)


class RegisteredEncoderForTest:
    pass


def schema_of(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("schema.json"))


def schema_modules(node) -> set[str]:
    """Every ``__module__`` named anywhere in a skops schema."""
    found = set()
    if isinstance(node, dict):
        if "__module__" in node:
            found.add(node["__module__"])
        for value in node.values():
            found |= schema_modules(value)
    elif isinstance(node, list):
        for value in node:
            found |= schema_modules(value)
    return found


PRODUCT_TYPES = {
    "skvf.classifier.NeaRClassifier",
    "skvf.candidates.NeighborCandidateBuilder",
    "skvf.noise.GMMNoiseSplitter",
    "skvf.noise.FixedNoiseSplitter",
    "skvf.filtering.LabelFilter",
    "skvf.labeling._mllm.MLLMLabeler",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
}
HARNESS_TYPES = {
    "skvf_bench.simulation.NoisyOracleLabeler",
    "skvf_bench.encoders.ImagePixels",
    "skvf_bench.encoders.RandomConvFeatures",
    "skvf_bench.encoders.HOGFeatures",
    "skvf_bench.baselines.LabelerDirect",
    "skvf_bench.baselines.ZeroShotCLIP",
    "skvf_bench.simulated_mllm.SimulatedMLLM",
}


def test_trusted_types_names_the_built_in_components():
    # A fresh process: the product's types are trusted without the harness being
    # imported, importing the harness trusts nothing more, and the harness's types are
    # trusted only when asked for by name (skvf_bench.trusted_types).
    script = (
        "import json, skvf.serialization as s; before = s.trusted_types(); "
        "import skvf_bench; "
        "print(json.dumps([before, s.trusted_types(), skvf_bench.trusted_types()]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    before, after_import, harness = json.loads(result.stdout)
    assert before == after_import == sorted(PRODUCT_TYPES)
    assert harness == sorted(PRODUCT_TYPES | HARNESS_TYPES)
    for name in harness:  # every name is a real class at that path
        module, _, class_name = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), class_name), type)


def test_registered_type_is_trusted():
    class_name = "RegisteredEncoderForTest"
    assert f"{__name__}.{class_name}" not in trusted_types()
    register_trusted_type(RegisteredEncoderForTest)
    assert f"{__name__}.{class_name}" in trusted_types()
    with pytest.raises(TypeError, match="takes a class"):
        register_trusted_type("not.a.Class")


def test_skops_round_trip_predicts_identically(fitted, digits, tmp_path):
    images, _ = digits
    path = tmp_path / "model.skops"
    skops.io.dump(fitted, path)

    # The fitted model holds the harness's simulated labeler (and pixel encoder).
    assert set(skops.io.get_untrusted_types(file=path)) <= set(harness_types())
    with pytest.raises(UntrustedTypesFoundException, match="skvf_bench.simulation"):
        skops.io.load(path, trusted=trusted_types())
    loaded = skops.io.load(path, trusted=harness_types())

    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    np.testing.assert_array_equal(loaded.predict(images), fitted.predict(images))
    np.testing.assert_array_equal(loaded.predict_proba(images), fitted.predict_proba(images))
    assert loaded.history_ == fitted.history_
    assert loaded.backbone_digest_ == fitted.backbone_digest_


def test_loaded_model_rebuilds_the_backbone_only_for_the_image_tower(fitted, digits, tmp_path):
    images, _ = digits
    path = tmp_path / "model.skops"
    dump(fitted, path)
    loaded = load(path, trusted=harness_types())
    state = dict(vars(loaded))
    skvf.clear_caches()

    loaded.predict(images[:4])
    assert vars(loaded).keys() == state.keys()  # the backbone is a cache, not fitted state
    built = list(_backbone._BUILT._values.values())
    if fitted.image_encoder is None:
        # Rebuilt from backbone + pretrained + backbone_kwargs, checked against the digest.
        assert [backbone.digest for backbone in built] == [fitted.backbone_digest_]
    else:
        # With an image_encoder, predict is numpy only: no CLIP model is built at all.
        assert built == []


def test_saved_file_holds_no_torch_object(fitted, tmp_path):
    path = tmp_path / "model.skops"
    dump(fitted, path)
    text = json.dumps(schema_of(path))
    assert "torch" not in text
    assert "_backbone" not in text
    modules = schema_modules(schema_of(path))
    assert all(module.startswith(ALLOWED_MODULE_PREFIXES) for module in modules), modules
    with zipfile.ZipFile(path) as archive:
        members = archive.namelist()
    assert all(name == "schema.json" or name.endswith(".npy") for name in members), members


def test_untrusted_load_is_refused(fitted, tmp_path):
    path = tmp_path / "model.skops"
    dump(fitted, path)
    with pytest.raises(UntrustedTypesFoundException, match="skvf.classifier.NeaRClassifier"):
        skops.io.load(path)
    with pytest.raises(UntrustedTypesFoundException, match="skvf.classifier.NeaRClassifier"):
        load(path, trusted=[])
    missing_one = [name for name in harness_types() if name != "skvf.filtering.LabelFilter"]
    with pytest.raises(UntrustedTypesFoundException, match="skvf.filtering.LabelFilter"):
        load(path, trusted=missing_one)


@pytest.mark.parametrize("trusted", [True, "skvf.classifier.NeaRClassifier", [NeaRClassifier]])
def test_load_refuses_trust_everything_and_malformed_lists(trusted, tmp_path):
    with pytest.raises(TypeError, match="trusted must"):
        load(tmp_path / "never-read.skops", trusted=trusted)


def test_user_components_must_be_trusted_explicitly(digits, tmp_path):
    images, names = digits
    clf = make_classifier(
        images, names, labeler=_RenamingLabeler(make_oracle(images, names), noise_rate=0.3)
    ).fit(images)
    path = tmp_path / "model.skops"
    dump(clf, path)
    own = f"{__name__}._RenamingLabeler"
    untrusted = set(skops.io.get_untrusted_types(file=path))
    assert own in untrusted
    assert untrusted - {own} <= set(harness_types())
    with pytest.raises(UntrustedTypesFoundException, match="_RenamingLabeler"):
        load(path, trusted=harness_types())
    loaded = load(path, trusted=harness_types() + [own])
    np.testing.assert_array_equal(loaded.predict(images), clf.predict(images))


class _RenamingLabeler(NoisyOracleLabeler):
    """A user-defined labeler: a type skvf cannot vouch for."""


def test_weights_that_differ_are_refused_at_predict(digits, tmp_path):
    import torch

    images, names = digits
    weights = tmp_path / "tiny-clip.pt"
    torch.save(build_backbone(TINY_BACKBONE, None, TINY).model.state_dict(), weights)
    clf = make_classifier(images, names, pretrained=str(weights)).fit(images)
    digest = clf.backbone_digest_
    path = tmp_path / "model.skops"
    dump(clf, path)

    # Other weights under the same name, as on a machine with a different file.
    state = torch.load(weights)
    state["visual.proj"] += 0.01
    torch.save(state, weights)
    later = os.stat(weights).st_mtime_ns + 10**9  # a later copy; the build cache keys on it
    os.utime(weights, ns=(later, later))

    mismatch = f"hash to [0-9a-f]+, but the model was fitted with weights hashing to {digest}"
    with pytest.raises(BackboneError, match=mismatch):
        load(path, trusted=harness_types()).predict(images[:2])

    os.remove(weights)
    with pytest.raises(BackboneError, match="neither a weights file nor a known tag"):
        load(path, trusted=harness_types()).predict(images[:2])


def test_api_key_from_the_environment_never_reaches_the_file(monkeypatch, tmp_path):
    try:
        from skvf.labeling import MLLMLabeler
    except ImportError as error:
        pytest.skip(f"MLLMLabeler cannot be imported: {error}")
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "labeling"))
    fake_server = importlib.import_module("fake_openai_server")

    key, variable = "sk-test-SERIALIZATION-0123456789abcdef", "SKVF_SERIALIZATION_TEST_KEY"
    monkeypatch.setenv(variable, key)
    colours = list(fake_server.COLOURS)[:4]
    images = [
        fake_server.colour_image(colour, size=32, seed=seed)
        for seed in range(2)
        for colour in colours
    ]
    # The server answers only requests carrying the key: a fit proves the key was used.
    with fake_server.serve(fake_server.FakeVLM(api_key=key)) as base_url:
        labeler = MLLMLabeler(
            "openai/fake-vlm", api_base=base_url, api_key_env=variable, cache=None
        )
        unfitted = NeaRClassifier(
            labeler=labeler, max_epochs=4, warmup_epochs=2, random_state=0, **TINY_BACKBONE_PARAMS
        )
        clf = clone(unfitted).fit(images)
    assert clf.llm_usage_["answers"] == len(images)

    for estimator in (unfitted, clf):
        path = tmp_path / "model.skops"
        dump(estimator, path)
        assert key.encode() not in path.read_bytes()
        assert key.encode() not in pickle.dumps(estimator)
    np.testing.assert_array_equal(load(path).predict(images), clf.predict(images))


def test_pickle_round_trip_drops_the_backbone(fitted, digits, tmp_path):
    images, _ = digits
    assert "_backbone" not in fitted.__getstate__()

    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    assert b"torch" not in path.read_bytes()
    loaded = joblib.load(path)
    assert "_backbone" not in vars(loaded)
    np.testing.assert_array_equal(loaded.predict_proba(images), fitted.predict_proba(images))
    np.testing.assert_array_equal(loaded.predict(images), fitted.predict(images))


def test_saving_leaves_the_fitted_model_untouched(fitted, digits):
    fitted.predict(digits[0][:1])
    state = {key: repr(value) for key, value in vars(fitted).items()}
    pickle.dumps(fitted)
    assert {key: repr(value) for key, value in vars(fitted).items()} == state


def test_skops_requirement_excludes_releases_with_load_time_advisories():
    # CVE-2025-54412 and CVE-2025-54413 (fixed in 0.12) and CVE-2025-54886 (fixed in
    # 0.13) let a crafted file run code at load time.
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement
    from packaging.version import Version

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (requirement,) = [Requirement(d) for d in dependencies if d.startswith("skops")]
    for vulnerable in ("0.10.0", "0.11.0", "0.12.0"):
        assert Version(vulnerable) not in requirement.specifier
    assert Version("0.13.0") in requirement.specifier
    assert Version(skops.__version__) in requirement.specifier


@pytest.mark.parametrize(
    "content",
    [b"just some text\n", b"\x89PNG\r\n\x1a\n" + bytes(64), b""],
    ids=["text", "png", "empty"],
)
def test_a_file_that_is_not_skops_is_named(tmp_path, content):
    path = tmp_path / "model.skops"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{str(path)!r} is not a skops file"):
        load(path)


def test_a_truncated_skops_file_is_named(fitted, tmp_path):
    path = tmp_path / "model.skops"
    dump(fitted, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{str(path)!r} is not a"):
        load(path)


def scaler(n_features: int):
    """A fitted StandardScaler whose skops file grows with ``n_features``."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(n_features)
    return StandardScaler().fit(rng.normal(size=(4, n_features)))


def test_a_save_that_fills_the_disk_leaves_the_previous_model(tmp_path):
    # A file-size limit stands for a full disk: the write fails part way with EFBIG. The
    # save used to write in place, leaving the previous model truncated and unreadable.
    pytest.importorskip("resource")  # POSIX only
    path = tmp_path / "m.skops"
    dump(scaler(3), path)
    before = path.read_bytes()
    script = (
        "import resource, signal, sys\n"
        "import numpy as np\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "from skvf.serialization import dump\n"
        "model = StandardScaler().fit(np.random.default_rng(0).normal(size=(4, 5000)))\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "limit = (int(sys.argv[2]), resource.RLIM_INFINITY)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, limit)\n"
        "try:\n"
        "    dump(model, sys.argv[1])\n"
        "except OSError as error:\n"
        "    print(error.errno)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), str(len(before) + 100)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "27", result.stderr  # EFBIG: the save did fail
    assert path.read_bytes() == before
    np.testing.assert_array_equal(load(path).mean_, scaler(3).mean_)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.skops"]


def test_a_save_that_fails_after_writing_leaves_the_previous_model(tmp_path, monkeypatch):
    path = tmp_path / "m.skops"
    dump(scaler(3), path)
    before = path.read_bytes()

    def failing_fsync(descriptor):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        dump(scaler(50), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.skops"]


def test_a_save_replaces_the_model_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "m.skops"
    dump(scaler(3), path)
    path.chmod(0o640)
    link = tmp_path / "latest.skops"
    link.symlink_to(path.name)
    dump(scaler(7), link)
    assert link.is_symlink() and load(path).n_features_in_ == 7
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.skops", "m.skops"]
    dump(scaler(2), tmp_path / "new.skops")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new.skops").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_save_to_a_device_writes_through(tmp_path):
    dump(scaler(3), os.devnull)
    assert Path(os.devnull).is_char_device()
