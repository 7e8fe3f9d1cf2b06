"""Symbolic graphs of any origin: depth, classifier, served output, and checkpoints in the
``pretrained`` channel. Graphs come from the independent builder of ``tests.builtin_models``."""

from __future__ import annotations

from dataclasses import replace

import mxnet as mx
import numpy as np
import pytest

from tests import builtin_models as bm
from train.errors import ClientError
from train.formats import mxnet_checkpoint, symbolic


@pytest.mark.parametrize("variant", [bm.SMALL, bm.IMAGENET], ids=["resnet20", "resnet18"])
def test_depth_counts_like_resnet_names_its_depth(variant):
    assert symbolic.depth(bm.resnet_symbol(variant, 3)) == variant.num_layers


@pytest.mark.parametrize("variant", [bm.SMALL, bm.FC_NAMED], ids=["fc1", "fc"])
def test_the_classifier_is_the_last_fully_connected_layer(variant):
    name, params = symbolic.classifier_layer(bm.resnet_symbol(variant, 3))
    fc = variant.classifier
    assert (name, params) == (fc, [f"{fc}_weight", f"{fc}_bias"])


def test_the_output_operator_tells_the_label_mode():
    assert not symbolic.outputs_independent_scores(bm.resnet_symbol(bm.SMALL, 3))
    assert symbolic.outputs_independent_scores(bm.resnet_symbol(bm.MULTI_LABEL, 3))


def test_any_output_operator_is_served_as_the_graph_computes_it():
    """An output operator nobody planned for (SVMOutput) still gives the graph's output."""
    fc = mx.sym.FullyConnected(mx.sym.var("data"), num_hidden=3, name="fc1")
    symbol = mx.sym.SVMOutput(fc, name="svm")
    rng = np.random.default_rng(0)
    params = {
        "fc1_weight": mx.nd.array(rng.normal(size=(3, 4))),
        "fc1_bias": mx.nd.array(rng.normal(size=3)),
    }
    batch = rng.normal(size=(5, 4)).astype(np.float32)
    model = symbolic.GraphModel(symbol, params, mx.cpu())
    got = model(mx.nd.array(batch)).asnumpy()
    expected = batch @ params["fc1_weight"].asnumpy().T + params["fc1_bias"].asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert model(mx.nd.array(batch[:2])).shape == (2, 3)  # another batch size


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_find_takes_the_newest_params_of_the_symbols_prefix(tmp_path):
    _touch(tmp_path / "zoo", "resnet-18-symbol.json", "resnet-18-0000.params")
    _touch(tmp_path / "zoo", "resnet-18-0007.params", "other-0009.params")
    found = mxnet_checkpoint.find(tmp_path)
    assert found == (tmp_path / "zoo/resnet-18-symbol.json", tmp_path / "zoo/resnet-18-0007.params")


def test_find_without_a_symbol_file_leaves_the_channel_to_gluoncv_params(tmp_path):
    _touch(tmp_path, "resnet18_v1.params")
    assert mxnet_checkpoint.find(tmp_path) is None
    assert mxnet_checkpoint.find(tmp_path / "absent") is None


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a-symbol.json", "b-symbol.json", "a-0000.params"], "several symbol files"),
        (["a-symbol.json", "b-0000.params"], "no a-NNNN.params next to it"),
    ],
)
def test_find_says_what_is_wrong_with_the_channel(tmp_path, names, message):
    _touch(tmp_path, *names)
    with pytest.raises(ClientError, match=message):
        mxnet_checkpoint.find(tmp_path)


def test_a_checkpoint_for_other_input_channels_is_refused(tmp_path):
    symbol = bm.resnet_symbol(bm.SMALL, 3)
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 3, 28, 28))], label_shapes=[("softmax_label", (1,))])
    module.init_params()
    module.save_checkpoint(str(tmp_path / "net"), 1)
    paths = (tmp_path / "net-symbol.json", tmp_path / "net-0001.params")
    with pytest.raises(ClientError, match="does not take 1x28x28 input"):
        mxnet_checkpoint.from_checkpoint(*paths, 2, (1, 28, 28), 20)
    net = mxnet_checkpoint.from_checkpoint(*paths, 2, (3, 28, 28), 20)
    assert net(mx.nd.zeros((1, 3, 28, 28))).shape == (1, 2)


@pytest.fixture
def float16_checkpoint(tmp_path):
    """An untrained :data:`~tests.builtin_models.FLOAT16` model saved as a float16 job saves
    it, and its graph's float32 twin (what plain MXNet runs on a CPU)."""
    symbol = bm.resnet_symbol(bm.FLOAT16, 3)
    twin = bm.resnet_symbol(replace(bm.FLOAT16, dtype="float32"), 3)
    module = mx.mod.Module(twin, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 3, 28, 28))], label_shapes=[("softmax_label", (1,))])
    module.init_params(mx.init.Xavier(magnitude=2))
    args, auxs = bm.saved_params(symbol, *module.get_params())
    mx.model.save_checkpoint(str(tmp_path / "net"), 1, symbol, args, auxs)
    return tmp_path / "net-symbol.json", tmp_path / "net-0001.params", twin


def test_a_float16_model_loads_in_float32_and_answers_as_plain_mxnet(float16_checkpoint):
    symbol_file, params_file, twin = float16_checkpoint
    stored = symbolic.load_params(params_file)
    assert stored["conv0_weight"].dtype == np.float16 and stored["fc1_bias"].dtype == np.float16
    assert stored["bn_data_moving_var"].dtype == np.float32
    symbol, params = symbolic.load(symbol_file, params_file)
    assert {v.dtype for v in params.values()} == {np.float32}
    assert "float16" not in symbol.tojson()
    batch = np.random.default_rng(0).uniform(0, 255, (4, 3, 28, 28)).astype(np.float32)
    got = symbolic.GraphModel(symbol, params, mx.cpu())(mx.nd.array(batch)).asnumpy()
    expected = bm.plain_mxnet_predict(symbol_file.with_name("net"), 1, batch, twin)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_float16_checkpoint_in_the_pretrained_channel_transfers(float16_checkpoint):
    symbol_file, params_file, _ = float16_checkpoint
    net = mxnet_checkpoint.from_checkpoint(symbol_file, params_file, 2, (3, 28, 28), 20)
    assert net(mx.nd.zeros((1, 3, 28, 28))).shape == (1, 2)
