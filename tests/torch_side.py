"""Run code in the PyTorch engine's environment from a test running under MXNet's.

The two cannot share a process (GluonCV refuses torch >= 2; the engine must never import
MXNet), so a test builds its expected values with plain MXNet here and hands arrays to a
``.venv-torch`` subprocess through ``.npz`` files. Start one subprocess per test module and
batch the work into it: importing torch costs seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "OIC_TORCH_PYTHON"


def torch_python() -> Path:
    """The torch environment's interpreter: ``$OIC_TORCH_PYTHON``, else ``.venv-torch``.

    Raises:
        RuntimeError: neither exists (the message says how to make it).
    """
    path = Path(os.environ.get(ENV_VAR) or REPO / ".venv-torch" / "bin" / "python")
    if not path.exists():
        raise RuntimeError(
            f"the PyTorch environment's python {path} does not exist: run `make venv` "
            f"(it builds .venv-torch) or point {ENV_VAR} at a python with torch"
        )
    return path


def run(script: str, workdir: Path, arrays: dict[str, np.ndarray], timeout: float = 600) -> dict:
    """Run ``script`` with the torch python (cwd and ``PYTHONPATH`` = the repository), with
    ``sys.argv[1]`` an ``.npz`` of ``arrays`` and ``sys.argv[2]`` the ``.npz`` it must write;
    return that file's arrays.

    Raises:
        AssertionError: the script failed (its output is in the message).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    inputs, outputs = workdir / "torch_in.npz", workdir / "torch_out.npz"
    np.savez(inputs, **arrays)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [str(torch_python()), "-c", script, str(inputs), str(outputs)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"the torch-side script failed:\n{done.stdout}\n{done.stderr[-6000:]}")
    with np.load(outputs, allow_pickle=False) as found:
        return {name: found[name] for name in found.files}


def run_probe(module: str, cases: list[dict], workdir: Path, *, timeout: float = 180) -> Path:
    """Write ``cases`` as JSON, run ``python -m module cases.json out.npz`` with the torch
    python (this checkout first on ``sys.path``) and return the path of ``out.npz``."""
    workdir.mkdir(parents=True, exist_ok=True)
    cases_path, out = workdir / "cases.json", workdir / "out.npz"
    cases_path.write_text(json.dumps(cases))
    subprocess.run(
        [str(torch_python()), "-m", module, str(cases_path), str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=timeout,
    )
    return out


def run_module(
    module: str, spec: dict, arrays: dict[str, np.ndarray], workdir: Path, timeout: float = 300
) -> dict[str, np.ndarray]:
    """``python -m module IN OUT`` with the torch python: ``IN`` holds ``arrays`` and the JSON
    ``spec`` (entry ``spec``); returns the arrays the module saved to ``OUT``."""
    workdir.mkdir(parents=True, exist_ok=True)
    inputs, outputs = workdir / "torch-in.npz", workdir / "torch-out.npz"
    np.savez(inputs, spec=np.array(json.dumps(spec)), **arrays)
    done = subprocess.run(
        [str(torch_python()), "-m", module, str(inputs), str(outputs)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
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
    """On the torch side: the spec and arrays :func:`run_module` wrote."""
    with np.load(path) as saved:
        arrays = {name: saved[name] for name in saved.files}
    return json.loads(str(arrays.pop("spec"))), arrays
