"""Which training engine a job runs (``training_engine``), and the clear errors around it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from train import devices, engines
from train.devices import Gpu
from train.engines.torch import run
from train.errors import ClientError

T4, A100, H100, B200 = (
    Gpu(0, "Tesla T4", (7, 5)),
    Gpu(0, "A100-SXM4-40GB", (8, 0)),
    Gpu(0, "H100 80GB HBM3", (9, 0)),
    Gpu(0, "B200", (10, 0)),
)
K80, P100 = Gpu(0, "Tesla K80", (3, 7)), Gpu(0, "Tesla P100", (6, 0))


@pytest.mark.parametrize(
    ("gpus", "engine", "why"),
    [
        ([], "mxnet", "no GPU visible"),
        ([T4], "mxnet", "MXNet 1.9.1 runs it"),
        ([A100, A100], "mxnet", "MXNet 1.9.1 runs it"),
        ([H100], "pytorch", "MXNet 1.9.1 has no kernels for it"),
        ([B200], "pytorch", "MXNet 1.9.1 has no kernels for it"),
        ([K80], "mxnet", "too old for both engines"),
    ],
)
def test_auto_follows_the_table(gpus, engine, why):
    choice = engines.choose("auto", gpus)
    assert choice.engine == engine and why in choice.reason


def test_an_explicit_engine_is_taken_as_asked():
    assert engines.choose("pytorch", []).engine == "pytorch"
    assert engines.choose("mxnet", [H100]).engine == "mxnet"  # MXNet's own check then refuses


def test_pytorch_on_a_gpu_its_build_lacks_is_refused_by_name():
    with pytest.raises(ClientError, match=r"Tesla P100.*compute capability 7.0 or newer"):
        engines.choose("pytorch", [P100])


def test_bfloat16_needs_the_pytorch_engine_and_an_ampere_or_newer_gpu():
    with pytest.raises(ClientError, match="bfloat16 needs the PyTorch engine"):
        engines.choose("auto", [A100], "bfloat16")
    with pytest.raises(ClientError, match="compute capability 8.0 or newer"):
        engines.choose("pytorch", [T4], "bfloat16")
    assert engines.choose("auto", [H100], "bfloat16").engine == "pytorch"


def test_a_driver_too_old_for_torch_is_named_with_the_minimum(monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda: [H100])
    monkeypatch.setattr(devices, "driver_cuda_version", lambda: "11.4")
    torch = SimpleNamespace(
        __version__="2.10.0+cu128",
        version=SimpleNamespace(cuda="12.8"),
        cuda=SimpleNamespace(is_available=lambda: False),
    )
    with pytest.raises(ClientError) as info:
        run._check_driver(torch)
    message = str(info.value)
    assert "H100" in message and "release 525 or newer" in message and "CUDA 11.4" in message
    torch.cuda.is_available = lambda: True
    run._check_driver(torch)  # a usable GPU: nothing to say


def test_a_driver_library_without_the_driver_api_means_no_gpu(monkeypatch):
    """A stand-in libcuda.so.1 (the GPU image's tests mount one) lacks cuInit: no GPU, no crash."""
    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: SimpleNamespace())
    assert devices.visible_gpus() == []
    assert devices.driver_cuda_version() is None


def test_float16_without_a_gpu_is_refused_before_any_work():
    for engine in ("auto", "mxnet", "pytorch"):
        with pytest.raises(ClientError, match="float16 needs a GPU and none is visible"):
            engines.choose(engine, [], "float16")
