"""MXNet symbolic graphs: this product's exports, the built-in's models, MXNet checkpoints.

What the trainer and the server need from a saved graph, whoever wrote it: its parameters
without the ``arg:`` / ``aux:`` prefixes, its classifier (the last FullyConnected layer, named
``fc1`` by the built-in, ``fc`` by MXNet's fine-tune example, ``head`` by this product), the
graph up to that classifier, its depth, and a callable that computes what the graph outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import gluon

from train.errors import ClientError

logger = logging.getLogger(__name__)

# Final operators that say the scores are independent per class (multi-label).
_SIGMOID_OPS = frozenset({"sigmoid", "LogisticRegressionOutput"})
# Training output operators: a label input, and a forward pass that ignores it.
_LOSS_HEADS = frozenset(
    {"SoftmaxOutput", "LogisticRegressionOutput", "LinearRegressionOutput", "MAERegressionOutput"}
)


# A reduced-precision training job's graph casts to these types; the product computes in float32.
_HALF_TYPES = frozenset({"float16", "bfloat16"})
_CAST_OPS = frozenset({"Cast", "amp_cast"})
_HALF_TYPE_FLAGS = frozenset({"2", "12"})  # a variable's ``__dtype__``: float16, bfloat16


def load_params(path: Path) -> dict[str, mx.nd.NDArray]:
    """A ``.params`` file as ``{name: array}``, ``arg:`` / ``aux:`` prefixes removed."""
    return {k.split(":", 1)[-1]: v for k, v in mx.nd.load(str(path)).items()}


def load(symbol_file: Path, params_file: Path) -> tuple[mx.sym.Symbol, dict[str, mx.nd.NDArray]]:
    """A saved graph and its parameters (unprefixed names), in float32 whatever precision the
    model was trained in.

    A job with ``precision_dtype=float16`` (the built-in's, MXNet's ``resnet.py`` with
    ``dtype='float16'``) saves a graph that casts ``data`` to float16 and back to float32 after
    the classifier, with float16 convolution and FullyConnected weights (BatchNorm's stay
    float32). Gluon refuses float16 weights for the float32 parameters it infers, and MXNet has
    no float16 GEMM on the CPU, so its casts to float16 become casts to float32 and every weight
    is cast to float32: one graph for the CPU, GPUs, ONNX and incremental training (whose mixed
    precision adds its own float16 casts).
    """
    symbol, params = mx.sym.load(str(symbol_file)), load_params(params_file)
    half = {name for name, value in params.items() if value.dtype == np.float16}
    graph = json.loads(symbol.tojson())
    casts = [node for node in graph["nodes"] if _casts_to_half(node)]
    if not half and not casts:
        return symbol, params
    for node in casts:
        attrs = node["attrs"]
        if "dtype" in attrs:
            attrs["dtype"] = "float32"
        if "__dtype__" in attrs:
            attrs["__dtype__"] = "0"
    logger.info(
        "%s is a reduced-precision model (%d float16 weights, %d casts to half precision in "
        "its graph): computing in float32",
        params_file.name,
        len(half),
        len(casts),
    )
    params = {k: v.astype("float32") if k in half else v for k, v in params.items()}
    return mx.sym.load_json(json.dumps(graph)), params


def _casts_to_half(node: dict[str, Any]) -> bool:
    attrs = node.get("attrs") or {}
    if node["op"] in _CAST_OPS and attrs.get("dtype") in _HALF_TYPES:
        return True
    return node["op"] == "null" and attrs.get("__dtype__") in _HALF_TYPE_FLAGS


def nodes(symbol: mx.sym.Symbol) -> list[dict[str, Any]]:
    """The graph's nodes as MXNet serialises them."""
    return json.loads(symbol.tojson())["nodes"]


def classifier_layer(symbol: mx.sym.Symbol) -> tuple[str, list[str]]:
    """The last FullyConnected layer (the classifier): its name and the names of its weight
    and bias inputs.

    Raises:
        ClientError: the graph has no FullyConnected layer.
    """
    graph = nodes(symbol)
    fcs = [n for n in graph if n["op"] == "FullyConnected"]
    if not fcs:
        raise ClientError("the saved model's graph has no FullyConnected classifier layer")
    fc = fcs[-1]
    return fc["name"], [graph[i[0]]["name"] for i in fc["inputs"][1:]]


