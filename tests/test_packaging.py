"""The wheel: what it holds, and that the ``skvf`` command runs from it when installed.

The wheel holds the product (``skvf``) and the evaluation harness beside it
(``skvf_bench``: ``skvf demo`` and ``--labeler simulated`` run it), and neither the tests
nor the stand-in CLIP's weights, which stay in the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel may weigh: code and docs, no weights.
MAX_WHEEL_BYTES = 1_000_000


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built, without network, from a copy of what it is built from.

    The copy keeps the build's own folders (``build/``, ``*.egg-info``) out of the
    repository; it holds the stand-in weights and the tests, so that leaving them out is
    the wheel's doing.
    """
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("skvf", "skvf_bench", "tests"):
        shutil.copytree(ROOT / name, source / name, ignore=ignored)
    assert (source / "skvf_bench" / "weights" / "garments.pt").is_file()
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*command, "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = out.glob("skvf-*.whl")
    return built


def test_the_wheel_holds_the_code_and_no_weights_or_tests(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"skvf", "skvf_bench"}
    assert {"skvf/folders.py", "skvf/cli/_commands.py", "skvf_bench/demo.py"} <= set(names)
    assert [name for name in names if name.endswith(".pt") or "weights/" in name] == []
    assert [name for name in names if name.startswith("tests/") or "/tests/" in name] == []
    assert "skvf = skvf.cli:main" in scripts
    assert wheel.stat().st_size < MAX_WHEEL_BYTES, f"{wheel.stat().st_size} bytes"


@pytest.mark.slow
def test_skvf_demo_runs_from_the_wheel_without_the_weights(wheel, tmp_path):
    # A fresh virtual environment: the wheel's code alone, torch and the other
    # dependencies from this Python's own site-packages.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    install = [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)]
    subprocess.run(install, check=True, env=env, timeout=300)

    where = (
        "import skvf, skvf_bench.standin as s; "
        "print(skvf.__file__); print(s.__file__); print(any(s.WEIGHTS_DIR.glob('*.pt')))"
    )
    found = subprocess.run(
        [str(python), "-c", where], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    product, harness, weights = found.stdout.split()
    assert Path(product).is_relative_to(venv) and Path(harness).is_relative_to(venv)
    assert weights == "False"  # the stand-in weights did not come with the wheel

    skvf = python.with_name("skvf.exe" if os.name == "nt" else "skvf")
    demo = subprocess.run(
        [str(skvf), "demo", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    assert lines[0] == "method\tcluster accuracy" and lines[-1].startswith("NeaR (test images)\t")
    assert not (tmp_path / "cache" / "skvf" / "standin").exists()  # nothing was built
