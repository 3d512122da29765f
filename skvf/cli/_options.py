"""Every option of the ``skvf`` command, defined once, with the defaults of the estimators.

An option that mirrors a parameter of an estimator (or of the demo harness) takes that
parameter's default, read from the estimator's source so that ``skvf --help`` stays
instant; :func:`add_options` attaches options to a command, and :func:`as_flags` turns
the parameter names in a library's message back into the flags the user typed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import json
import re
from pathlib import Path

__all__ = ["SIMULATED", "add_options", "as_flags", "given"]

#: ``--labeler simulated``: the offline stand-in for a vision LLM.
SIMULATED = "simulated"


# -- defaults of the estimators ---------------------------------------------------------
# An option mirroring a parameter of an estimator (or of the demo harness) takes its
# default. Importing the estimators costs seconds (numpy, scikit-learn) and --help must be
# instant, so their signatures are read from the source with ``ast`` (tests/test_cli.py
# checks them against ``inspect.signature``). A default that is not a literal shows as
# "from <owner>" in --help, and the option then passes nothing: the owner's default applies.
# The harness's sources are read the same way, beside the product, without importing it.
# fmt: off
_SOURCES = {"NeaRClassifier": "skvf/classifier.py",
            "NeighborCandidateBuilder": "skvf/candidates.py",
            "MLLMLabeler": "skvf/labeling/_mllm.py", "semantic_accuracy": "skvf/metrics.py",
            "NoisyOracleLabeler": "skvf_bench/simulation.py",
            "run_digits_demo": "skvf_bench/demo.py"}
# fmt: on


@functools.cache
def _signature_defaults(owner: str) -> dict:
    """``{parameter: default}`` of the class or function ``owner``: its literal defaults."""
    tree = ast.parse((Path(__file__).parents[2] / _SOURCES[owner]).read_text("utf-8"))
    [node] = [n for n in tree.body if getattr(n, "name", None) == owner]
    args = next((n for n in node.body if getattr(n, "name", None) == "__init__"), node).args
    names = {getattr(n.targets[0], "id", ""): n.value for n in tree.body if hasattr(n, "targets")}
    defaults = {}  # positional defaults belong to the last positional parameters
    for arg, value in [
        *zip(args.args[::-1], args.defaults[::-1], strict=False),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]:
        with contextlib.suppress(ValueError):  # not a literal, nor a constant of the module
            defaults[arg.arg] = ast.literal_eval(names.get(getattr(value, "id", ""), value))
    return defaults


def given(args: argparse.Namespace, *names: str) -> dict:
    """``{name: args.name}`` for the options ``names`` that are set (not None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


# -- options ----------------------------------------------------------------------------


def _number(kind: type, low: float, high: float | None = None, auto: bool = False):
    """An argparse type: a ``kind`` (int or float) from ``low`` to ``high``, inclusive.

    With ``auto``, the word "auto" too (the classifier then chooses).
    """

    def parse(text: str):
        if auto and text == "auto":
            return text
        value = kind(text)
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    parse.__name__ = kind.__name__  # for argparse's "invalid int value: 'x'"
    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text}")
    return value