def features_block(
    symbol: mx.sym.Symbol, params: dict[str, mx.nd.NDArray], what: str
) -> tuple[gluon.SymbolBlock, list[str]]:
    """The graph up to its classifier's input, as a trainable block holding ``params``; also
    the names of the classifier's weight and bias.

    Raises:
        ClientError: a parameter of the graph is missing from ``params`` (``what`` names them).
    """
    fc_name, head_params = classifier_layer(symbol)
    fc = symbol.get_internals()[f"{fc_name}_output"]
    block = gluon.SymbolBlock(fc.get_children()[0], mx.sym.var("data"))
    for name, param in block.collect_params().items():
        if name not in params:
            raise ClientError(f"{what} lacks the parameter {name} that its graph uses")
        param._load_init(params[name], mx.cpu())
    return block, head_params


def depth(symbol: mx.sym.Symbol) -> int:
    """Weighted layers as ResNet depths count them: convolutions outside the shortcut
    projections (``*_sc``) plus fully-connected layers (ResNet-18 symbolic graph: 17 + 1)."""
    graph = nodes(symbol)
    convs = sum(1 for n in graph if n["op"] == "Convolution" and not n["name"].endswith("_sc"))
    return convs + sum(1 for n in graph if n["op"] == "FullyConnected")


def outputs_independent_scores(symbol: mx.sym.Symbol) -> bool:
    """Whether the graph ends in a sigmoid (a multi-label model) rather than a softmax."""
    last = nodes(symbol)[-1]
    attrs = last.get("attrs") or {}
    return last["op"] in _SIGMOID_OPS or (
        last["op"] == "Activation" and attrs.get("act_type") == "sigmoid"
    )


def without_loss_head(symbol: mx.sym.Symbol) -> mx.sym.Symbol:
    """The graph with a training output operator (``SoftmaxOutput``,
    ``LogisticRegressionOutput``, the regression outputs) replaced by what it computes in a
    forward pass, so it has no label input: softmax, sigmoid, or the scores unchanged. Other
    graphs are returned as they are."""
    last = nodes(symbol)[-1]
    op = last["op"]
    if op not in _LOSS_HEADS:
        return symbol
    scores = symbol.get_children()[0]
    if op == "SoftmaxOutput":
        multi_output = str((last.get("attrs") or {}).get("multi_output", "False")).lower()
        if multi_output in ("true", "1"):
            return mx.sym.softmax(scores, axis=1, name=last["name"])
        return mx.sym.softmax(mx.sym.flatten(scores), axis=-1, name=last["name"])
    if op == "LogisticRegressionOutput":
        return mx.sym.sigmoid(scores, name=last["name"])
    return scores


class GraphModel:
    """A saved graph ready for inference: ``model(batch)`` gives what the graph outputs.

    A training graph's output operator (``SoftmaxOutput``, ``LogisticRegressionOutput``, or
    any other) takes a label input; it is fed zeros, which inference-mode forward passes never
    read, so the result is the graph's own output whatever the operator.
    """

    def __init__(self, symbol: mx.sym.Symbol, params: dict[str, mx.nd.NDArray], ctx: mx.Context):
        self._ctx = ctx
        self._labels = [name for name in symbol.list_arguments() if name.endswith("_label")]
        inputs = [mx.sym.var("data"), *(mx.sym.var(name) for name in self._labels)]
        self._block = gluon.SymbolBlock(symbol, inputs)
        wanted = self._block.collect_params()
        missing = sorted(set(wanted.keys()) - set(params))
        if missing:
            raise ValueError(f"the params file lacks {', '.join(missing[:5])}")
        for name, param in wanted.items():
            param._load_init(params[name], ctx)
        self._block.hybridize(static_alloc=True, static_shape=False)
        self._symbol = symbol
        self._label_shapes: dict[tuple[int, ...], list[tuple[int, ...]]] = {}

    def __call__(self, batch: mx.nd.NDArray) -> mx.nd.NDArray:
        """``NxCxHxW`` input on the model's context to its ``N x classes`` output."""
        if not self._labels:
            return self._block(batch)
        if batch.shape not in self._label_shapes:
            arg_shapes, _, _ = self._symbol.infer_shape(data=batch.shape)
            by_name = dict(zip(self._symbol.list_arguments(), arg_shapes, strict=True))
            self._label_shapes[batch.shape] = [tuple(by_name[n]) for n in self._labels]
        labels = [mx.nd.zeros(s, ctx=self._ctx) for s in self._label_shapes[batch.shape]]
        return self._block(batch, *labels)
