"""MXNet 1.9 operators as PyTorch functions, with MXNet's defaults and semantics.

:func:`build` turns one node of a symbol graph (its operator name and string attributes, as
the symbol JSON holds them) into a function ``fn(training, *inputs)``: ``inputs`` are the
node's inputs in MXNet's order, parameters included (a Convolution gets data, weight and,
unless ``no_bias``, bias). Everything computes in the input's dtype (float32 here; autocast may
lower it): a ``Cast`` between floating types is the identity, so a float16 graph trains in
float32 or under autocast. An operator outside :data:`OPS` is an :class:`UnsupportedGraph`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

Fn = Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]
Attrs = dict[str, str]

# Output operators of training graphs whose extra inputs are labels, unused by the forward pass.
LOSS_HEADS = frozenset(
    {"SoftmaxOutput", "LogisticRegressionOutput", "LinearRegressionOutput", "MAERegressionOutput"}
)
# Operators that turn scores into what the graph outputs (applied by SymbolNet.probabilities).
OUTPUT_OPS = LOSS_HEADS | {"softmax", "SoftmaxActivation", "log_softmax", "sigmoid"}


class UnsupportedGraph(ValueError):
    """A graph the interpreter cannot run; the message names the node and what is wrong."""


def _tuple(attrs: Attrs, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    text = attrs.get(key, "").strip()
    if text in ("", "()", "[]", "None"):
        return default
    value = ast.literal_eval(text)
    return tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))


def _bool(attrs: Attrs, key: str, default: bool) -> bool:
    return attrs[key].strip().lower() in ("true", "1") if key in attrs else default


def _float(attrs: Attrs, key: str, default: float) -> float:
    text = attrs.get(key, "None")
    return default if text == "None" else float(text)


def _int(attrs: Attrs, key: str, default: int) -> int:
    return int(attrs[key]) if key in attrs else default


def _convolution(a: Attrs) -> Fn:
    kernel = _tuple(a, "kernel", ())
    if len(kernel) != 2 or a.get("layout", "NCHW") not in ("NCHW", "None"):
        raise ValueError(f"only 2-D NCHW convolutions are supported (kernel {kernel})")
    stride, dilate = _tuple(a, "stride", (1, 1)), _tuple(a, "dilate", (1, 1))
    pad, groups = _tuple(a, "pad", (0, 0)), _int(a, "num_group", 1)

    def convolution(training, x, w, b=None):
        return F.conv2d(x, w, b, stride, pad, dilate, groups)

    return convolution


def _batch_norm(a: Attrs) -> Fn:
    """MXNet's BatchNorm: in training, batch statistics and ``moving = moving * momentum +
    batch * (1 - momentum)`` with the biased batch variance (torch's own update uses the
    unbiased one: corrected below); ``fix_gamma`` uses gamma = 1 (no gradient to it)."""
    if _int(a, "axis", 1) != 1 or _bool(a, "output_mean_var", False):
        raise ValueError("only axis=1 and output_mean_var=False are supported")
    eps, momentum = _float(a, "eps", 1e-3), _float(a, "momentum", 0.9)
    fix_gamma, global_stats = _bool(a, "fix_gamma", True), _bool(a, "use_global_stats", False)

    def batch_norm(training, x, gamma, beta, mean, var):
        weight = None if fix_gamma else gamma
        if not training or global_stats:
            return F.batch_norm(x, mean, var, weight, beta, False, 0.0, eps)
        updated = var.clone()  # autograd keeps what torch updates: leave it alone afterwards
        y = F.batch_norm(x, mean, updated, weight, beta, True, 1.0 - momentum, eps)
        with torch.no_grad():  # updated = m * var + (1-m) * unbiased; MXNet: (1-m) * biased
            kept = var * momentum
            var.copy_(updated - (updated - kept) / (x.numel() // x.shape[1]))
        return y

    return batch_norm


_ACTIVATIONS = {
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softrelu": F.softplus,
    "softsign": F.softsign,
}


def _activation(a: Attrs) -> Fn:
    act_type = a.get("act_type", "")
    if act_type not in _ACTIVATIONS:
        raise ValueError(f"act_type {act_type!r} is not supported ({', '.join(_ACTIVATIONS)})")
    fn = _ACTIVATIONS[act_type]
    return lambda training, x: fn(x)


def _leaky_relu(a: Attrs) -> Fn:
    act_type, slope = a.get("act_type", "leaky"), _float(a, "slope", 0.25)
    fns = {
        "leaky": lambda training, x: F.leaky_relu(x, slope),
        "prelu": lambda training, x, gamma: F.prelu(x, gamma),
        "elu": lambda training, x: F.elu(x, slope),
        "selu": lambda training, x: F.selu(x),
        "gelu": lambda training, x: F.gelu(x),
    }
    if act_type not in fns:
        raise ValueError(f"act_type {act_type!r} is not supported ({', '.join(fns)})")
    return fns[act_type]


def _pool_size(size: int, kernel: int, stride: int, pad: int, convention: str) -> int:
    span = size + 2 * pad - kernel
    return 1 + (math.ceil(span / stride) if convention == "full" else span // stride)


def _pooling(a: Attrs) -> Fn:
    """MXNet's Pooling; ``full`` rounds the output size up. Torch's ``ceil_mode`` does the
    same except that it drops a last window starting in the right padding; the shape check
    refuses that case instead of computing something else."""
    pool_type, convention = a.get("pool_type", "max"), a.get("pooling_convention", "valid")
    if pool_type not in ("max", "avg", "sum") or convention not in ("valid", "full"):
        raise ValueError(f"pool_type {pool_type!r} / pooling_convention {convention!r}")
    if _bool(a, "global_pool", False):
        reduce = {"max": torch.amax, "avg": torch.mean, "sum": torch.sum}[pool_type]
        return lambda training, x: reduce(x, dim=(2, 3), keepdim=True)
    kernel = _tuple(a, "kernel", ())
    if len(kernel) != 2 or a.get("layout", "NCHW") not in ("NCHW", "None"):
        raise ValueError(f"only 2-D NCHW pooling is supported (kernel {kernel})")
    stride, pad = _tuple(a, "stride", (1, 1)), _tuple(a, "pad", (0, 0))
    ceil, include_pad = convention == "full", _bool(a, "count_include_pad", True)

    def pooling(training, x):
        if pool_type == "max":
            y = F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil)
        else:
            divisor = 1 if pool_type == "sum" else None
            y = F.avg_pool2d(x, kernel, stride, pad, ceil, include_pad, divisor)
        want = [
            _pool_size(x.shape[2 + i], kernel[i], stride[i], pad[i], convention) for i in (0, 1)
        ]
        if list(y.shape[2:]) != want:
            raise ValueError(f"a pooling window starts beyond the padded input {tuple(x.shape)}")
        return y

    return pooling


def _fully_connected(a: Attrs) -> Fn:
    flatten = _bool(a, "flatten", True)

    def fully_connected(training, x, w, b=None):
        return F.linear(torch.flatten(x, 1) if flatten else x, w, b)

    return fully_connected


def _split(a: Attrs) -> Fn:
    count, axis, squeeze = (
        _int(a, "num_outputs", 1),
        _int(a, "axis", 1),
        _bool(a, "squeeze_axis", False),
    )

    def split(training, x):
        parts = torch.split(x, x.shape[axis] // count, dim=axis)
        return tuple(p.squeeze(axis) for p in parts) if squeeze else parts

    return split


def _dropout(a: Attrs) -> Fn:
    if _tuple(a, "axes", ()):
        raise ValueError("Dropout with axes is not supported")
    p, always = _float(a, "p", 0.5), a.get("mode", "training") == "always"
    return lambda training, x: F.dropout(x, p, training or always)


def _cast(a: Attrs) -> Fn:
    dtype = a.get("dtype", "float32")
    if dtype in ("float16", "float32", "float64", "bfloat16"):
        return lambda training, x: x
    target = getattr(torch, dtype)
    return lambda training, x: x.to(target)


def _softmax_output(a: Attrs) -> Fn:
    if _bool(a, "multi_output", False):
        return lambda training, x, *labels: torch.softmax(x, 1)
    if _bool(a, "preserve_shape", False):
        return lambda training, x, *labels: torch.softmax(x, -1)
    return lambda training, x, *labels: torch.softmax(torch.flatten(x, 1), -1).reshape(x.shape)


def _softmax(a: Attrs, log: bool = False) -> Fn:
    axis, temperature = _int(a, "axis", -1), _float(a, "temperature", 1.0)
    fn = torch.log_softmax if log else torch.softmax
    if temperature == 1.0:
        return lambda training, x: fn(x, axis)
    return lambda training, x: fn(x / temperature, axis)


def _softmax_activation(a: Attrs) -> Fn:
    if a.get("mode", "instance") == "channel":
        return lambda training, x: torch.softmax(x, 1)
    return lambda training, x: torch.softmax(torch.flatten(x, 1), -1).reshape(x.shape)


def _scalar(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Callable[[Attrs], Fn]:
    def build(a: Attrs) -> Fn:
        scalar = float(a["scalar"])
        return lambda training, x: fn(x, scalar)

    return build


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[Attrs], Fn]:
    return lambda a: lambda training, x, y: fn(x, y)


def _aliases(names: str, build: Callable[[Attrs], Fn]) -> dict[str, Callable[[Attrs], Fn]]:
    return dict.fromkeys(names.split(), build)


OPS: dict[str, Callable[[Attrs], Fn]] = {
    "Convolution": _convolution,
    "BatchNorm": _batch_norm,
    "Activation": _activation,
    "LeakyReLU": _leaky_relu,
    "Pooling": _pooling,
    "FullyConnected": _fully_connected,
    "Dropout": _dropout,
    **_aliases("Flatten flatten", lambda a: lambda training, x: torch.flatten(x, 1)),
    **_aliases("SliceChannel split", _split),
    **_aliases("Concat concat", lambda a: lambda training, *xs: torch.cat(xs, _int(a, "dim", 1))),
    **_aliases("Cast cast amp_cast", _cast),
    "amp_multicast": lambda a: lambda training, *xs: xs,
    **_aliases("identity _copy", lambda a: lambda training, x: x),
    **_aliases("BlockGrad stop_gradient", lambda a: lambda training, x: x.detach()),
    **_aliases("elemwise_add _plus _Plus _add broadcast_add broadcast_plus", _binary(torch.add)),
    **_aliases("elemwise_sub _minus _Minus _sub broadcast_sub broadcast_minus", _binary(torch.sub)),
    **_aliases("elemwise_mul _mul _Mul broadcast_mul", _binary(torch.mul)),
    **_aliases("elemwise_div _div _Div broadcast_div", _binary(torch.div)),
    **_aliases("_maximum broadcast_maximum", _binary(torch.maximum)),
    **_aliases("_minimum broadcast_minimum", _binary(torch.minimum)),
    **_aliases("add_n ElementWiseSum", lambda a: lambda training, *xs: sum(xs[1:], xs[0])),
    **_aliases("_plus_scalar _PlusScalar", _scalar(lambda x, s: x + s)),
    **_aliases("_minus_scalar _MinusScalar", _scalar(lambda x, s: x - s)),
    **_aliases("_rminus_scalar _RMinusScalar", _scalar(lambda x, s: s - x)),
    **_aliases("_mul_scalar _MulScalar", _scalar(lambda x, s: x * s)),
    **_aliases("_div_scalar _DivScalar", _scalar(lambda x, s: x / s)),
    **_aliases("_rdiv_scalar _RDivScalar", _scalar(lambda x, s: s / x)),
    **_aliases("_power_scalar _PowerScalar", _scalar(lambda x, s: x**s)),
    **_aliases("_maximum_scalar _MaximumScalar", _scalar(lambda x, s: torch.clamp(x, min=s))),
    **_aliases("_minimum_scalar _MinimumScalar", _scalar(lambda x, s: torch.clamp(x, max=s))),
    "clip": lambda a: lambda training, x: torch.clamp(x, float(a["a_min"]), float(a["a_max"])),
    "relu": lambda a: lambda training, x: F.relu(x),
    "sigmoid": lambda a: lambda training, x: torch.sigmoid(x),
    "tanh": lambda a: lambda training, x: torch.tanh(x),
    "softmax": _softmax,
    "log_softmax": lambda a: _softmax(a, log=True),
    "SoftmaxActivation": _softmax_activation,
    "SoftmaxOutput": _softmax_output,
    "LogisticRegressionOutput": lambda a: lambda training, x, *labels: torch.sigmoid(x),
    **_aliases("LinearRegressionOutput MAERegressionOutput", lambda a: lambda t, x, *labels: x),
}


def build(op: str, name: str, attrs: Attrs) -> Fn:
    """The function of node ``name``.

    Raises:
        UnsupportedGraph: ``op`` is not in :data:`OPS`, or its attributes ask for something
            the interpreter does not do.
    """
    if op not in OPS:
        raise UnsupportedGraph(
            f"node {name!r}: operator {op!r} is not supported by the PyTorch engine's graph "
            f"interpreter (it runs: {', '.join(sorted(OPS))})"
        )
    try:
        return OPS[op](attrs)
    except (ValueError, KeyError, SyntaxError) as exc:
        raise UnsupportedGraph(f"node {name!r} ({op}): {exc}") from None
