"""The GPU flavour on a machine without a GPU: libraries resolve, and the whole train -> serve ->
predict path runs on the CPU with a stub libcuda.so.1 mounted for the test only.

The stub defines every CUDA driver function libmxnet.so imports as returning 100
(CUDA_ERROR_NO_DEVICE), so mxnet-cu112 imports, sees no GPU and computes on the CPU: a GPU image
broken at the Python level cannot pass. It is never part of an image, where it would shadow the
host driver's library that the NVIDIA container toolkit injects.
"""

from __future__ import annotations

import re

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
