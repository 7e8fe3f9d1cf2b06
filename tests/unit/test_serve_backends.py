"""``SERVE_BACKEND``: the fixed table of ``auto`` and the predictor each choice loads (the
device query faked: this machine has no GPU)."""

from __future__ import annotations

import logging

import mxnet as mx
import numpy as np
import pytest

from serve import backends
from serve.onnx_predictor import OnnxRuntimePredictor, providers_for
from serve.predictor import MXNetPredictor
from serve.settings import Settings, SettingsError
from tests.serve_fixtures import make_model_dir
from train import devices

T4 = devices.Gpu(0, "Tesla T4", (7, 5))
A10G = devices.Gpu(0, "NVIDIA A10G", (8, 6))
H100 = devices.Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0))
B200 = devices.Gpu(0, "NVIDIA B200", (10, 0))
K80 = devices.Gpu(0, "Tesla K80", (3, 7))


@pytest.mark.parametrize(
    ("setting", "gpu", "backend", "on_gpu"),
    [
        ("auto", None, "mxnet", False),
        ("auto", T4, "mxnet", True),
        ("auto", A10G, "mxnet", True),
        ("auto", H100, "onnxruntime", True),
        ("auto", B200, "onnxruntime", True),
        ("auto", K80, "mxnet", False),
        ("mxnet", None, "mxnet", False),
        ("mxnet", H100, "mxnet", False),  # as asked: MXNet, on the CPU
        ("onnxruntime", None, "onnxruntime", False),
        ("onnxruntime", A10G, "onnxruntime", True),
        ("onnxruntime", K80, "onnxruntime", False),
    ],
)
def test_the_backend_table(setting, gpu, backend, on_gpu):
    choice = backends.choose(setting, gpu)
    assert (choice.backend, choice.gpu is not None) == (backend, on_gpu)
    if on_gpu:
        assert choice.gpu == gpu


def test_serve_backend_is_a_setting_with_auto_by_default(tmp_path):
    base = {"SAGEMAKER_BASE_DIR": str(tmp_path)}
    assert Settings.from_env(base).backend == "auto"
    assert Settings.from_env({**base, "SERVE_BACKEND": " ONNXRuntime "}).backend == "onnxruntime"
    with pytest.raises(SettingsError, match="SERVE_BACKEND='tensorrt' is invalid: expected one"):
        Settings.from_env({**base, "SERVE_BACKEND": "tensorrt"})


def _fake_gpu(monkeypatch, gpu):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0 if gpu is None else 1)
    monkeypatch.setattr(devices, "query_gpus", lambda count: [gpu][:count] if gpu else [])


@pytest.mark.parametrize(
    ("setting", "gpu", "expected"),
    [
        ("auto", None, MXNetPredictor),
        ("onnxruntime", None, OnnxRuntimePredictor),
        ("auto", H100, OnnxRuntimePredictor),
    ],
    ids=["auto-cpu", "onnxruntime-cpu", "auto-hopper"],
)
def test_the_chosen_predictor_loads_and_answers(
    monkeypatch, tmp_path, caplog, setting, gpu, expected
):
    caplog.set_level(logging.INFO)
    make_model_dir(tmp_path / "model")
    _fake_gpu(monkeypatch, gpu)
    env = {"SAGEMAKER_BASE_DIR": str(tmp_path), "SERVE_BACKEND": setting}
    predictor = backends.load_predictor(Settings.from_env(env))
    try:
        assert type(predictor) is expected
        probabilities = predictor.predict(np.zeros((2, 3, 32, 32), np.float32))
    finally:
        predictor.close()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    engine = "mxnet" if expected is MXNetPredictor else "onnxruntime"
    assert f"SERVE_BACKEND={setting}: {engine} (" in caplog.text
    if gpu is not None:  # this ONNX Runtime (the CPU package) has no CUDA provider
        assert "has no CUDA provider" in caplog.text and "serving on the CPU" in caplog.text


def test_onnx_runtime_uses_the_cuda_provider_on_the_workers_gpu():
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    gpu = devices.Gpu(1, "NVIDIA H100 80GB HBM3", (9, 0))
    assert providers_for(gpu, available) == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    assert providers_for(None, available) == ["CPUExecutionProvider"]


def test_a_cuda_provider_that_does_not_start_is_reported(monkeypatch, tmp_path, caplog):
    """An onnxruntime that lists the CUDA provider but cannot start it (no CUDA libraries, a
    driver too old): the session runs on the CPU and the log says so."""
    import onnxruntime

    make_model_dir(tmp_path / "model")
    _fake_gpu(monkeypatch, H100)
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    env = {"SAGEMAKER_BASE_DIR": str(tmp_path), "SERVE_BACKEND": "auto"}
    predictor = backends.load_predictor(Settings.from_env(env))
    try:
        probabilities = predictor.predict(np.zeros((1, 3, 32, 32), np.float32))
    finally:
        predictor.close()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert "CUDA provider did not start on GPU 0 (NVIDIA H100 80GB HBM3" in caplog.text
