"""The ``skvf`` command: label, fit, predict, evaluate and demo (see docs/cli.md).

Results go to stdout (or ``-o``) and nothing else does: progress bars (``-v``), summaries,
warnings and errors go to stderr. Exit status: 0 success, 1 the work failed (a labeler
error, an unreadable image, a model that cannot be loaded), 2 usage error (a bad option, a
missing input), 130 interrupted. Errors are one line, with a traceback only with
``--debug``. Only the standard library is imported here; numpy, torch, open_clip and
LiteLLM are imported by the subcommand that needs them, so ``skvf --help`` is instant.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import functools
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_SIMULATED = "simulated"


class UsageError(Exception):
    """A command line that parses but cannot be run as given (exit status 2)."""


# -- defaults of the estimators ---------------------------------------------------------
# An option mirroring a parameter of an estimator (or of the demo harness) takes its
# default. Importing the estimators costs seconds (numpy, scikit-learn) and --help must be
# instant, so their signatures are read from the source with ``ast`` (tests/test_cli.py
# checks them against ``inspect.signature``). A default that is not a literal shows as
# "from <owner>" in --help, and the option then passes nothing: the owner's default applies.
# fmt: off
_SOURCES = {"NeaRClassifier": "classifier.py", "NeighborCandidateBuilder": "candidates.py",
            "MLLMLabeler": "labeling/_mllm.py", "NoisyOracleLabeler": "bench/simulation.py",
            "semantic_accuracy": "metrics.py", "run_digits_demo": "bench/demo.py"}
# fmt: on


@functools.cache
def _signature_defaults(owner: str) -> dict:
    """``{parameter: default}`` of the class or function ``owner``: its literal defaults."""
    tree = ast.parse((Path(__file__).parent / _SOURCES[owner]).read_text("utf-8"))
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


def _given(args: argparse.Namespace, *names: str) -> dict:
    """``{name: args.name}`` for the options ``names`` that are set (not None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


# -- options ----------------------------------------------------------------------------


def _number(kind: type, low: float, high: float | None = None):
    """An argparse type: a ``kind`` (int or float) from ``low`` to ``high``, inclusive."""

    def parse(text: str):
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
        f"'{_SIMULATED}': a simulation naming each image after its class folder, with "
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
                            help=f"share of wrong names given by --labeler {_SIMULATED} "
                            "(default {default})"),
    # the model: fitting it, or loading it
    "model": dict(flags=["model"], metavar="MODEL.skops", help="a model saved by 'skvf fit'"),
    "trust": dict(action="append", default=[], metavar="TYPE", help="also trust this type when "
                  "loading (repeatable); review skops.io.get_untrusted_types(file=...) first"),
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
    "max_epochs": dict(type=_number(int, 1), metavar="N",
                       help="training steps (default {default})"),
    "warmup_epochs": dict(owner="NeaRClassifier", type=_number(int, 0), metavar="N",
                          help="steps before refinement (default {default})"),
    "memory": dict(metavar="DIR", help="cache of image features and answers"),
    "device": dict(metavar="DEVICE", help="'auto', 'cpu', 'cuda', ... (default: {default})"),
    "batch_size": dict(type=_number(int, 1), metavar="N",
                       help="images per pass of the image tower (default: {default})"),
    "seed": dict(type=int, metavar="N", help="random seed (default {default})"),
    # predict and evaluate
    "top_k": dict(type=_number(int, 1), default=1, metavar="K",
                  help="the K best names (default 1)"),
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


