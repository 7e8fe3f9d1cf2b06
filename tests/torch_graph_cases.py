"""MXNet graphs for the PyTorch interpreter's tests, and plain MXNet's answers about them.

Graphs: this product's exports (``train.model`` + ``export_model``, as the job writes them) and
the built-in-style symbolic ResNets of :mod:`tests.builtin_models`, with random weights whose
BatchNorm statistics and biases are perturbed so that a wrong operator or a wrong parameter
mapping shows in the numbers. Expected values come from MXNet alone: ``mx.mod.Module`` for
the graph's output, a ``gluon.SymbolBlock`` of the scores for eval, train-mode and gradients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from tests import builtin_models as bm
from train import model
from train.formats import model_dir
from train.formats.metadata import InputConvention

OUTPUT_OPS = {"softmax", "SoftmaxOutput", "sigmoid", "LogisticRegressionOutput"}
BATCH = 3


@dataclass(frozen=True)
class Case:
    """A saved graph (``symbol`` + ``params`` files) and its input shape; ``reference`` is
    the graph MXNet computes the expected values with (float16 graphs: their float32 twin)."""

    name: str
    symbol: Path
    params: Path
    shape: tuple[int, int, int]
    reference: mx.sym.Symbol


def _perturbed(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.startswith("bn_data_") and name.endswith(("mean", "var")):  # raw 0-255 pixels
        low, high = (100, 140) if name.endswith("mean") else (2500, 4000)
        return rng.uniform(low, high, shape)
    if name.endswith(("gamma", "_var")):
        return rng.uniform(0.5, 1.5, shape)
    if name.endswith(("beta", "bias", "_mean")):
        return rng.normal(0, 0.2, shape)
    fan_in = int(np.prod(shape[1:])) or 1
    return rng.normal(0, np.sqrt(2 / fan_in), shape)


def product_case(
    tmp: Path, name: str, layers: int, variant: str, size: int, channels=3, multi_label=False
) -> Case:
    """A network as the job builds and exports it (random weights, perturbed)."""
    backbone = model.build_backbone(layers, 10, variant)
    backbone.initialize()
    net = model.Classifier(model.split_backbone(backbone), model.fresh_head(5), channels, variant)
    net(mx.nd.zeros((1, channels, size, size)))
    rng = np.random.default_rng(layers + size + channels)
    for pname, param in net.collect_params().items():
        param.set_data(mx.nd.array(_perturbed(pname, param.shape, rng)))
    params = model_dir.export_model(
        net, tmp / name, 1, multi_label=multi_label, image_shape=(channels, size, size),
        batch_size=BATCH, input_convention=InputConvention("raw", channels, "resize_crop", size),
    )  # fmt: skip
    symbol = tmp / name / "image-classification-symbol.json"
    return Case(name, symbol, params, (channels, size, size), mx.sym.load(str(symbol)))


def small_resnet18(num_classes: int, dtype: str | None = None) -> mx.sym.Symbol:
    """A 32-pixel ResNet-18 the built-in's way (3x3 stem, no pooling, four stages); with
    ``dtype``, a Cast to it after ``data`` and a Cast to float32 before the output."""
    body = mx.sym.var("data")
    body = mx.sym.Cast(body, dtype=dtype, name="cast0") if dtype else mx.sym.identity(body)
    body = bm._conv(bm._bn(body, "bn_data", fix_gamma=True), 64, 3, 1, "conv0")
    filters = [64, 128, 256, 512]
    for stage, count in enumerate([2, 2, 2, 2] if dtype is None else [1, 1], start=1):
        for unit in range(1, count + 1):
            stride = 2 if stage > 1 and unit == 1 else 1
            body = bm._unit(body, filters[stage - 1], stride, unit == 1, f"stage{stage}_unit{unit}")
    body = mx.sym.Activation(bm._bn(body, "bn1"), act_type="relu", name="relu1")
    body = mx.sym.Pooling(body, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    logits = mx.sym.FullyConnected(mx.sym.Flatten(body), num_hidden=num_classes, name="fc1")
    if dtype:
        logits = mx.sym.Cast(logits, dtype="float32", name="cast1")
    return mx.sym.SoftmaxOutput(logits, name="softmax")


def smooth_symbol() -> mx.sym.Symbol:
    """A graph without kinks (no ReLU, no max pooling), so that float32 rounding cannot flip
    an activation mask and gradients compare tightly: BatchNorm with fix_gamma, momentum 0.8,
    eps 1e-3, MXNet's default eps and use_global_stats; grouped, dilated, biased
    convolutions; smooth activations; average pooling (``full`` rounding up); split/concat;
    scalar and elementwise ops."""
    data = mx.sym.var("data")
    body = mx.sym.BatchNorm((data - 100.0) / 50.0, fix_gamma=True, eps=2e-5, name="bn_data")
    body = mx.sym.Convolution(
        body, num_filter=8, kernel=(3, 3), pad=(1, 1), no_bias=True, name="conv0"
    )  # a bias before a batch-statistics BatchNorm has no gradient: biases sit in conv1
    body = mx.sym.BatchNorm(body, fix_gamma=False, momentum=0.8, eps=1e-3, name="bn0")
    left, right = mx.sym.split(mx.sym.Activation(body, act_type="tanh"), num_outputs=2, axis=1)
    left = mx.sym.Convolution(
        left, num_filter=4, kernel=(3, 3), dilate=(2, 2), pad=(2, 2), num_group=2, name="conv1"
    )
    right = mx.sym.Activation(right, act_type="softrelu") * 0.5 + mx.sym.sigmoid(right)
    body = mx.sym.concat(left, right, dim=1)
    body = mx.sym.Pooling(body, kernel=(3, 3), stride=(2, 2), pool_type="avg",
                          pooling_convention="full", name="pool0")  # fmt: skip
    body = mx.sym.BatchNorm(body, use_global_stats=True, fix_gamma=False, name="bn_global")
    body = mx.sym.Pooling(body, global_pool=True, kernel=(1, 1), pool_type="avg")
    logits = mx.sym.FullyConnected(mx.sym.Flatten(body), num_hidden=3, name="fc1")
    return mx.sym.SoftmaxOutput(logits, name="softmax")


def symbolic_case(
    tmp: Path, name: str, symbol: mx.sym.Symbol, shape, reference: mx.sym.Symbol | None = None
) -> Case:
    """A built-in-style checkpoint of ``symbol`` (random weights, in the dtypes MXNet infers:
    a float16 graph stores float16 convolution/FC weights and float32 BatchNorm parameters)."""
    rng = np.random.default_rng(len(name))
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, *shape))
    arg_types, _, aux_types = symbol.infer_type(data="float32")
    params = {}
    for prefix, names, shapes, types in [
        ("arg:", symbol.list_arguments(), arg_shapes, arg_types),
        ("aux:", symbol.list_auxiliary_states(), aux_shapes, aux_types),
    ]:
        for pname, pshape, ptype in zip(names, shapes, types, strict=True):
            if pname != "data" and not pname.endswith("_label"):
                value = _perturbed(pname, pshape, rng)
                params[prefix + pname] = mx.nd.array(value, dtype=ptype)
    if "arg:bn_data_gamma" in params:
        params["arg:bn_data_gamma"][:] = bm.BN_DATA_GAMMA  # ignored by fix_gamma
    folder = tmp / name
    folder.mkdir(parents=True)
    symbol.save(str(folder / "model-symbol.json"))
    mx.nd.save(str(folder / "model-0001.params"), params)
    files = (folder / "model-symbol.json", folder / "model-0001.params")
    return Case(name, *files, shape, symbol if reference is None else reference)


def load_params(path: Path) -> tuple[dict, dict]:
    """``arg`` and ``aux`` dicts of a ``.params`` file, as float32 (MXNet's CPU cannot run
    float16 convolutions; float16 graphs are computed through their float32 twin)."""
    loaded = mx.nd.load(str(path))
    split = ({}, {})
    for key, value in loaded.items():
        split[key.startswith("aux:")][key.split(":", 1)[1]] = value.astype("float32")
    return split


def graph_output(case: Case, params: Path, x: np.ndarray) -> np.ndarray:
    """What plain MXNet's Module (``label_names=None``) outputs for ``x``."""
    args, auxs = load_params(params)
    module = mx.mod.Module(case.reference, data_names=["data"], label_names=None)
    module.bind(data_shapes=[("data", x.shape)], for_training=False)
    module.set_params(args, auxs, allow_missing=True)
    module.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def scores_answers(case: Case, x: np.ndarray, r: np.ndarray) -> dict[str, np.ndarray]:
    """Plain MXNet on the graph's scores (the input of its output op): eval scores; then one
    train-mode forward of ``sum(scores * r)`` and its backward: train scores, the gradient of
    every parameter, the moving statistics after the step (Gluon updates them then)."""
    last = json.loads(case.reference.tojson())["nodes"][-1]
    scores = case.reference.get_children()[0] if last["op"] in OUTPUT_OPS else case.reference
    block = gluon.SymbolBlock(scores, mx.sym.var("data"))
    args, auxs = load_params(case.params)
    for name, param in block.collect_params().items():
        param._load_init({**args, **auxs}[name], mx.cpu())
    data = mx.nd.array(x)
    out = {"eval_scores": block(data).asnumpy()}
    with autograd.record(train_mode=True):
        train = block(data)
        loss = (train * mx.nd.array(r)).sum()
    loss.backward()
    out["train_scores"] = train.asnumpy()
    for name, param in block.collect_params().items():
        kind = "aux" if name in auxs else "grad"
        out[f"{kind}__{name}"] = (param.data() if kind == "aux" else param.grad()).asnumpy()
    return out
