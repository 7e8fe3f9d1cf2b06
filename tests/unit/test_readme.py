"""The README is the front door: it must list what the code actually accepts and prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from train.config import SPECS
from train.metric_lines import METRIC_DEFINITIONS
from train.weights import catalog, fetch

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
WEIGHTS_DOC = (Path(__file__).resolve().parents[2] / "docs" / "weights.md").read_text()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_readme_documents_every_hyperparameter(name: str):
    assert f"| `{name}` |" in README


@pytest.mark.parametrize("definition", METRIC_DEFINITIONS, ids=lambda d: d["Name"])
def test_readme_metric_regexes_are_the_ones_the_code_uses(definition: dict[str, str]):
    assert f"| `{definition['Name']}` | `{definition['Regex']}` |" in README


def test_readme_names_no_unknown_hyperparameter():
    rows = [
        line
        for line in README.split("## Hyperparameters")[1].split("\n## ")[0].splitlines()
        if line.startswith("| `")
    ]
    names = {row.split("`")[1] for row in rows}
    assert names == set(SPECS)


def _checksum_words(checksum: catalog.Checksum | None) -> str:
    if checksum is None:
        return "**unverified**: no checksum pinned"
    full = len(checksum.value) in (40, 64)
    return checksum.algorithm if full else f"{checksum.algorithm} prefix"


@pytest.mark.parametrize("weights", catalog.WEIGHT_FILES, ids=lambda w: w.cache_name)
def test_the_weights_doc_lists_every_catalog_row(weights: catalog.WeightFile):
    tried = fetch.attempts([weights], fetch.source_bases({}))  # the default order
    sources = ", ".join(f"{f.source} ({_checksum_words(f.checksum)})" for _, f, _ in tried)
    row = (
        f"| {weights.depth} | `{weights.set_name}` | `{weights.gluon_name}` | {weights.top1} "
        f"| {sources} |"
    )
    assert row in WEIGHTS_DOC.splitlines()


@pytest.mark.parametrize("weight_set", catalog.WEIGHT_SETS, ids=lambda s: s.name)
def test_the_weights_doc_gives_each_sets_licence(weight_set: catalog.WeightSet):
    start = f"| `{weight_set.name}` |"
    rows = [line for line in WEIGHTS_DOC.splitlines() if line.startswith(start)]
    assert len(rows) == 1 and rows[0].endswith(f"| {weight_set.licence} |")


def test_the_weights_doc_lists_no_other_row():
    rows = [line for line in WEIGHTS_DOC.splitlines() if line.startswith(("| 1", "| 3", "| 5"))]
    assert len(rows) == len(catalog.WEIGHT_FILES)


def test_readme_claims_only_compatibility_that_a_test_checks():
    """Each service or library the README says runs this product's model is named with the
    test that checks it, and that test exists; services no test runs are said to be unverified.
    """
    repo = Path(__file__).resolve().parents[2]
    paragraph = README.split("**Call this product's models with your existing client code.**")[1]
    paragraph = " ".join(paragraph.split("\n\n")[0].split())
    checks = {
        "tests/integration/test_builtin_interop.py": "def test_a_product_model_answers_builtin",
        "tests/integration/test_train_job.py": "def assert_onnx_matches_plain_mxnet",
    }
    for path, test in checks.items():
        assert f"`{path}`" in paragraph
        assert test in (repo / path).read_text()
    for service in ("Neo", "DeepLens"):
        sentences = [s for s in re.split(r"(?<=[.;])\s", " ".join(README.split())) if service in s]
        assert sentences and all("not verified" in s for s in sentences), sentences
