"""Run a module of the PyTorch side in ``.venv-torch`` from a test that runs in ``.venv``.

The two venvs cannot be one (MXNet and torch clash), so a test computes its expectations with
MXNet in-process and hands arrays to one ``.venv-torch`` process per test module: inputs and
outputs travel as ``.npz`` files, a JSON description as the ``spec`` entry.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TORCH_PYTHON = REPO / ".venv-torch" / "bin" / "python"


def run_torch_module(
    module: str, spec: dict, arrays: dict[str, np.ndarray], workdir: Path, timeout: float = 300
) -> dict[str, np.ndarray]:
    """``.venv-torch/bin/python -m module IN OUT`` from the repository root (so the worktree's
    ``train`` is imported); returns the arrays it saved to ``OUT``."""
    if not TORCH_PYTHON.exists():
        raise AssertionError(f"{TORCH_PYTHON} is missing: build it with `make venv`")
    inputs, outputs = workdir / "torch-in.npz", workdir / "torch-out.npz"
    np.savez(inputs, spec=np.array(json.dumps(spec)), **arrays)
    done = subprocess.run(
        [str(TORCH_PYTHON), "-m", module, str(inputs), str(outputs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{module} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    with np.load(outputs) as saved:
        return {name: saved[name] for name in saved.files}


def read_inputs(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """On the torch side: the spec and arrays :func:`run_torch_module` wrote."""
    with np.load(path) as saved:
        arrays = {name: saved[name] for name in saved.files}
    return json.loads(str(arrays.pop("spec"))), arrays
