"""The five commands of ``skvf``: each handler's docstring is its ``--help`` text.

A handler takes the parsed arguments, does the work through skvf's public API, writes
results to stdout or ``-o`` and a summary to stderr, and raises :class:`UsageError` for a
command line that cannot be run as given, found by :func:`_check` before any work.

The evaluation harness (``skvf_bench``) is imported only by the functions of the paths
that ask for it, each of them nothing but that path: :func:`_simulated_labeler`
(``--labeler simulated``), :func:`_offline_image_encoder` (``--image-encoder
pixels|hog``), :func:`_tiny_backbone` (``--tiny``), :func:`_harness_trusted_types`
(``--trust-harness``) and :func:`run_demo` (tests/test_layout.py holds that list).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ._options import SIMULATED, given

__all__ = ["UsageError", "run_demo", "run_evaluate", "run_fit", "run_label", "run_predict"]


class UsageError(Exception):
    """A command line that parses but cannot be run as given (exit status 2)."""


#: A surrogate escape: how Python gives a byte of a file name that is not UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _note(args: argparse.Namespace, message: str) -> None:
    """A summary line on stderr, unless --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)


def _report_skipped(reasons: Sequence[str]) -> None:
    """One line on stderr per image left out, with its path and why."""
    for reason in reasons:
        print(f"skvf: skipped {reason}", file=sys.stderr)


