"""The package's layout is its architecture: the rules it keeps, checked on the code.

- The product (``skvf/`` less the app) never imports the evaluation harness
  (``skvf_bench``) or the app (``skvf.cli``, ``skvf.plotting``), not even lazily inside a
  function.
- The app imports the harness only in the functions of the paths that ask for it
  (:data:`HARNESS_PATHS`); ``skvf predict`` on a saved model runs without it
  (tests/test_cli.py, ``test_predict_and_evaluate_run_without_the_harness``).
- The harness builds on the product's public API, and on the private modules of
  :data:`HARNESS_PRIVATE_IMPORTS` only.
- Private scikit-learn API is imported in one module, ``skvf._sklearn_compat``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skvf"
HARNESS = ROOT / "skvf_bench"
APP = ("skvf.cli", "skvf.plotting")

#: The functions of the app that import the harness, each of them all of one path that
#: asks for it (by module and function).
HARNESS_PATHS = {
    ("skvf.cli._commands", "_simulated_labeler"),  # --labeler simulated
    ("skvf.cli._commands", "_offline_image_encoder"),  # --image-encoder pixels|hog
    ("skvf.cli._commands", "_tiny_backbone"),  # --tiny
    ("skvf.cli._commands", "_harness_trusted_types"),  # --trust-harness
    ("skvf.cli._commands", "run_demo"),  # skvf demo
}

#: The private product modules the harness imports, and why no public function serves.
#: A new one belongs here only with its reason.
HARNESS_PRIVATE_IMPORTS = {
    "skvf._sklearn_compat": "scikit-learn's parameter validation, as in every estimator",
    "skvf._images": "reading images as the classifier does: errors naming the item, digests",
    "skvf._warnings": "warnings attributed to the caller's line",
    "skvf._prediction": "ZeroShotCLIP predicts through the classifier's own prediction path",
    "skvf._backbone": "the frozen CLIP towers of the baselines, the runner and the stand-in",
    "skvf._device": "the device those towers run on",
    "skvf._features": "image features cached in `memory`, as the classifier caches them",
    "skvf._store": "the `memory` folder of those features",
    "skvf._prototypes": "ZeroShotCLIP's image prototypes, as the classifier's",
    "skvf._views": "the augmented views of ZeroShotCLIP's prototypes, as the classifier's",
    "skvf.labeling._cache": "the user cache folder, where stand-in weights not shipped are built",
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def scoped_imports(path: Path, root: Path = ROOT) -> Iterator[tuple[str, str]]:
    """``(scope, module)`` for every module an import in the file names, resolved.

    ``scope`` is the dotted name of the function or class the import sits in (``""`` at
    the module's own level); ``from a import b`` names both ``a`` and ``a.b``.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, scope: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from visit(child, f"{scope}.{child.name}".lstrip("."))
                continue
            if isinstance(child, ast.Import):
                yield from ((scope, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                yield scope, target
                # "from skvf import cli" imports the module skvf.cli
                yield from ((scope, f"{target}.{alias.name}") for alias in child.names)
            yield from visit(child, scope)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), "")


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names, resolved."""
    return {module for _, module in scoped_imports(path, root)}


def is_within(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def product_modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if not is_within(module_name(path), APP)]


def app_modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if is_within(module_name(path), APP)]


def test_the_product_is_what_it_should_be():
    names = {module_name(path) for path in product_modules()}
    assert {"skvf.classifier", "skvf.candidates", "skvf.folders", "skvf.labeling._mllm"} <= names
    assert not any(is_within(name, [*APP, "skvf_bench"]) for name in names)
    assert {"skvf.cli", "skvf.cli._commands", "skvf.plotting"} <= {
        module_name(path) for path in app_modules()
    }


@pytest.mark.parametrize("path", product_modules(), ids=lambda path: module_name(path))
def test_product_module_imports_no_harness_and_no_app(path):
    offending = sorted(
        name for name in imported_modules(path) if is_within(name, [*APP, "skvf_bench"])
    )
    assert offending == [], f"{module_name(path)} imports {offending}"


def test_the_app_imports_the_harness_only_on_the_paths_that_ask_for_it():
    found = {
        (module_name(path), scope)
        for path in app_modules()
        for scope, name in scoped_imports(path)
        if is_within(name, ["skvf_bench"])
    }
    assert found == HARNESS_PATHS


def private_module(name: str) -> str | None:
    """The private part of a dotted name, up to its first underscored part (or None)."""
    parts = name.split(".")
    for depth, part in enumerate(parts[1:], start=2):
        if part.startswith("_"):
            return ".".join(parts[:depth])
    return None


def test_the_harness_reaches_into_the_product_only_where_listed():
    reached = {
        private_module(name)
        for path in sorted(HARNESS.rglob("*.py"))
        for name in imported_modules(path)
        if is_within(name, ["skvf"]) and private_module(name)
    }
    assert reached == set(HARNESS_PRIVATE_IMPORTS)


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    # The checker itself: an import inside a function, relative, must be seen, with the
    # function it sits in.
    (tmp_path / "skvf").mkdir()
    sample = tmp_path / "skvf" / "sample.py"
    sample.write_text(
        "import os\n"
        "def f():\n    from .cli import demo\n    from . import cli\n"
        "class A:\n    def g(self):\n        import skvf_bench.demo\n"
    )
    found = set(scoped_imports(sample, root=tmp_path))
    assert {
        ("", "os"),
        ("f", "skvf.cli"),
        ("f", "skvf.cli.demo"),
        ("A.g", "skvf_bench.demo"),
    } <= found
    assert private_module("skvf.labeling._cache.default_cache_dir") == "skvf.labeling._cache"
    assert private_module("skvf.names.normalize_name") is None


def private_sklearn_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sklearn"):
            private_module = any(part.startswith("_") for part in node.module.split("."))
            private_names = [a.name for a in node.names if a.name.startswith("_")]
            if private_module or private_names:
                found.append(f"{node.module}: {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            found += [
                a.name
                for a in node.names
                if a.name.startswith("sklearn")
                and any(p.startswith("_") for p in a.name.split("."))
            ]
    return found


def test_private_sklearn_api_is_imported_in_one_module():
    importers = {}
    for folder in ("skvf", "skvf_bench", "tests", "benchmarks", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found = private_sklearn_imports(path)
            if found:
                importers[str(path.relative_to(ROOT))] = found
    assert list(importers) == ["skvf/_sklearn_compat.py"], importers
