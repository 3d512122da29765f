"""The ``skvf`` command: label, fit, predict, evaluate and demo (see docs/cli.md).

Results go to stdout (or ``-o``) and nothing else does: progress bars (``-v``), summaries,
warnings and errors go to stderr. Exit status: 0 success, 1 the work failed (a labeler
error, an unreadable image, a model that cannot be loaded), 2 usage error (a bad option, a
missing input), 130 interrupted. Errors are one line, with a traceback only with
``--debug``. Only the standard library is imported here; numpy, torch, open_clip and
LiteLLM are imported by the subcommand that needs them, so ``skvf --help`` is instant.

Three modules, one concern each: this one assembles the parser and runs a command,
:mod:`skvf.cli._options` defines every option once (with the estimators' defaults), and
:mod:`skvf.cli._commands` holds the five commands.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from ._commands import UsageError, run_demo, run_evaluate, run_fit, run_label, run_predict
from ._options import add_options, as_flags

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skvf`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    from .. import __version__

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
    for handler in (run_label, run_fit, run_predict, run_evaluate, run_demo):
        # The handler's docstring is the command's help: a summary, then a description.
        summary, _, description = handler.__doc__.partition("\n\n")
        name = handler.__name__.removeprefix("run_")
        sub[name] = commands.add_parser(
            name, help=summary[0].lower() + summary[1:-1], description=" ".join(description.split())
        )
        sub[name].set_defaults(handler=handler)
    label, fit, predict, evaluate, demo = sub.values()

    add_options(label, "inputs", "output")
    add_options(label, "format", choices=["csv", "jsonl"], shown="csv")
    add_options(label, "on_error", choices=["raise", "warn", "skip"],
         help="unusable answers or images: stop (default), or leave the name empty")  # fmt: skip
    add_options(fit, "inputs")
    add_options(fit, "output", required=True, metavar="MODEL.skops", help="where to save the model")
    for command in (label, fit):
        group = command.add_argument_group("labeler (the vision LLM that names the images)")
        add_options(
            group, "labeler", "api_base", "api_key_env", "domain", "prompt", "max_concurrency"
        )
        add_options(group, "max_cost", "labeler_cache", "simulated_noise")
    model = fit.add_argument_group("model")
    add_options(model, "backbone", "pretrained", "backbone_kwargs", "tiny", "image_encoder")
    add_options(model, "n_neighbors")
    add_options(model, "max_epochs", "warmup_epochs", "memory", "device", owner="NeaRClassifier")
    add_options(model, "batch_size", owner="NeaRClassifier")
    add_options(model, "seed", default=0)
    add_options(model, "on_error", help="unreadable images or unusable answers: stop (default), or "
         "drop those images")  # fmt: skip

    for command, formats in ((predict, ["csv", "jsonl"]), (evaluate, ["text", "json"])):
        add_options(command, "model", "trust", "trust_harness")
        add_options(command, "device", "batch_size", shown="as fitted")
        add_options(command, "on_error", help="unreadable images: stop (default), or report them "
             "with an empty name")  # fmt: skip
        add_options(command, "inputs" if command is predict else "root", "output")
        add_options(command, "format", choices=formats, shown=formats[0])
    add_options(predict, "top_k", "unknown")
    add_options(evaluate, "no_semantic", "semantic_model")

    add_options(demo, "shots", "noise_rate")
    add_options(demo, "max_epochs", owner="run_digits_demo")
    add_options(demo, "seed", owner="run_digits_demo.random_state", dest="random_state")
    add_options(demo, "export")
    for command in sub.values():
        group = command.add_argument_group("output and diagnostics")
        add_options(group, "verbose", "quiet", "debug")
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
        print(f"skvf {args.command}: error: {as_flags(str(error))}", file=sys.stderr)
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
        message = as_flags(str(error) or type(error).__name__)  # not the exception class
        if type(error).__name__ == "UntrustedTypesFoundException":
            message = message.rstrip(".") + ". Review them with skops.io.get_untrusted_types("
            message += "file=...) and pass each one you trust with --trust TYPE"
            if "'skvf_bench." in message:  # fitted with --labeler simulated, pixels or hog
                message += ", or --trust-harness for the evaluation harness's estimators"
            message += "."
        print(f"skvf {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