def _image_paths(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """The images of ``inputs``, and why each input that gives none gives none.

    Image files named on the command line and those under named folders, sorted; and one
    line per input that is missing or is a folder without images.
    """
    from ..folders import load_flat_folder

    paths: list[str] = []
    problems: list[str] = []
    for entry in inputs:
        path = Path(entry).expanduser()
        if not (path.is_dir() or path.is_file()):
            problems.append(f"{entry!r} does not exist.")
            continue
        try:
            paths.extend(load_flat_folder(path, recursive=True) if path.is_dir() else [str(path)])
        except FileNotFoundError as error:  # a folder without images
            problems.append(str(error))
    return paths, problems


def _check(
    args: argparse.Namespace,
    images: Sequence[str],
    problems: Sequence[str] = (),
    model: str | None = None,
) -> None:
    """Refuse, before any work, a command line that cannot be run as given.

    One usage error names every mistake: the model first, then ``problems`` (those found
    listing the inputs), then those of the outputs (``-o``, ``--export``).
    """
    found = []
    inputs = [("image", path) for path in images]
    if model is not None:
        if not Path(model).expanduser().is_file():
            found.append(f"{model!r} is not a file.")
        inputs.insert(0, ("model", str(Path(model).expanduser())))
    found += problems
    found += _output_problems(args, inputs)
    if getattr(args, "export", None) is not None:
        found += _folder_problems("--export", args.export)
    if found:
        raise UsageError(" ".join(found))


def _output_problems(args: argparse.Namespace, inputs: Sequence[tuple[str, str]]) -> list[str]:
    """What would stop ``-o`` from being written, or make writing it destroy an input.

    ``-o -`` is stdout, except for ``fit``. A model (``fit``) is written beside the file
    it replaces, where a link leads, and renamed over it
    (:func:`skvf.serialization.dump`), so that folder must be writable even when the file
    exists; results are written in place (``/dev/stdout`` included).
    """
    output = getattr(args, "output", None)  # demo has none
    replaced = args.command == "fit"
    if output is None or (output == "-" and not replaced):
        return []
    target = Path(output).expanduser()
    if target.is_dir():
        return [f"-o {output!r} is a folder; name a file."]
    exists = target.exists()
    renamed = replaced and target.is_file()
    folder = Path(os.path.realpath(target)).parent if renamed else target.parent
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        return [f"the folder of -o {output!r} {state}."]
    if exists and not os.access(target, os.W_OK):
        return [f"-o {output!r} is not writable."]
    if (renamed or not exists) and not os.access(folder, os.W_OK | os.X_OK):
        return [f"the folder of -o {output!r} is not writable."]
    same = _same_file(target, inputs)
    if same is not None:
        kind, path = same
        return [f"-o {output!r} is the same file as the {kind} {path!r}; name another file."]
    return []


def _same_file(target: Path, inputs: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The first of ``inputs`` (``(kind, path)`` pairs) that is the file ``target``.

    The same file, whatever its name (hard and symbolic links); for an input that does
    not exist (a broken link), the same path once links are followed.
    """
    try:
        identity = os.stat(target)
    except OSError:
        identity = None
    resolved = os.path.realpath(target)
    for kind, path in inputs:
        try:
            status = os.stat(path)
        except OSError:  # a broken link: where it leads
            same = os.path.realpath(path) == resolved
        else:
            same = identity is not None and os.path.samestat(identity, status)
        if same:
            return kind, path
    return None


def _folder_problems(flag: str, folder: str) -> list[str]:
    """What would stop ``folder`` from being made (where missing) and written in."""
    path = Path(folder).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return [f"{flag} {folder!r} is not a folder." if existing == path else
                f"{flag} {folder!r} cannot be made: {str(existing)!r} is a file."]  # fmt: skip
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{flag} {folder!r} is not writable."]
    return []


@contextlib.contextmanager
def _output(args: argparse.Namespace, formats: Sequence[str]):
    """``(stream, format)``: stdout or the file of ``-o``; --format, else the suffix of ``-o``
    if it names one of ``formats``, else the first of them.

    A file name that is not UTF-8 reaches Python as surrogate escapes; the stream writes
    them back as the bytes they stand for (``errors="surrogateescape"``), so that a path
    is written as it is on disk instead of stopping the output half written.
    """
    suffix = Path(args.output or "").suffix.lower().lstrip(".")
    fmt = args.format or (suffix if suffix in formats else formats[0])
    if args.output is not None and args.output != "-":
        with open(args.output, "w", newline="", encoding="utf-8", errors="surrogateescape") as file:
            yield file, fmt
        return
    stdout = sys.stdout
    if not hasattr(stdout, "reconfigure"):  # a stand-in for stdout, which holds any text
        yield stdout, fmt
        return
    errors = stdout.errors
    stdout.reconfigure(errors="surrogateescape")
    try:
        yield stdout, fmt
    finally:
        stdout.reconfigure(errors=errors)


def _json_line(record: dict) -> str:
    """``record`` as one line of JSON that stays valid UTF-8.

    A surrogate escape (a byte of a file name that is not UTF-8) is written as a
    ``\\udcXX`` escape, which ``json.loads`` turns back into the name Python uses for
    that file.
    """
    text = json.dumps(record, ensure_ascii=False)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text) + "\n"


def _write_records(args: argparse.Namespace, records: list[dict]) -> None:
    """JSON lines, or CSV: ``None`` as empty, a ``top_k`` list as ``name_2``, ... columns."""
    with _output(args, ["csv", "jsonl"]) as (stream, fmt):
        if fmt == "jsonl":
            stream.writelines(_json_line(r) for r in records)
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
    if args.labeler == SIMULATED:
        return _simulated_labeler(args, paths, on_error)
    from ..labeling import MLLMLabeler

    params = given(args, "prompt", "domain", "api_base", "api_key_env", "max_concurrency")
    if args.labeler_cache is not None:
        params["cache"] = None if args.labeler_cache.lower() == "none" else args.labeler_cache
    if args.labeler is not None:  # None only if MLLMLabeler's default could not be read
        params["model"] = args.labeler
    return MLLMLabeler(max_cost=args.max_cost, on_error=on_error, verbose=args.verbose, **params)


def _simulated_labeler(args: argparse.Namespace, paths: Sequence[str], on_error: str):
    """``--labeler simulated``: names each image after its class folder, some wrongly."""
    from skvf_bench.simulation import folder_labeler

    try:
        seed = getattr(args, "seed", 0)
        noise = given(args, "noise_rate")
        return folder_labeler(paths, random_state=seed, on_error=on_error, **noise)
    except ValueError as error:  # fewer than two class folders
        raise UsageError(f"--labeler {SIMULATED}: {error}") from None


def _usage_line(usage: dict | None) -> str:
    if not usage:
        return ""
    return (
        f"; labeler: {usage.get('answers', 0)} answer(s) paid for, "
        f"{usage.get('cache_hits', 0)} from the cache, ${usage.get('cost_usd', 0.0):.4f}"
    )


def run_label(args: argparse.Namespace) -> None:
    """Name each image with the labeler.

    Name each image with the labeler (one name per image). Answers are cached: running
    again pays nothing for images already named.
    """
    from ..labeling import label_items

    paths, problems = _image_paths(args.inputs)
    _check(args, paths, problems)
    labeler = _labeler(args, paths, on_error=args.on_error).fit(paths)
    names, valid, reasons = label_items(labeler, paths, return_reasons=True)
    if args.on_error == "skip":  # ("warn" has warned already)
        _report_skipped(list(reasons[~valid]))
    rows = zip(paths, names, valid, strict=True)
    _write_records(args, [{"path": p, "name": n if ok else None} for p, n, ok in rows])
    usage = _usage_line(getattr(labeler, "usage_", None))
    _note(args, f"named {int(valid.sum())} of {len(paths)} image(s){usage}")


def run_fit(args: argparse.Namespace) -> None:
    """Fit a NeaRClassifier on unlabeled images and save it.

    Fit a NeaRClassifier on the images (sub-folders included; folder names are ignored
    except by --labeler simulated) and save it with skops.
    """
    from ..classifier import NeaRClassifier
    from ..serialization import dump

    backbone = given(args, "backbone", "pretrained", "backbone_kwargs")
    if args.tiny and backbone:
        options = ", ".join("--" + name.replace("_", "-") for name in backbone)
        raise UsageError(f"--tiny chooses the backbone; drop {options}.")
    if backbone.get("pretrained", "").lower() == "none":
        backbone["pretrained"] = None
    paths, problems = _image_paths(args.inputs)
    _check(args, paths, problems)
    output = Path(args.output).expanduser()
    clf = NeaRClassifier(
        labeler=_labeler(args, paths, on_error="warn" if args.on_error == "skip" else "raise"),
        image_encoder=None if args.image_encoder == "clip" else _offline_image_encoder(args, paths),
        memory=args.memory,
        on_error=args.on_error,
        random_state=args.seed,
        verbose=args.verbose,
        **given(args, "max_epochs", "warmup_epochs", "device", "batch_size"),
        **(_tiny_backbone() if args.tiny else backbone),
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


def _offline_image_encoder(args: argparse.Namespace, paths: Sequence[str]):
    """``--image-encoder pixels|hog``: image features that need no weights (unfitted)."""
    from skvf_bench.demo import offline_image_encoder

    return offline_image_encoder(args.image_encoder, paths, random_state=args.seed)


def _tiny_backbone() -> dict:
    """``--tiny``: the backbone parameters of a tiny random-init CLIP."""
    from skvf_bench.demo import TINY_BACKBONE_PARAMS

    return TINY_BACKBONE_PARAMS


def _harness_trusted_types() -> list[str]:
    """``--trust-harness``: the product's trusted types and the harness's estimators."""
    from skvf_bench import trusted_types

    return trusted_types()


def _load_and_predict(args: argparse.Namespace, paths: Sequence[str]):
    """The model of ``args.model`` and its probabilities of ``paths`` (NaN: unreadable)."""
    import numpy as np

    from ..serialization import load, trusted_types

    trusted = _harness_trusted_types() if args.trust_harness else trusted_types()
    model = load(Path(args.model).expanduser(), trusted=trusted + list(args.trust))
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise ValueError(f"{args.model!r} holds a {type(model).__name__}, not a fitted classifier.")
    updates = given(args, "on_error", "device", "batch_size", "verbose")
    model.set_params(**{k: v for k, v in updates.items() if k in model.get_params(deep=False)})
    unknown = getattr(args, "unknown", None)
    if unknown is not None and not hasattr(model, "score_samples"):
        raise ValueError(
            f"--unknown needs a model that scores known-ness; {args.model!r} holds a "
            f"{type(model).__name__}. Refit it with this version of skvf."
        )
    if unknown is not None:
        model._check_unknown_label(unknown, "unknown")  # said as --unknown
    known = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if unknown is None:
            probabilities = np.asarray(model.predict_proba(paths), dtype=np.float64)
        else:  # one pass over the images for both
            probabilities, known = model._probabilities_and_known(paths)
    for warning in caught:  # say why each unreadable image has no name
        if getattr(warning.message, "reasons", None):
            _report_skipped(warning.message.reasons)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, 0)
    readable = np.isfinite(probabilities).all(axis=1)
    unknown_rows = None if known is None else readable & (known < model.unknown_threshold_)
    return model, probabilities, readable, unknown_rows


def run_predict(args: argparse.Namespace) -> None:
    """Name images with a saved model.

    Name images with a saved model: CLIP alone, no LLM call. One row per image: path,
    name, probability, then the runners-up with --top-k.
    """
    import numpy as np

    paths, problems = _image_paths(args.inputs)
    _check(args, paths, problems, model=args.model)
    model, probabilities, readable, unknown_rows = _load_and_predict(args, paths)
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
    if unknown_rows is not None:  # the best name stays among the runners-up
        for record, is_unknown in zip(records, unknown_rows, strict=True):
            if is_unknown:
                record["name"] = args.unknown
    _write_records(args, records)
    unreadable = len(paths) - int(readable.sum())
    _note(
        args,
        f"named {len(paths) - unreadable} of {len(paths)} image(s) with "
        f"{len(model.classes_)} classes" + (f"; {unreadable} unreadable" if unreadable else ""),
    )


def run_evaluate(args: argparse.Namespace) -> None:
    """Score a saved model on a folder of class folders.

    Score a saved model on ROOT/<class>/<image>: cluster accuracy (cACC: do the predicted
    names group the images like the folders do?), semantic accuracy (sACC: how close is
    each predicted name to its folder name?) and the calibration error of its
    probabilities (ECE: how far the probability of each name is from how often such
    names are right, names matched as cACC matches them).
    """
    import numpy as np

    from ..folders import load_image_folder
    from ..metrics import DEFAULT_SENTENCE_MODEL, name_scores

    try:
        paths, true_names = load_image_folder(args.root)
        problems = []
    except (FileNotFoundError, NotADirectoryError) as error:
        paths, true_names, problems = [], [], [str(error)]
    _check(args, paths, problems, model=args.model)
    model, probabilities, readable, _ = _load_and_predict(args, paths)
    best = np.asarray(model.classes_, dtype=object)[np.nan_to_num(probabilities).argmax(axis=1)]
    if not args.no_semantic and not args.verbose:  # no "Loading weights" bar from transformers
        with contextlib.suppress(ImportError):  # semantic_accuracy says what to install
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
    semantic = None if args.no_semantic else args.semantic_model or DEFAULT_SENTENCE_MODEL
    scores = name_scores(
        true_names,
        np.where(readable, best, None),
        semantic_model=semantic,
        confidence=np.nan_to_num(probabilities).max(axis=1),
    )
    labels = {"cluster_accuracy": "cACC", "semantic_accuracy": "sACC", "calibration_error": "ECE"}
    with _output(args, ["text", "json"]) as (stream, fmt):
        if fmt == "json":
            stream.write(json.dumps(scores) + "\n")
            return
        for key, value in scores.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            stream.write(f"{labels.get(key, key)}\t{shown}\n")


def run_demo(args: argparse.Namespace) -> None:
    """The offline benchmark at a small size.

    Offline: NeaR against plain CoOp on real digit images named by a simulated labeler
    with noise-rate wrong names (pixels -> PCA features, a tiny random-init CLIP text
    tower). Prints cluster accuracies.
    """
    from skvf_bench.demo import run_digits_demo

    _check(args, [])
    results = run_digits_demo(
        export=args.export,
        verbose=args.verbose,
        progress=lambda message: _note(args, message),
        **given(args, "shots", "noise_rate", "max_epochs", "random_state"),
    )
    print("method\tcluster accuracy")
    for name, value in results.items():
        print(f"{name} ({'training' if name == 'labeler names' else 'test'} images)\t{value:.3f}")
