"""GPU support check (MXNet 1.9.1's CUDA wheels: compute capability 5.0-8.9) and CPU fallback."""

from __future__ import annotations

import mxnet as mx
import pytest

from train import devices
from train.errors import ClientError


@pytest.mark.parametrize(
    "capabilities",
    [[(5, 0)], [(5, 2), (6, 1)], [(7, 0), (7, 5)], [(8, 0), (8, 6), (8, 9)], []],
)
def test_maxwell_to_ada_and_no_gpu_are_accepted(capabilities):
    assert devices.check_supported(capabilities) is None  # raises ClientError when refused


@pytest.mark.parametrize(
    ("capability", "named"), [((3, 7), "3.7"), ((9, 0), "9.0"), ((10, 0), "10.0"), ((2, 1), "2.1")]
)
def test_kepler_and_hopper_are_refused_naming_the_supported_gpus(capability, named):
    with pytest.raises(ClientError) as info:
        devices.check_supported([(8, 6), capability])
    message = str(info.value)
    assert f"GPU 1: compute capability {named}" in message
    assert "GPU 0" not in message
    for supported in ("T4", "A10G", "ml.g5", "ml.p3"):
        assert supported in message
    assert "ml.p2" in message and "ml.p5" in message


def test_cpu_is_used_when_no_gpu_is_visible(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    assert devices.training_contexts("float32") == [mx.cpu()]


def test_float16_on_the_cpu_is_refused(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    with pytest.raises(ClientError, match="precision_dtype=float16 needs a GPU"):
        devices.training_contexts("float16")


def test_unsupported_gpu_is_refused_before_training(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    monkeypatch.setattr(devices, "compute_capabilities", lambda count: [(7, 5), (9, 0)][:count])
    with pytest.raises(ClientError, match="GPU 1: compute capability 9.0"):
        devices.training_contexts("float32")


def test_all_supported_gpus_are_used(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    monkeypatch.setattr(devices, "compute_capabilities", lambda count: [(8, 6)] * count)
    assert devices.training_contexts("float16") == [mx.gpu(0), mx.gpu(1)]


def test_oic_cpu_contexts_gives_several_cpu_contexts(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    env = {devices.CPU_CONTEXTS_ENV: "2"}
    assert devices.training_contexts("float32", env) == [mx.cpu(0), mx.cpu(1)]
    assert devices.training_contexts("float32", {}) == [mx.cpu(0)]


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_oic_cpu_contexts_is_refused(monkeypatch, value):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    with pytest.raises(ClientError, match=f"OIC_CPU_CONTEXTS='{value}' must be a positive"):
        devices.training_contexts("float32", {devices.CPU_CONTEXTS_ENV: value})


def _fake_gpus(monkeypatch, *gpus):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: len(gpus))
    monkeypatch.setattr(devices, "query_gpus", lambda count: list(gpus)[:count])


def test_serving_on_a_gpu_mxnet_cannot_run_falls_back_to_the_cpu_naming_it(monkeypatch, caplog):
    _fake_gpus(monkeypatch, devices.Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0)))
    assert devices.inference_context(0) == mx.cpu()
    message = caplog.text
    assert "GPU 0 (NVIDIA H100 80GB HBM3, compute capability 9.0) cannot run MXNet" in message
    assert "serving on the CPU" in message and "ONNX Runtime" in message
    with pytest.raises(ClientError, match="compute capability 9.0"):  # training refuses
        devices.training_contexts("float32")


def test_serving_uses_the_workers_gpu_when_mxnet_runs_it(monkeypatch, caplog):
    _fake_gpus(
        monkeypatch,
        devices.Gpu(0, "Tesla T4", (7, 5)),
        devices.Gpu(1, "NVIDIA A10G", (8, 6)),
    )
    assert devices.inference_context(0) == mx.gpu(0)
    assert devices.inference_context(3) == mx.gpu(1)  # workers spread over the GPUs
    assert "cannot run" not in caplog.text


def test_the_server_loads_and_answers_on_the_cpu_beside_an_unsupported_gpu(
    monkeypatch, caplog, tmp_path
):
    import numpy as np

    from serve.predictor import MXNetPredictor
    from tests.serve_fixtures import make_model_dir

    model_dir = make_model_dir(tmp_path / "model")
    _fake_gpus(monkeypatch, devices.Gpu(0, "NVIDIA B200", (10, 0)))
    predictor = MXNetPredictor.load(model_dir, max_batch=2)  # on mx.gpu(0) it would fail here
    try:
        probabilities = predictor.predict(np.zeros((1, 3, 32, 32), np.float32))
    finally:
        predictor.close()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert "NVIDIA B200, compute capability 10.0) cannot run MXNet" in caplog.text
