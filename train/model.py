"""The network: GluonCV ResNet v1 backbones, a fresh classifier head, export and import.

``build_network`` covers the three ways a job starts: from scratch, from ImageNet weights
(only the head re-initialised) and from an earlier model of this product or of the built-in
algorithm (incremental training; the head is kept when ``num_classes`` matches and replaced
when it does not, which the built-in cannot do). Exported models end in a softmax (or a
sigmoid for multi-label), so the saved symbol outputs probabilities as the built-in's does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from train import artifacts
from train.config import TrainConfig
from train.errors import ClientError

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


class Classifier(gluon.HybridBlock):
    """``features`` (any backbone without its head) followed by a Dense ``head``.

    ``network_variant`` (``v1``/``v1b``, None when unknown) is recorded with the model.
    """

    def __init__(
        self,
        features: gluon.HybridBlock,
        head: nn.Dense,
        network_variant: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network_variant = network_variant
        with self.name_scope():
            self.features = features
            self.head = head

    def hybrid_forward(self, F, x):  # noqa: N803 - MXNet's signature
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


def _fresh_head(num_classes: int, in_units: int = 0) -> nn.Dense:
    head = nn.Dense(num_classes, in_units=in_units, prefix="head_")
    head.initialize(mx.init.Xavier(), force_reinit=True)
    return head


def from_scratch(cfg: TrainConfig, num_classes: int) -> Classifier:
    """A randomly initialised ResNet (the built-in's full-training mode)."""
    backbone = build_backbone(cfg.num_layers, classes=num_classes)
    backbone.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    return Classifier(split_backbone(backbone), _fresh_head(num_classes), "v1")


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
    return Classifier(split_backbone(backbone), _fresh_head(num_classes), variant)


def _classifier_layer(symbol: mx.sym.Symbol) -> tuple[str, list[str]]:
    """The last FullyConnected layer of a saved graph (the classifier head): its name and the
    names of its weight and bias inputs."""
    nodes = json.loads(symbol.tojson())["nodes"]
    fcs = [n for n in nodes if n["op"] == "FullyConnected"]
    if not fcs:
        raise ClientError("the saved model's graph has no FullyConnected classifier layer")
    fc = fcs[-1]
    return fc["name"], [nodes[i[0]]["name"] for i in fc["inputs"][1:]]


def from_saved_model(
    model_dir: Path, num_classes: int, image_shape: tuple[int, int, int]
) -> Classifier:
    """Incremental training: an earlier model of this product or of the built-in algorithm.

    The graph up to the classifier becomes a trainable ``SymbolBlock``; the head keeps its
    weights when ``num_classes`` is unchanged and is re-initialised when it is not.
    """
    try:
        files = artifacts.locate_model(model_dir)
    except artifacts.MissingModelFiles as exc:
        raise ClientError(f"the 'model' channel is not a usable model: {exc}") from None
    if files.image_shape != image_shape:
        raise ClientError(
            f"image_shape {','.join(map(str, image_shape))} differs from the seed model's "
            f"{','.join(map(str, files.image_shape))}; incremental training needs the same shape"
        )
    symbol = mx.sym.load(str(files.symbol))
    fc_name, head_params = _classifier_layer(symbol)
    fc = symbol.get_internals()[f"{fc_name}_output"]
    features_sym = fc.get_children()[0]
    saved = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(str(files.params)).items()}
    features = gluon.SymbolBlock(features_sym, mx.sym.var("data"))
    for name, param in features.collect_params().items():
        if name not in saved:
            raise ClientError(f"the seed model's params file lacks {name}")
        param._load_init(saved[name], mx.cpu())
    weight, bias = (saved.get(name) for name in [*head_params, None][:2])
    head = _fresh_head(num_classes, in_units=0 if weight is None else weight.shape[1])
    if weight is not None and weight.shape[0] == num_classes:
        head.weight.set_data(weight)
        if bias is not None:
            head.bias.set_data(bias)
        logger.info("Incremental training from %s (classifier kept)", files.params.name)
    else:
        old = None if weight is None else weight.shape[0]
        logger.info(
            "Incremental training from %s: num_classes %s -> %d, classifier re-initialised",
            files.params.name,
            old,
            num_classes,
        )
    return Classifier(features, head, _saved_variant(model_dir))


def _saved_variant(model_dir: Path) -> str | None:
    """The ``network_variant`` an earlier model of this product recorded, if any."""
    try:
        hps = json.loads((model_dir / artifacts.HYPERPARAMETERS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return hps.get("network_variant") if isinstance(hps, dict) else None


def export_model(
    net: Classifier,
    model_dir: Path,
    epoch: int,
    *,
    multi_label: bool,
    image_shape: tuple[int, int, int],
    batch_size: int,
) -> Path:
    """Write the built-in's model files for ``epoch`` (atomically), return the params path.

    Files: ``image-classification-symbol.json``, ``image-classification-NNNN.params``,
    ``model-shapes.json``. Parameters are saved as float32 whatever the training precision.
    """
    wrapped = WithProbabilities(net, multi_label)
    symbol = wrapped(mx.sym.var("data"))
    arg_names = set(symbol.list_arguments())
    params = {
        ("arg:" if name in arg_names else "aux:") + name: p.data(p.list_ctx()[0]).astype("float32")
        for name, p in net.collect_params().items()
    }
    params_path = model_dir / artifacts.params_file(epoch)
    artifacts.atomic_write(params_path, lambda tmp: mx.nd.save(str(tmp), params))
    artifacts.atomic_write_bytes(model_dir / artifacts.SYMBOL_FILE, symbol.tojson().encode())
    artifacts.atomic_write_json(
        model_dir / artifacts.SHAPES_FILE, artifacts.shapes_document(image_shape, batch_size)
    )
    return params_path


def load_for_inference(files: artifacts.ModelFiles, ctx: mx.Context) -> gluon.SymbolBlock:
    """A saved model (this product's or the built-in's) as a block that outputs probabilities.

    A built-in model's graph ends in ``SoftmaxOutput``, which needs a label input; the graph is
    cut at its classifier and a softmax added, which gives the same probabilities.
    """
    symbol = mx.sym.load(str(files.symbol))
    if "softmax_label" in symbol.list_arguments():
        fc = symbol.get_internals()[f"{_classifier_layer(symbol)[0]}_output"]
        symbol = mx.sym.sigmoid(fc) if files.multi_label else mx.sym.softmax(fc)
    block = gluon.SymbolBlock(symbol, mx.sym.var("data"))
    block.collect_params().load(str(files.params), ctx=ctx, ignore_extra=True)
    block.hybridize(static_alloc=True, static_shape=False)
    return block
