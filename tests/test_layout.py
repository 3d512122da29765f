"""The package's layout is its architecture: the rules it keeps, checked on the code.

- The product (what ``fit`` and ``predict`` run) never imports the evaluation harness
  (``skvf_bench``) or the app (``skvf.cli``, ``skvf.plotting``), not even lazily inside a
  function.
- Private scikit-learn API is imported in one module, ``skvf._sklearn_compat``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skvf"
HARNESS_AND_APP = ("skvf_bench", "skvf.cli", "skvf.plotting")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names, resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # "from skvf import cli" imports the module skvf.cli
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def product_modules() -> list[Path]:
    paths = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if not any(name == other or name.startswith(other + ".") for other in HARNESS_AND_APP):
            paths.append(path)
    return paths


def is_within(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_the_product_is_what_it_should_be():
    names = {module_name(path) for path in product_modules()}
    assert {"skvf.classifier", "skvf.candidates", "skvf.labeling._mllm"} <= names
    assert not any(is_within(name, HARNESS_AND_APP) for name in names)


@pytest.mark.parametrize("path", product_modules(), ids=lambda path: module_name(path))
def test_product_module_imports_no_harness_and_no_app(path):
    offending = sorted(name for name in imported_modules(path) if is_within(name, HARNESS_AND_APP))
    assert offending == [], f"{module_name(path)} imports {offending}"


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    # The checker itself: an import inside a function, relative, must be seen.
    (tmp_path / "skvf").mkdir()
    sample = tmp_path / "skvf" / "sample.py"
    sample.write_text("def f():\n    from skvf_bench import demo\n    from . import cli\n")
    found = imported_modules(sample, root=tmp_path)
    assert {"skvf_bench", "skvf_bench.demo", "skvf.cli"} <= found


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