# Every option, defined once: its argparse settings, plus ``flags`` (default: --name),
# ``owner`` ("Class" or "Class.parameter"; the parameter defaults to the option's name),
# whose default it takes, and ``shown``, the default --help shows for "{default}". A
# command may override any of them (see _add). Aligned by hand for reading.
# fmt: off
_OPTIONS: dict[str, dict] = {
    "inputs": dict(flags=["inputs"], nargs="+", metavar="DIR", help="image folders or files"),
    "output": dict(flags=["-o", "--output"], metavar="FILE",
                   help="write results to FILE instead of stdout"),
    "format": dict(help="output format (default: from the -o suffix, else {default})"),
    "on_error": dict(choices=["raise", "skip"], default="raise"),
    "verbose": dict(flags=["-v", "--verbose"], action="count", default=0,
                    help="progress bars and log messages"),
    "quiet": dict(flags=["-q", "--quiet"], action="store_true",
                  help="no summary on stderr (errors only)"),
    "debug": dict(action="store_true", help="show tracebacks of errors"),
    # the labeler
    "labeler": dict(owner="MLLMLabeler.model", metavar="MODEL", help=(
        "LiteLLM model string (default: {default}; 'openai/<name>' with --api-base for vLLM, "
        "llama.cpp or LM Studio; 'ollama_chat/<name>' for Ollama), or "
        f"'{SIMULATED}': a simulation naming each image after its class folder, with "
        "--simulated-noise wrong names (offline trials only)")),
    "api_base": dict(metavar="URL", help="server base URL, e.g. http://host:8000/v1"),
    "api_key_env": dict(metavar="VAR", help="environment variable holding the API key "
                        "(default: the provider's own, e.g. OPENAI_API_KEY)"),
    "domain": dict(help="what the images show, e.g. 'bird' or 'car model'"),
    "prompt": dict(owner="MLLMLabeler", help="'direct', 'attributes', or a template with a "
                   "{domain} placeholder (default: {default})"),
    "max_concurrency": dict(owner="MLLMLabeler", type=_number(int, 1), metavar="N",
                            help="requests in flight (default {default})"),
    "max_cost": dict(type=_number(float, 0), metavar="USD",
                     help="stop before spending more than USD"),
    "labeler_cache": dict(metavar="DIR", help="answer cache directory (default: the user cache "
                          "directory; 'none' disables it)"),
    "simulated_noise": dict(owner="NoisyOracleLabeler.noise_rate", dest="noise_rate",
                            type=_number(float, 0, 1), metavar="RATE",
                            help=f"share of wrong names given by --labeler {SIMULATED} "
                            "(default {default})"),
    # the model: fitting it, or loading it
    "model": dict(flags=["model"], metavar="MODEL.skops", help="a model saved by 'skvf fit'"),
    "trust": dict(action="append", default=[], metavar="TYPE", help="also trust this type when "
                  "loading (repeatable); review skops.io.get_untrusted_types(file=...) first"),
    "trust_harness": dict(action="store_true", help="also trust the evaluation harness's "
                          "estimators: models fitted with --labeler simulated or "
                          "--image-encoder pixels|hog"),
    "backbone": dict(owner="NeaRClassifier", default=None, metavar="NAME",
                     help="open_clip model name (default: {default})"),
    "pretrained": dict(owner="NeaRClassifier", default=None, metavar="WEIGHTS",
                       help="weights: a hub tag, a local file, or 'none' for random weights "
                       "(default: {default})"),
    "backbone_kwargs": dict(type=_json_object, metavar="JSON", help="open_clip config "
                            'overrides, e.g. \'{"text_cfg": {"layers": 2}}\''),
    "tiny": dict(action="store_true", help="a tiny random-init CLIP (no download; for trials "
                 "and tests, not for accuracy)"),
    "image_encoder": dict(choices=["clip", "pixels", "hog"], default="clip", help="image "
                          "features: CLIP's image tower (default), or pixels -> PCA or HOG -> "
                          "PCA (offline trials)"),
    "n_neighbors": dict(owner="NeighborCandidateBuilder", type=_number(int, 1), metavar="K",
                        help="neighbours whose names form an image's candidate set "
                        "(default {default})"),
    "max_epochs": dict(type=_number(int, 1, auto=True), metavar="N",
                       help="training steps, or auto: 60 with the CLIP image tower, 200 "
                       "with other image features (default {default})"),
    "warmup_epochs": dict(owner="NeaRClassifier", type=_number(int, 0, auto=True), metavar="N",
                          help="steps before refinement, or auto: a quarter of the steps, "
                          "at most 50 (default {default})"),
    "memory": dict(metavar="DIR", help="cache of image features and answers"),
    "device": dict(metavar="DEVICE", help="'auto', 'cpu', 'cuda', ... (default: {default})"),
    "batch_size": dict(type=_number(int, 1), metavar="N",
                       help="images per pass of the image tower (default: {default})"),
    "seed": dict(type=int, metavar="N", help="random seed (default {default})"),
    # predict and evaluate
    "top_k": dict(type=_number(int, 1), default=1, metavar="K",
                  help="the K best names (default 1)"),
    "unknown": dict(metavar="NAME",
                    help="answer NAME for images unlike every training class (below the "
                         "model's unknown_threshold_)"),
    "root": dict(flags=["root"], metavar="ROOT", help="a folder with one sub-folder per class"),
    "no_semantic": dict(action="store_true", help="skip sACC (it needs sentence-transformers)"),
    "semantic_model": dict(owner="semantic_accuracy.model", metavar="NAME",
                           help="sentence model for sACC (default: {default}, offline)"),
    # demo
    "shots": dict(owner="run_digits_demo", type=_number(int, 1), metavar="N",
                  help="images per digit (default {default})"),
    "noise_rate": dict(owner="run_digits_demo", type=_number(float, 0, 1), metavar="RATE",
                       help="share of wrong names (default {default})"),
    "export": dict(metavar="DIR", help="also write the digit images to DIR/train and DIR/test as "
                   "class folders, to try 'skvf fit' and 'skvf evaluate' on"),
}
# fmt: on


def add_options(parser, *names: str, **overrides) -> None:
    """Add the options ``names`` of :data:`_OPTIONS` to ``parser``, with ``overrides``."""
    for name in names:
        settings = {**_OPTIONS[name], **overrides}
        flags = settings.pop("flags", ["--" + name.replace("_", "-")])
        if "owner" in settings:
            owner, _, parameter = settings.pop("owner").partition(".")
            known = _signature_defaults(owner)
            settings.setdefault("default", known.get(parameter or name))
            settings.setdefault("shown", known.get(parameter or name, f"from {owner}"))
        shown = settings.pop("shown", settings.get("default"))
        if "help" in settings:
            settings["help"] = settings["help"].replace("{default}", str(shown))
        parser.add_argument(*flags, **settings)


def as_flags(message: str) -> str:
    """Parameter names in a library's message as the flags the user typed.

    ``on_error='skip'`` becomes ``--on-error skip``, ``candidate_builder__n_neighbors``
    ``--n-neighbors``; names without a flag stay as they are.
    """
    for name, option in _OPTIONS.items():
        flag = option.get("flags", ["--" + name.replace("_", "-")])[-1]
        if flag.startswith("--"):
            message = re.sub(rf"\b(?:\w+__)?{name}=(['\"]?)([\w.-]*)\1", rf"{flag} \2", message)
            message = re.sub(rf"\b\w+__{name}\b", flag, message)
    return message
