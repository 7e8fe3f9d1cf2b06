"""The README is the front door: it must list what the code actually accepts and prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.config import SPECS
from train.metric_lines import METRIC_DEFINITIONS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


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