def _add(parser, *names: str, **overrides) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skvf`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skvf",
        description="Vocabulary-free fine-grained image recognition (NeaR): a vision LLM "
        "names a few unlabeled images, neighbours clean up the names, and a prompt-tuned "
        "CLIP names new images on its own.",
        epilog="Run 'skvf COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"skvf {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub = {}
    for handler in (_run_label, _run_fit, _run_predict, _run_evaluate, _run_demo):
        # The handler's docstring is the command's help: a summary, then a description.
        summary, _, description = handler.__doc__.partition("\n\n")
        name = handler.__name__.removeprefix("_run_")
        sub[name] = commands.add_parser(
            name, help=summary[0].lower() + summary[1:-1], description=" ".join(description.split())
        )
        sub[name].set_defaults(handler=handler)
    label, fit, predict, evaluate, demo = sub.values()

    _add(label, "inputs", "output")
    _add(label, "format", choices=["csv", "jsonl"], shown="csv")
    _add(label, "on_error", choices=["raise", "warn", "skip"],
         help="unusable answers or images: stop (default), or leave the name empty")  # fmt: skip
    _add(fit, "inputs")
    _add(fit, "output", required=True, metavar="MODEL.skops", help="where to save the model")
    for command in (label, fit):
        group = command.add_argument_group("labeler (the vision LLM that names the images)")
        _add(group, "labeler", "api_base", "api_key_env", "domain", "prompt", "max_concurrency")
        _add(group, "max_cost", "labeler_cache", "simulated_noise")
    model = fit.add_argument_group("model")
    _add(model, "backbone", "pretrained", "backbone_kwargs", "tiny", "image_encoder")
    _add(model, "n_neighbors")
    _add(model, "max_epochs", "warmup_epochs", "memory", "device", owner="NeaRClassifier")
    _add(model, "batch_size", owner="NeaRClassifier")
    _add(model, "seed", default=0)
    _add(model, "on_error", help="unreadable images or unusable answers: stop (default), or "
         "drop those images")  # fmt: skip

    for command, formats in ((predict, ["csv", "jsonl"]), (evaluate, ["text", "json"])):
        _add(command, "model", "trust")
        _add(command, "device", "batch_size", shown="as fitted")
        _add(command, "on_error", help="unreadable images: stop (default), or report them "
             "with an empty name")  # fmt: skip
        _add(command, "inputs" if command is predict else "root", "output")
        _add(command, "format", choices=formats, shown=formats[0])
    _add(predict, "top_k")
    _add(evaluate, "no_semantic", "semantic_model")

    _add(demo, "shots", "noise_rate")
    _add(demo, "max_epochs", owner="run_digits_demo")
    _add(demo, "seed", owner="run_digits_demo.random_state", dest="random_state")
    _add(demo, "export")
    for command in sub.values():
        group = command.add_argument_group("output and diagnostics")
        _add(group, "verbose", "quiet", "debug")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skvf`` command.

    Parameters
    ----------
    argv : sequence of str or None, default=None
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        The exit status: 0 success, 1 failure, 2 usage error, 130 interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's usage errors
        return int(exit_.code or 0)
    # open_clip logs on the root logger (e.g. "No pretrained weights loaded"): shown with -v.
    logging.getLogger().setLevel(logging.WARNING if args.verbose else logging.ERROR)
    logger = logging.getLogger("skvf")
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("skvf: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(
                f"skvf: warning: {message}", file=sys.stderr
            )
            args.handler(args)
    except UsageError as error:
        if args.debug:
            raise
        print(f"skvf {args.command}: error: {_as_flags(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (``skvf predict ... | head``): stop quietly, as cat would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("skvf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            raise
        message = _as_flags(str(error) or type(error).__name__)  # not the exception class
        if type(error).__name__ == "UntrustedTypesFoundException":
            message += ". Review them with skops.io.get_untrusted_types(file=...) and pass each "
            message += "one you trust with --trust TYPE."
        print(f"skvf {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _as_flags(message: str) -> str:
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


def _note(args: argparse.Namespace, message: str) -> None:
    """A summary line on stderr, unless --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)


def _report_skipped(reasons: Sequence[str]) -> None:
    """One line on stderr per image left out, with its path and why."""
    for reason in reasons:
        print(f"skvf: skipped {reason}", file=sys.stderr)


def _listed(model: str, list_images):
    """What ``list_images()`` returns; every mistake, the model's first, in one usage error."""
    problems = [] if Path(model).expanduser().is_file() else [f"{model!r} is not a file."]
    try:
        listed = list_images()
    except (UsageError, FileNotFoundError, NotADirectoryError) as error:
        problems.append(str(error))
    if problems:
        raise UsageError(" ".join(problems))
    return listed


def _image_paths(inputs: Sequence[str]) -> list[str]:
    """Image files named on the command line, and those under named folders, sorted."""
    from .bench.datasets import load_flat_folder

    paths: list[str] = []
    for entry in inputs:
        path = Path(entry).expanduser()
        if not (path.is_dir() or path.is_file()):
            raise UsageError(f"{entry!r} does not exist.")
        try:
            paths.extend(load_flat_folder(path, recursive=True) if path.is_dir() else [str(path)])
        except FileNotFoundError as error:  # a folder without images
            raise UsageError(str(error)) from None
    return paths


@contextlib.contextmanager
def _output(args: argparse.Namespace, formats: Sequence[str]):
    """``(stream, format)``: stdout or the file of ``-o``; --format, else the suffix of ``-o``
    if it names one of ``formats``, else the first of them."""
    suffix = Path(args.output or "").suffix.lower().lstrip(".")
    fmt = args.format or (suffix if suffix in formats else formats[0])
    if args.output is None or args.output == "-":
        yield sys.stdout, fmt
        return
    with open(args.output, "w", newline="", encoding="utf-8") as stream:
        yield stream, fmt


def _write_records(args: argparse.Namespace, records: list[dict]) -> None:
    """JSON lines, or CSV: ``None`` as empty, a ``top_k`` list as ``name_2``, ... columns."""
    with _output(args, ["csv", "jsonl"]) as (stream, fmt):
        if fmt == "jsonl":
            stream.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            return
        rows = [
            {**{k: v for k, v in r.items() if k != "top_k"},
             **{f"{k}_{rank}": v for rank, entry in enumerate(r.get("top_k", [])[1:], start=2)
                for k, v in entry.items()}}
            for r in records
        ]  # fmt: skip
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(list(rows[0]) if rows else [])
        writer.writerows([["" if v is None else v for v in row.values()] for row in rows])


# -- the commands -----------------------------------------------------------------------


def _labeler(args: argparse.Namespace, paths: Sequence[str], on_error: str):
    """The labeler of the labeler options: an MLLMLabeler, or the simulated one."""
    if args.labeler != _SIMULATED:
        from .labeling import MLLMLabeler

        params = _given(args, "prompt", "domain", "api_base", "api_key_env", "max_concurrency")
        if args.labeler_cache is not None:
            params["cache"] = None if args.labeler_cache.lower() == "none" else args.labeler_cache
        if args.labeler is not None:  # None only if MLLMLabeler's default could not be read
            params["model"] = args.labeler
        return MLLMLabeler(
            max_cost=args.max_cost, on_error=on_error, verbose=args.verbose, **params
        )
    from .bench.simulation import folder_labeler

    try:
        seed = getattr(args, "seed", 0)
        noise = _given(args, "noise_rate")
        return folder_labeler(paths, random_state=seed, on_error=on_error, **noise)
    except ValueError as error:  # fewer than two class folders
        raise UsageError(f"--labeler {_SIMULATED}: {error}") from None


def _usage_line(usage: dict | None) -> str:
    if not usage:
        return ""
    return (
        f"; labeler: {usage.get('answers', 0)} answer(s) paid for, "
        f"{usage.get('cache_hits', 0)} from the cache, ${usage.get('cost_usd', 0.0):.4f}"
    )


def _run_label(args: argparse.Namespace) -> None:
    """Name each image with the labeler.

    Name each image with the labeler (one name per image). Answers are cached: running
    again pays nothing for images already named.
    """
    from .labeling import label_items

    paths = _image_paths(args.inputs)
    labeler = _labeler(args, paths, on_error=args.on_error).fit(paths)
    names, valid = label_items(labeler, paths)
    if args.on_error == "skip":  # ("warn" has warned already)
        _report_skipped(getattr(labeler, "skipped_", []))
    rows = zip(paths, names, valid, strict=True)
    _write_records(args, [{"path": p, "name": n if ok else None} for p, n, ok in rows])
    usage = _usage_line(getattr(labeler, "usage_", None))
    _note(args, f"named {int(valid.sum())} of {len(paths)} image(s){usage}")


def _run_fit(args: argparse.Namespace) -> None:
    """Fit a NeaRClassifier on unlabeled images and save it.

    Fit a NeaRClassifier on the images (sub-folders included; folder names are ignored
    except by --labeler simulated) and save it with skops.
    """
    from .bench.demo import TINY_BACKBONE_PARAMS, offline_image_encoder
    from .classifier import NeaRClassifier
    from .serialization import dump

    output = Path(args.output).expanduser()
    if not output.parent.is_dir():
        raise UsageError(f"the folder of -o {args.output!r} does not exist.")
    backbone = _given(args, "backbone", "pretrained", "backbone_kwargs")
    if args.tiny and backbone:
        options = ", ".join("--" + name.replace("_", "-") for name in backbone)
        raise UsageError(f"--tiny chooses the backbone; drop {options}.")
    if backbone.get("pretrained", "").lower() == "none":
        backbone["pretrained"] = None
    paths = _image_paths(args.inputs)
    clf = NeaRClassifier(
        labeler=_labeler(args, paths, on_error="warn" if args.on_error == "skip" else "raise"),
        image_encoder=None
        if args.image_encoder == "clip"
        else offline_image_encoder(args.image_encoder, paths, random_state=args.seed),
        memory=args.memory,
        on_error=args.on_error,
        random_state=args.seed,
        verbose=args.verbose,
        **_given(args, "max_epochs", "warmup_epochs", "device", "batch_size"),
        **(TINY_BACKBONE_PARAMS if args.tiny else backbone),
    )
    if len(paths) < 2:
        raise UsageError(
            f"found {len(paths)} image in {' '.join(args.inputs)}; fit needs two or more."
        )
    if args.n_neighbors is not None:
        clf.set_params(candidate_builder__n_neighbors=args.n_neighbors)
    clf.fit(paths)
    dump(clf, output)
    _note(
        args,
        f"saved {output}: {len(clf.classes_)} classes from {len(clf.train_indices_)} "
        f"training image(s) ({len(clf.vocabulary_)} distinct labeler names)"
        + _usage_line(clf.llm_usage_),
    )


def _load_and_predict(args: argparse.Namespace, paths: Sequence[str]):
    """The model of ``args.model`` and its probabilities of ``paths`` (NaN: unreadable)."""
    import numpy as np

    from . import bench  # noqa: F401  (registers the harness's types: models fitted with --labeler simulated)
    from .serialization import load, trusted_types

    model = load(Path(args.model).expanduser(), trusted=trusted_types() + list(args.trust))
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise ValueError(f"{args.model!r} holds a {type(model).__name__}, not a fitted classifier.")
    updates = _given(args, "on_error", "device", "batch_size", "verbose")
    model.set_params(**{k: v for k, v in updates.items() if k in model.get_params(deep=False)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probabilities = np.asarray(model.predict_proba(paths), dtype=np.float64)
    for warning in caught:  # say why each unreadable image has no name
        if getattr(warning.message, "reasons", None):
            _report_skipped(warning.message.reasons)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, 0)
    return model, probabilities, np.isfinite(probabilities).all(axis=1)


def _run_predict(args: argparse.Namespace) -> None:
    """Name images with a saved model.

    Name images with a saved model: CLIP alone, no LLM call. One row per image: path,
    name, probability, then the runners-up with --top-k.
    """
    import numpy as np

    paths = _listed(args.model, lambda: _image_paths(args.inputs))
    model, probabilities, readable = _load_and_predict(args, paths)
    k = min(args.top_k, len(model.classes_))
    filled = np.where(readable[:, None], probabilities, -np.inf)
    top = np.argsort(-filled, axis=1, kind="stable")[:, :k]  # the k best classes, best first
    records = []
    for path, row, order, ok in zip(paths, probabilities, top, readable, strict=True):
        ranked = [
            {"name": str(model.classes_[j]) if ok else None,
             "probability": round(float(row[j]), 6) if ok else None}
            for j in order
        ]  # fmt: skip
        records.append({"path": path, **ranked[0], **({"top_k": ranked} if k > 1 else {})})
    _write_records(args, records)
    unreadable = len(paths) - int(readable.sum())
    _note(
        args,
        f"named {len(paths) - unreadable} of {len(paths)} image(s) with "
        f"{len(model.classes_)} classes" + (f"; {unreadable} unreadable" if unreadable else ""),
    )


def _run_evaluate(args: argparse.Namespace) -> None:
    """Score a saved model on a folder of class folders.

    Score a saved model on ROOT/<class>/<image>: cluster accuracy (cACC: do the predicted
    names group the images like the folders do?) and semantic accuracy (sACC: how close is
    each predicted name to its folder name?).
    """
    import numpy as np

    from .bench.datasets import load_image_folder
    from .metrics import DEFAULT_SENTENCE_MODEL, name_scores

    paths, true_names = _listed(args.model, lambda: load_image_folder(args.root))
    model, probabilities, readable = _load_and_predict(args, paths)
    best = np.asarray(model.classes_, dtype=object)[np.nan_to_num(probabilities).argmax(axis=1)]
    if not args.no_semantic and not args.verbose:  # no "Loading weights" bar from transformers
        with contextlib.suppress(ImportError):  # semantic_accuracy says what to install
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
    semantic = None if args.no_semantic else args.semantic_model or DEFAULT_SENTENCE_MODEL
    scores = name_scores(true_names, np.where(readable, best, None), semantic_model=semantic)
    labels = {"cluster_accuracy": "cACC", "semantic_accuracy": "sACC"}
    with _output(args, ["text", "json"]) as (stream, fmt):
        if fmt == "json":
            stream.write(json.dumps(scores) + "\n")
            return
        for key, value in scores.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            stream.write(f"{labels.get(key, key)}\t{shown}\n")


def _run_demo(args: argparse.Namespace) -> None:
    """The offline benchmark at a small size.

    Offline: NeaR against plain CoOp on real digit images named by a simulated labeler
    with noise-rate wrong names (pixels -> PCA features, a tiny random-init CLIP text
    tower). Prints cluster accuracies.
    """
    from .bench.demo import run_digits_demo

    results = run_digits_demo(
        export=args.export,
        verbose=args.verbose,
        progress=lambda message: _note(args, message),
        **_given(args, "shots", "noise_rate", "max_epochs", "random_state"),
    )
    print("method\tcluster accuracy")
    for name, value in results.items():
        print(f"{name} ({'training' if name == 'labeler names' else 'test'} images)\t{value:.3f}")


if __name__ == "__main__":
    sys.exit(main())
