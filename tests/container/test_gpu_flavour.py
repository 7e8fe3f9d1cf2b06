"""The GPU flavour on a machine without a GPU: libraries resolve (MXNet's and ONNX Runtime's CUDA
provider's), onnxruntime-gpu carries code for the GPUs the README lists (cuobjdump, no GPU
needed), and the whole train -> serve -> predict path runs on the CPU with a stub libcuda.so.1
mounted for the test only, with either backend.

The stub defines every CUDA driver function libmxnet.so imports as returning 100
(CUDA_ERROR_NO_DEVICE), so mxnet-cu112 imports, sees no GPU and computes on the CPU: a GPU image
broken at the Python level cannot pass. It is never part of an image, where it would shadow the
host driver's library that the NVIDIA container toolkit injects.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

import pytest

from tests.container.conftest import (
    SMALL_HYPERPARAMETERS,
    require_host_tools,
    train_in_container,
)
from tests.container.dockerctl import docker, removed_on_exit, run_container, sh
from tests.container.test_serve import serve_and_predict
from tests.container.test_train import assert_metric_lines, assert_model_dir
from tests.datagen import make_sagemaker_tree

LIBMXNET = "/opt/venv/lib/python3.11/site-packages/mxnet/libmxnet.so"
LIBCUDA_TARGET = "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
ORT_CUDA_PROVIDER = (
    "/opt/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so"
)
# What the pinned onnxruntime-gpu (1.26.0, a CUDA 12 build) carries, as cuobjdump lists it:
# machine code for these architectures, and PTX that the driver compiles for newer GPUs. A new
# pin that changes them fails here: update this and the README's GPU list together.
ORT_MACHINE_CODE = {"sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90a"}
ORT_PTX = {"sm_90"}
# The GPUs the README says the GPU image serves with ONNX Runtime, by compute capability.
ORT_GPUS = {
    "P100": (6, 0),
    "V100": (7, 0),
    "T4": (7, 5),
    "A100": (8, 0),
    "A10G": (8, 6),
    "L4, L40S": (8, 9),
    "H100, H200": (9, 0),
    "B200": (10, 0),
    "RTX 50-series": (12, 0),
}


def test_every_library_of_libmxnet_resolves_except_the_driver(gpu_image):
    result = run_container(gpu_image, "ldd", LIBMXNET, timeout=120)
    assert result.code == 0, result.log
    missing = sorted(line.split()[0] for line in result.log.splitlines() if "not found" in line)
    assert missing == ["libcuda.so.1"], result.log


@pytest.fixture(scope="module")
def libcuda_stub(gpu_image, tmp_path_factory):
    """A libcuda.so.1 whose functions all return CUDA_ERROR_NO_DEVICE, built on the host."""
    require_host_tools("gcc", "nm")
    work = tmp_path_factory.mktemp("libcuda")
    created = docker("create", gpu_image, timeout=120).stdout.strip()
    try:
        with removed_on_exit(work / "libmxnet.so") as lib:
            docker("cp", f"{created}:{LIBMXNET}", lib, timeout=600)
            undefined = sh(["nm", "-D", "--undefined-only", lib], timeout=120).stdout
    finally:
        docker("rm", "-f", created, check=False)
    # Driver API functions only (cuInit, cuModuleLoadData, ...): cuda*, cublas*, cudnn* etc.
    # come from the runtime libraries in the nvidia-* wheels and must not be shadowed.
    names = {line.split()[-1].split("@")[0] for line in undefined.splitlines() if line.strip()}
    symbols = sorted(n for n in names if re.match(r"cu[A-Z]", n))
    assert symbols, "libmxnet.so imports no cu* function: is this the GPU flavour?"
    source = work / "libcuda_stub.c"
    source.write_text(
        "/* Test-only stand-in for the NVIDIA driver: 100 = CUDA_ERROR_NO_DEVICE. */\n"
        + "".join(f"int {name}(void) {{ return 100; }}\n" for name in symbols)
    )
    stub = work / "libcuda.so.1"
    sh(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", stub, source], timeout=120)
    return stub


def test_gpu_image_imports_mxnet_with_cuda_and_falls_back_to_the_cpu(gpu_image, libcuda_stub):
    script = (
        "import mxnet as mx; "
        "assert mx.runtime.Features().is_enabled('CUDA'); "
        "print('gpus', mx.context.num_gpus()); "
        "print('sum', mx.nd.ones((2, 2)).sum().asscalar())"
    )
    result = run_container(
        gpu_image,
        "python",
        "-c",
        script,
        mounts=[(libcuda_stub, LIBCUDA_TARGET, "ro")],
        timeout=120,
    )
    assert result.code == 0, result.log
    assert "gpus 0" in result.log and "sum 4.0" in result.log, result.log


def test_gpu_image_trains_serves_and_predicts_on_the_cpu(gpu_image, libcuda_stub, tmp_path):
    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=SMALL_HYPERPARAMETERS)
    stub_mount = ("-v", f"{libcuda_stub}:{LIBCUDA_TARGET}:ro")
    result = train_in_container(gpu_image, base, extra=stub_mount)
    assert result.code == 0, result.log[-8000:]
    assert_model_dir(base / "model")
    assert_metric_lines(result.log)
    serve_and_predict(gpu_image, base / "model", num_classes=3, extra=stub_mount)
    # onnxruntime-gpu on the CPU (no GPU behind the stub), running the job's model.onnx.
    ort = ("-e", "SERVE_BACKEND=onnxruntime")
    serve_and_predict(gpu_image, base / "model", num_classes=3, extra=stub_mount + ort)


def test_onnxruntime_cuda_provider_resolves_every_library(gpu_image):
    result = run_container(gpu_image, "ldd", ORT_CUDA_PROVIDER, timeout=120)
    assert result.code == 0, result.log
    missing = sorted(line.split()[0] for line in result.log.splitlines() if "not found" in line)
    assert set(missing) <= {"libcuda.so.1"}, result.log  # the driver comes with the host


def _capability(arch: str) -> tuple[int, int]:
    digits = arch.removeprefix("sm_").rstrip("a")
    return int(digits[:-1]), int(digits[-1])


def runs_on(capability: tuple[int, int], machine_code: set[str], ptx: set[str]) -> bool:
    """Whether a GPU of ``capability`` can run the code: machine code of its major version and
    a minor version up to its own (``sm_90a``-style code only on exactly that capability), or
    PTX of an older or equal capability, which the driver compiles at load."""
    for arch in machine_code:
        major, minor = _capability(arch)
        if arch.endswith("a"):
            if (major, minor) == capability:
                return True
        elif major == capability[0] and minor <= capability[1]:
            return True
    return any(_capability(arch) <= capability for arch in ptx)


@pytest.fixture(scope="module")
def ort_cuda_provider(gpu_image, tmp_path_factory) -> Path:
    """libonnxruntime_providers_cuda.so copied out of the GPU image."""
    target = tmp_path_factory.mktemp("ort") / "libonnxruntime_providers_cuda.so"
    created = docker("create", gpu_image, timeout=120).stdout.strip()
    try:
        docker("cp", f"{created}:{ORT_CUDA_PROVIDER}", target, timeout=600)
    finally:
        docker("rm", "-f", created, check=False)
    return target


def test_onnxruntime_gpu_carries_code_for_the_documented_gpus(ort_cuda_provider):
    cuobjdump = Path(sysconfig.get_paths()["purelib"]) / "nvidia" / "cu13" / "bin" / "cuobjdump"
    assert cuobjdump.is_file(), "pip install nvidia-cuda-cuobjdump (requirements/dev.in)"
    listed = {
        kind: set(
            re.findall(
                r"\.(sm_\d+a?)\.(?:cubin|ptx)",
                sh([cuobjdump, flag, ort_cuda_provider], timeout=300).stdout,
            )
        )
        for kind, flag in (("machine code", "--list-elf"), ("ptx", "--list-ptx"))
    }
    assert listed == {"machine code": ORT_MACHINE_CODE, "ptx": ORT_PTX}
    uncovered = [
        name
        for name, capability in ORT_GPUS.items()
        if not runs_on(capability, listed["machine code"], listed["ptx"])
    ]
    assert not uncovered, f"no code in onnxruntime-gpu for {uncovered}"


def test_runs_on_follows_cuda_compatibility_rules():
    assert runs_on((8, 9), {"sm_86"}, set())  # same major, older minor
    assert not runs_on((8, 6), {"sm_89"}, set())  # newer minor
    assert not runs_on((10, 0), {"sm_90a", "sm_120a"}, set())  # arch-specific code only
    assert runs_on((10, 0), {"sm_90a"}, {"sm_90"})  # PTX compiled by the driver
    assert not runs_on((8, 0), set(), {"sm_90"})  # PTX of a newer GPU


def test_gpu_image_onnxruntime_imports_and_lists_the_cuda_provider(gpu_image, libcuda_stub):
    script = "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
    result = run_container(
        gpu_image,
        "python",
        "-c",
        script,
        mounts=[(libcuda_stub, LIBCUDA_TARGET, "ro")],
        timeout=120,
    )
    assert result.code == 0, result.log
    assert "CUDAExecutionProvider" in result.log, result.log


TORCH_PYTHON = "/opt/venv-torch/bin/python"
# The GPUs the README says the GPU image trains with the PyTorch engine (MXNet cannot run them).
TORCH_ARCHITECTURES = {"sm_90", "sm_100", "sm_120"}


def test_the_pytorch_engine_environment_has_kernels_for_hopper_and_blackwell(gpu_image):
    code = "import torch; print(torch._C._cuda_getArchFlags())"  # what it was built for
    result = run_container(gpu_image, TORCH_PYTHON, "-c", code, timeout=300)
    assert result.code == 0, result.log
    arches = set(re.findall(r"sm_\d+", result.log.splitlines()[-1]))
    assert arches >= TORCH_ARCHITECTURES, result.log


def test_the_pytorch_engine_process_imports_without_mxnet_beside_it(gpu_image, libcuda_stub):
    code = (
        "import sys, train.engines.torch.run, train.engines.torch.engine; "
        "assert 'mxnet' not in sys.modules and 'gluoncv' not in sys.modules; print('clean')"
    )
    result = run_container(gpu_image, TORCH_PYTHON, "-c", code, timeout=300)
    assert result.code == 0 and "clean" in result.log, result.log
    # ... and MXNet's side still imports GluonCV (which refuses torch >= 2 in its environment).
    result = run_container(
        gpu_image,
        "python",
        "-c",
        "import gluoncv; print('ok')",
        mounts=[(libcuda_stub, LIBCUDA_TARGET, "ro")],
        timeout=300,
    )
    assert result.code == 0 and "ok" in result.log, result.log


def test_gpu_image_trains_with_the_pytorch_engine_and_serves_its_model(
    gpu_image, libcuda_stub, tmp_path
):
    hyperparameters = {**SMALL_HYPERPARAMETERS, "training_engine": "pytorch"}
    base = make_sagemaker_tree(tmp_path / "opt_ml", hyperparameters=hyperparameters)
    stub_mount = ("-v", f"{libcuda_stub}:{LIBCUDA_TARGET}:ro")
    result = train_in_container(gpu_image, base, extra=stub_mount)
    assert result.code == 0, result.log[-8000:]
    assert "Training engine: pytorch (training_engine=pytorch)" in result.log
    assert "Starting the PyTorch engine (/opt/venv-torch/bin/python)" in result.log
    assert_model_dir(base / "model")
    assert_metric_lines(result.log)
    serve_and_predict(gpu_image, base / "model", num_classes=3, extra=stub_mount)
