"""The installed package is the whole product: a wheel built from the source tree holds every
module of ``train/``, ``serve/`` and ``cloud/``, and each of them imports in a clean venv where
the wheel is the only copy of the project.

The clean venv has no packages of its own (``--without-pip``, no system site-packages); the
dependencies come from the venv running the tests, put on ``PYTHONPATH`` (a plain path entry:
its ``.pth`` files, among them the editable install of the checkout, are not run), and the
imports run outside the checkout, so a module missing from the wheel cannot be found anywhere.

One rule decides where a module is imported: a module inside a package named ``torch``
(``train/engines/torch/``) belongs to the PyTorch engine, which runs in ``.venv-torch`` and never
imports MXNet, so it is imported with ``.venv-torch``'s packages; every other module with this
venv's. ``__main__`` modules are entry points (importing one runs the program): their packages
are imported instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("train", "serve", "cloud")
BUILD_FILES = ("pyproject.toml", "README.md")
ENGINE_VENV = "torch"  # a package of this name runs in .venv-torch
IMPORT_ALL = """
import importlib, json, sys
print(json.dumps({name: importlib.import_module(name).__file__ for name in sys.argv[1:]}))
"""


def source_files() -> list[str]:
    """Every module file of the packages and every package-data file pyproject.toml declares,
    relative to the repository (``train/formats/x.py``, ``serve/try_it.html``)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = [
        f"{package}/{pattern}"
        for package, patterns in declared.get("package-data", {}).items()
        for pattern in patterns
    ]
    return sorted(
        [
            p.relative_to(REPO).as_posix()
            for package in PACKAGES
            for p in (REPO / package).rglob("*.py")
            if "__pycache__" not in p.parts
        ]
        + data
    )


def module_name(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the clean venv it is installed in). Built from a copy of the sources, so
    setuptools' build/ and .egg-info folders stay out of the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in BUILD_FILES:
        shutil.copy(REPO / name, src / name)
    pip = (sys.executable, "-m", "pip")
    _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", work, src)
    (wheel,) = work.glob("*.whl")
    venv = work / "clean-venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel)
    return wheel, venv


def test_the_wheel_holds_every_module_and_nothing_else(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    modules = sorted(n for n in names if not n.split("/")[0].endswith(".dist-info"))
    assert modules == source_files()


def _import_in(venv: Path, site_packages: str, modules: list[str], cwd: Path) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "PYTHONPATH": site_packages}
    python = venv / "bin" / "python"
    result = _run(python, "-c", IMPORT_ALL, *modules, cwd=cwd, env=env)
    return json.loads(result.stdout.splitlines()[-1])


def test_every_module_imports_from_the_installed_wheel(installed, tmp_path):
    _, venv = installed
    paths = [p for p in source_files() if p.endswith(".py") and not p.endswith("/__main__.py")]
    in_engine = {module_name(p): ENGINE_VENV in Path(p).parent.parts for p in paths}
    groups = {
        ENGINE_VENV: [m for m, engine in in_engine.items() if engine],
        "main": [m for m, engine in in_engine.items() if not engine],
    }
    # This venv's site-packages folders (not the checkout, which is on sys.path too).
    sites = {"main": os.pathsep.join(p for p in sys.path if Path(p).name == "site-packages")}
    if groups[ENGINE_VENV]:
        found = sorted((REPO / ".venv-torch").glob("lib/python3*/site-packages"))
        assert found, "the PyTorch engine's modules need .venv-torch: run make venv"
        sites[ENGINE_VENV] = str(found[0])
    files: dict[str, str] = {}
    for group, names in groups.items():
        if names:
            files.update(_import_in(venv, sites[group], names, tmp_path))
    assert sorted(files) == sorted(in_engine)
    outside = {m: f for m, f in files.items() if not Path(f).is_relative_to(venv)}
    assert not outside, f"imported from outside the clean venv: {outside}"
