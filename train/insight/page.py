"""``output/data/report.html``: one self-contained page (no network, pictures inlined) with the
data set and the audit's findings, hyperparameters and engine, learning curves, the confusion
matrix, the sortable per-class table, the most confident mistakes with their activation maps and
the reliability diagram. Built from the files a job leaves in ``output/data`` and the model
directory, so any engine's job (and a failed one, with what it had) gets the same page."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from train import artifacts, reports
from train.insight import audit, calibration, gallery

logger = logging.getLogger(__name__)

REPORT_HTML = artifacts.REPORT_FILE
VALIDATION_NPZ = "validation_outputs.npz"

_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3;cursor:pointer}td:first-child,th:first-child{text-align:left}
.warning{background:#fff4e0;border-left:4px solid #e69500;padding:6px 10px;margin:6px 0}
.info{background:#eef4fb;border-left:4px solid #4c72b0;padding:6px 10px;margin:6px 0}
.ok{background:#eaf7ea;border-left:4px solid #3a3;padding:6px 10px}.muted{color:#777}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{font-size:12px;text-align:center}
img{max-width:100%}.tile img{width:128px;image-rendering:pixelated}"""

_SORT_JS = """document.querySelectorAll('table.sortable th').forEach(function(th,col){
th.addEventListener('click',function(){var body=th.closest('table').tBodies[0];
var rows=Array.from(body.rows),asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
rows.sort(function(a,b){var x=a.cells[col].dataset.v,y=b.cells[col].dataset.v;
var r=isNaN(x)||isNaN(y)?x.localeCompare(y):x-y;return asc?r:-r;});
rows.forEach(function(r){body.appendChild(r);});});});"""


