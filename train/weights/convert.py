"""torchvision's ResNet state_dict -> GluonCV parameter names, and telling GluonCV files apart.

torchvision names (also timm's, for its ``tv_in1k`` / ``gluon_in1k`` mirrors) are
``conv1``, ``bn1``, ``layer{1-4}.{block}.{conv,bn}{1-3}``, ``...downsample.{0,1}`` and ``fc``;
BatchNorm's ``weight``/``bias`` are GluonCV's ``gamma``/``beta``. Convolution kernels are
(out, in, kh, kw) in both frameworks, so values are copied unchanged.

- ResNet-18/34 -> ``resnet{18,34}_v1``: ``features.{0,1}`` is the stem, ``features.{4-7}`` the
  four stages, each block's ``body.{0,1,3,4}`` its conv/bn pairs, ``output`` the classifier.
- ResNet-50/101/152 -> ``resnet*_v1b``, whose children carry torchvision's own names.
"""

from __future__ import annotations

import re

import numpy as np

from train.weights.catalog import BOTTLENECK_DEPTHS

_BN_RENAMES = {"weight": "gamma", "bias": "beta"}
_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(\w+)$")
_DOWNSAMPLE = re.compile(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(\w+)$")
_STEM = re.compile(r"^(conv1|bn1|fc)\.(\w+)$")
# Basic block conv/bn number -> index in GluonCV's BasicBlockV1 ``body``.
_BASIC_BODY = {("conv", "1"): 0, ("bn", "1"): 1, ("conv", "2"): 3, ("bn", "2"): 4}
_V1_STEM = {"conv1": "features.0", "bn1": "features.1", "fc": "output"}


class ConversionError(ValueError):
    """The state_dict is not a torchvision ResNet of the requested depth."""


def _param(kind: str, attr: str) -> str:
    return _BN_RENAMES.get(attr, attr) if kind == "bn" else attr


def _v1_name(key: str) -> str | None:
    if m := _STEM.match(key):
        layer, attr = m.groups()
        return f"{_V1_STEM[layer]}.{_param('bn' if layer == 'bn1' else 'x', attr)}"
    if m := _BLOCK.match(key):
        stage, block, kind, num, attr = m.groups()
        body = _BASIC_BODY.get((kind, num))
        if body is None:
            raise ConversionError(f"{key}: a bottleneck layer in a basic-block ResNet")
        return f"features.{3 + int(stage)}.{block}.body.{body}.{_param(kind, attr)}"
    if m := _DOWNSAMPLE.match(key):
        stage, block, index, attr = m.groups()
        kind = "bn" if index == "1" else "conv"
        return f"features.{3 + int(stage)}.{block}.downsample.{index}.{_param(kind, attr)}"
    return None


def _v1b_name(key: str) -> str | None:
    if m := _STEM.match(key):
        layer, attr = m.groups()
        return f"{layer}.{_param('bn' if layer == 'bn1' else 'x', attr)}"
    if m := _BLOCK.match(key):
        stage, block, kind, num, attr = m.groups()
        return f"layer{stage}.{block}.{kind}{num}.{_param(kind, attr)}"
    if m := _DOWNSAMPLE.match(key):
        stage, block, index, attr = m.groups()
        kind = "bn" if index == "1" else "conv"
        return f"layer{stage}.{block}.downsample.{index}.{_param(kind, attr)}"
    return None


def variant_for(depth: int) -> str:
    """The GluonCV variant torchvision's ResNet-``depth`` maps onto."""
    return "v1b" if depth in BOTTLENECK_DEPTHS else "v1"


def torchvision_to_gluon(state: dict[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
    """Rename a torchvision ResNet state_dict to GluonCV ``resnet{depth}_{variant_for(depth)}``.

    ``num_batches_tracked`` counters are dropped (GluonCV has none); float arrays become float32.

    Raises:
        ConversionError: naming the first key that is not part of a torchvision ResNet.
    """
    rename = _v1b_name if variant_for(depth) == "v1b" else _v1_name
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        name = rename(key)
        if name is None:
            raise ConversionError(
                f"{key} is not a parameter of torchvision's ResNet-{depth}: the file holds "
                "another network (only torchvision/timm ResNet layouts can be converted)"
            )
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def is_torchvision_layout(names: list[str]) -> bool:
    """True for torchvision/timm ResNet names (``layer1.0.conv1.weight`` and ``fc.weight``)."""
    return (
        "fc.weight" in names
        and any(n.startswith("layer1.") for n in names)
        and not any(n.endswith((".gamma", "_gamma")) for n in names)
    )


def gluon_variant(names: list[str], depth: int) -> str:
    """Whether GluonCV parameters (a ``.params`` file's names) are ``v1`` or ``v1b``.

    v1 bottlenecks put a bias on their 1x1 convolutions and v1b's convolutions have none, so a
    convolution bias anywhere (any ``bias`` that is not the classifier's) means v1. Basic-block
    depths (18/34) have no conv biases in either: their names tell (v1b keeps ``layer1.*``).
    """
    classifier = ("output.bias", "fc.bias", "dense0_bias")
    conv_bias = [n for n in names if n.endswith("bias") and not n.endswith(classifier)]
    if depth in BOTTLENECK_DEPTHS:
        return "v1" if conv_bias else "v1b"
    return "v1b" if any(n.startswith("layer1.") for n in names) else "v1"
