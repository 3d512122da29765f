"""The documentation site builds with ``mkdocs build --strict``.

CI installs mkdocs through the ``dev`` extra, so there a missing mkdocs is a failure;
elsewhere the build is skipped when mkdocs is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once with ``mkdocs build --strict``; the folder of its HTML."""
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail('mkdocs is not installed; CI installs it with pip install -e ".[dev]"')
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    site_dir = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site_dir


def test_mkdocs_build_strict(site):
    api = (site / "api" / "index.html").read_text()
    for name in ("NeaRClassifier", "MLLMLabeler", "cluster_accuracy", "plot_name_mapping"):
        assert name in api
    assert "candidate_builder_" in api  # the attributes section was parsed


def test_api_page_documents_inherited_score(site):
    # score comes from NameClassifierMixin; mkdocstrings leaves inherited members out
    # unless the page asks for them.
    api = (site / "api" / "index.html").read_text()
    assert 'id="skvf.classifier.NeaRClassifier.score"' in api


def test_api_page_documents_every_public_module(site):
    api = (site / "api" / "index.html").read_text()
    for anchor in (
        "skvf.labeling.label_items",
        "skvf.labeling.cached_labels",
        "skvf.labeling.answer_determining_params",
        "skvf.serialization.register_trusted_type",
        "skvf.exceptions.ImageInputError",
        "skvf.exceptions.BackboneError",
        "skvf.candidates.build_candidate_votes",
        "skvf.filtering.filter_vocabulary",
        "skvf.names.normalize_name",
        "skvf.folders.load_flat_folder",
        "skvf.folders.load_image_folder",
        "skvf.metrics.NameClassifierMixin",
        "skvf._process_cache.clear_caches",
        "skvf_bench.simulation.NoisyOracleLabeler",
        "skvf_bench.encoders.ImagePixels",
        "skvf_bench.baselines.method_configs",
        "skvf_bench.datasets.few_shot_split",
        "skvf_bench.demo.offline_demo_classifier",
        "skvf_bench.trusted_types",
    ):
        assert f'id="{anchor}"' in api, anchor


MERMAID_BLOCK = re.compile(r'<pre class="mermaid"><code>(.*?)</code></pre>', re.S)


@pytest.mark.parametrize("page", ["how-it-works", "architecture"])
def test_mermaid_diagrams_render_as_diagrams(site, page):
    # With the mermaid fence of pymdownx.superfences, material finds <pre class="mermaid">
    # and draws it; without it the source would show as a highlighted code block.
    source = (ROOT / "docs" / f"{page}.md").read_text()
    html = (site / page / "index.html").read_text()
    n_fences = source.count("```mermaid")
    assert n_fences >= 1, f"docs/{page}.md has no mermaid diagram"
    blocks = MERMAID_BLOCK.findall(html)
    assert len(blocks) == n_fences, f"{page}: {len(blocks)} mermaid elements, {n_fences} fences"
    assert all(block.lstrip().startswith("flowchart") for block in blocks)
    assert "language-mermaid" not in html, f"{page}: a diagram fell back to a code block"


def test_every_page_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f": {page.name}" in config, f"docs/{page.name} is not in the nav of mkdocs.yml"
