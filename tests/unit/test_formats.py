"""The input-convention record (model-metadata.json) and the one rule that detects a convention."""

from __future__ import annotations

import json
import logging

import mxnet as mx
import numpy as np
import pytest

from train import artifacts
from train.formats import convention, metadata
from train.formats.metadata import BadMetadata, InputConvention, ModelMetadata
from train.model import normalize_pixels

RAW_CROP = InputConvention("raw", 3, "resize_crop", 36)


def test_the_record_round_trips_through_the_file(tmp_path):
    metadata.write(tmp_path, ModelMetadata(RAW_CROP))
    doc = json.loads((tmp_path / artifacts.METADATA_FILE).read_text())
    assert doc == {
        "format_version": 1,
        "input": {"pixels": "raw", "channels": 3, "geometry": "resize_crop", "resize": 36},
    }
    assert metadata.read(tmp_path) == ModelMetadata(RAW_CROP)
    assert metadata.read(tmp_path / "absent") is None


def test_fields_added_later_are_ignored(tmp_path):
    doc = ModelMetadata(RAW_CROP).to_document()
    doc["weights"] = {"variant": "v1b"}
    doc["input"]["layout"] = "NCHW"
    (tmp_path / artifacts.METADATA_FILE).write_text(json.dumps(doc))
    assert metadata.read(tmp_path).input == RAW_CROP


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 2}, "newer than this version understands"),
        ({"format_version": "1"}, "not a positive integer"),
        ({"input": {"pixels": "raw", "channels": 3}}, "lacks the field 'geometry'"),
        ({"input": {"pixels": "scaled", "channels": 3, "geometry": "stretch"}}, "'scaled'"),
        ({"input": {"pixels": "raw", "channels": 4, "geometry": "stretch"}}, "not 1 or 3"),
        ({"input": {"pixels": "raw", "channels": 3, "geometry": "resize_crop"}}, "needs an int"),
        ({"input": "raw"}, 'an "input" object'),
    ],
)
def test_an_unusable_record_says_what_is_wrong(tmp_path, change, message):
    doc = {**ModelMetadata(RAW_CROP).to_document(), **change}
    (tmp_path / artifacts.METADATA_FILE).write_text(json.dumps(doc))
    with pytest.raises(BadMetadata, match=message) as info:
        metadata.read(tmp_path)
    assert artifacts.METADATA_FILE in str(info.value)


def test_a_record_that_is_not_json_is_refused(tmp_path):
    (tmp_path / artifacts.METADATA_FILE).write_text("{pixels: raw")
    with pytest.raises(BadMetadata, match="not valid JSON"):
        metadata.read(tmp_path)


def graph(first: str = "bn_data", through: str | None = "id", fix_gamma: bool | None = True):
    """A tiny graph: data -> [identity | Cast] -> first layer -> fc1 -> SoftmaxOutput."""
    x = mx.sym.var("data")
    if through == "id":
        x = mx.sym.identity(x, name="id")
    elif through == "cast":
        x = mx.sym.Cast(x, dtype="float16", name="cast0")
    if first == "bn_data":
        kwargs = {} if fix_gamma is None else {"fix_gamma": fix_gamma}
        x = mx.sym.BatchNorm(x, eps=2e-5, name="bn_data", **kwargs)
    else:
        x = mx.sym.Convolution(x, num_filter=4, kernel=(3, 3), name="conv0")
    x = mx.sym.FullyConnected(x, num_hidden=3, name="fc1")
    return json.loads(mx.sym.SoftmaxOutput(x, name="softmax").tojson())


def detect(doc, record=None, hyperparameters=None, channels=3):
    return convention.detect(doc, channels, record=record, product_hyperparameters=hyperparameters)


@pytest.mark.parametrize("through", ["id", "cast", None])
def test_a_fix_gamma_batchnorm_on_data_is_a_builtin_model(through):
    assert detect(graph(through=through)) == InputConvention("raw", 3, "stretch")


def test_fix_gamma_is_mxnets_default_when_the_attribute_is_absent():
    doc = graph(fix_gamma=None)
    assert "fix_gamma" not in json.dumps(doc)
    assert detect(doc, channels=1) == InputConvention("raw", 1, "stretch")


def test_mxnet_0_8_files_keep_their_attributes_under_param():
    doc = graph(fix_gamma=False)
    for node in doc["nodes"]:
        if "attrs" in node:
            node["param"] = node.pop("attrs")
    assert not convention.normalises_raw_pixels(doc)
    assert convention.normalises_raw_pixels(graph())


def test_the_record_wins_over_graph_and_hyperparameters():
    record = ModelMetadata(InputConvention("normalized", 3, "stretch"))
    assert detect(graph(), record, {"resize": "40"}) == record.input


@pytest.mark.parametrize(
    ("resize", "expected"),
    [("40", InputConvention("normalized", 3, "resize_crop", 40)), ("", None)],
)
def test_an_earlier_product_model_keeps_normalised_input(resize, expected):
    expected = expected or InputConvention("normalized", 3, "stretch")
    assert detect(graph(first="conv"), hyperparameters={"resize": resize}) == expected
    # Even with bn_data: trained incrementally from a built-in model by an earlier release,
    # it saw normalised pixels.
    assert detect(graph(), hyperparameters={"resize": resize}) == expected


@pytest.mark.parametrize("doc", [graph(first="conv"), graph(fix_gamma=False)])
def test_an_unknown_graph_is_fed_like_the_builtins_serving_with_a_warning(doc, caplog):
    with caplog.at_level(logging.WARNING):
        assert detect(doc) == InputConvention("raw", 3, "stretch")
    assert "write a model-metadata.json" in caplog.text


def test_data_feeding_two_layers_has_no_first_layer():
    x = mx.sym.var("data")
    both = mx.sym.BatchNorm(x, name="bn_data") + mx.sym.Convolution(x, num_filter=3, kernel=(1, 1))
    assert convention.first_layer(json.loads(both.tojson())) is None


@pytest.mark.parametrize("channels", [1, 3])
def test_the_graph_normalisation_is_imagenet_mean_and_std(channels):
    raw = np.random.default_rng(0).uniform(0, 255, (2, channels, 4, 5)).astype(np.float32)
    mean = np.array([123.68, 116.779, 103.939][:channels], np.float32).reshape(1, -1, 1, 1)
    std = np.array([58.393, 57.12, 57.375][:channels], np.float32).reshape(1, -1, 1, 1)
    out = normalize_pixels(mx.nd, mx.nd.array(raw), channels).asnumpy()
    np.testing.assert_allclose(out, (raw - mean) / std, rtol=1e-5, atol=1e-5)
    symbol = normalize_pixels(mx.sym, mx.sym.var("data"), channels)
    assert symbol.list_arguments() == ["data"]  # constants in the graph, nothing to train
