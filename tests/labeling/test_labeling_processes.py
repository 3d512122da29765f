"""docs/recipes.md's labelling from several processes, run as written against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from fake_openai_server import COLOURS, FakeVLM, colour_image
from PIL import Image

ROOT = Path(__file__).parents[2]
SECTION = "## Labelling many images from several processes"


def _recipe() -> str:
    text = (ROOT / "docs" / "recipes.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_recipe_asks_for_each_image_once_from_worker_processes(server, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    paths, truth = [], []
    for seed in range(3):
        for colour in COLOURS:
            path = folder / f"{colour}-{seed}.png"
            Image.fromarray(colour_image(colour, seed=seed)).save(path)
            paths.append(str(path))
            truth.append(f"{colour} test bird")
    fake = FakeVLM(delay=0.05)
    base_url = server(fake)
    code = _recipe()
    assert code.count('"http://localhost:8000/v1"') == 1 and code.count("n_parts = 4") == 1
    code = code.replace('"http://localhost:8000/v1"', repr(base_url))
    code = code.replace("n_parts = 4", "n_parts = 2")  # two workers: this machine's cores
    report = (
        "import json, sys\n"
        "print(json.dumps({'names': names.tolist(), 'valid': valid.tolist(), "
        "'part_answers': [usage['answers'] for usage in usages], "
        "'part_retries': [usage['retries'] for usage in usages], 'spent': spent, "
        "'final_calls': labeler.usage_['calls'], 'final_hits': labeler.usage_['cache_hits'], "
        "'litellm_here': 'litellm' in sys.modules}))\n"
    )
    script = tmp_path / "recipe.py"
    script.write_text(f"paths = {paths!r}\n" + code + report)
    environment = dict(
        os.environ,
        MY_VLM_KEY="local-key",
        PYTHONPATH=str(ROOT),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["names"] == truth and all(outcome["valid"])
    # Each part paid for its own images, and the last pass read all of them from the
    # shared cache: every image was answered once, and this process never even
    # imported LiteLLM, so every request went from the workers. (With 16 requests in
    # flight in each of two workers, a connection to the test server is now and then
    # dropped and its request sent again: a retry, counted as one, never a new answer.)
    assert outcome["part_answers"] == [len(paths) // 2] * 2
    assert outcome["final_calls"] == 0 and outcome["final_hits"] == len(paths)
    assert not outcome["litellm_here"]
    assert fake.requests == len(paths) + sum(outcome["part_retries"])
