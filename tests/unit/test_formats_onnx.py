"""``train.formats.onnx`` pieces that need no training: fix_gamma, loss heads, the source
record, and a failed export that must not fail the job. The parity with plain MXNet on trained
models is in tests/integration/test_onnx_export.py."""

from __future__ import annotations

import logging

import mxnet as mx
import numpy as np
import onnx
import onnxruntime
import pytest

from tests import builtin_models as bm
from tests.serve_fixtures import make_model_dir
from train import artifacts, job
from train.formats import model_dir, symbolic
from train.formats import onnx as onnx_format


def test_only_fix_gamma_batchnorms_get_gamma_one():
    data = mx.sym.var("data")
    fixed = mx.sym.BatchNorm(data, fix_gamma=True, name="bn_data")
    learned = mx.sym.BatchNorm(fixed, fix_gamma=False, name="bn1")
    default = mx.sym.BatchNorm(learned, name="bn2")  # MXNet's default: fix_gamma=True
    params = {f"{n}_gamma": mx.nd.full((3,), 0.5) for n in ("bn_data", "bn1", "bn2")}

    fixed_params = onnx_format.with_fixed_gammas(default, params)

    assert fixed_params["bn_data_gamma"].asnumpy().tolist() == [1.0] * 3
    assert fixed_params["bn1_gamma"].asnumpy().tolist() == [0.5] * 3
    assert fixed_params["bn2_gamma"].asnumpy().tolist() == [1.0] * 3
    assert params["bn_data_gamma"].asnumpy().tolist() == [0.5] * 3  # the caller's dict is kept


@pytest.mark.parametrize(
    ("variant", "op"), [(bm.SMALL, "softmax"), (bm.MULTI_LABEL, "sigmoid")], ids=["sm", "lr"]
)
def test_a_loss_head_becomes_its_forward_pass_without_a_label(variant, op):
    symbol = symbolic.without_loss_head(bm.resnet_symbol(variant, 3))
    assert symbolic.nodes(symbol)[-1]["op"] == op
    assert not [name for name in symbol.list_arguments() if name.endswith("_label")]


def test_a_graph_without_loss_head_is_unchanged():
    symbol = mx.sym.softmax(mx.sym.FullyConnected(mx.sym.var("data"), num_hidden=3))
    assert symbolic.without_loss_head(symbol) is symbol


@pytest.fixture
def product_model(tmp_path):
    return make_model_dir(tmp_path / "model", num_classes=4, multi_label=True)


def test_model_onnx_records_its_source_and_is_reused_only_while_current(product_model, caplog):
    caplog.set_level(logging.INFO)
    path = onnx_format.write(product_model)
    saved = model_dir.open_model(product_model)
    exported = onnx.load(str(path))
    props = {p.key: p.value for p in exported.metadata_props}
    assert props[onnx_format.META_SOURCE] == artifacts.params_file(1)
    assert '"pixels": "raw"' in props[onnx_format.META_CONVENTION]
    assert onnx_format.made_from(exported, saved.files.params)
    assert onnx_format.current_onnx(saved) == exported

    # New weights under the same name: the file is stale and the model is converted again.
    params = mx.nd.load(str(saved.files.params))
    params = {k: v + 0.01 if k.endswith("head_bias") else v for k, v in params.items()}
    mx.nd.save(str(saved.files.params), params)
    assert not onnx_format.made_from(exported, saved.files.params)
    again = onnx_format.current_onnx(saved)
    assert onnx_format.made_from(again, saved.files.params)
    assert "was not made from image-classification-0001.params" in caplog.text


def test_multi_label_product_model_outputs_sigmoid_scores(product_model):
    saved = model_dir.open_model(product_model)
    batch = np.random.default_rng(0).uniform(0, 255, (3, 3, 32, 32)).astype(np.float32)
    model = onnx_format.to_onnx(saved)
    session = onnxruntime.InferenceSession(model.SerializeToString())
    ours = session.run(None, {"data": batch})[0]
    theirs = model_dir.load_for_inference(saved, mx.cpu())(mx.nd.array(batch)).asnumpy()
    assert ours.shape == (3, 4)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_failed_export_is_logged_and_leaves_no_stale_file(tmp_path, caplog):
    stale = tmp_path / artifacts.ONNX_FILE
    stale.write_bytes(b"an earlier run's")
    job.export_onnx(tmp_path)  # no model files: the export fails
    assert not stale.exists()
    assert "Could not write model.onnx (the MXNet model files are complete" in caplog.text


def test_a_model_that_expects_normalised_pixels_gets_the_normalisation_in_onnx(product_model):
    """An earlier release's model (hyperparameters.json, no model-metadata.json) expects
    ImageNet-normalised pixels: model.onnx takes raw ones, as the server does. Expected: plain
    MXNet on pixels normalised here with the ImageNet statistics MXNet publishes (the
    ``mean_r/g/b``, ``std_r/g/b`` of its ImageNet examples)."""
    (product_model / artifacts.METADATA_FILE).unlink()
    assert model_dir.open_model(product_model).convention.pixels == "normalized"
    path = onnx_format.write(product_model)
    raw = np.random.default_rng(0).uniform(0, 255, (8, 3, 32, 32)).astype(np.float32)
    mean = np.array([123.68, 116.779, 103.939], np.float32)[:, None, None]
    std = np.array([58.393, 57.12, 57.375], np.float32)[:, None, None]
    prefix = product_model / artifacts.MODEL_PREFIX
    expected = bm.plain_mxnet_predict(prefix, 1, (raw - mean) / std)
    got = onnxruntime.InferenceSession(str(path)).run(None, {"data": raw})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - bm.plain_mxnet_predict(prefix, 1, raw)).max() > 1e-2  # not vacuous