def save_validation(output_dir: Path, outputs: np.ndarray, labels: np.ndarray, rec: Path) -> None:
    """Keep the validation outputs (engine scores, in record order) for the page."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, outputs=outputs, labels=labels, rec=str(rec))
    artifacts.atomic_write_bytes(output_dir / VALIDATION_NPZ, buffer.getvalue())


def _read(path: Path, reader) -> Any:
    try:
        return reader(path) if path.is_file() else None
    except Exception as exc:  # noqa: BLE001 - a damaged piece is left out, the page still comes
        logger.warning("report.html: could not read %s: %s", path.name, exc)
        return None


def _image_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _figure_png(fig) -> bytes:
    from train.reports import _figure

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _figure().close(fig)
    return buffer.getvalue()


def _table(rows: list[dict[str, Any]], sortable: bool = False) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-v="{html.escape(str(v))}">'
            f"{html.escape(f'{v:.3f}' if isinstance(v, float) else str(v))}</td>"
            for v in row.values()
        )
        + "</tr>"
        for row in rows
    )
    css = ' class="sortable"' if sortable else ""
    return f"<table{css}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _audit_section(found: dict[str, Any] | None) -> str:
    if found is None:
        return "<h2>Data</h2><p class='muted'>No data audit for this job.</p>"
    parts = [
        f"<h2>Data</h2><p>{found['train_images']} training and {found['validation_images']} "
        f"validation images; audit took {found['seconds']} s.</p>"
    ]
    if found.get("crowded_images"):
        parts.append(
            f"<p class='muted'>{found['crowded_images']} images have many near-identical "
            "look-alikes: copies among them are found only when byte-identical (see Thresholds)."
            "</p>"
        )
    for item in found["findings"]:
        parts.append(f"<div class='{item['level']}'>{html.escape(item['message'])}</div>")
    if not any(f["level"] == "warning" for f in found["findings"]):
        parts.append("<div class='ok'>No warnings from the data audit.</div>")
    counts = [{"class": k, "training images": v} for k, v in found["class_counts"].items()]
    parts.append("<h3>Class counts</h3>" + _table(counts, sortable=True))
    thresholds = [{"check": k, "threshold": v} for k, v in found["thresholds"].items()]
    parts.append("<h3>Thresholds</h3>" + _table(thresholds))
    return "".join(parts)


def _tiles(items: list[dict[str, Any]]) -> str:
    return (
        "<div class='tiles'>"
        + "".join(
            f"<div class='tile'><img alt='image' src='data:image/png;base64,{t['image']}'>"
            f"<img alt='activation map' src='data:image/png;base64,{t['heatmap']}'><br>"
            f"true <b>{html.escape(t['true'])}</b>, predicted <b>{html.escape(t['predicted'])}</b>"
            f" ({t['confidence']:.0%})</div>"
            for t in items
        )
        + "</div>"
    )


def _validation_sections(output_dir: Path, model_dir: Path, hps: dict[str, Any]) -> str:
    saved = _read(output_dir / VALIDATION_NPZ, lambda p: dict(np.load(p)))
    if saved is None or hps.get("multi_label") in ("1", "true", "True"):
        return ""
    probs = calibration.softmax(saved["outputs"].astype(np.float64))
    labels = saved["labels"].reshape(-1).astype(np.int64)
    table = calibration.reliability(probs, labels)
    parts = [
        "<h2>Calibration</h2><p>Expected calibration error "
        f"<b>{table['ece']:.3f}</b> ({calibration.BINS} bins): the mean gap between how sure "
        "the model is and how often it is right.</p>",
        _image_tag(_figure_png(calibration.plot_reliability(table)), "reliability diagram"),
    ]
    classes = _read(model_dir / artifacts.CLASSES_FILE, lambda p: json.loads(p.read_text()))
    names = (classes or {}).get("classes") or [str(k) for k in range(probs.shape[1])]
    try:
        shown = gallery.tiles(model_dir, Path(str(saved["rec"])), probs, labels, names)
    except Exception as exc:  # noqa: BLE001 - no model yet, or an engine's graph without CAM
        logger.warning("report.html: no activation maps: %s: %s", type(exc).__name__, exc)
        return "".join(parts)
    parts.append(
        "<h2>Most confident mistakes</h2><p>Each image, then where the model looked "
        "for the class it predicted (class activation map; red = most).</p>"
    )
    parts.append(_tiles(shown["mistakes"]) or "<p>None.</p>")
    parts.append("<h2>Right answers</h2>" + _tiles(shown["right"]))
    return "".join(parts)


def render(output_dir: Path, model_dir: Path, engine: str | None) -> str:
    """The page's HTML from whatever of the job's files exist."""
    hps = _read(model_dir / artifacts.HYPERPARAMETERS_FILE, lambda p: json.loads(p.read_text()))
    found = _read(output_dir / audit.AUDIT_JSON, lambda p: json.loads(p.read_text()))
    classes = _read(output_dir / reports.CLASS_REPORT_JSON, lambda p: json.loads(p.read_text()))
    history = _read(output_dir / reports.METRICS_CSV, lambda p: list(csv.DictReader(p.open())))
    failure = _read(output_dir.parent / "failure", lambda p: p.read_text()[:1024])
    parts = [f"<h1>Training report</h1><p class='muted'>engine: {html.escape(engine or '?')}</p>"]
    if failure:
        parts.append(f"<div class='warning'><b>The job failed:</b> {html.escape(failure)}</div>")
    parts.append(_audit_section(found))
    if hps:
        rows = [{"hyperparameter": k, "value": v} for k, v in sorted(hps.items())]
        parts.append("<h2>Hyperparameters</h2>" + _table(rows))
    for title, name in (
        ("Learning curves", reports.CURVES_PNG),
        ("Confusion matrix", reports.CONFUSION_PNG),
    ):
        png = _read(output_dir / name, lambda p: p.read_bytes())
        if png:
            parts.append(f"<h2>{title}</h2>" + _image_tag(png, title))
    if history and not (output_dir / reports.CURVES_PNG).is_file():
        parts.append("<h2>Epochs</h2>" + _table(history))
    if classes:
        parts.append(
            "<h2>Per class</h2><p class='muted'>Click a column to sort.</p>"
            + _table(classes, sortable=True)
        )
    parts.append(_validation_sections(output_dir, model_dir, hps or {}))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Training report"
        f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}"
        f"<script>{_SORT_JS}</script></body></html>"
    )


def write(output_dir: Path, model_dir: Path, engine: str | None = None) -> Path | None:
    """Write ``report.html`` from what exists; never raises (the page is advice)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / REPORT_HTML
        artifacts.atomic_write_bytes(path, render(output_dir, model_dir, engine).encode())
        logger.info('Wrote the report page "%s"', path)
        return path
    except Exception as exc:  # noqa: BLE001 - never fail a job over its report
        logger.warning(
            "Could not write %s: %s: %s", REPORT_HTML, type(exc).__name__, exc, exc_info=True
        )
        return None
