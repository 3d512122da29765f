"""Every script in examples/ runs in its fast mode and prints what it promises."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ, MPLBACKEND="Agg", XDG_CACHE_HOME=str(cwd / "xdg-cache"))
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--fast", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_is_tested():
    tested = {
        "quickstart.py",
        "folder_of_photos.py",
        "local_llm_server.py",
        "grid_search.py",
        "plots.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_quickstart_at_a_small_size(capsys):
    # Its --fast mode takes minutes on two cores: run its main() on fewer images instead.
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLES / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    results = quickstart.main(shots=5, max_epochs=15)
    assert set(results) == {"labeler names (train)", "CoOp on raw names", "NeaR"}
    assert all(0.0 <= value <= 1.0 for value in results.values())
    assert "cluster accuracy" in capsys.readouterr().out


def test_folder_of_photos(tmp_path):
    out = run_example("folder_of_photos.py", "--workdir", str(tmp_path / "photos"), cwd=tmp_path)
    assert "fitted on 50 unlabeled photos" in out
    assert "saved and loaded digits.skops" in out
    assert (tmp_path / "photos" / "digits.skops").is_file()
    scores = re.findall(r"cluster accuracy, .*: (\d\.\d+)", out)
    assert len(scores) == 2 and all(0 <= float(s) <= 1 for s in scores)


def test_local_llm_server_demo(tmp_path):
    out = run_example("local_llm_server.py", "--demo", cwd=tmp_path)
    assert "the server named 12 of 12 images" in out
    assert "blue-0.png: blue test bird" in out
    assert "answers from the cache during fit: 12" in out


def test_grid_search(tmp_path):
    out = run_example("grid_search.py", cwd=tmp_path)
    assert out.count("{'candidate_builder__n_neighbors'") == 3  # two rows and the best
    assert "asked the labeler for 0 new answer(s)" in out


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("plots.py", "--out", str(tmp_path / "plots"), cwd=tmp_path)
    for name in ("history.png", "name_frequencies.png", "name_mapping.png"):
        path = tmp_path / "plots" / name
        assert f"saved {path}" in out
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
