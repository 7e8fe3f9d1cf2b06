"""Run a module in the PyTorch engine's venv (``.venv-torch``: torch, no MXNet) from a test
running in ``.venv`` (MXNet, no torch): one subprocess per test module, results in a file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_PYTHON = ROOT / ".venv-torch" / "bin" / "python"


def run_probe(module: str, cases: list[dict], workdir: Path, *, timeout: float = 180) -> Path:
    """Write ``cases`` as JSON, run ``python -m module cases.json out.npz`` in ``.venv-torch``
    with this checkout first on ``sys.path``, and return the path of ``out.npz``."""
    cases_path, out = workdir / "cases.json", workdir / "out.npz"
    cases_path.write_text(json.dumps(cases))
    subprocess.run(
        [str(TORCH_PYTHON), "-m", module, str(cases_path), str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        timeout=timeout,
    )
    return out
