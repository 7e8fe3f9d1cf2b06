"""The network: input normalisation, GluonCV ResNet v1 backbones, a classifier head.

Every network this product trains takes raw 0-255 pixels, as the built-in algorithm's models do
(their ``bn_data`` layer normalises): the ImageNet mean/std step is the network's first block,
with constants in the graph, so an exported model answers a built-in client's raw stretched
pixels. Networks start from scratch or from ImageNet weights here; saved models and symbolic
checkpoints are opened by ``train.formats``. Exported models end in a softmax (or a sigmoid
for multi-label), so the saved symbol outputs probabilities as the built-in's does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from train.config import TrainConfig
from train.errors import ClientError
from train.presets import MEAN_RGB, STD_RGB

logger = logging.getLogger(__name__)

# Layer counts GluonCV's factory does not list, as (block counts, channels).
_RESNET200_LAYERS = ([3, 24, 36, 3], [64, 256, 512, 1024, 2048])
_CIFAR_CHANNELS = [16, 16, 32, 64]


def build_backbone(num_layers: int, classes: int, variant: str = "v1") -> gluon.HybridBlock:
    """A GluonCV ResNet: ``v1`` (stride on a bottleneck's first 1x1) or ``v1b`` (on its 3x3,
    as torchvision's ResNet-50/101/152, whose ImageNet weights need it).

    18-152 come from GluonCV's model zoo, 200 from its ResNetV1 class with the bottleneck
    configuration of He et al.; 20-110 are the CIFAR-style ResNets for small images.
    """
    from gluoncv.model_zoo import cifarresnet, get_model, resnet

    if num_layers in (18, 34, 50, 101, 152):
        return get_model(f"resnet{num_layers}_{variant}", classes=classes)
    if num_layers == 200:
        layers, channels = _RESNET200_LAYERS
        return resnet.ResNetV1(resnet.BottleneckV1, layers, channels, classes=classes)
    if (num_layers - 2) % 6 == 0:
        blocks = (num_layers - 2) // 6
        return cifarresnet.CIFARResNetV1(
            cifarresnet.CIFARBasicBlockV1, [blocks] * 3, _CIFAR_CHANNELS, classes=classes
        )
    raise ValueError(f"unsupported num_layers {num_layers}")


def split_backbone(backbone: gluon.HybridBlock) -> gluon.HybridBlock:
    """The backbone without its classifier: ``.features`` of the v1 networks, or, for
    ``ResNetV1b`` (whose stem, stages and pooling are separate children), those children in
    order (its ``flat``/``drop``/``fc`` head left out; Dense flattens by itself)."""
    if hasattr(backbone, "features"):
        return backbone.features
    features = nn.HybridSequential(prefix="")
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        features.add(getattr(backbone, name))
    features.add(backbone.avgpool)
    return features


def normalize_pixels(F, x, channels: int):  # noqa: N803 - F is MXNet's nd or sym namespace
    """Raw 0-255 ``NxCxHxW`` pixels minus the ImageNet mean, divided by its std, per channel
    (the red statistics for gray input). Scalar operators only: the constants live in the
    graph, not in the params file, so they survive ``export`` and cannot be trained."""
    if channels == 1:
        return (x - MEAN_RGB[0]) / STD_RGB[0]
    planes = F.split(x, num_outputs=3, axis=1)
    return F.concat(*((planes[i] - MEAN_RGB[i]) / STD_RGB[i] for i in range(3)), dim=1)


class InputNormalization(gluon.HybridBlock):
    """:func:`normalize_pixels` as the first block of a network."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def hybrid_forward(self, F, x):  # noqa: N803
        return normalize_pixels(F, x, self.channels)


class Classifier(gluon.HybridBlock):
    """Optional input normalisation, ``features`` (any backbone without its head), a Dense
    ``head``. ``channels=None`` leaves the input as it is (a graph that normalises itself).
    ``network_variant`` (``v1``/``v1b``, None when unknown) is recorded with the model."""

    def __init__(
        self,
        features: gluon.HybridBlock,
        head: nn.Dense,
        channels: int | None,
        network_variant: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network_variant = network_variant
        with self.name_scope():
            self.normalize = None if channels is None else InputNormalization(channels)
            self.features = features
            self.head = head

    def hybrid_forward(self, F, x):  # noqa: N803 - MXNet's signature
        if self.normalize is not None:
            x = self.normalize(x)
        return self.head(self.features(x))


class WithProbabilities(gluon.HybridBlock):
    """Wraps a classifier so the exported graph ends in softmax (or sigmoid for multi-label)."""

    def __init__(self, net: gluon.HybridBlock, multi_label: bool, **kwargs):
        super().__init__(**kwargs)
        self.multi_label = multi_label
        with self.name_scope():
            self.net = net

    def hybrid_forward(self, F, x):  # noqa: N803
        logits = self.net(x)
        return F.sigmoid(logits) if self.multi_label else F.softmax(logits)


def fresh_head(num_classes: int, in_units: int = 0) -> nn.Dense:
    """A Xavier-initialised classifier for ``num_classes`` (``in_units=0``: inferred)."""
    head = nn.Dense(num_classes, in_units=in_units, prefix="head_")
    head.initialize(mx.init.Xavier(), force_reinit=True)
    return head


def from_scratch(cfg: TrainConfig, num_classes: int) -> Classifier:
    """A randomly initialised ResNet (the built-in's full-training mode)."""
    backbone = build_backbone(cfg.num_layers, classes=num_classes)
    backbone.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    return Classifier(split_backbone(backbone), fresh_head(num_classes), cfg.image_shape[0], "v1")


def from_imagenet(cfg: TrainConfig, num_classes: int, weights: Path, variant: str) -> Classifier:
    """ImageNet weights everywhere but the classifier head, which is re-initialised.

    ``variant``: the network the weights were made for (``v1`` or ``v1b``).
    """
    backbone = build_backbone(cfg.num_layers, classes=1000, variant=variant)
    try:
        backbone.load_parameters(str(weights), ignore_extra=True, allow_missing=False)
    except (AssertionError, mx.base.MXNetError) as exc:
        raise ClientError(
            f"pretrained weights {weights} do not fit ResNet-{cfg.num_layers} ({variant}): "
            f"{str(exc).splitlines()[0][:300]}. Use weights saved by GluonCV for "
            f"resnet{cfg.num_layers}_v1 or _v1b, or convert a torchvision/safetensors file "
            f"with python -m train.pretrained --convert FILE --layers {cfg.num_layers} --out DIR."
        ) from None
    logger.info("Using pretrained model for initializing weights and transfer learning.")
    return Classifier(
        split_backbone(backbone), fresh_head(num_classes), cfg.image_shape[0], variant
    )
