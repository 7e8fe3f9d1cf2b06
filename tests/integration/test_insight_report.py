"""A real job writes the data audit and one self-contained report page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.browser import Browser
from tests.integration.conftest import run_training


def test_job_writes_audit_and_a_self_contained_report(tiny_tree: Path) -> None:
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tiny_tree / "output" / "data"
    found = json.loads((out / "audit.json").read_text())
    assert found["train_images"] > 0 and found["validation_images"] > 0
    assert found["findings"] == []  # tests/datagen's pictures are clean
    assert "Data audit:" in result.stdout
    page = (out / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # nothing to fetch
    assert "http://" not in page and "https://" not in page
    for section in ("Learning curves", "Confusion matrix", "Per class", "Calibration"):
        assert section in page
    assert page.count("activation map") >= 1
    assert 'class="sortable"' in page

    # In a real browser: no console error, nothing fetched, every picture drawn, and the
    # per-class table sorts by the clicked column (numbers as numbers), both ways.
    with Browser() as browser, browser.open((out / "report.html").as_uri()) as view:
        assert view.console_errors == []
        assert view.network_requests() == []
        assert view.blank_images() == []
        table = "table.sortable:last-of-type"
        headers = view.evaluate(
            f"[...document.querySelectorAll('{table} th')].map(t => t.textContent)"
        )
        column = headers.index("recall")
        values = (
            f"[...document.querySelectorAll('{table} tbody tr')]"
            f".map(r => parseFloat(r.cells[{column}].dataset.v))"
        )
        view.click(f"{table} th:nth-child({column + 1})")
        ascending = view.evaluate(values)
        assert ascending == sorted(ascending)
        view.click(f"{table} th:nth-child({column + 1})")
        assert view.evaluate(values) == sorted(ascending, reverse=True)
